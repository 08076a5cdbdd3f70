"""Figures of `fmnist explain`: attribution maps, the t-SNE map of the features, the first
layer's filters, the class means as the model sees them. Data in, Figure out.

Signed maps (attributions, filters, scaled inputs) use a diverging colour map centred on 0
(RdBu_r: red positive, blue negative, readable with the common colour-vision deficiencies)
with a colour bar; the classes of the t-SNE map use Paul Tol's colour-blind-safe "muted"
palette and are named in place, so no colour has to be matched to a legend.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from .style import RIGHT, WRONG, image_axes

DIVERGING = "RdBu_r"
# Paul Tol's "muted" scheme (9 colours) and a dark grey: 10 classes, all told apart
# with deuteranopia, protanopia and tritanopia (https://personal.sron.nl/~pault/)
CLASS_COLOURS = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77",
                 "#CC6677", "#882255", "#AA4499", "#555555")


def _symmetric(values: np.ndarray) -> float:
    """The colour scale's half range: the 99.5th percentile of |values|, so one extreme
    pixel does not wash out the rest (and never 0)."""
    v = float(np.percentile(np.abs(values), 99.5)) if values.size else 0.0
    return v if v > 0 else 1.0


def attribution_figure(images: np.ndarray, maps: np.ndarray, sample: np.ndarray, preds: np.ndarray,
                       labels: np.ndarray, class_names: Sequence[str], method: str, cfg) -> Figure:
    """One row per true class: `per_class` right then `per_class` wrong predictions, each the
    image in grey with its attribution map over it, titled with the predicted and the true
    class. Each map is divided by its own 99.5th percentile of |attribution| (`_symmetric`:
    one extreme pixel would wash the rest out) and clipped to -1..1, which the colour bar reads.

    images (N, 28, 28) uint8; maps (C, K, 28, 28); sample (C, K) indices into images (-1: none).
    Size: (1.55 * K + 1.2) x (1.75 * C + 0.9) inches.
    """
    classes, k = sample.shape
    fig = Figure(figsize=(1.55 * k + 1.2, 1.75 * classes + 0.9), layout="constrained")
    axes = fig.subplots(classes, k, squeeze=False)
    norm, shown = Normalize(-1, 1), None
    for c in range(classes):
        for j in range(k):
            ax, i = axes[c, j], int(sample[c, j])
            image_axes(ax)
            if i < 0:
                ax.text(0.5, 0.5, "no such\nimage", ha="center", va="center", fontsize=8, color="#777777",
                        transform=ax.transAxes)
                continue
            m = np.clip(maps[c, j] / _symmetric(maps[c, j]), -1, 1)
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=400, interpolation="nearest")  # dimmed
            # the map's colour, opaque where it is strong and clear where it is ~0, so the
            # garment shows through wherever the model does not care
            rgba = colormaps[DIVERGING](norm(m))
            rgba[..., 3] = np.abs(m) ** 0.6
            ax.imshow(rgba, interpolation="nearest")
            shown = shown or ScalarMappable(norm, DIVERGING)
            right = preds[i] == labels[i]
            ax.set_title(f"pred {class_names[preds[i]]}\ntrue {class_names[labels[i]]}", fontsize=7.5,
                         color=RIGHT if right else WRONG)
    for c in range(classes):
        axes[c, 0].set_ylabel(class_names[c], fontsize=9)
    if shown is not None:
        fig.colorbar(shown, ax=axes, shrink=0.35, label="attribution / the image's 99.5th percentile\nof |attribution|, clipped to ±1")
    per = cfg.per_class
    fig.suptitle(f"{method}: why the model predicted its class (red: for it, blue: against)\n"
                 f"per true class {per} right (blue titles) and {per} wrong (vermillion) test images",
                 fontsize=11)
    return fig


def tsne_figure(xy: np.ndarray, labels: np.ndarray, preds: np.ndarray, images: np.ndarray,
                class_names: Sequence[str], feature_dims: int, cfg) -> Figure:
    """The test images' features in 2-D: a colour per true class, named at its centre with a
    thumbnail of the image nearest that centre, mistakes marked with a black x. Size: 11 x 10."""
    fig = Figure(figsize=(11, 10), layout="constrained")
    ax = fig.add_subplot()
    wrong = preds != labels
    for c in range(len(class_names)):
        pts = xy[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=5, color=CLASS_COLOURS[c % len(CLASS_COLOURS)], alpha=0.6,
                   lw=0, rasterized=True)
    ax.scatter(xy[wrong, 0], xy[wrong, 1], s=7, marker="x", color="black", lw=0.5, alpha=0.6,
               label=f"mistakes ({wrong.sum():,})")
    halo = [patheffects.withStroke(linewidth=3, foreground="white")]
    span = np.ptp(xy, axis=0).max() if len(xy) else 1.0
    for c in range(len(class_names)):
        pts = np.flatnonzero(labels == c)
        if pts.size == 0:
            continue
        centre = np.median(xy[pts], axis=0)  # robust to the class's stray points
        nearest = pts[np.argmin(((xy[pts] - centre) ** 2).sum(1))]
        ax.add_artist(AnnotationBbox(OffsetImage(images[nearest], cmap="gray", zoom=1.3),
                                     tuple(xy[nearest]), frameon=True, pad=0.1,
                                     bboxprops={"edgecolor": CLASS_COLOURS[c % len(CLASS_COLOURS)], "lw": 2}))
        ax.text(xy[nearest, 0], xy[nearest, 1] + 0.045 * span, class_names[c], ha="center",
                va="bottom", fontsize=11, weight="bold", color=CLASS_COLOURS[c % len(CLASS_COLOURS)],
                path_effects=halo)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(loc="lower right", fontsize=9, frameon=True)
    ax.set_title(f"t-SNE of the penultimate-layer features ({feature_dims} dims, PCA to "
                 f"{min(cfg.pca_dims, feature_dims)}) of {len(xy):,} test images\ncolour: true class; "
                 f"x: predicted wrong; thumbnail: the image nearest each class's centre "
                 f"(perplexity {cfg.perplexity:g}, seed {cfg.seed})", fontsize=11)
    return fig


def filters_figure(filters: np.ndarray, block: int = 1) -> Figure:
    """The first convolution's filters (O, k, k) as a grid on one shared symmetric scale, so
    their strengths compare; `block`: the pixel blocks a space-to-depth stem reads. Size: (0.9 * cols + 1.4) x (0.9 * rows + 1.0), cols = min(O, 8)."""
    n, k = filters.shape[0], filters.shape[-1]
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(0.9 * cols + 1.4, 0.9 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    v = float(np.abs(filters).max()) or 1.0
    shown = None
    for i, ax in enumerate(axes.flat):
        image_axes(ax)
        if i < n:
            shown = ax.imshow(filters[i], cmap=DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
        else:
            ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    how = f", a {k // block}x{k // block} filter over {block}x{block} pixel blocks" if block > 1 else ""
    fig.suptitle(f"The first convolution's {n} filters, {k}x{k} pixels{how}\n(red: responds to "
                 "light, blue: to dark)", fontsize=10)
    return fig


def class_means_figure(means: np.ndarray, class_names: Sequence[str], scaling: str) -> Figure:
    """Each class's mean test image after the run's input scaling, on one shared symmetric
    scale centred on 0 (the training set's mean pixel, for standard scaling). Size: 12 x 5.6."""
    cols = min(5, len(means))
    rows = math.ceil(len(means) / cols)
    fig = Figure(figsize=(12, 2.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    v = _symmetric(means)
    shown = None
    for i, ax in enumerate(axes.flat):
        image_axes(ax)
        if i < len(means):
            shown = ax.imshow(means[i], cmap=DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
            ax.set_title(class_names[i], fontsize=10)
        else:
            ax.axis("off")
    what = "(pixels / 255 - mean) / std" if scaling == "standard" else "pixels / 255"
    fig.colorbar(shown, ax=axes, shrink=0.8, label=f"model input: {what}")
    fig.suptitle(f"Mean test image of each class as the model sees it ({scaling} scaling)", fontsize=11)
    return fig
