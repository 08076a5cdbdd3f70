"""Layers the models share that torch lacks: a 3x3 convolution that trains faster on small maps.

oneDNN's backward-weights kernel for bf16 convolutions is slow on small feature maps: on 2
cores of an AMX Xeon (torch 2.13, batch 256, channels_last), 128->128 channels on 3x3 maps
take 9.2 ms for the weight gradient, 2x its own fp32 kernel and 4x one bf16 GEMM over the
im2col patches (2.4 ms); on 4x4 maps 10.6 ms against 3.5 ms. On 7x7 maps it depends on the
channels (GEMM/oneDNN 0.7-1.3), on 14x14 maps the GEMM is 3-7x slower, and in fp32 it never
wins. So `Conv3x3` takes the GEMM route only where it wins clearly: training, on a CPU,
under bf16 autocast, on maps of at most SMALL_MAP pixels; a cnn training step is ~10%
faster (A/B in one process). Everywhere else (eval, export, GPUs, fp32) it is a plain
nn.Conv2d with the same parameters and state dict.
Measured by benchmarks/conv_wgrad.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP = 16  # pixels (H * W): 4x4 and smaller take the GEMM route for the weight gradient


def weight_grad_3x3(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """d loss / d weight of a 3x3, stride-1, padding-1 convolution, as one GEMM.

    x: (N, C, H, W) input, grad_out: (N, O, H, W); returns (O, C, 3, 3) in x's dtype.
    weight[o, c, i, j] sums grad_out[n, o, h, w] * x_padded[n, c, h + i, w + j] over n, h, w:
    the nine shifted copies of x, channels last, are the columns (N*H*W, 9*C) of that GEMM.
    """
    n, c, h, w = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).contiguous()  # (N, H+2, W+2, C)
    # the nine shifted windows as one strided view, copied once by reshape: 1.4-2x faster
    # than stacking nine slices (0.36 vs 0.52 ms at 128 channels on 3x3, batch 256); a
    # whole resnet step 0.96-0.98x, a cnn step unchanged within noise (0.99-1.02x)
    s_n, s_h, s_w, s_c = padded.stride()
    cols = padded.as_strided((n, h, w, 3, 3, c), (s_n, s_h, s_w, s_h, s_w, s_c)).reshape(
        n * h * w, 9 * c)  # column (i*3 + j)*C + c
    g = grad_out.permute(0, 2, 3, 1).reshape(n * h * w, -1)  # (N*H*W, O)
    return (g.t() @ cols).view(-1, 3, 3, c).permute(0, 3, 1, 2)


class _SmallMapConv3x3(torch.autograd.Function):
    """conv2d(x, weight, padding=1) in `dtype`, its weight gradient by weight_grad_3x3."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # autocast would cast inside conv2d; cast here instead, so that backward (which runs
        # outside autocast) sees the same bf16 tensors the forward used
        xc, wc = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(xc, wc)
        ctx.dtypes = (x.dtype, weight.dtype)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(xc, wc, None, 1, 1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_out = grad_out.to(x.dtype)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(
                grad_out, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False])[0].to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            gw = weight_grad_3x3(x, grad_out).to(ctx.dtypes[1])
        return gx, gw, None


class Conv3x3(nn.Conv2d):
    """nn.Conv2d(c_in, c_out, 3, padding=1, bias=False) whose weight gradient, in bf16 training
    on a CPU, is one GEMM on maps of at most SMALL_MAP pixels (see the module's docstring)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and torch.is_grad_enabled() and x.device.type == "cpu"
                and x.shape[-2] * x.shape[-1] <= SMALL_MAP and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16
                and not torch.compiler.is_compiling()):
            return _SmallMapConv3x3.apply(x, self.weight, torch.bfloat16)
        return super().forward(x)
