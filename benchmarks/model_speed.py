"""Training and evaluation throughput of each registered model on the CPU.

    PYTHONPATH=src python benchmarks/model_speed.py [MODEL ...] [--bf16] [--channels-last]

For each model: the median over --repeats of images/s for a training step (forward, loss,
backward, SGD-nesterov step) and for an eval forward, batch 256, torch's default thread
count. --bf16 (torch.autocast on the CPU) and --channels-last are measured in the same run
and reported as a ratio to fp32, since timings from different runs on a shared machine do
not compare. --json PATH saves the numbers with their conditions.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.device import cpu_name
from fmnist.models import MODELS, build_model, count_parameters


def measure(model: nn.Module, batch: int = 256, repeats: int = 5, steps: int = 3,
            bf16: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """(train, eval) images/s: median over `repeats` timings of >= `steps` batches each."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=fmt)  # (N, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with cast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()  # outside autocast, as the autocast docs advise
        opt.step()

    @torch.no_grad()
    def eval_step() -> None:
        with cast():
            model(x)

    def rate(step, train: bool) -> float:
        model.train(train)
        for _ in range(2):  # warm-up: oneDNN picks and caches its kernels on first calls
            step()
        t0 = time.perf_counter()
        step()
        # tiny models (logreg) take microseconds a step: time at least ~50 ms per figure,
        # or timer and scheduler noise swamp the result
        n = max(steps, math.ceil(0.05 / (time.perf_counter() - t0)))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            times.append(time.perf_counter() - t0)
        return batch * n / statistics.median(times)

    return rate(train_step, True), rate(eval_step, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="default: all registered models")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure")
    parser.add_argument("--steps", type=int, default=3, help="batches per timing")
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast")
    parser.add_argument("--channels-last", action="store_true",
                        help="also measure channels_last memory format")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()

    variants = [("fp32", False, False)]
    if args.bf16:
        variants.append(("bf16", True, False))
    if args.channels_last:
        variants.append(("cl", False, True))
    if args.bf16 and args.channels_last:
        variants.append(("bf16+cl", True, True))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{cpu_name()}, batch {args.batch}, "
          f"median of {args.repeats} x {args.steps} steps; images/s")
    head = f"{'model':8} {'params':>10} " + " ".join(
        f"{v + ' train':>12} {v + ' eval':>12}" for v, _, _ in variants)
    print(head)
    results = []
    for name in args.models or MODELS.names():
        row = {"model": name, "params": count_parameters(build_model(name))}
        cells = []
        for label, bf16, cl in variants:
            torch.manual_seed(0)  # same weights for every variant
            train, evl = measure(build_model(name), args.batch, args.repeats, args.steps,
                                 bf16, cl)
            row[label] = {"train": train, "eval": evl}
            if label == "fp32":
                cells.append(f"{train:12.0f} {evl:12.0f}")
            else:  # ratio to fp32 from this same run
                base = row["fp32"]
                cells.append(f"{train:7.0f} x{train / base['train']:3.1f} "
                             f"{evl:7.0f} x{evl / base['eval']:3.1f}")
        results.append(row)
        print(f"{name:8} {row['params']:>10,} " + " ".join(cells), flush=True)

    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu": cpu_name(), "batch": args.batch,
                "repeats": args.repeats, "steps": args.steps}
        with open(args.json, "w") as f:
            json.dump({"conditions": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
