"""Figures of one run, data in and matplotlib Figure out, and `draw_run`, which redraws a
run directory's figures from its files (read through fmnist.runs only).

Pixel sizes of the saved PNGs are figsize * DPI; each docstring gives its figsize in inches.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .. import runs
from ..errors import ConfigError, FmnistError, RunError
from ..fsutil import check_target
from ..metrics import macro_average
from .predictions import mistakes_gallery, predictions_panel
from .style import BLACK, GREEN, GRID, TRAIN, VAL, VERMILLION, image_axes, log_y, save_figure, series


def sample_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                per_class: int = 10, seed: int = 0) -> Figure:
    """One row per class, named at the left, `per_class` random samples of it.

    Size: (0.6 * per_class + 1.4) x (0.6 * classes + 0.6) inches.
    """
    images, labels = np.asarray(images), np.asarray(labels).ravel()  # (N, H, W) uint8, (N,)
    C, (h, w), rng, gap = len(class_names), images.shape[1:3], np.random.default_rng(seed), 2  # gap: white pixels
    # one mosaic image in one axes: 0.10 s to draw and save, against 1.4 s for 100 small axes
    mosaic = np.full((C * (h + gap) - gap, per_class * (w + gap) - gap), 255, dtype=np.uint8)
    for c in range(C):
        idx = np.flatnonzero(labels == c)
        for j, i in enumerate(rng.choice(idx, size=min(per_class, idx.size), replace=False)):
            mosaic[c * (h + gap):c * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = images[i]
    fig = Figure(figsize=(0.6 * per_class + 1.4, 0.6 * C + 0.6), layout="compressed")  # for a fixed-aspect image
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    image_axes(ax)
    ax.set_yticks([c * (h + gap) + (h - 1) / 2 for c in range(C)], [str(n) for n in class_names], fontsize=10)
    ax.tick_params(left=False)
    ax.set_title(f"{per_class} random samples per class", fontsize=11)
    return fig


def _final(values: np.ndarray, fmt: str) -> str:
    finite = values[np.isfinite(values)]
    return f" (final {fmt.format(finite[-1])})" if finite.size else ""


def _curve_panel(ax, x, train, val, ylabel: str, fmt: str, gap_sign: float, gap_fmt: str, log_ok: bool) -> None:
    """Train and validation curves, final values in the legend, the gap between them shaded."""
    ax.plot(x, train, color=TRAIN, marker="o", ms=3.5, lw=1.8, label="train" + _final(train, fmt))
    both = np.isfinite(train) & np.isfinite(val)
    if np.isfinite(val).any():
        ax.plot(x, val, color=VAL, marker="s", ms=3.5, lw=1.8, label="validation" + _final(val, fmt))
    if both.any():
        last = np.flatnonzero(both)[-1]
        gap = gap_sign * (val[last] - train[last])
        ax.fill_between(x, train, val, where=both, interpolate=True, color=VAL, alpha=0.18, lw=0,
                        label=f"generalisation gap (final {gap_fmt.format(gap)})")
    values = np.concatenate([train[np.isfinite(train)], val[np.isfinite(val)]])
    if log_ok and values.size and values.min() > 0 and values.max() / values.min() > 5:
        log_y(ax)  # a loss falling over decades: the last epochs stay readable
    elif values.size and (x.size == 1 or np.ptp(values) < 1e-3 * max(1.0, abs(values).max())):
        mid, half = values.mean(), max(0.1 * abs(values.mean()), 0.05, np.ptp(values))
        ax.set_ylim(mid - half, mid + half)  # one epoch or a flat line: not 1e-6 ticks
    ax.set_ylabel(ylabel)
    ax.grid(True, color=GRID, lw=0.8, which="major")


def training_curves(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch (train vs validation), best epoch marked, lr schedule below.

    `history`: one record per epoch (epoch 0 = before the first step) with epoch, step, lr,
    seconds, train_loss, train_acc and optionally val_loss, val_acc. Size: 8 x 9 inches.
    """
    if not history:
        raise ValueError("training_curves needs at least one history record")
    x = np.array([r.get("epoch", i) for i, r in enumerate(history)], dtype=float)
    val_acc = 100 * series(history, "val_acc")
    fig = Figure(figsize=(8, 9), layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.2]})
    _curve_panel(ax_loss, x, series(history, "train_loss"), series(history, "val_loss"),
                 "loss (cross-entropy)", "{:.3f}", +1.0, "{:+.3f}", True)  # gap = val - train
    _curve_panel(ax_acc, x, 100 * series(history, "train_acc"), val_acc,
                 "accuracy (%)", "{:.2f}%", -1.0, "{:+.2f} pts", False)  # gap = train - val
    if np.isfinite(val_acc).any():
        best = int(np.nanargmax(val_acc))
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.axvline(x[best], color=BLACK, ls="--", lw=1, alpha=0.7)
        ax_acc.plot([x[best]], [val_acc[best]], marker="*", ms=14, color=VAL, mec=BLACK, ls="none",
                    label=f"best validation: {val_acc[best]:.2f}% at epoch {x[best]:g}")
    ax_loss.set_title("Loss" + ("" if np.isfinite(val_acc).any() else " (no validation split)"))
    ax_acc.set_title("Accuracy (train: a fixed subset of training images, eval mode)")
    for ax in (ax_loss, ax_acc):
        ax.legend(loc="best", fontsize=9, framealpha=0.9)

    lr = series(history, "lr")
    if np.isfinite(lr).any():
        ax_lr.plot(x, lr, color=GREEN, marker="o", ms=3, lw=1.5)
        pos = lr[np.isfinite(lr) & (lr > 0)]
        if pos.size == np.isfinite(lr).sum() and pos.max() / pos.min() > 20:
            log_y(ax_lr)  # warm-up or decay over decades is only readable on a log axis
        else:
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
    else:
        ax_lr.text(0.5, 0.5, "learning rate not recorded", transform=ax_lr.transAxes,
                   ha="center", va="center", color="#666666")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch (0 = before the first step)")
    ax_lr.grid(True, color=GRID, lw=0.8)
    ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
    if x.size == 1:
        ax_lr.set_xlim(x[0] - 1, x[0] + 1)
    last = history[-1]
    steps, seconds = last.get("step"), last.get("seconds")
    done = f"{x[-1]:g} epoch{'' if x[-1] == 1 else 's'}" if x[-1] else "before training"
    extra = "".join([f", {steps:,} steps" if isinstance(steps, int) else "",
                     f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""])
    fig.suptitle(f"Training curves: {done}{extra}", fontsize=13)
    return fig


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], top: int = 3) -> Figure:
    """Confusion matrix normalised per true class, % and count in each cell, largest `top`
    off-diagonal cells outlined. Size: 8.5 x 8 inches."""
    cm = np.asarray(cm, dtype=np.int64)
    C = cm.shape[0]
    support = cm.sum(axis=1, keepdims=True)
    rate = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)  # rows sum to 1
    fig = Figure(figsize=(8.5, 8), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    if C <= 20:  # beyond that the numbers no longer fit in the cells
        size = 9 if C <= 10 else 6
        for i in range(C):
            for j in range(C):
                colour = "white" if rate[i, j] > 0.5 else "#1A1A1A"  # contrast with the cell
                if cm[i, j] == 0:
                    ax.text(j, i, "0", ha="center", va="center", fontsize=size - 1, color="#AAAAAA")
                    continue
                pct = 100 * rate[i, j]
                ax.text(j, i - 0.13, f"{pct:.0f}%" if pct >= 9.95 else f"{pct:.1f}%",
                        ha="center", va="center", fontsize=size, color=colour, fontweight="bold")
                ax.text(j, i + 0.22, f"{cm[i, j]}", ha="center", va="center", fontsize=size - 2, color=colour)
    off = rate.copy()
    np.fill_diagonal(off, -1)
    order = [k for k in np.argsort(-off, axis=None, kind="stable")[:top] if off.flat[k] > 0]
    worst = []
    for k in order:
        i, j = divmod(int(k), C)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=VERMILLION, lw=2.5))
        worst.append(f"{class_names[i]} \u2192 {class_names[j]} {100 * rate[i, j]:.1f}%")
    names = [str(n) for n in class_names]
    ax.set_xticks(range(C), names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(C), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(length=0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    ax.set_title(f"Confusion matrix ({int(cm.sum()):,} samples; each row sums to 100%)", fontsize=12)
    if worst:
        fig.supxlabel("Outlined: largest confusions (true \u2192 predicted)\n" + "   \u00b7   ".join(worst),
                      fontsize=9, color="#333333")
    return fig


def per_class_table_figure(per_class: Sequence[dict[str, Any]]) -> Figure:
    """Table of precision, recall, F1 and support per class plus the macro average; lowest F1
    highlighted. Size: 6.5 x (0.3 * (classes + 2) + 0.8) inches."""
    macro = macro_average(per_class)
    rows = [[str(r["name"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
             f"{r['support']:,}"] for r in per_class]
    rows.append(["macro average", f"{macro['precision']:.3f}", f"{macro['recall']:.3f}",
                 f"{macro['f1']:.3f}", f"{macro['support']:,}"])
    fig = Figure(figsize=(6.5, 0.3 * (len(rows) + 1) + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["class", "precision", "recall", "F1", "support"],
                     colWidths=[0.32, 0.17, 0.17, 0.17, 0.17], cellLoc="center", bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    worst = int(np.argmin([r["f1"] for r in per_class])) + 1 if per_class else -1  # +1: header row
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#CCCCCC")
        if c == 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.04
        if r == 0 or r == len(rows):
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#E8EEF4")
        elif r == worst and c == 3:
            cell.set_facecolor("#F6D5C2")  # light vermillion
        elif r % 2 == 0:
            cell.set_facecolor("#F7F7F7")
    ax.set_title("Per-class metrics (test set)", fontsize=12)
    fig.supxlabel("macro average: unweighted mean over classes; shaded: lowest F1", fontsize=8, color="#555555")
    return fig




def draw_samples(dataset: str, split: str, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 per_class: int = 10, seed: int = 0) -> Path:
    """`fmnist data show`: a sample grid of a data set's split, written to `out`."""
    from ..data import load

    if Path(out).is_dir():  # before any data is loaded or downloaded
        raise ConfigError(f"--out {out}: is a folder; give a file name such as samples.png")
    check_target(out)
    part = load(dataset, split, data_dir=data_dir)
    return save_figure(sample_grid(part.images, part.labels, part.class_names, per_class, seed), out)


# --- a run directory's files -> its figures ------------------------------------------

def draw_run(run_dir: str | os.PathLike, test_images: np.ndarray | None = None,
             workers: int = 2) -> list[Path]:
    """(Re)draw a run's figures from the files in `run_dir`, without training.

    history.jsonl -> curves.png; metrics.json -> confusion.png, per_class.png;
    predictions.csv with `test_images` (uint8 (N, 28, 28), the images the rows index) ->
    predictions.png, mistakes.png. A missing file skips its figures; returns what was written.
    With workers >= 2 the two image figures are drawn in a forked process meanwhile.
    """
    run_dir = Path(run_dir)
    jobs: list[tuple] = []  # (figure function, its arguments, the PNG), drawn by _draw_all
    history = runs.load_history(run_dir)
    if history:
        jobs.append((training_curves, (history,), run_dir / "curves.png"))
    metrics = runs.read_metrics(run_dir) or {}
    if "confusion" in metrics:
        cm = np.asarray(metrics["confusion"], dtype=np.int64)
        names = metrics.get("class_names") or [str(c) for c in range(len(cm))]
        jobs.append((confusion_figure, (cm, names), run_dir / "confusion.png"))
    if metrics.get("per_class"):
        jobs.append((per_class_table_figure, (metrics["per_class"],), run_dir / "per_class.png"))
    heavy: list[tuple] = []
    if test_images is not None and (run_dir / runs.PREDICTIONS).is_file():
        index, labels, probs = runs.read_predictions(run_dir / runs.PREDICTIONS)
        test_images = np.asarray(test_images)
        if index.size and (index.min() < 0 or index.max() >= len(test_images)):
            raise RunError(f"{run_dir / 'predictions.csv'} indexes image {index.max()} but only "
                           f"{len(test_images)} test images were given; pass the run's test split")
        known = labels >= 0  # label -1: an image without a true label, e.g. the user's own photo
        if known.any():
            names = metrics.get("class_names") or [str(c) for c in range(probs.shape[1])]
            if len(names) != probs.shape[1]:
                raise RunError(f"{run_dir / runs.PREDICTIONS}: {probs.shape[1]} classes, but "
                               f"metrics.json names {len(names)}; train again")
            images = test_images[index[known]]  # (N, 28, 28), in the order of the csv rows
            args = (images, probs[known], labels[known], names)
            heavy = [(predictions_panel, args, run_dir / "predictions.png"),
                     (mistakes_gallery, args, run_dir / "mistakes.png")]
    return _draw_all(jobs, heavy, workers)


def _draw(job: tuple) -> Path:
    figure, args, path = job
    return save_figure(figure(*args), path)


def _draw_forked(job: tuple) -> Path:
    """_draw in the forked process. What it raises comes back by pickle: an FmnistError
    does (errors.py); anything else becomes one here, naming the figure, so that no
    exception that cannot cross (or a bug's) ends as a traceback of the pool."""
    try:
        return _draw(job)
    except FmnistError:
        raise
    except MemoryError:
        raise FmnistError(f"{job[2]}: not enough memory to draw it; free some memory, then "
                          f"`fmnist plot {job[2].parent}`") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no message"
        raise FmnistError(f"{job[2]}: could not be drawn ({type(exc).__name__}: {first}); "
                          f"`fmnist plot {job[2].parent}` draws it again") from None


def _draw_all(jobs: list[tuple], heavy: list[tuple], workers: int) -> list[Path]:
    """Draw `jobs` here and `heavy` in a forked process at the same time (workers >= 2).

    matplotlib spends its time in Python (text layout above all), so threads would queue on
    the GIL; a fork shares the arrays without copying them. The default run's five figures
    on 2 idle cores (median of 2): 2.9 s in one process, 1.9 s so.
    """
    if workers < 2 or not heavy or not jobs or not hasattr(os, "fork"):
        return [_draw(job) for job in jobs + heavy]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from ..procs import die_with_parent

    # the drawer ends with its parent: a killed `fmnist train` leaves no process writing PNGs
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        later = pool.map(_draw_forked, heavy)
        here = [_draw(job) for job in jobs]
        try:
            return here + list(later)
        except BrokenProcessPool:  # the process was killed: the kernel's OOM killer, a signal
            names = ", ".join(path.name for _, _, path in heavy)
            raise FmnistError(f"{heavy[0][2].parent}: {names}: the process drawing them ended "
                              "abruptly (out of memory, or killed); free some memory, then "
                              f"`fmnist plot {heavy[0][2].parent}`") from None
