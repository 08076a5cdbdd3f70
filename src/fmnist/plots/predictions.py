"""Figures of individual predictions: the image with its probabilities, the worst mistakes."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .style import GREY, RIGHT, WRONG, image_axes, message_figure


def _caption(pred: str, conf: float, true: str) -> str:
    return f"{pred} {conf:.0f}%\n(true: {true})"


def predictions_panel(images: np.ndarray, probs: np.ndarray, labels: Sequence[int],
                      class_names: Sequence[str], n: int = 15, cols: int = 3) -> Figure:
    """The first `n` samples, each as its image, captioned "predicted confidence% (true: name)" in blue
    when right and vermillion when wrong, beside a bar chart of its class probabilities.

    Size: 5.2 * cols x (2.5 * rows + 0.6) inches, rows = ceil(min(n, N) / cols).
    """
    images, probs, labels = np.asarray(images), np.asarray(probs, dtype=float), np.asarray(labels).ravel()
    k = min(n, len(images))
    if k == 0:
        return message_figure("no test images to show", "Predictions")
    rows = math.ceil(k / cols)
    height = 2.5 * rows + 0.6
    fig = Figure(figsize=(5.2 * cols, height))
    # fixed margins in inches instead of constrained layout: this figure has 2 * n axes and
    # 10 * n tick labels, and laying them out took longer than drawing them (2.0 s -> 0.9 s)
    grid = fig.add_gridspec(rows, 2 * cols, width_ratios=[1, 1.9] * cols,
                            left=0.3 / (5.2 * cols), right=1 - 0.1 / (5.2 * cols),
                            top=1 - 0.55 / height, bottom=0.95 / height, wspace=0.3, hspace=0.5)
    names = [str(c) for c in class_names]
    right = 0
    for i in range(k):
        r, c = divmod(i, cols)
        ax_img, ax_bar = fig.add_subplot(grid[r, 2 * c]), fig.add_subplot(grid[r, 2 * c + 1])
        pred, true = int(np.argmax(probs[i])), int(labels[i])
        colour = RIGHT if pred == true else WRONG
        right += pred == true
        ax_img.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        image_axes(ax_img)
        ax_img.set_xlabel(_caption(names[pred], 100 * probs[i, pred], names[true]), color=colour, fontsize=9)

        bar_colours = [GREY] * len(names)
        bar_colours[pred] = colour  # a wrong prediction stands out in vermillion ...
        bar_colours[true] = RIGHT  # ... next to the true class in blue
        ax_bar.bar(range(len(names)), probs[i], color=bar_colours, width=0.75)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_yticks([0, 0.5, 1], ["0", ".5", "1"], fontsize=7)
        ax_bar.set_xticks(range(len(names)), names, rotation=50, ha="right", rotation_mode="anchor", fontsize=7)
        ax_bar.tick_params(axis="x", length=2, pad=1)
        ax_bar.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"Predictions on {k} test images: {right} right, {k - right} wrong", fontsize=13,
                 y=1 - 0.12 / height, va="top")
    fig.legend(handles=[Patch(color=RIGHT, label="true class (the prediction when right)"),
                        Patch(color=WRONG, label="wrong prediction"),
                        Patch(color=GREY, label="other classes")],
               loc="lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def mistakes_gallery(images: np.ndarray, probs: np.ndarray, labels: Sequence[int],
                     class_names: Sequence[str], n: int = 24, cols: int = 8) -> Figure:
    """The `n` wrong predictions made with the highest confidence, most confident first, each
    titled "predicted p%" over "(true)". Says so when there are no mistakes.

    Size: max(1.6 * c, 6.4) x (2.05 * rows + 0.7) inches with k = min(n, mistakes) images,
    c = min(cols, k) columns, rows = ceil(k / c); with no mistakes 6 x 2 inches.
    """
    images, probs, labels = np.asarray(images), np.asarray(probs, dtype=float), np.asarray(labels).ravel()
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    if wrong.size == 0:
        return message_figure(f"No mistakes: all {len(labels):,} predictions are right.", "Most confident mistakes")
    conf = probs[wrong, pred[wrong]]
    show = wrong[np.argsort(-conf, kind="stable")[:n]]  # most confident first
    cols = min(cols, show.size)
    rows = math.ceil(show.size / cols)
    width, height = max(1.6 * cols, 6.4), 2.05 * rows + 0.7
    fig = Figure(figsize=(width, height))
    # fixed margins in inches, not constrained layout: as fast again for 24 images
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=0.1 / width, right=1 - 0.1 / width, top=1 - 0.85 / height, bottom=0.3 / height,
        wspace=0.12, hspace=0.45))
    names = [str(c) for c in class_names]
    for ax, i in zip(axes.flat, show):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        image_axes(ax)
        ax.set_title(f"{names[pred[i]]} {100 * probs[i, pred[i]]:.0f}%", color=WRONG, fontsize=9, pad=3)
        ax.set_xlabel(f"(true: {names[labels[i]]})", fontsize=8.5, labelpad=2)
    for ax in axes.flat[show.size:]:
        ax.axis("off")
    head = f"The {show.size} most confident mistakes" if show.size < wrong.size else f"All {show.size} mistakes"
    fig.suptitle(f"{head}, most confident first\n{wrong.size:,} of {len(labels):,} wrong "
                 f"({100 * wrong.size / len(labels):.1f}%); predicted above, true class below", fontsize=11,
                 y=1 - 0.1 / height, va="top")
    return fig
