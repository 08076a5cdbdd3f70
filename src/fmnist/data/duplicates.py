"""Duplicate images: exact ones by a hash of the pixel bytes, near ones by an exact L2
nearest-neighbour search over the raw pixels.

Exact duplicates are cheap (one 16-byte BLAKE2 digest per image, ~0.1 s for 70,000), so
`fmnist train --exclude-test-overlap` computes the train/test overlap afresh every time,
whether or not an audit was run. The near-duplicate search needs torch and is imported
only where it runs.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


def digests(images: np.ndarray) -> list[bytes]:
    """One BLAKE2b-128 digest of the raw pixel bytes per image (N, 28, 28) uint8: equal
    digests are equal images (a collision by chance is ~2**-128 per pair)."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row, digest_size=16).digest() for row in flat]


def in_other(images: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(N,) bool: which of `images` also appear, byte for byte, in `other`."""
    seen = set(digests(other))
    return np.fromiter((d in seen for d in digests(images)), bool, count=len(images))


@dataclass(frozen=True)
class Group:
    """Images with identical pixels: their indices in each split and their labels."""

    train: tuple[int, ...]  # indices into the training split
    test: tuple[int, ...]  # indices into the test split
    labels: tuple[int, ...]  # the distinct labels the group's images carry, sorted

    @property
    def agree(self) -> bool:
        return len(self.labels) == 1

    def to_dict(self) -> dict:
        return {"train": list(self.train), "test": list(self.test), "labels": list(self.labels),
                "labels_agree": self.agree}


def exact_groups(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                 test_labels: np.ndarray) -> dict[str, list[Group]]:
    """Groups of byte-identical images: "train" (2+ copies within the training split only),
    "test" (within the test split only) and "shared" (in both; copies within a split are in
    the same group). Each list in order of the first index."""
    where: dict[bytes, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for side, images in enumerate((train, test)):
        for i, d in enumerate(digests(images)):
            where[d][side].append(i)
    out: dict[str, list[Group]] = {"train": [], "test": [], "shared": []}
    for tr, te in where.values():
        kind = "shared" if tr and te else "train" if len(tr) > 1 else "test" if len(te) > 1 else None
        if kind:
            labels = {int(train_labels[i]) for i in tr} | {int(test_labels[i]) for i in te}
            out[kind].append(Group(tuple(tr), tuple(te), tuple(sorted(labels))))
    for groups in out.values():
        groups.sort(key=lambda g: (g.train or g.test)[0])
    return out


def nearest_train(test: np.ndarray, train: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each test image its nearest training image by L2 distance over the pixels / 255:
    (index (N_test,) int64, distance (N_test,) float64).

    Exact, not approximate: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b with the dot products
    as chunked fp32 matrix products (10,000 x 60,000 x 784 is 0.5 TFLOP: seconds with BLAS
    on one core, where a Python loop or an index would take minutes or approximate). fp32
    cancellation moves a squared distance by ~1e-4, so each winner's distance is then
    recomputed in float64; ties within that margin could swap two equally near images.
    """
    import torch

    a = torch.from_numpy(np.ascontiguousarray(train).reshape(len(train), -1)).float().div_(255)  # (M, 784)
    a_sq = (a * a).sum(1)  # (M,)
    index = np.empty(len(test), np.int64)
    for start in range(0, len(test), chunk):
        b = torch.from_numpy(np.ascontiguousarray(test[start:start + chunk]).reshape(-1, a.shape[1])).float().div_(255)
        d2 = a_sq[None, :] - 2.0 * (b @ a.T)  # (B, M): ||b||^2 dropped, it does not change the argmin
        index[start:start + len(b)] = d2.argmin(1).numpy()
    diff = test.reshape(len(test), -1).astype(np.float64) - train[index].reshape(len(test), -1)
    return index, np.sqrt((diff * diff).sum(1)) / 255.0
