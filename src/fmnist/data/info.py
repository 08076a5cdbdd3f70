"""What `fmnist data get | verify | info` do, as functions that return values."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FmnistError
from .dataset import load, pixel_stats
from .fetch import locate, verify_file
from .sources import ROLES, get_source


def get_verified(name: str, data_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Find (or download) the four files and verify each; returns their folder."""
    source = get_source(name)
    paths = locate(source, data_dir, progress=progress)
    for role in ROLES:  # downloads were verified; files found on disk are checked here
        verify_file(paths[role], source.files[role], source)
    return paths["train_images"].parent


def verify_all(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str | None]]:
    """(path, None) for each file that verifies, (path, why) for each that does not."""
    source = get_source(name)
    paths = locate(source, data_dir, download_missing=False)
    results = []
    for role in ROLES:
        try:
            verify_file(paths[role], source.files[role], source)
            results.append((paths[role], None))
        except FmnistError as exc:
            results.append((paths[role], str(exc)))
    return results


def describe(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Counts per split and class, image size, pixel mean and std: `fmnist data info`."""
    source = get_source(name)
    splits = {s: load(source, s, data_dir=data_dir) for s in ("train", "test")}
    width = max(len(n) for n in source.class_names)
    counts = {s: np.bincount(sp.labels, minlength=source.num_classes) for s, sp in splits.items()}
    lines = [f"{source.title} ({source.homepage})",
             f"  {'class':<{width + 4}} {'train':>7} {'test':>7}"]
    for i, cls in enumerate(source.class_names):
        lines.append(f"  {i} {cls:<{width + 2}} {counts['train'][i]:>7} {counts['test'][i]:>7}")
    lines.append(f"  {'total':<{width + 4}} {len(splits['train']):>7} {len(splits['test']):>7}")
    for s, sp in splits.items():
        mean, std = pixel_stats(sp.images)
        lines.append(f"  {s}: {sp.images.shape[0]} images of {sp.images.shape[1]}x{sp.images.shape[2]}"
                     f" uint8, pixel mean {mean:.4f}, std {std:.4f} (in [0, 1])")
    return "\n".join(lines)


def verification(name: str, data_dir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """`fmnist data verify`: a line per file, and the failure (None when all verify) naming
    every bad file, not just how many there were."""
    results = verify_all(name, data_dir)
    title = get_source(name).title
    failed = [why for _, why in results if why is not None]
    lines = [f"ok    {path}" if why is None else f"FAIL  {why}" for path, why in results]
    if failed:
        return "\n".join(lines), (f"{len(failed)} of {len(results)} {title} files failed "
                                  f"verification: {'; '.join(failed)}")
    return "\n".join(lines + [f"{title}: all {len(results)} files verified"]), None
