"""Validation accuracy of trained runs under each set of test-time views (never the test set).

    python benchmarks/tta_views.py runs/A runs/B ...

For each run directory: its weights (best.pt, else checkpoint.pt) scored on its own
validation split (rebuilt from config.json: same data set, split seed and size) with no
views, the mirror (--tta), the one-pixel shifts (--tta-shifts) and both. This is how
`--tta-shifts` was chosen for the long recipes; see README's Recipes section.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

VIEWS = {"none": (False, False), "mirror": (True, False), "shifts": (False, True),
         "mirror+shifts": (True, True)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("FMNIST_DATA", str(REPO.parent / "shared" / "data"))
    from fmnist.api import Run
    from fmnist.build import build
    from fmnist.device import set_threads
    from fmnist.evaluate import loss_and_accuracy

    set_threads(args.threads)
    print(f"{'run':<40} " + " ".join(f"{v:>14}" for v in VIEWS) + "   (validation accuracy %)")
    for run_dir in args.runs:
        run = Run.load(run_dir)
        parts = build(run.config, optimizer=False)  # the data, split as the run split it
        if not len(parts.data.val):  # e.g. best-cpu, which trains on every image
            print(f"{str(run_dir)[-40:]:<40} no validation split: nothing to score", flush=True)
            continue
        parts.model.load_state_dict(run.model.state_dict())
        accs = [loss_and_accuracy(parts.model, parts.data.val, 1000, parts.autocast, *v)[1]
                for v in VIEWS.values()]
        print(f"{str(run_dir)[-40:]:<40} " + " ".join(f"{100 * a:14.2f}" for a in accs),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
