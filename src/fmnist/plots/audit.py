"""audit.png: the evidence behind `fmnist data audit`'s counts, from its report and the images.

Top: the distribution of the nearest-neighbour distances with the near-duplicate threshold,
and the exact duplicates; then the closest test/train pairs; then the top label suspects of
each split, given and suggested label with the model's confidence.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure, SubFigure

from .style import BLUE, GREY, VERMILLION, image_axes


def _gallery(sub: SubFigure, images: Sequence[np.ndarray], captions: Sequence[str],
             colours: Sequence[str], cols: int, title: str, rows: int = 1) -> None:
    """`rows` x `cols` images with a caption under each; says so when there are none."""
    sub.suptitle(title, fontsize=11, x=0.01, ha="left")
    axes = sub.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        image_axes(ax)
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xlabel(captions[k], fontsize=6.5, color=colours[k])
        else:
            ax.axis("off")
    if not images:
        sub.text(0.5, 0.45, "none found", ha="center", va="center", fontsize=11, color="#555555")


def _histogram(ax, distances: np.ndarray, threshold: float, flagged: int) -> None:
    bins = np.linspace(0, max(float(distances.max()), threshold) * 1.02, 80)
    ax.hist(distances, bins=bins, color=BLUE, alpha=0.8)
    ax.set_yscale("log")  # the few near copies sit in the tail, far below the bulk's peak
    ax.axvline(threshold, color=VERMILLION, lw=1.8)
    ax.annotate(f"threshold {threshold:g}\n{flagged} test image{'s' if flagged != 1 else ''} below",
                (threshold, 0.97), xycoords=("data", "axes fraction"), xytext=(6, 0),
                textcoords="offset points", va="top", fontsize=9, color=VERMILLION)
    ax.set_xlabel("L2 distance to the nearest training image (pixels / 255)")
    ax.set_ylabel("test images")
    ax.set_title("Each test image's nearest training image", fontsize=10)


def audit_figure(report: dict, train_images: np.ndarray, test_images: np.ndarray,
                 nearest: np.ndarray, distances: np.ndarray) -> Figure:
    """The whole audit on one page. `nearest`, `distances`: (N_test,) each test image's
    nearest training image and its distance (audit.json keeps only the findings).

    Size: max(12, 1.15 * gallery + 0.5) x 13 inches.
    """
    n, names = report["settings"]["gallery"], report["class_names"]
    ex, near, labels = report["exact"], report["near"], report["labels"]
    fig = Figure(figsize=(max(12.0, 1.15 * n + 0.5), 13), layout="constrained")
    top, pairs, sus_train, sus_test = fig.subfigures(4, 1, height_ratios=[3.4, 3.0, 1.9, 1.9])
    fig.suptitle(f"{report['title']}: data audit ({report['sizes']['train']:,} training, "
                 f"{report['sizes']['test']:,} test images)", fontsize=14)

    left, right = top.subfigures(1, 2, width_ratios=[1.2, 1])
    _histogram(left.add_subplot(), distances, near["threshold"], len(near["pairs"]))
    groups = [("train", g) for g in ex["train"]] + [("test", g) for g in ex["test"]] + \
        [("shared", g) for g in ex["shared"]]
    text, exact = right.subfigures(2, 1, height_ratios=[1.2, 1] if groups else [1, 0.01])
    ax = text.add_subplot()
    ax.axis("off")
    ax.text(0, 1, _findings(report), va="top", ha="left", family="monospace", fontsize=9.5,
            transform=ax.transAxes)
    if groups:  # one image of each group, its indices and labels (vermillion: labels differ)
        shown = groups[: max(1, n // 3)]
        _gallery(exact, [train_images[g["train"][0]] if g["train"] else test_images[g["test"][0]]
                         for _, g in shown],
                 [f"{kind}: " + ", ".join([f"tr {i}" for i in g["train"][:2]] + [f"te {i}" for i in g["test"][:2]])
                  + f"\n{' / '.join(names[c] for c in g['labels'])}" for kind, g in shown],
                 [BLUE if g["labels_agree"] else VERMILLION for _, g in shown], len(shown),
                 "Exact duplicate groups (identical pixels)")

    order = np.argsort(distances, kind="stable")[:n]  # the closest pairs, flagged or not
    pair_images = [test_images[i] for i in order] + [train_images[nearest[i]] for i in order]
    caps = [f"test {i}" for i in order] + [f"train {nearest[i]}\nd = {distances[i]:.2f}" for i in order]
    colours = [VERMILLION if distances[i] <= near["threshold"] else GREY for i in order] * 2
    _gallery(pairs, pair_images, caps, colours, max(1, len(order)),
             f"The {len(order)} closest test (top) / training (bottom) pairs; near duplicates "
             f"(d <= {near['threshold']:g}) captioned in vermillion", rows=2)

    for sub, split, images in ((sus_train, "train", train_images), (sus_test, "test", test_images)):
        found = labels[split][:n]
        _gallery(sub, [images[s["index"]] for s in found],
                 [f"{split} {s['index']}\ngiven {names[s['given']]}\nmodel {names[s['suggested']]} "
                  f"{100 * s['confidence']:.0f}%" for s in found], [VERMILLION] * len(found), n,
                 f"Likely label errors in {split} ({len(labels[split]):,} found by confident learning; "
                 f"the {len(found)} most suspicious)")
    return fig



def _findings(report: dict) -> str:
    """The counts, as `fmnist data audit` prints them (without the header)."""
    from ..data.audit import summary_table

    lines = summary_table(report).splitlines()[1:]
    return "\n".join(line.strip() if i == 0 else line[2:] for i, line in enumerate(lines))
