"""Choose a recipe's settings on the validation split: train each candidate, print its
validation accuracy (never the test set's: it is not even scored here).

    python benchmarks/choose_recipes.py --only logreg mlp2
    python benchmarks/choose_recipes.py --only fast --threads 1

Each candidate is `fmnist train --recipe NAME <flags>` with the test scoring skipped; the
figures that chose a recipe go into its `chosen` text in src/fmnist/recipes.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# recipe -> candidate flag sets (each over the recipe's settings)
CANDIDATES: dict[str, list[list[str]]] = {
    "logreg": [["--lr", lr, "--epochs", e] for lr in ("1e-3", "3e-3", "1e-2") for e in ("5", "10")],
    # over the recipe (batch 512, Adam 8e-3, beta2 0.99, 7 epochs): epochs x seeds, then one seed of
    # smaller and larger batches and of torch's default beta2
    "fast": [["--epochs", e, "--seed", sd] for e in ("6", "7", "8", "10") for sd in ("0", "1", "2")]
    + [["--batch-size", "128", "--lr", "4e-3", "--opt-arg", "beta2=0.999"],
       ["--batch-size", "256", "--lr", "6e-3", "--opt-arg", "beta2=0.999"],
       ["--batch-size", "1024", "--lr", "1.2e-2", "--epochs", "12", "--opt-arg", "beta2=0.999"],
       ["--opt-arg", "beta2=0.999", "--precision", "fp32"]],
    "mlp2": [["--lr", lr, "--model-arg", f"dropout={d}"] for lr in ("1e-3", "2e-3")
             for d in ("0.0", "0.2")],
    "2c2d": [["--lr", lr] for lr in ("0.02", "0.05", "0.1", "0.2")],
    "p1": [["--lr", lr] for lr in ("0.02", "0.05", "0.1", "0.2")],
    # over the recipe (8 epochs, lr 0.4, warm-up 1.5, smoothing 0.2, mirror TTA): the base's
    # settings put back one by one, seeds, whitening, smoothing, a smaller batch, fewer epochs
    "default": [["--lr", "0.2", "--warmup-epochs", "2.5", "--label-smoothing", "0.1", "--no-tta"],
                ["--lr", "0.2", "--warmup-epochs", "2.5", "--label-smoothing", "0.1"],
                ["--warmup-epochs", "2.5", "--label-smoothing", "0.1"],
                ["--lr", "0.2"]]
    + [["--seed", sd, *w] for w in ([], ["--whiten"]) for sd in ("0", "1", "2")]
    + [["--label-smoothing", "0.3"], ["--batch-size", "128", "--lr", "0.1"],
       ["--whiten", "--epochs", "7"], ["--whiten", "--epochs", "6"]],
    # over the recipe (cnn, 50 epochs, erasing 0.25, warm-up 5): fewer epochs, the base's
    # smoothing, more weight decay, a lower peak rate, a cnn twice the MACs for half the
    # epochs, more shift, no erasing (shift TTA: benchmarks/tta_views.py)
    "best-cpu": [[], ["--epochs", "40", "--warmup-epochs", "4"], ["--label-smoothing", "0.1"],
                 ["--weight-decay", "1e-3"], ["--lr", "0.2"],
                 ["--model-arg", "widths=[24,64,192]", "--epochs", "24", "--warmup-epochs", "3"],
                 ["--crop-pad", "2"], ["--erase", "0"]],
}

# A recipe that trains on every image (val_size 0: best-cpu refits on all 60,000) is chosen
# on the usual split: these flags go before each of its candidates' own
ON_VALIDATION: dict[str, list[str]] = {"best-cpu": ["--val-size", "5000", "--eval-every", "428"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="recipes to search")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip", type=int, default=0, help="candidates of each recipe already run")
    args = p.parse_args()
    os.environ.setdefault("FMNIST_DATA", str(REPO.parent / "shared" / "data"))
    from fmnist import recipes
    from fmnist.build import build
    from fmnist.device import set_threads
    from fmnist.flags import overrides
    from fmnist.cli import build_parser
    from fmnist.loop import fit

    parser = build_parser()
    for name in args.only or sorted(CANDIDATES):
        print(f"== {name}")
        for flags in CANDIDATES[name][args.skip:]:
            ns = parser.parse_args(["train", "--recipe", name, *ON_VALIDATION.get(name, []), *flags,
                                    "--threads", str(args.threads)])
            config = recipes.config_from(name, overrides(ns))
            set_threads(config.train.threads)
            t0 = time.perf_counter()
            parts = build(config)
            result = fit(parts, config.train)  # no store: nothing written, test never scored
            seconds = time.perf_counter() - t0
            best = result.history[result.best_epoch]
            last = result.history[-1]
            print(f"{' '.join(flags):<40} best val {100 * best['val_acc']:.2f}% (epoch "
                  f"{best['epoch']})  last val {100 * last['val_acc']:.2f}%  "
                  f"train {100 * last['train_acc']:.2f}%  {seconds:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
