"""M-SVAG and SVAG: (momentum) stochastic variance-adapted gradient.

Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic
Gradients", ICML 2018 (arXiv:1705.07774); reference implementation (TensorFlow):
https://github.com/lballes/msvag. Both shrink each coordinate of the step by
gamma in [0, 1], which is near 1 where the gradient's mean dominates its noise and
near 0 where noise dominates, estimated from moving averages of g and g * g.

Choices, all those of the reference implementation:
- rho_t is capped at RHO_MAX = 0.9999, as in the reference's current version (its first
  version capped at 0.999). rho_t equals 1 at t = 1 (and at every t when beta = 0),
  where s = (v - m^2) / (1 - rho) would divide by zero; there v = m^2 (one gradient, or
  beta = 0: m = g, v = g^2), so the cap's value does not matter. From t = 2 on
  rho_t <= rho_2 = (1 + beta^2) / (1 + beta)^2, which is below the cap for
  beta > 5.0005e-5 (below 0.999 for beta > 5.005e-4). For 0 < beta < 5e-5 rho_t stays
  above the cap at every t (its limit is (1 - beta) / (1 + beta)): there the cap
  decides every step from t = 2 on.
- gamma is clipped to [0, 1] (v - m^2 can round below zero) and set to 0 where its
  denominator is <= 0, which in exact arithmetic is only 0 / 0, where m = v = 0: a
  coordinate whose gradients were all 0.

The step computes gamma without forming m, v or s. With a = m~, b = v~, c = 1 - beta^t
(so m = a / c, v = b / c) and k = rho / (1 - rho) (M-SVAG) or 1 / (1 - rho) (SVAG),
multiplying numerator and denominator by c^2 > 0 gives

    gamma = a^2 / ((1 - k) a^2 + k c b),

whose denominator has the sign of the original one; M-SVAG's step lr * gamma * m is
(lr / c) * gamma * a. On the CPU every pass runs over one cache-sized block at a time
(FmnistOptimizer._blocks), with the scratch kept from step to step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._base import FmnistOptimizer

RHO_MAX = 0.9999  # cap on rho_t, which is 1 at t = 1 (see the module docstring)


def variance_factor(beta: float, t: int) -> float:
    """rho_t, capped at RHO_MAX: the variance of the bias-corrected moving average m
    of t i.i.d. gradients, as a fraction of the variance of one gradient."""
    rho = (1 - beta) ** 2 * (1 - beta ** (2 * t)) / ((1 - beta**t) ** 2 * (1 - beta**2))
    return min(rho, RHO_MAX)


def _variance_adapted_step(opt: FmnistOptimizer, group: dict[str, Any], momentum: bool) -> None:
    """One step of M-SVAG (momentum: along m) or SVAG (along g) for one parameter group.

    10 elementwise passes (11 with weight decay) over one cache-sized block at a time,
    so that from memory theta, g, m~ and v~ are read once and theta, m~ and v~ written
    once. The step before (m, v, s and gamma each a fresh full-size tensor, ~15 passes
    over memory) took 7 to 10x as long on p1 (1 and 2 threads).
    """
    lr, beta = group["lr"], group["beta"]
    for p, g, state in opt._with_grads(group):
        t = opt._count_step(p, state, "exp_avg", "exp_avg_sq")
        # c = 1 - beta^t: m = m~ / c and v = v~ / c undo the zero start
        c = 1.0 - beta**t
        # rho_t, capped at RHO_MAX: the share of one gradient's variance left in m
        rho = variance_factor(beta, t)
        # gamma = m^2 / (m^2 + k (v - m^2)): k = rho / (1 - rho) weighs rho * s, the
        # variance of m (M-SVAG); k = 1 / (1 - rho) weighs s, that of g (SVAG)
        k = (rho if momentum else 1.0) / (1.0 - rho)
        tensors = (p, g, state["exp_avg"], state["exp_avg_sq"])
        for (theta, grad, m_avg, v_avg), (num, den) in opt._blocks(tensors, 2):
            # m~ <- beta * m~ + (1 - beta) * g, as m~ + (1 - beta) (g - m~): one pass
            m_avg.lerp_(grad, 1.0 - beta)
            # v~ <- beta * v~ + (1 - beta) * g * g
            v_avg.mul_(beta).addcmul_(grad, grad, value=1.0 - beta)
            # num = m~^2 = c^2 m^2
            torch.mul(m_avg, m_avg, out=num)
            # den = (1 - k) m~^2 + k c v~ = c^2 (m^2 + k (v - m^2))
            torch.mul(v_avg, k * c, out=den).add_(num, alpha=1.0 - k)
            # gamma = num / den, 0 where den <= 0, clipped to [0, 1]. As num >= 0, num / den
            # is <= 0 where den < 0, and +-inf or NaN (x / 0, 0 / 0) only where den = 0:
            # where den > 0, den >= num in exact arithmetic, and rounding never takes it
            # below num / (largest float32 or float64), so the ratio does not overflow.
            # nan_to_num_ and clamp_ are fast vectorised kernels; a bool mask (le,
            # masked_fill_) made the step 1.9x slower (p1, 1 thread)
            gamma = num.div_(den).nan_to_num_(0.0, 0.0, 0.0).clamp_(0.0, 1.0)
            # theta <- theta - lr * wd * theta
            opt._decay(theta, group)
            if momentum:
                # theta <- theta - lr * gamma * m, with m = m~ / c
                theta.addcmul_(gamma, m_avg, value=-lr / c)
            else:
                # theta <- theta - lr * gamma * g
                theta.addcmul_(gamma, grad, value=-lr)


class MSVAG(FmnistOptimizer):
    r"""M-SVAG: momentum SGD with variance adaptation (Balles & Hennig, 2018).

    With g_t the stochastic gradient at step t = 1, 2, ...::

        m~_t  = beta * m~_{t-1} + (1 - beta) * g_t         (m~_0 = 0)
        v~_t  = beta * v~_{t-1} + (1 - beta) * g_t^2       (v~_0 = 0)
        m_t   = m~_t / (1 - beta^t),   v_t = v~_t / (1 - beta^t)
        rho_t = (1-beta)^2 (1-beta^(2t)) / ((1-beta^t)^2 (1-beta^2)),  capped at RHO_MAX
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
            _variance_adapted_step(self, group, momentum=True)
        return loss


class SVAG(FmnistOptimizer):
    r"""SVAG: SGD with variance adaptation (Balles & Hennig, 2018).

    The moving averages m_t, v_t and the variance estimate s_t are those of M-SVAG
    (rho_t capped at RHO_MAX likewise); the step uses the current gradient, whose
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
            _variance_adapted_step(self, group, momentum=False)
        return loss
