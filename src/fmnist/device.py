"""Where and how precisely the math runs: device, threads, autocast."""
from __future__ import annotations

import contextlib
import os
from typing import Callable, ContextManager

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA GPU; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r}: use auto, cpu or cuda")
    return torch.device(name)


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroups, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int = 0) -> int:
    """Use `threads` CPU threads for torch ops (0: every usable core); returns the number."""
    n = threads or usable_cores()
    torch.set_num_threads(n)
    return n


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 autocast on CUDA (tensor cores); fp32 on CPU, where bf16 measured slower
    for these small convolutions (benchmarks/model_speed.py)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast_factory(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A zero-argument factory of the autocast context for the forward pass."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
