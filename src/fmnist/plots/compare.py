"""Figures of an optimizer comparison: curves over epochs and final test accuracy per optimizer.

A run is one member run as a record (fmnist.runs.read_member): {"optimizer", "lr", "seed",
"history": [per-epoch records], "test_acc" (of the scored weights), "diverged", ...}. Runs with the same optimizer and lr are seeds of
one setting: drawn as their mean with the spread as a band; diverged runs are left out of
the mean and counted in the legend. Each setting keeps its colour in both figures.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .. import runs as R
from ..metrics import group_runs, summarise_runs
from .style import GREY, GRID, PALETTE, log_y, message_figure, save_figure, series

TITLES = {"train_loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss",
          "train_acc": "training accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy"}
LINESTYLES = ("-", "--", ":", "-.")  # after the 7 palette colours, settings differ by line style


def _style(i: int) -> dict[str, Any]:
    return {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


def _legend_label(group: dict[str, Any]) -> str:
    n, d = len(group["runs"]), group["diverged"]
    if d == n:
        return f"{group['label']}: diverged" if n == 1 else f"{group['label']}: all {n} diverged"
    seeds = f"{n - d} seed{'s' if n - d != 1 else ''}"
    return f"{group['label']}, {seeds}" + (f", {d} diverged (excluded)" if d else "")


def _mean_band(runs: Sequence[dict[str, Any]], key: str, x: str = "epoch"):
    """(xs, mean, min, max) over runs of history[key] against history[x] (epoch or step);
    points where no run recorded it dropped."""
    epochs = sorted({r.get(x, i) for run in runs for i, r in enumerate(run.get("history") or [])})
    col = {e: j for j, e in enumerate(epochs)}
    table = np.full((len(runs), len(epochs)), np.nan)  # (runs, epochs)
    for k, run in enumerate(runs):
        history = run.get("history") or []
        values = series(history, key)
        for i, r in enumerate(history):
            table[k, col[r.get(x, i)]] = values[i]
    seen = np.isfinite(table).any(axis=0)
    table, x = table[:, seen], np.array(epochs, dtype=float)[seen]
    if x.size == 0:
        return x, x, x, x
    filled = np.where(np.isfinite(table), table, 0.0)
    count = np.isfinite(table).sum(axis=0)
    mean = filled.sum(axis=0) / count  # nanmean without the all-nan warning
    lo = np.where(np.isfinite(table), table, np.inf).min(axis=0)
    hi = np.where(np.isfinite(table), table, -np.inf).max(axis=0)
    return x, mean, lo, hi


def _zoom_late(ax, drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]], unit: str = "epoch") -> str:
    """Zoom the y axis on the second half of training, where optimizers differ by a point or two
    (on the full 10..95% range their curves lie on top of each other); returns a title note."""
    start = max(xs.max() for xs, _, _ in drawn) / 2
    late = [v for xs, lo, hi in drawn for v in (*lo[xs >= start], *hi[xs >= start])]
    if not late or start < 1:
        return ""
    pad = max(0.5, 0.15 * (max(late) - min(late)))
    ax.set_ylim(max(0.0, min(late) - pad), min(100.0, max(late)) + pad)
    return f" (y zoomed on {unit}s ≥ {math.ceil(start):,})"


def comparison_curves(runs: Sequence[dict[str, Any]],
                      metrics: Sequence[str] = ("test_acc", "val_acc", "train_loss"),
                      x: str = "epoch") -> Figure:
    """One panel per metric against `x` (epoch or step), one colour per (optimizer, lr): the
    mean over seeds as a line, min..max over seeds as a band. Loss axes are logarithmic.

    Size: 4.8 * len(metrics) x (4.4 + 0.3 * ceil(settings / 3)) inches.
    """
    groups = group_runs(runs)
    if not groups:
        return message_figure("no runs to compare", "Optimizer comparison")
    fig = Figure(figsize=(4.8 * len(metrics), 4.4 + 0.3 * math.ceil(len(groups) / 3)), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, key in zip(axes, metrics):
        scale, title, drawn = (100.0 if key.endswith("_acc") else 1.0), TITLES.get(key, key), []
        for i, group in enumerate(groups):
            xs, mean, lo, hi = _mean_band(group["ok"], key, x)
            if xs.size == 0:
                continue
            drawn.append((xs, scale * lo, scale * hi))
            ax.plot(xs, scale * mean, lw=1.8, marker="o" if xs.size < 15 else None, ms=3, **_style(i))
            if len(group["ok"]) > 1:
                ax.fill_between(xs, scale * lo, scale * hi, color=_style(i)["color"], alpha=0.18, lw=0)
        if not drawn:
            ax.text(0.5, 0.5, f"{key} not recorded", transform=ax.transAxes, ha="center", va="center", color="#666666")
        elif key.endswith("_loss"):
            log_y(ax)  # losses fall over decades; the differences at the end matter most
        elif key.endswith("_acc"):
            title += _zoom_late(ax, drawn, x)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(x)
        ax.set_ylabel(TITLES.get(key, key).split()[-1] + (" (%)" if key.endswith("_acc") else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, color=GRID, lw=0.8, which="major")
    handles = [Line2D([], [], lw=2, label=_legend_label(g), **(_style(i) if g["ok"] else {"color": GREY, "ls": ":"}))
               for i, g in enumerate(groups)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=9, frameon=False)
    fig.suptitle("Optimizer comparison\nline: mean over seeds, band: min to max", fontsize=12)
    return fig


def final_accuracy_bars(runs: Sequence[dict[str, Any]]) -> Figure:
    """Final test accuracy per (optimizer, lr): mean over seeds as a bar with +-std (ddof=1)
    error bars, each seed as a dot, diverged runs as grey crosses.

    Size: max(6, 1.3 * settings + 2) x 5 inches.
    """
    groups = group_runs(runs)
    if not groups:
        return message_figure("no runs to compare", "Final test accuracy")
    fig = Figure(figsize=(max(6.0, 1.3 * len(groups) + 2), 5), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter of the seed dots, the same on every redraw
    shown: list[float] = []  # values that set the y range: diverged runs would squash it
    diverged: list[tuple[int, float]] = []  # (setting, test accuracy in %)
    for i, (group, row) in enumerate(zip(groups, summarise_runs(runs))):  # one set of statistics
        accs = [100 * r["test_acc"] for r in group["ok"]]
        n = len(accs)
        mean, std = (100 * row["test_acc"], 100 * row["test_acc_std"]) if n else (None, None)
        colour = _style(i)["color"]
        if n:
            ax.bar(i, mean, width=0.65, color=colour, alpha=0.35, edgecolor=colour, lw=1.5)
            ax.errorbar(i, mean, yerr=std, color="#222222", capsize=6, lw=1.5)
            ax.scatter(i + rng.uniform(-0.15, 0.15, n), accs, s=28, color=colour, edgecolor="#222222", zorder=3)
            ax.annotate(f"{mean:.2f} \u00b1 {std:.2f}", (i, max(mean + std, *accs)), xytext=(0, 6),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9)
            shown += [mean - std, mean + std, *accs]
        diverged += [(i, 100 * r["test_acc"]) for r in group["runs"] if all(r is not ok for ok in group["ok"])
                     and isinstance(r.get("test_acc"), (int, float)) and math.isfinite(r["test_acc"])]
    labels = [f"{g['optimizer']}\nlr={g['lr']:g}" if g["lr"] is not None else g["optimizer"] for g in groups]
    labels = [lab + (f"\n{g['diverged']} diverged" if g["diverged"] else "") for lab, g in zip(labels, groups)]
    ax.set_xticks(range(len(groups)), labels, fontsize=9)
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 100.0)
    pad = max(0.5, 0.15 * (hi - lo))
    bottom = max(0.0, math.floor(lo - 2 * pad))
    ax.set_ylim(bottom, min(100.0, hi + 2 * pad) + pad)
    ax.set_ylabel("final test accuracy (%)" + (f"\naxis starts at {bottom:g}%" if bottom > 0 else ""))
    for i, acc in diverged:  # below the axis: drawn on its bottom edge, the value written beside
        y = max(acc, bottom + 0.4 * pad)
        ax.scatter([i], [y], marker="x", s=45, color="#555555", zorder=3, clip_on=False)
        ax.annotate(f"diverged\n{acc:.1f}%", (i, y), xytext=(0, 7), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8, color="#555555")
    ax.grid(True, axis="y", color=GRID, lw=0.8)
    ax.set_axisbelow(True)
    ax.set_title("Final test accuracy: mean \u00b1 std over seeds (bar), each seed (dot)"
                 + (", diverged (\u00d7)" if any(g["diverged"] for g in groups) else ""), fontsize=11)
    return fig


def draw_comparison(comp_dir: str | os.PathLike) -> list[Path]:
    """comparison_curves.png and comparison_final.png from the member runs; [] when none."""
    runs = R.read_members(comp_dir)
    if not runs:
        return []
    base = (R.read_plan(Path(comp_dir)) or {}).get("base") or {}
    train, data = base.get("train") or {}, base.get("data") or {}
    x = "step" if train.get("eval_every") else "epoch"  # a protocol in steps is drawn in steps
    metrics = (("test_loss", "test_acc", "train_loss") if data.get("val_size") == 0  # the paper's
               else ("test_acc", "val_acc", "train_loss"))
    return [save_figure(comparison_curves(runs, metrics, x), Path(comp_dir, "comparison_curves.png")),
            save_figure(final_accuracy_bars(runs), Path(comp_dir, "comparison_final.png"))]
