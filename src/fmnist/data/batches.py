"""Device-resident batches: the whole split as one tensor, shuffled and augmented in place.

Keep the data set as one uint8 tensor on the device: a per-sample DataLoader spends more
time in Python than a small model spends in math. Every random choice comes from a
generator seeded per epoch, so an epoch is the same whether or not the run was resumed.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class Augment:
    crop_pad: int = 0  # random crop after zero padding by this many pixels; 0: off
    flip: bool = False  # random horizontal flip with probability 1/2
    erase: float = 0.0  # probability of random erasing (a rectangle set to background)

    @property
    def active(self) -> bool:
        return self.crop_pad > 0 or self.flip or self.erase > 0


class DeviceData:
    """Images (N, 28, 28) uint8 and labels (N,) int64, held on `device`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        self.mean, self.std = float(mean), float(std)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def background(self) -> float:
        """What normalise makes of a 0 (black background) pixel."""
        return -(self.mean / self.std)

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28), zero mean and unit std."""
        # one multiply and one subtract in place: (u8 / 255 - mean) / std in half the passes
        # of divide, subtract, divide (176 vs 320 us a batch of 512 on one core)
        x = images_u8.unsqueeze(1).float()
        return x.mul_(1.0 / (255.0 * self.std)).sub_(self.mean / self.std)

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, augment: Augment | None = None,
                drop_last: bool = False, order: torch.Tensor | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x (B, 1, 28, 28) float32, y (B,) int64) over the whole split, or over the
        images `order` lists (indices, in that order: hard_order's), instead of a shuffle."""
        if order is not None:
            order = order.to(self.device)
        elif shuffle:
            order = torch.randperm(len(self), generator=generator, device="cpu").to(self.device)
        n = len(self) if order is None else len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        augmenting = augment is not None and augment.active
        if augmenting:
            # the epoch's random numbers, drawn on the CPU batch after batch as augment_batch
            # would draw them, then copied to the device in one piece: a copy from the CPU
            # waits for the GPU's queue, and eight of them a batch kept it from running ahead
            sizes = [min(batch_size, stop - start) for start in range(0, stop, batch_size)]
            draws = torch.cat([draw_augment(augment, b, generator) for b in sizes] or
                              [torch.empty(0, 0)], dim=1).to(self.device)
        for start in range(0, stop, batch_size):
            if order is not None:  # index_select, not images[idx]: 51 vs 357 us a batch of 512
                idx = order[start:start + batch_size]
                images, labels = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            else:
                images, labels = self.images[start:start + batch_size], self.labels[start:start + batch_size]
            if augmenting:
                images = augment_batch(images, augment, draws=draws[:, start:start + len(images)])
            yield self.normalise(images), labels


def hard_order(losses: torch.Tensor, fraction: float, pressure: float, count: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` image indices for an epoch of loss-weighted sampling ("online batch
    selection", Loshchilov & Hutter 2015, arXiv 1511.06343): passes of round(fraction * N)
    images each, drawn without replacement within a pass, image i with weight
    pressure ** (-rank_i / N), rank 0 the largest loss (the loss when the image was last
    trained on; inf: never yet). The hardest image weighs `pressure` times the easiest; as
    no image is drawn twice in a pass, the hardest ones fill most of every pass (seen up to
    1/fraction times an epoch instead of once) and the easy ones come now and then.
    losses: (N,) float, any device; returns (count,) int64 on the CPU."""
    n = len(losses)
    ranks = torch.empty(n, dtype=torch.float32)
    ranks[losses.float().cpu().argsort(descending=True, stable=True)] = torch.arange(
        n, dtype=torch.float32)  # stable: ties (the images not yet seen) in a fixed order
    weights = torch.exp(ranks * (-math.log(pressure) / n))
    k = max(1, min(n, round(fraction * n)))
    passes = [torch.multinomial(weights, k, replacement=False, generator=generator)
              for _ in range(-(-count // k))]
    return torch.cat(passes)[:count] if passes else torch.empty(0, dtype=torch.int64)


def draw_augment(aug: Augment, b: int, generator: torch.Generator | None) -> torch.Tensor:
    """The uniform random numbers augment_batch uses on a batch of b images: (k, b) float32,
    one row per use, drawn on the CPU generator (the same numbers on any device)."""
    rows = 2 * (aug.crop_pad > 0) + aug.flip + 5 * (aug.erase > 0)
    return torch.rand(rows, b, generator=generator) if rows else torch.empty(0, b)


def augment_batch(images: torch.Tensor, aug: Augment, generator: torch.Generator | None = None,
                  draws: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop, flip and erase on a uint8 batch (B, H, W), all vectorised; the random
    numbers are `draws` (draw_augment's, on the images' device), else drawn from generator."""
    b, h, w = images.shape
    dev = images.device
    if draws is None:
        draws = draw_augment(aug, b, generator).to(dev)
    unused = iter(draws)

    def rand(_b: int) -> torch.Tensor:  # the next row of draws: b numbers
        return next(unused)

    if aug.crop_pad > 0:
        p = aug.crop_pad
        padded = torch.nn.functional.pad(images, (p, p, p, p))  # (B, H+2p, W+2p), zeros
        dy = (rand(b) * (2 * p + 1)).long().view(b, 1, 1)  # offsets in 0..2p
        dx = (rand(b) * (2 * p + 1)).long().view(b, 1, 1)
        rows = torch.arange(h, device=dev).view(1, h, 1) + dy  # (B, H, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w) + dx  # (B, 1, W)
        images = padded[torch.arange(b, device=dev).view(b, 1, 1), rows, cols]
    if aug.flip:
        flip = rand(b) < 0.5
        images = torch.where(flip.view(b, 1, 1), images.flip(-1), images)
    if aug.erase > 0:
        # one rectangle per chosen image, 2..h/2 pixels a side, anywhere in the frame
        hit = (rand(b) < aug.erase).view(b, 1, 1)
        eh = 2 + (rand(b) * (h // 2 - 1)).long().view(b, 1, 1)
        ew = 2 + (rand(b) * (w // 2 - 1)).long().view(b, 1, 1)
        y0 = (rand(b).view(b, 1, 1) * (h - eh + 1)).long()
        x0 = (rand(b).view(b, 1, 1) * (w - ew + 1)).long()
        r = torch.arange(h, device=dev).view(1, h, 1)
        c = torch.arange(w, device=dev).view(1, 1, w)
        box = (r >= y0) & (r < y0 + eh) & (c >= x0) & (c < x0 + ew) & hit
        images = images.masked_fill(box, 0)
    return images
