"""Scoring a model: pure functions under torch.no_grad(), sums first, then divide by N."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn.functional as F

from .data.batches import DeviceData

Autocast = Callable[[], ContextManager]


def all_finite(model: torch.nn.Module) -> bool:
    """Whether every weight and floating buffer (batch norm's statistics) is finite: one
    read-back for all of them (on a GPU, one wait)."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _no_autocast() -> ContextManager:
    return contextlib.nullcontext()


# the one-pixel shifts of tta_shifts: (rows, columns) the image moves by
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """x (N, C, H, W) moved dy rows down and dx columns right, the uncovered edge set to
    `fill` (the background's value), as training's random crop moves an image."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=fill)
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: bool = False,
               shifts: bool = False, fill: float = 0.0) -> torch.Tensor:
    """The model's float32 logits for x, averaged over test-time views.

    tta: the image and its mirror image (garments are left-right symmetric; the models were
    trained with random flips). shifts: also the image moved one pixel up, down, left and
    right (`fill`: the background's value), six views in all with the mirror. On validation,
    over seven 40-60-epoch runs (cnn, resnet), the six views scored -0.14 to +0.20 points
    against the mirror pair, +0.07 on average (benchmarks/tta_views.py); after 8 epochs (the
    default recipe) nothing. Small, so it is a setting (tta_shifts), used by the long recipes.
    """
    logits = model(x).float()
    if not (tta or shifts):
        return logits
    views = [x.flip(-1)] if tta else []
    views += [shifted(x, dy, dx, fill) for dy, dx in SHIFTS] if shifts else []
    for view in views:
        logits = logits + model(view).float()
    return logits * (1.0 / (1 + len(views)))


@torch.no_grad()
def logits_of(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
              autocast: Autocast = _no_autocast, tta: bool = False,
              shifts: bool = False) -> torch.Tensor:
    """(N, C) float32 logits for every image of `data`, in order, in eval mode, averaged over
    the test-time views `tta` and `shifts` ask for (see tta_logits)."""
    was_training = model.training
    model.eval()
    fill = data.background
    try:
        chunks = []
        for x, _ in data.batches(batch_size):
            with autocast():
                logits = tta_logits(model, x, tta, shifts, fill)
            chunks.append(logits)
        return torch.cat(chunks) if chunks else torch.empty(0, 0)
    finally:
        model.train(was_training)


@torch.no_grad()
def loss_and_accuracy(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
                      autocast: Autocast = _no_autocast, tta: bool = False,
                      shifts: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over `data` (NaN, NaN when empty)."""
    if len(data) == 0:
        return float("nan"), float("nan")
    logits = logits_of(model, data, batch_size, autocast, tta, shifts)
    loss = F.cross_entropy(logits, data.labels, reduction="sum").item()
    correct = (logits.argmax(1) == data.labels).sum().item()
    return loss / len(data), correct / len(data)


def probabilities(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
                  autocast: Autocast = _no_autocast, tta: bool = False,
                  shifts: bool = False) -> np.ndarray:
    """(N, C) float64 class probabilities, rows summing to 1."""
    logits = logits_of(model, data, batch_size, autocast, tta, shifts)
    return torch.softmax(logits.double(), dim=1).cpu().numpy()
