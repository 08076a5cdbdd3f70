"""Where a training step's time goes on a GPU: the recipe's own parts, timed two ways.

    python benchmarks/gpu_step.py [RECIPE ...]       # default: default best-gpu

For each recipe (its model, batch, optimizer, precision and augmentation, built by
fmnist.build on the best device there is): the median ms a step over --repeats windows of
--steps steps, for
  loop   steps as fmnist's training loop takes them (shuffled, augmented device batches,
         autocast, label-smoothed loss, backward, optimizer step);
  fixed  the same steps on one fixed batch: the model and optimizer alone;
each with cudnn.benchmark off and on (it lets cuDNN time its algorithms for the shapes it
meets; it is off in fmnist). The four are interleaved window by window in one process, as
the machine's speed drifts. loop - fixed is what the data pipeline costs a step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("FMNIST_DATA", str(REPO.parent / "shared" / "data"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fmnist import recipes  # noqa: E402
from fmnist.build import build  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="*", default=["default", "best-gpu"])
    p.add_argument("--steps", type=int, default=50, help="steps a timed window")
    p.add_argument("--repeats", type=int, default=5, help="windows per figure")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = p.parse_args()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"torch {torch.__version__}, "
          + (torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"))
    for name in args.recipes:
        config = recipes.RECIPES.get(name).config().replace(
            train={"device": "cuda" if cuda else "cpu"})
        parts = build(config)
        tc = config.train
        model, opt, data = parts.model, parts.optimizer, parts.data
        model.train()

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            with parts.autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        gen = torch.Generator().manual_seed(0)

        def batches():
            while True:  # epoch after epoch, as the loop draws them
                yield from data.train.batches(tc.batch_size, shuffle=True, generator=gen,
                                              augment=parts.augment, drop_last=True)

        stream = batches()
        fixed_x, fixed_y = next(stream)

        def window(kind: str) -> float:
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(*(next(stream) if kind == "loop" else (fixed_x, fixed_y)))
            sync()
            return (time.perf_counter() - t0) / args.steps * 1e3

        cases = [(kind, bench) for bench in (False, True) for kind in ("loop", "fixed")]
        times: dict = {c: [] for c in cases}
        for kind, bench in cases:  # warm-up: kernels chosen, caches filled
            torch.backends.cudnn.benchmark = bench
            window(kind)
        for _ in range(args.repeats):
            for kind, bench in cases:
                torch.backends.cudnn.benchmark = bench
                times[(kind, bench)].append(window(kind))
        torch.backends.cudnn.benchmark = False
        med = {c: statistics.median(v) for c, v in times.items()}
        print(f"{name} ({config.model.name}, batch {tc.batch_size}, {parts.facts.precision}): "
              f"ms a step, median of {args.repeats} x {args.steps} steps")
        for bench in (False, True):
            loop, fixed = med[("loop", bench)], med[("fixed", bench)]
            print(f"  cudnn.benchmark {'on ' if bench else 'off'}: loop {loop:7.2f}  fixed "
                  f"{fixed:7.2f}  data pipeline {loop - fixed:6.2f}  ({1e3 * tc.batch_size / loop:,.0f} "
                  "images/s in the loop)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
