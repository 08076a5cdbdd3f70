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


# A picture larger than this is refused before it is decoded (a 13000 x 13000 PNG would take
# 1.8 GB and seconds; a decompression bomb far more). 64 MP is more than a phone camera's.
MAX_PIXELS = 64_000_000
WORK_EDGE = 1024  # pictures are shrunk to about this (longest edge) as early as possible
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")


def read_picture(path: str | os.PathLike, invert: bool | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) of any mode Pillow opens and prepare it: (28, 28) uint8.

    Large pictures are decoded at a reduced scale where the format allows (JPEG's draft
    mode) and shrunk right after decoding, so a photo costs milliseconds, not seconds."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # by content, but only formats that are pictures: an EPS named .png would
            # otherwise reach Ghostscript
            with Image.open(path, formats=FORMATS) as img:
                w, h = img.size
                if w * h > MAX_PIXELS or w < 1 or h < 1:
                    raise DataError(f"{path}: {w} x {h} pixels; pictures up to {MAX_PIXELS:,} "
                                    "pixels are read: shrink it first")
                img.seek(0)  # an animation: its first frame
                if img.mode in ("RGB", "L", "CMYK", "YCbCr"):
                    img.draft("L" if img.mode == "L" else "RGB", (WORK_EDGE, WORK_EDGE))
                img.load()
                grey = _grey(_shrink(ImageOps.exif_transpose(img)))  # a phone's rotation
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):  # Pillow's own check
        raise DataError(f"{path}: declares more pixels than the {MAX_PIXELS:,} we read (a "
                        "decompression bomb?); shrink it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc.__class__.__name__}); "
                        "use PNG or JPEG") from None
    return prepare(grey, invert)


def _shrink(img):
    """Box-reduce by an integer factor to a longest edge near WORK_EDGE (trimming and
    resizing to 28 pixels follow, so nothing of use is lost)."""
    factor = max(img.size) // WORK_EDGE
    if factor < 2:
        return img
    if img.mode.startswith("I;16"):  # reduce takes no 16-bit mode: to 8 bits first (65535: white)
        from PIL import Image
        return Image.fromarray(_to_8bit(img), "L").reduce(factor)
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        img = img.convert("RGBA")
    return img.reduce(factor)


def _to_8bit(img) -> np.ndarray:
    return np.round(np.asarray(img, dtype=np.float32) / 257.0).astype(np.uint8)


def _grey(img) -> np.ndarray:
    """(H, W) uint8 grey of any mode: 16- and 32-bit and float scaled by their range (not
    clipped at 255), transparency composited onto white paper, palette and CMYK converted."""
    from PIL import Image

    if img.mode.startswith("I;16"):  # 16-bit: 65535 is white
        return _to_8bit(img)
    if img.mode in ("I", "F"):
        x = np.asarray(img, dtype=np.float64)
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(x.min()), float(x.max())
        if img.mode == "F" and lo >= 0 and hi <= 1:
            x = x * 255.0  # float pictures in [0, 1]
        elif lo >= 0 and hi <= 65535 and hi > 255:
            x = x / 257.0  # 16-bit data in a 32-bit mode (how Pillow opens some PNGs)
        elif lo < 0 or hi > 255:
            x = (x - lo) * (255.0 / (hi - lo))  # anything else: its own range
        return np.round(np.clip(x, 0, 255)).astype(np.uint8)
    if img.mode == "P" and "transparency" in img.info or img.mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":  # transparent background -> white, like paper
        back = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(back, img)
    return np.asarray(img.convert("RGB").convert("L") if img.mode != "L" else img)


def read_images(paths: list[Path]) -> tuple[np.ndarray, list[str], list[str]]:
    """(N, 28, 28) uint8 from IDX files of images and pictures, the file name of each image,
    and one line for each file that could not be read (the others are still read)."""
    from .idx import read_idx

    parts, names, failures = [], [], []
    for path in map(Path, paths):
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images = read_picture(path)[None]
            else:
                images = read_idx(path)
                images = images[None] if images.ndim == 2 else images
                if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
                    raise DataError(f"{path}: holds {images.dtype} {images.shape}; predict wants "
                                    "uint8 images of shape (N, 28, 28), or a picture (PNG, JPEG)")
                if len(images) == 0:
                    raise DataError(f"{path}: holds no images")
        except DataError as exc:
            failures.append(str(exc))
            continue
        parts.append(images)
        names += [path.name] * len(images)
    images = np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.uint8)
    return images, names, failures
