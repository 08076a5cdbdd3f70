"""Scoring a model: pure functions under torch.no_grad(), sums first, then divide by N."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn.functional as F

from .data.batches import DeviceData

Autocast = Callable[[], ContextManager]


def _no_autocast() -> ContextManager:
    return contextlib.nullcontext()


@torch.no_grad()
def logits_of(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
              autocast: Autocast = _no_autocast, tta: bool = False) -> torch.Tensor:
    """(N, C) float32 logits for every image of `data`, in order, in eval mode.

    tta: test-time augmentation, the mean of the logits of each image and its mirror image
    (garments are left-right symmetric; the models were trained with random flips).
    """
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for x, _ in data.batches(batch_size):
            with autocast():
                logits = model(x).float()
                if tta:
                    logits = 0.5 * (logits + model(x.flip(-1)).float())
            chunks.append(logits)
        return torch.cat(chunks) if chunks else torch.empty(0, 0)
    finally:
        model.train(was_training)


@torch.no_grad()
def loss_and_accuracy(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
                      autocast: Autocast = _no_autocast, tta: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over `data` (NaN, NaN when empty)."""
    if len(data) == 0:
        return float("nan"), float("nan")
    logits = logits_of(model, data, batch_size, autocast, tta)
    loss = F.cross_entropy(logits, data.labels, reduction="sum").item()
    correct = (logits.argmax(1) == data.labels).sum().item()
    return loss / len(data), correct / len(data)


def probabilities(model: torch.nn.Module, data: DeviceData, batch_size: int = 1000,
                  autocast: Autocast = _no_autocast, tta: bool = False) -> np.ndarray:
    """(N, C) float64 class probabilities, rows summing to 1."""
    logits = logits_of(model, data, batch_size, autocast, tta)
    return torch.softmax(logits.double(), dim=1).cpu().numpy()
