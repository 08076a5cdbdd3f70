"""What our optimizers share: hyperparameter checks and the per-parameter plumbing.

The update rules themselves live in one small file per family (msgd.py, sign.py,
svag.py); this module only holds what would otherwise be copied into each of them.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Iterator, Mapping

import torch
from torch.optim import Optimizer

from ..errors import ConfigError


def _number(where: str, field: str, value: Any) -> float:
    # bool is an int to Python, but lr=True is a mistake, not 1.0
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{where}: {field} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {field} must be finite, got {value!r}")
    return float(value)


def non_negative(where: str, field: str, value: Any) -> None:
    if _number(where, field, value) < 0:
        raise ConfigError(f"{where}: {field} must be >= 0, got {value!r}")


def positive(where: str, field: str, value: Any) -> None:
    if _number(where, field, value) <= 0:
        raise ConfigError(f"{where}: {field} must be > 0, got {value!r}")


def unit_interval(where: str, field: str, value: Any) -> None:
    if not 0.0 <= _number(where, field, value) < 1.0:
        raise ConfigError(f"{where}: {field} must be in [0, 1), got {value!r}")


# The checks of the hyperparameter names used across the registry; a name not listed
# here (nesterov, amsgrad, ...) is left to the optimizer itself.
CHECKS: dict[str, Callable[[str, str, Any], None]] = {
    "lr": non_negative,
    "weight_decay": non_negative,
    "momentum": unit_interval,
    "beta": unit_interval,
    "beta1": unit_interval,
    "beta2": unit_interval,
    "eps": positive,
}


def check_hparams(hp: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError naming the first field of hp whose value is impossible."""
    for field, value in hp.items():
        check = CHECKS.get(field)
        if check is not None:
            check(where, field, value)


class FmnistOptimizer(Optimizer):
    """Base of our optimizers: checked hyperparameters, per group too; gradients; decay."""

    def __init__(self, params: Any, **defaults: Any) -> None:
        check_hparams(defaults, type(self).__name__)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # torch fills a group's missing settings from the defaults but checks none of the
        # ones a group brings itself ([{"params": ..., "lr": -1}] would pass unseen)
        own = {k: v for k, v in param_group.items() if k != "params"}
        check_hparams(own, f"{type(self).__name__} parameter group")
        super().add_param_group(param_group)

    def _with_grads(
        self, group: dict[str, Any]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict]]:
        """(param, grad, state) for each parameter of group that has a gradient."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            yield p, p.grad, self.state[p]

    @staticmethod
    def _advance_mean(p: torch.Tensor, g: torch.Tensor, state: dict, beta: float) -> int:
        """Create the state on first use, count the step, and move the moving average
        m~ <- beta * m~ + (1 - beta) * g (state["exp_avg"]); returns the step t."""
        if not state:  # first step of this parameter
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        state["exp_avg"].mul_(beta).add_(g, alpha=1.0 - beta)
        return state["step"]

    @staticmethod
    def _decay(p: torch.Tensor, group: dict[str, Any]) -> None:
        """Decoupled weight decay, AdamW style: theta <- theta - lr * wd * theta."""
        if group["weight_decay"] != 0:
            p.mul_(1.0 - group["lr"] * group["weight_decay"])

    @staticmethod
    def _closure_loss(closure: Callable[[], Any] | None) -> Any:
        """The loss the closure returns, computed with gradients on; None without one."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()
