"""Accuracy and speed of each recipe, as a new user meets them: the whole `fmnist train`
process, over seeds, next to a plain PyTorch baseline measured in the same run.

    python benchmarks/train.py                       # fast and default, 3 seeds each
    python benchmarks/train.py --only best-cpu       # the long one
    python benchmarks/train.py --only fast --seeds 3 --no-baseline --json out.json
    python benchmarks/train.py --only best-gpu --jobs 3 --flags="--threads 4"  # on a GPU

Each case runs `python -m fmnist train --recipe NAME --seed S` in a subprocess (wall time =
start-up, data, training, scoring the 10k test images, writing the run, and the figures and
report unless the case says --no-plots) and reads the run's metrics.json: test accuracy,
mean ± std over the seeds, and the median wall time. The baseline (baseline_pytorch.py) is
the pytorch/examples loop over a per-sample DataLoader with the same model, optimizer, epochs
and batch size; the ratio is its median wall time over ours. A first untimed call warms the
file cache and the decoded-data cache, as for a user's second command. --jobs runs that many
seeds at once (a GPU that one small model leaves idle most of the time): each wall time is
then an upper bound on the run's own, as the runs share the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# recipe: (extra flags, target test accuracy, target wall seconds) on 2 CPU cores
CASES = {
    "fast": (["--no-plots"], 0.88, 4.0),  # as typed: fmnist train --model mlp --no-plots
    "default": ([], 0.93, 60.0),  # as typed: fmnist train (figures and report included)
    "keras-tutorial": (["--no-plots"], None, None),
    "2c2d": ([], None, None),  # the models' own recipes: figures for `fmnist recipes`
    "p1": ([], None, None),
    "best-cpu": ([], 0.945, 600.0),
    "best-gpu": ([], 0.96, 600.0),  # on one H100-class GPU
}


def run_ours(recipe: str, flags: list[str], seed: int, env: dict, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep or Path(tmp)) / f"{recipe}-seed{seed}"
        cmd = [sys.executable, "-m", "fmnist", "train", "--recipe", recipe, "--seed", str(seed),
               *flags, "--out", str(out), "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        m = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "train": m["train_seconds"], "test_acc": m["test_acc"],
            "val_acc": m["val_acc"], "epoch": m["best_epoch"] or m["epochs_run"]}


def run_baseline(recipe: str, seed: int, env: dict) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "baseline_pytorch.py"), "--recipe", recipe,
           "--seed", str(seed)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return {"wall": time.perf_counter() - t0, **json.loads(done.stdout.strip().splitlines()[-1])}


def pm(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=sorted(CASES), help="recipes (default: fast default)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once (default: 1)")
    p.add_argument("--flags", default="", help='fmnist train flags added to every run, e.g. '
                   '"--device cuda --threads 4"')
    p.add_argument("--no-baseline", action="store_true", help="skip the plain PyTorch loop")
    p.add_argument("--data-dir", help="default: $FMNIST_DATA or ../shared/data")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", type=Path, help="keep the run directories in this folder")
    args = p.parse_args()
    if args.jobs < 1 or args.seeds < 1:
        p.error("--jobs and --seeds must be at least 1")
    data = args.data_dir or os.environ.get("FMNIST_DATA") or str(REPO.parent / "shared" / "data")
    env = {**os.environ, "FMNIST_DATA": data, "PYTHONPATH": str(REPO / "src")}
    import torch

    from fmnist.device import cpu_name

    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    if torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name(0)}"
    print(machine)
    results: dict = {"machine": machine, "cases": {}}
    failed = False

    lock = threading.Lock()  # --jobs: seeds finish in threads

    def save() -> None:  # after each seed and recipe: a benchmark cut short keeps what it ran
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    subprocess.run([sys.executable, "-m", "fmnist", "data", "info"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # warm: decoded-data cache written, files cached
    print(f"{'recipe':<15} {'test acc % (seeds)':>20} {'wall s (median)':>16} {'baseline s':>11} "
          f"{'ratio':>6}  target")
    for name in args.only or ["fast", "default"]:
        flags, acc_target, s_target = CASES[name]
        flags = [*flags, *shlex.split(args.flags)]

        def one(seed: int, name=name, flags=flags) -> dict | None:
            try:
                r = run_ours(name, flags, seed, env, args.keep)
            except subprocess.CalledProcessError as err:  # its error line is above
                print(f"  {name} seed {seed}: FAILED (exit {err.returncode})", flush=True)
                return None
            print(f"  {name} seed {seed}: test {100 * r['test_acc']:.2f}%, {r['wall']:.1f} s whole, "
                  f"{r['train']:.1f} s training", flush=True)  # a run killed later keeps these
            with lock:  # and the JSON: a benchmark cut off mid-recipe keeps its finished seeds
                results["cases"].setdefault(name, {"flags": flags, "runs": []})["runs"].append(r)
                save()
            return r

        with ThreadPoolExecutor(args.jobs) as pool:
            done = dict(zip(range(args.seeds), pool.map(one, range(args.seeds))))
        ours = [r for r in done.values() if r is not None]
        lost = [seed for seed, r in done.items() if r is None]
        failed |= bool(lost)
        if not ours:
            results["cases"][name] = {"flags": flags, "failed_seeds": lost}
            save()
            continue
        wall = statistics.median(r["wall"] for r in ours)
        accs = [r["test_acc"] for r in ours]
        base = [] if args.no_baseline else [run_baseline(name, 0, env)]
        base_wall = statistics.median(b["wall"] for b in base) if base else None
        met = ((acc_target is None or statistics.mean(accs) >= acc_target)
               and (s_target is None or wall <= s_target))
        target = ("" if acc_target is None else f">= {100 * acc_target:.1f}% in <= {s_target:.0f} s: "
                  + ("met" if met else "MISSED"))
        print(f"{name:<15} {pm(accs) + f' ({len(accs)})':>20} {wall:16.1f} "
              f"{base_wall if base_wall is not None else float('nan'):11.1f} "
              f"{(base_wall / wall) if base_wall else float('nan'):6.1f}  {target}", flush=True)
        results["cases"][name] = {"flags": flags, "runs": ours, "failed_seeds": lost, "baseline": base,
                                  "test_acc_mean": statistics.mean(accs), "wall_s_median": wall,
                                  "target_met": met}
        save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
