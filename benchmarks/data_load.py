"""How long loading all 70,000 images and labels (train + test) takes, cold and warm.

    python benchmarks/data_load.py [--data-dir DIR] [--repeats 7] [--json PATH]

cold: `load(..., cache=False)`: read the .gz files, check their md5, gunzip, decode.
warm: `load(...)` after one priming load: a stat of the source files and two np.load
calls per split from the decoded .npy cache.
The OS page cache holds the files after the first read in both cases, so "cold" measures
the decoding, not the disk. The decoded cache goes to a temporary XDG_CACHE_HOME, never the
user's. Prints the median, min and max over --repeats, the targets (cold < 0.5 s, warm <
0.05 s on 2 cores) and the ratio cold / warm.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist.data import load

REPO = Path(__file__).resolve().parents[1]
TARGETS_S = {"cold": 0.5, "warm": 0.05}


def default_data_dir() -> Path:
    return Path(os.environ.get("FMNIST_DATA") or REPO.parent / "shared" / "data")


def load_all(dataset: str, data_dir: Path, cache: bool) -> int:
    """Load train and test; the number of images (and labels) loaded."""
    n = 0
    for split in ("train", "test"):
        data = load(dataset, split, data_dir=data_dir, download=False, cache=cache,
                    progress=False)
        assert len(data.images) == len(data.labels)
        n += len(data.labels)
    return n


def timings(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding <dataset>/ (default: $FMNIST_DATA or ../shared/data)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--repeats", type=int, default=7, help="timings per mode (default: 7)")
    parser.add_argument("--json", type=Path, default=None, help="also save the figures here")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()

    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp  # the decoded cache lives and dies here
        n = load_all(args.dataset, data_dir, cache=False)  # warms the OS page cache
        cold = timings(lambda: load_all(args.dataset, data_dir, cache=False), args.repeats)
        load_all(args.dataset, data_dir, cache=True)  # priming: writes the .npy cache
        warm = timings(lambda: load_all(args.dataset, data_dir, cache=True), args.repeats)

    print(f"loading {n} images + labels of {args.dataset} (train + test) from {data_dir}")
    print(f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"{args.repeats} repeats")
    result = {"dataset": args.dataset, "images": n, "repeats": args.repeats,
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "numpy": np.__version__, "platform": platform.platform()}
    ok = True
    for mode, times in (("cold", cold), ("warm", warm)):
        median = statistics.median(times)
        target = TARGETS_S[mode]
        verdict = "ok" if median < target else "MISSED"
        ok &= median < target
        print(f"  {mode}: median {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f})"
              f"   target < {target} s: {verdict}")
        result[mode] = {"median_s": median, "min_s": min(times), "max_s": max(times),
                        "target_s": target, "times_s": times}
    ratio = statistics.median(cold) / statistics.median(warm)
    print(f"  cold / warm: {ratio:.1f}x")
    result["cold_over_warm"] = ratio
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
