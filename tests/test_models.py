"""Every registered model: shapes, finite outputs and grads, kwargs checks; pinned sizes."""
import pytest
import torch

from fmnist.errors import ConfigError, UnknownNameError
from fmnist.models import (MODELS, ModelSpec, build_model, count_parameters, model_table,
                           register_model)

# Reference architectures whose size must not drift: a change here changes published results.
PINNED = {
    "logreg": 7_850,  # 784*10 + 10
    "mlp": 101_770,  # 784*128+128 + 128*10+10
    "mlp2": 235_146,  # 784*256+256 + 256*128+128 + 128*10+10
    "2c2d": 3_274_634,  # DeepOBS fmnist_2c2d
    "p1": 3_274_634,  # same shapes as 2c2d (28 -> 14 -> 7), only the pool windows differ
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_shape_and_finite(name, train):
    model = build_model(name).train(train)
    x = torch.randn(4, 1, 28, 28)  # (N, 1, 28, 28), normalised
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_backward_gives_finite_grads(name):
    model = build_model(name)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)),
                                             torch.tensor([0, 3, 7, 9]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", MODELS.names())
def test_bf16_channels_last(name):
    # the fast way to train on the CPU (benchmarks/model_speed.py) must work for every model
    model = build_model(name).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_num_classes(name):
    model = build_model(name, num_classes=3).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_parameter_counts(name):
    assert count_parameters(build_model(name)) == PINNED[name]


def test_model_table_lists_every_model():
    table = model_table()
    assert [row[0] for row in table] == MODELS.names()
    assert all(params > 0 and desc for _, params, desc in table)
    assert dict((n, p) for n, p, _ in table)["2c2d"] == 3_274_634


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        build_model("resnet9000")
    message = str(err.value)
    assert "resnet9000" in message
    assert all(name in message for name in MODELS.names())


@pytest.mark.parametrize("name, kwargs, arg", [
    ("mlp", {"dropuot": 0.1}, "dropuot"),  # typo: unknown keyword
    ("logreg", {"dropout": 0.1}, "dropout"),  # keyword another model takes
    ("mlp", {"dropout": 1.0}, "dropout"),  # outside [0, 1)
    ("cnn", {"dropout": -0.1}, "dropout"),
    ("cnn", {"dropout": "0.1"}, "dropout"),  # ill-typed
    ("mlp2", {"hidden": (256, -1)}, "hidden"),  # negative width
    ("mlp2", {"hidden": 256}, "hidden"),  # not a tuple
    ("mlp2", {"hidden": (256, "128")}, "hidden"),
    ("cnn", {"widths": (32, 64)}, "widths"),  # wrong length
    ("resnet", {"width": 0}, "width"),
    ("resnet", {"width": 32.5}, "width"),
    ("mlp", {"num_classes": 0}, "num_classes"),
    ("mlp", {"num_classes": True}, "num_classes"),
])
def test_bad_kwargs_raise_config_error(name, kwargs, arg):
    with pytest.raises(ConfigError, match=arg):
        build_model(name, **kwargs)


def test_type_error_inside_a_factory_becomes_config_error(monkeypatch):
    def broken(num_classes: int = 10, size: object = None):
        return torch.nn.Linear(784, size)  # TypeError for size=None
    monkeypatch.setitem(MODELS._entries, "broken", ModelSpec("broken", broken, "test"))
    with pytest.raises(ConfigError, match="broken"):
        build_model("broken")


def test_configurable_widths_change_the_model():
    small = count_parameters(build_model("mlp2", hidden=[32]))  # a list, as JSON gives
    assert small == 784 * 32 + 32 + 32 * 10 + 10
    assert count_parameters(build_model("cnn", widths=(8, 8, 8))) < 10_000
    assert (count_parameters(build_model("resnet", width=16))
            < count_parameters(build_model("resnet")))


def test_resnet_stems():
    pool, unshuffle = build_model("resnet"), build_model("resnet", stem="unshuffle")
    assert isinstance(unshuffle[0], torch.nn.PixelUnshuffle) and isinstance(pool[0], torch.nn.Conv2d)
    # the space-to-depth stem's first conv sees 4 channels (a 2x2 block) instead of 1
    assert count_parameters(unshuffle) - count_parameters(pool) == 32 * 3 * 3 * 3
    assert unshuffle(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="stem"):
        build_model("resnet", stem="conv")


def test_dropout_is_active_only_in_train_mode():
    model = build_model("mlp", dropout=0.5)
    x = torch.randn(8, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_duplicate_registration_raises():
    spec = MODELS.get("mlp")
    with pytest.raises(ValueError, match="twice"):
        register_model("mlp", "again")(spec.factory)
    assert MODELS.get("mlp") is spec  # the first entry survives
    assert isinstance(spec, ModelSpec)


@pytest.mark.parametrize("name", ["cnn", "2c2d", "resnet"])
def test_whitened_first_conv_decorrelates_its_input_patches(name):
    from fmnist.models import whiten_first_conv
    torch.manual_seed(0)
    # correlated "images": smooth noise, so that the patch covariance is far from identity
    images = torch.nn.functional.avg_pool2d(torch.randn(300, 1, 32, 32), 5, 1)  # (300, 1, 28, 28)
    model = build_model(name)
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    whiten_first_conv(model, images)
    assert model.training  # as it was, and batch norm saw nothing
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bn_before.items())
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = images if name != "cnn" else torch.nn.functional.pixel_unshuffle(images, 2)
    patches = torch.nn.functional.unfold(x, conv.kernel_size, conv.dilation, conv.padding,
                                         conv.stride).transpose(1, 2).flatten(0, 1)
    k = min(conv.out_channels // 2, patches.shape[1])
    w = conv.weight.detach().flatten(1)[:2 * k]
    assert torch.allclose(w[:k], -w[k:])  # +v and -v: ReLU keeps both signs of a feature
    out = patches @ w[:k].T  # (patches, k): the filters' responses
    cov = out.T @ out / len(out)
    # uncorrelated, each of variance l / (l + eps) (1 but for the faintest directions, which
    # eps keeps from being blown up), l the patch covariance's leading eigenvalues: whitened
    values = torch.linalg.eigvalsh((patches.T @ patches / len(patches)).double()).flip(0)[:k]
    expected = torch.diag(values / (values + 5e-4)).float()
    assert torch.allclose(cov, expected, atol=2e-3), (cov.diag(), expected.diag())


def test_whitening_needs_a_conv_layer():
    from fmnist.models import whiten_first_conv
    with pytest.raises(ConfigError, match="no conv layer"):
        whiten_first_conv(build_model("mlp"), torch.zeros(4, 1, 28, 28))
