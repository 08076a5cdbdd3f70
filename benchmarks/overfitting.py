"""The README's overfitting figure: training vs validation curves of runs side by side.

    python benchmarks/overfitting.py runs/keras runs/default --out docs/overfitting.png

One column per run directory (read through fmnist.runs), loss above and accuracy below,
from epoch 1 on (epoch 0, before training, would squash the scale), the gap between the
training subset and the validation split shaded: the TensorFlow tutorial's recipe next to
the default shows the overfitting the tutorial left unsolved and what closes it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=Path("overfitting.png"))
    args = p.parse_args()

    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from fmnist import runs
    from fmnist.plots.style import TRAIN, VAL, save_figure, series

    fig = Figure(figsize=(4.2 * len(args.runs), 5.6), layout="constrained")
    axes = fig.subplots(2, len(args.runs), squeeze=False, sharex="col")
    for col, run_dir in enumerate(args.runs):
        history = [r for r in runs.load_history(run_dir) if r["epoch"] >= 1]
        recipe = runs.load_config(run_dir)
        x = series(history, "epoch")
        for row, (key, label, scale) in enumerate((("loss", "loss (cross-entropy)", 1.0),
                                                   ("acc", "accuracy (%)", 100.0))):
            ax = axes[row, col]
            train, val = scale * series(history, f"train_{key}"), scale * series(history, f"val_{key}")
            ax.plot(x, train, color=TRAIN, marker="o", ms=3, label="train (fixed subset)")
            ax.plot(x, val, color=VAL, marker="s", ms=3, label="validation")
            ax.fill_between(x, train, val, color=VAL, alpha=0.18, lw=0)
            gap = train[-1] - val[-1] if key == "acc" else val[-1] - train[-1]
            ax.set_title(f"final gap {gap:+.2f}{' pts' if key == 'acc' else ''}, val "
                         f"{val[-1]:.2f}{'%' if key == 'acc' else ''}", fontsize=9)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, not 1.5
            if row == 1:
                ax.set_xlabel("epoch")
                ax.legend(fontsize=8, loc="lower right")
        axes[0, col].annotate(f"{run_dir.name}: {recipe.model.name}, {recipe.optim.name}, "
                              f"{len(x)} epochs", (0.5, 1.16), xycoords="axes fraction",
                              ha="center", fontsize=10, weight="bold")
        assert np.isfinite(series(history, "val_acc")).all(), f"{run_dir}: no validation curve"
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
