"""Learning-rate schedules as pure functions of the step: factor in [0, 1] times the peak lr.

Pure functions (not torch LR schedulers) so that a resumed run needs only the step count.
"""
from __future__ import annotations

import math

from .config import SCHEDULES
from .errors import ConfigError


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier of the peak learning rate before optimizer step number `step` (0-based).

    constant: 1 throughout. step: 1, then 0.1 from 50% and 0.01 from 75% of the steps.
    cosine: linear warm-up, then half a cosine to 0. onecycle: linear warm-up from 0, then a
    linear decay to 0 at the last step (the fast "one-cycle" of Smith & Topin, as airbench).
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule={schedule!r}: use one of {', '.join(SCHEDULES)}")
    total = max(total_steps, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 1.0 if step < 0.5 * total else 0.1 if step < 0.75 * total else 0.01
    warmup = min(warmup_steps, total - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never exactly 0: the first step moves
    progress = (step - warmup) / max(total - warmup, 1)  # 0 .. <1 after warm-up
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(1.0 - progress, 0.0)  # onecycle
