"""What `fmnist predict` returns and prints: names, probabilities, the CSV written.

Free of torch, so `fmnist predict --onnx` (onnxruntime only) shares it with the torch path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import runs
from .errors import ConfigError, DataError
from .fsutil import check_target


def image_batch(images: np.ndarray, who: str) -> np.ndarray:
    """uint8 images (N, 28, 28) from a batch or one image (28, 28); anything else is refused,
    naming `who` wants them (a run's predict or an exported ONNX model)."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ConfigError(f"{who} wants uint8 images of shape (N, 28, 28), got "
                          f"{images.dtype} {images.shape}")
    return images


@dataclass
class Prediction:
    names: list[str]  # per image: the file it came from, or "" for a data-set split
    labels: np.ndarray  # (N,) true labels, -1 where unknown
    probs: np.ndarray  # (N, C)
    path: Path  # the CSV written
    accuracy: float | None  # over the images with a known label
    class_names: tuple[str, ...] = ()
    failures: list[str] = field(default_factory=list)  # the files that could not be read, why

    def summary(self, show: int = 20) -> str:
        """The first `show` pictures' top classes, the accuracy where labels are known, the CSV."""
        lines = [f"  {name}: {self.class_names[row.argmax()]} ({100 * row.max():.1f}%)"
                 for name, row in list(zip(self.names, self.probs))[:show] if name]
        if self.accuracy is not None:
            lines.append(f"accuracy {100 * self.accuracy:.2f}% on {int((self.labels >= 0).sum())} "
                         "labelled images")
        return "\n".join(lines + [f"wrote {len(self.probs)} predictions to {self.path}"])


def predict_with(score: Callable[[np.ndarray], np.ndarray], class_names: Sequence[str],
                 dataset: str, folder: Path, images: list[Path] | None = None,
                 split: str = "test", out: Path | None = None,
                 data_dir: str | os.PathLike | None = None) -> Prediction:
    """`score` (uint8 (N, 28, 28) -> (N, C) probabilities) on a split of `dataset`, or on IDX
    files and pictures; write the CSV (default: folder/predictions-<what>.csv)."""
    from .data import load

    what = images[0].name if images else split
    out = Path(out) if out else Path(folder) / f"predictions-{what}.csv"
    runs.check_writable(out.parent)
    check_target(out)  # before anything is read or predicted
    failures: list[str] = []
    if images:
        from .data.images import read_images
        x, names, failures = read_images(images)
        if not names:  # nothing readable: the reasons, and no CSV
            raise DataError("; ".join(failures))
        labels = np.full(len(names), -1)
    else:
        part = load(dataset, split, data_dir=data_dir)
        x, labels, names = part.images, part.labels, [""] * len(part.labels)
    probs = score(x)
    path = runs.save_predictions(out.parent, labels, probs, name=out.name)
    known = labels >= 0
    acc = float((probs.argmax(1)[known] == labels[known]).mean()) if known.any() else None
    return Prediction(names, labels, probs, path, acc, tuple(class_names), failures)
