"""A user's own pictures -> 28x28 uint8 images prepared the way Fashion-MNIST's were.

The data set's images were trimmed to the garment, resized so the longest edge is 28
pixels, centred, converted to grey and inverted (a light garment on black). A photo that
skips these steps is the usual reason a good model predicts nonsense on it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def prepare(grey: np.ndarray, invert: bool | None = None) -> np.ndarray:
    """(H, W) uint8 grey picture -> (28, 28) uint8, object light on black, centred."""
    from PIL import Image

    x = grey.astype(np.float32)
    if invert is None:  # a light border means a light background: invert to black
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
        invert = float(np.median(border)) > 127
    if invert:
        x = 255.0 - x
    x -= np.median(np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]))  # background to 0
    x = np.clip(x, 0, 255)
    rows, cols = np.flatnonzero(x.max(1) > 25), np.flatnonzero(x.max(0) > 25)
    if rows.size and cols.size:  # trim to the object
        x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape
    scale = 28 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(x.astype(np.uint8)).resize(size, Image.LANCZOS))
    out = np.zeros((28, 28), np.uint8)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    if out.max() > 0:  # stretch to the full range, as the data set's images use it
        out = np.round(out.astype(np.float32) * (255.0 / out.max())).astype(np.uint8)
    return out


def read_picture(path: str | os.PathLike, invert: bool | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) and prepare it: (28, 28) uint8."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGBA") if img.mode in ("P", "LA", "RGBA") else img
            if img.mode == "RGBA":  # transparent background -> white, like paper
                back = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(back, img)
            grey = np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc.__class__.__name__}); "
                        "use PNG or JPEG") from None
    return prepare(grey, invert)


def read_images(paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """(N, 28, 28) uint8 from IDX files of images and pictures, with the file name of each."""
    from .idx import read_idx

    parts, names = [], []
    for path in map(Path, paths):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images = read_picture(path)[None]
        else:
            images = read_idx(path)
            images = images[None] if images.ndim == 2 else images
            if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
                raise DataError(f"{path}: holds {images.dtype} {images.shape}; predict wants uint8 "
                                "images of shape (N, 28, 28), or a picture (PNG, JPEG)")
        parts.append(images)
        names += [path.name] * len(images)
    return np.concatenate(parts), names
