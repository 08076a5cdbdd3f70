"""M-SGD: momentum SGD along the bias-corrected moving average of the gradient.

Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic
Gradients", ICML 2018 (arXiv:1705.07774), the momentum baseline of their 2x2 grid
(M-SGD, M-SSD, M-SVAG, Adam).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._base import FmnistOptimizer


class MSGD(FmnistOptimizer):
    r"""Momentum SGD with an exponential moving average, as in Balles & Hennig (2018).

    With g_t the stochastic gradient at step t = 1, 2, ...::

        m~_t  = beta * m~_{t-1} + (1 - beta) * g_t        (m~_0 = 0)
        m_t   = m~_t / (1 - beta^t)                        (bias correction)
        theta = theta - lr * wd * theta                    (decoupled, if wd > 0)
        theta = theta - lr * m_t

    Unlike torch's heavy-ball momentum (buf = mu * buf + g), the average is normalised,
    so the step has the scale of one gradient and the lr needs no (1 - beta) rescaling:
    torch SGD(lr=0.01, momentum=0.9) is close to MSGD(lr=0.1, beta=0.9).

    Args:
        params: parameters or parameter groups (dicts), as for any torch optimizer.
        lr: step size; 0.1 is the paper's tuned rate for M-SGD on Fashion-MNIST.
        beta: moving-average factor in [0, 1); 0 gives plain SGD.
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
            lr, beta = group["lr"], group["beta"]
            for p, g, state in self._with_grads(group):
                t = self._count_step(p, state, "exp_avg")
                m_avg = state["exp_avg"]
                # m~ <- beta * m~ + (1 - beta) * g, as m~ + (1 - beta) (g - m~): one pass
                # instead of mul_ and add_ (p1, 1 thread: 2.6 ms a step, was 3.3). Two
                # passes in all, too few for blocks to pay (2.9 ms whole, 3.6 in blocks)
                m_avg.lerp_(g, 1.0 - beta)
                # theta <- theta - lr * wd * theta
                self._decay(p, group)
                # theta <- theta - lr * m~ / (1 - beta^t), the bias-corrected average
                p.add_(m_avg, alpha=-lr / (1.0 - beta**t))
        return loss
