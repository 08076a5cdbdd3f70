"""Training with glibc's malloc as it comes against device.keep_freed_memory.

    PYTHONPATH=src python benchmarks/malloc.py [--repeats 6] [--whole default fast]

For the default cnn (batch 256, Nesterov, bf16 autocast) and the fast recipe's MLP (batch
512, Adam), prints the median time and minor page faults of a training step on real-shaped
batches (uint8 images, shuffled, normalised each step as training does) in child processes
that alternate: one with malloc as it comes, one after keep_freed_memory (mallopt is
process-wide, so the two cannot share a process). The ratio is the median over the pairs.
--whole also times whole `fmnist train --recipe NAME` processes the same way (the
as-it-comes arm with keep_freed_memory made a no-op), with their test accuracy (the same in
both: the memory settings change no number).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

CASES = {"cnn": dict(batch=256, optim=("nesterov", {"lr": 0.4, "weight_decay": 5e-4}), steps=60),
         "mlp": dict(batch=512, optim=("adam", {"lr": 8e-3}), steps=400)}


def child(case: str, keep: bool) -> None:
    import numpy as np
    import torch.nn.functional as F

    from fmnist.data.batches import DeviceData
    from fmnist.device import autocast_factory, keep_freed_memory, resolve_precision
    from fmnist.models import build_model
    from fmnist.optim import build_optimizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    kept = keep_freed_memory() if keep else False
    spec = CASES[case]
    rng = np.random.default_rng(0)
    data = DeviceData(rng.integers(0, 256, (55000, 28, 28), dtype=np.uint8),
                      rng.integers(0, 10, 55000), 0.286, 0.353)
    torch.manual_seed(0)
    model = build_model(case)
    if case == "cnn":
        model = model.to(memory_format=torch.channels_last)
    name, hp = spec["optim"]
    opt = build_optimizer(name, model.parameters(), **hp)
    autocast = autocast_factory(resolve_precision("auto", torch.device("cpu")), torch.device("cpu"))
    times, faults = [], []
    chunk = spec["steps"] // 5
    gen = torch.Generator().manual_seed(0)

    def epochs():  # batch after batch, epoch after epoch
        while True:
            yield from data.batches(spec["batch"], shuffle=True, drop_last=True, generator=gen)
    batches = epochs()
    for i in range(spec["steps"] + chunk):  # the first chunk untimed: warm-up
        if i % chunk == 0:
            t, f = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x, y = next(batches)
        with autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % chunk == chunk - 1 and i >= chunk:
            times.append((time.perf_counter() - t) / chunk * 1e3)
            faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f) / chunk)
    print(json.dumps({"ms": statistics.median(times), "faults": statistics.median(faults),
                      "kept": kept}))


def run_child(case: str, keep: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", case, "kept" if keep else "system"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def whole(recipe: str, keep: bool) -> dict:
    # the as-it-comes arm: keep_freed_memory made a no-op before the CLI runs
    code = ("import sys, fmnist.device as d\n"
            + ("" if keep else "d.keep_freed_memory = lambda: False\n")
            + "from fmnist.cli import main\nsys.exit(main(sys.argv[1:]))")
    out = os.path.join(tempfile.mkdtemp(prefix="fmnist-malloc-"), "run")
    cmd = [sys.executable, "-c", code, "train", "--recipe", recipe, "--out", out, "--quiet",
           *(["--no-plots"] if recipe == "fast" else [])]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    shutil.rmtree(os.path.dirname(out))
    return {"wall": wall, "train": metrics["train_seconds"], "acc": metrics["test_acc"]}


def pairs_table(label: str, rows: dict[str, list[dict]], keys: list[str]) -> None:
    sys_, kept = rows["system"], rows["kept"]
    for key in keys:
        ratios = [k[key] / s[key] for s, k in zip(sys_, kept) if s[key]]
        print(f"{label:<14} {key:<7} as it comes {statistics.median(r[key] for r in sys_):9.2f}"
              f"   kept {statistics.median(r[key] for r in kept):9.2f}"
              f"   kept/as-it-comes {statistics.median(ratios) if ratios else float('nan'):.3f}"
              f" (pairs {min(ratios, default=float('nan')):.2f}-{max(ratios, default=float('nan')):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="pairs of child processes")
    parser.add_argument("--whole", nargs="*", default=[], metavar="RECIPE",
                        help="also time whole `fmnist train --recipe RECIPE` runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1] == "kept")
    from fmnist.device import cpu_name

    print(f"{cpu_name()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.repeats} pairs, order alternating")
    for case in CASES:
        rows = {"system": [], "kept": []}
        for r in range(args.repeats):
            for keep in ((False, True) if r % 2 == 0 else (True, False)):
                rows["kept" if keep else "system"].append(run_child(case, keep))
        if not all(r["kept"] for r in rows["kept"]):
            print(f"{case}: keep_freed_memory() did nothing here (not glibc?)")
        pairs_table(f"{case} step", rows, ["ms", "faults"])
    for recipe in args.whole:
        rows = {"system": [], "kept": []}
        for r in range(args.repeats):
            for keep in ((False, True) if r % 2 == 0 else (True, False)):
                rows["kept" if keep else "system"].append(whole(recipe, keep))
        pairs_table(f"{recipe} run", rows, ["wall", "train"])
        accs = sorted({round(100 * r["acc"], 2) for v in rows.values() for r in v})
        print(f"{recipe} run   test accuracy (seed 0, both arms): {accs}")


if __name__ == "__main__":
    main()
