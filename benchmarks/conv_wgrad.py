"""The weight gradient of a 3x3 convolution: oneDNN's kernel against layers.weight_grad_3x3.

    PYTHONPATH=src python benchmarks/conv_wgrad.py [--batch 256] [--repeats 30]

For the 3x3 layers of the cnn and resnet models (channels in -> out at a map size), prints
the median time of each route over --repeats calls, in bf16 and fp32, channels_last, with
torch's default thread count, and their ratio measured in the same run. layers.SMALL_MAP
(the maps where Conv3x3 takes the GEMM route) comes from these figures. Then a whole bf16
training step of each model with the GEMM route off and on, alternating step by step in
one process so that the machine's drift hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fmnist import layers
from fmnist.device import cpu_name
from fmnist.layers import SMALL_MAP, weight_grad_3x3
from fmnist.models import build_model
from inference import median_seconds  # benchmarks/inference.py, beside this script

# (c_in, c_out, map side): the 3x3 stride-1 layers of cnn (16/48/128) and resnet (32/64/128)
SHAPES = [(16, 16, 14), (16, 48, 14), (48, 48, 7), (48, 128, 7), (128, 128, 3),
          (32, 32, 14), (64, 64, 7), (128, 128, 4)]


def median_ms(f, repeats: int) -> float:
    return 1e3 * median_seconds(f, repeats)  # after 3 untimed calls: oneDNN picks its kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{cpu_name()}, batch {args.batch}, median of "
          f"{args.repeats}; ms for one weight gradient; GEMM route on maps <= {SMALL_MAP} px")
    print(f"{'layer':>16} {'dtype':>6} {'oneDNN':>8} {'GEMM':>8} {'GEMM/oneDNN':>12}")
    for c_in, c_out, side in SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            def t(*shape):
                return torch.randn(*shape).to(dtype).contiguous(memory_format=torch.channels_last)
            x, w, g = t(args.batch, c_in, side, side), t(c_out, c_in, 3, 3), t(args.batch, c_out, side, side)

            def onednn():
                return torch.ops.aten.convolution_backward(
                    g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])[1]
            a, b = median_ms(onednn, args.repeats), median_ms(lambda: weight_grad_3x3(x, g), args.repeats)
            layer = f"{c_in}->{c_out} @{side}x{side}"
            print(f"{layer:>16} {str(dtype)[6:]:>6} {a:8.2f} {b:8.2f} {b / a:12.2f}", flush=True)
    print(f"\n{'model step':>16} {'':>6} {'off':>8} {'on':>8} {'on/off':>12}")
    for name in ("cnn", "resnet"):
        torch.manual_seed(0)
        model = build_model(name).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch,))

        def step(small_map: int) -> float:
            layers.SMALL_MAP = small_map  # read by Conv3x3 at every call
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - t0
        for _ in range(3):
            step(0), step(SMALL_MAP)
        off, on = zip(*[(step(0), step(SMALL_MAP)) for _ in range(args.repeats)])
        a, b = 1e3 * statistics.median(off), 1e3 * statistics.median(on)
        print(f"{name:>16} {'bf16':>6} {a:8.2f} {b:8.2f} {b / a:12.2f}", flush=True)
    layers.SMALL_MAP = SMALL_MAP


if __name__ == "__main__":
    main()
