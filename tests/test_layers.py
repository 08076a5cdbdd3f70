"""layers.Conv3x3: the same convolution as nn.Conv2d, its weight gradient by another route."""
import pytest
import torch
import torch.nn.functional as F

from fmnist import layers
from fmnist.layers import Conv3x3, weight_grad_3x3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _reference_grads(conv: torch.nn.Conv2d, x: torch.Tensor, g: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    w = conv.weight.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.conv2d(x, w, None, 1, 1)
    y.backward(g)
    return y.detach(), x.grad, w.grad


@pytest.mark.parametrize("hw", [1, 3, 4])
def test_weight_grad_3x3_is_the_convolutions_weight_gradient(hw):
    x, g = torch.randn(5, 6, hw, hw, dtype=torch.float64), torch.randn(5, 7, hw, hw, dtype=torch.float64)
    w = torch.randn(7, 6, 3, 3, dtype=torch.float64)
    expected = torch.ops.aten.convolution_backward(
        g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])[1]
    assert torch.allclose(weight_grad_3x3(x, g), expected, atol=1e-12)
    # channels_last inputs, as the models train (the permutes then cost nothing)
    got = weight_grad_3x3(x.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_training_on_small_maps_takes_the_gemm_route_with_the_same_result(channels_last, monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "weight_grad_3x3",
                        lambda *a: calls.append(1) or weight_grad_3x3(*a))
    conv = Conv3x3(8, 16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(32, 8, 3, 3).to(memory_format=fmt).requires_grad_(True)
    g = torch.randn(32, 16, 3, 3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.backward(g)
    assert calls == [1]
    ref_y, ref_gx, ref_gw = _reference_grads(conv, x, g)
    assert y.dtype == torch.bfloat16 and torch.equal(y, ref_y)  # the forward is the same op
    assert x.grad.dtype == x.dtype and conv.weight.grad.dtype == conv.weight.dtype
    assert torch.allclose(x.grad, ref_gx, rtol=0.02, atol=0.02)
    # bf16 products, summed in another order: within bf16's rounding of the result
    assert torch.allclose(conv.weight.grad, ref_gw, rtol=0.02, atol=0.05 * ref_gw.abs().max().item())


def test_plain_convolution_everywhere_else(monkeypatch):
    monkeypatch.setattr(layers, "weight_grad_3x3", lambda *a: pytest.fail("GEMM route taken"))
    conv = Conv3x3(4, 4)
    small, large = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 5, 5)  # 16 and 25 pixels
    for x, autocast, train in [(large, True, True), (small, False, True), (small, True, False)]:
        conv.train(train)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            conv(x).float().sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        conv.train()(small)  # no gradient: nothing to route


def test_same_parameters_and_state_dict_as_conv2d():
    conv, plain = Conv3x3(3, 5), torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(conv(x), plain(x))
