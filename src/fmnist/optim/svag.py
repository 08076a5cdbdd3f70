"""M-SVAG and SVAG: (momentum) stochastic variance-adapted gradient.

Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic
Gradients", ICML 2018 (arXiv:1705.07774); reference implementation (TensorFlow):
https://github.com/lballes/msvag. Both shrink each coordinate of the step by
gamma in [0, 1], which is near 1 where the gradient's mean dominates its noise and
near 0 where noise dominates, estimated from moving averages of g and g * g.

Choices, all those of the reference implementation:
- rho_t is capped at RHO_MAX = 0.999. It equals 1 at t = 1 (and at every t when
  beta = 0), where s = (v - m^2) / (1 - rho) would divide by zero; at t = 1 v = m^2,
  so the cap's value does not matter there. From t = 2 on rho_t <= (1 + beta^2) /
  (1 + beta)^2, which is below the cap for beta >= 0.0006.
- gamma is clipped to [0, 1] (v - m^2 can round below zero) and set to 0 where it is
  0 / 0, which happens only where m = v = 0: a coordinate whose gradients were all 0.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._base import FmnistOptimizer

RHO_MAX = 0.999  # cap on rho_t, which is 1 at t = 1 (see the module docstring)


def variance_factor(beta: float, t: int) -> float:
    """rho_t, capped at RHO_MAX: the variance of the bias-corrected moving average m
    of t i.i.d. gradients, as a fraction of the variance of one gradient."""
    rho = (1 - beta) ** 2 * (1 - beta ** (2 * t)) / ((1 - beta**t) ** 2 * (1 - beta**2))
    return min(rho, RHO_MAX)


def _moments(
    p: torch.Tensor, g: torch.Tensor, state: dict, beta: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Advance the moving averages of g and g * g in state; return m, s and rho_t."""
    # m~ <- beta * m~ + (1 - beta) * g
    t = FmnistOptimizer._advance_mean(p, g, state, beta)
    if t == 1:  # first step of this parameter
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    m_avg, v_avg = state["exp_avg"], state["exp_avg_sq"]
    # v~ <- beta * v~ + (1 - beta) * g * g
    v_avg.mul_(beta).addcmul_(g, g, value=1.0 - beta)
    # m = m~ / (1 - beta^t), v = v~ / (1 - beta^t): bias correction of the zero start
    m, v = m_avg / (1.0 - beta**t), v_avg / (1.0 - beta**t)
    # rho_t: the share of one gradient's variance left in m
    rho = variance_factor(beta, t)
    # s = (v - m^2) / (1 - rho): unbiased estimate of the gradient variance
    s = (v - m * m) / (1.0 - rho)
    return m, s, rho


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den clipped to [0, 1], and 0 where den <= 0 (only 0 / 0 in exact arithmetic)."""
    return torch.where(den > 0, num / den, 0.0).clamp_(0.0, 1.0)


class MSVAG(FmnistOptimizer):
    r"""M-SVAG: momentum SGD with variance adaptation (Balles & Hennig, 2018).

    With g_t the stochastic gradient at step t = 1, 2, ...::

        m~_t  = beta * m~_{t-1} + (1 - beta) * g_t         (m~_0 = 0)
        v~_t  = beta * v~_{t-1} + (1 - beta) * g_t^2       (v~_0 = 0)
        m_t   = m~_t / (1 - beta^t),   v_t = v~_t / (1 - beta^t)
        rho_t = (1-beta)^2 (1-beta^(2t)) / ((1-beta^t)^2 (1-beta^2)),  capped at 0.999
        s_t   = (v_t - m_t^2) / (1 - rho_t)                (gradient variance)
        gamma = m_t^2 / (m_t^2 + rho_t * s_t)   in [0, 1], 0 where m_t = v_t = 0
        theta = theta - lr * wd * theta                     (decoupled, if wd > 0)
        theta = theta - lr * gamma * m_t

    rho_t * s_t estimates the variance of m_t itself, so gamma is the
    mean-squared-error-optimal shrinkage of the momentum direction m_t.

    Args:
        params: parameters or parameter groups (dicts), as for any torch optimizer.
        lr: step size. Default 0.1, as in the reference implementation; the paper's
            tuned rate on Fashion-MNIST is 0.3.
        beta: moving-average factor in [0, 1), 0.9 as in the reference implementation.
        weight_decay: decoupled weight decay factor (AdamW style), >= 0.
    """

    def __init__(
        self, params: Any, lr: float = 0.1, beta: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr=lr, beta=beta, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            for p, g, state in self._with_grads(group):
                # m, s, rho_t from the updated moving averages
                m, s, rho = _moments(p, g, state, group["beta"])
                # gamma = m^2 / (m^2 + rho * s), in [0, 1]
                m2 = m * m
                gamma = _ratio(m2, m2 + rho * s)
                # theta <- theta - lr * wd * theta
                self._decay(p, group)
                # theta <- theta - lr * gamma * m
                p.addcmul_(gamma, m, value=-group["lr"])
        return loss


class SVAG(FmnistOptimizer):
    r"""SVAG: SGD with variance adaptation (Balles & Hennig, 2018).

    The moving averages m_t, v_t and the variance estimate s_t are those of M-SVAG
    (rho_t capped at 0.999 likewise); the step uses the current gradient, whose
    variance is s_t itself rather than rho_t * s_t::

        gamma = m_t^2 / (m_t^2 + s_t)   in [0, 1], 0 where m_t = v_t = 0
        theta = theta - lr * wd * theta                     (decoupled, if wd > 0)
        theta = theta - lr * gamma * g_t

    This is the paper's SVAG with the variance estimate of the reference
    implementation, s_t = (v_t - m_t^2) / (1 - rho_t).

    Args:
        params: parameters or parameter groups (dicts), as for any torch optimizer.
        lr: step size. Default 0.1, as for M-SVAG (the paper tunes no SVAG rate).
        beta: moving-average factor in [0, 1), default 0.9.
        weight_decay: decoupled weight decay factor (AdamW style), >= 0.
    """

    def __init__(
        self, params: Any, lr: float = 0.1, beta: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, lr=lr, beta=beta, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            for p, g, state in self._with_grads(group):
                # m, s from the updated moving averages (rho_t only enters s here)
                m, s, _rho = _moments(p, g, state, group["beta"])
                # gamma = m^2 / (m^2 + s), in [0, 1]
                m2 = m * m
                gamma = _ratio(m2, m2 + s)
                # theta <- theta - lr * wd * theta
                self._decay(p, group)
                # theta <- theta - lr * gamma * g
                p.addcmul_(gamma, g, value=-group["lr"])
        return loss
