"""What every figure module shares: the palette, the dpi, the atomic PNG writer.

Figures use matplotlib's object API only (Figure, never pyplot): no global state, no
display, safe in threads. Each has a size fixed by its arguments and constrained layout,
and `save_figure` writes at DPI dots per inch, so a PNG is figsize * DPI pixels.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..fsutil import atomic_write_bytes

DPI = 100  # dots per inch of every saved PNG

# Okabe & Ito (2008), the colour-blind-safe palette
BLUE, VERMILLION, GREEN, ORANGE = "#0072B2", "#D55E00", "#009E73", "#E69F00"
PURPLE, SKY, BLACK, YELLOW = "#CC79A7", "#56B4E9", "#000000", "#F0E442"
GREY, GRID = "#BBBBBB", "#E5E5E5"
PALETTE = (BLUE, VERMILLION, GREEN, PURPLE, ORANGE, SKY, BLACK)  # yellow is unreadable on white
TRAIN, VAL = BLUE, ORANGE
RIGHT, WRONG = BLUE, VERMILLION


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG at DPI, atomically (fsutil: temp file in the same folder, then
    rename), so a reader such as a browser refreshing curves.png mid-training never sees half a file."""
    buf = io.BytesIO()
    # no "Software" version stamp: the bytes depend on the figure only
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return atomic_write_bytes(path, buf.getvalue())


def series(history: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """history[i][key] as floats, nan where missing, None or not finite."""
    out = np.full(len(history), np.nan)
    for i, record in enumerate(history):
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[i] = value
    return out


def image_axes(ax) -> None:
    """An axes that shows an image: no ticks, no frame, but room for a title and an xlabel."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def message_figure(text: str, title: str, size: tuple[float, float] = (6.0, 2.0)) -> Figure:
    """A figure that says why there is nothing to draw (no mistakes, no runs...)."""
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title, fontsize=12)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def log_y(ax) -> None:
    """A log y axis labelled 0.1, 0.2, 0.5, 1, 2 ... (plain numbers, not 10^-1 with bare minor ticks)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
