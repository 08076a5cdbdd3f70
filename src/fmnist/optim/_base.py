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

# Elements per block of the CPU update path (FmnistOptimizer._blocks): 1 MiB of float32
# per tensor, so that the blocks of a parameter, its gradient, its state and the scratch
# (6 MiB for M-SVAG) stay in the cache between the passes of an update rule. M-SVAG on
# p1, 1 thread, ms a step by block size: 2^16 7.6, 2^17 6.6, 2^18 6.3, 2^19 6.3, 2^20 7.6,
# whole tensors 9.8 (smaller blocks pay the per-call overhead, larger ones miss the cache)
BLOCK = 1 << 18


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


def _undecorated(name: str) -> Callable:
    # torch.optim.Optimizer wraps add_param_group, zero_grad, state_dict and load_state_dict
    # in torch._dynamo.disable on their first call, and importing torch._dynamo (sympy and
    # inductor with it) costs as much as importing torch: ~1.3 s of a 4-second mlp run on
    # one core. We never compile an optimizer, so ours call the functions themselves.
    fn = getattr(Optimizer, name)
    return getattr(fn, "__wrapped__", fn)


class NoDynamo:
    """Mixin before an Optimizer class: its bookkeeping without importing torch._dynamo."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _undecorated("add_param_group")(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _undecorated("zero_grad")(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _undecorated("state_dict")(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _undecorated("load_state_dict")(self, state_dict)


class FmnistOptimizer(NoDynamo, Optimizer):
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
    def _count_step(p: torch.Tensor, state: dict, *buffers: str) -> int:
        """Create the state on first use (step 0 and zero-filled buffers like p), count
        the step and return it: t = 1, 2, ..."""
        if not state:  # first step of this parameter
            state["step"] = 0
            for name in buffers:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state["step"]

    def _blocks(
        self, tensors: tuple[torch.Tensor, ...], scratch: int = 0
    ) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """(slices, buffers) for each block of `tensors` (a parameter, its gradient, its
        state: one shape), so that an update rule runs all its passes over one block at a
        time; buffers are `scratch` tensors of the slices' shape and dtype, for results.

        On the CPU, with every tensor laid out alike in one dense stretch of memory
        (contiguous, or all channels_last, ...), the blocks are flat slices of at most
        BLOCK elements, and the buffers come from a pool kept across blocks, parameters
        and steps: the passes after the first find the block in the cache instead of
        reading memory again, and no step allocates (a fresh 13 MB temporary costs a page
        fault per 4 KiB, on every step). Elsewhere (CUDA, or tensors of different
        layouts) the one block is the whole tensors, with fresh buffers: a GPU gains
        nothing from blocks but more kernel launches.
        """
        first = tensors[0]
        # the dimensions from the largest stride down: the order of first in memory
        order = sorted(range(first.dim()), key=lambda d: -first.stride(d))
        if (first.device.type != "cpu"
                or any(t.stride() != first.stride() for t in tensors)
                or not first.permute(order).is_contiguous()):
            yield list(tensors), [torch.empty_like(first) for _ in range(scratch)]
            return
        # one permutation for all, so the i-th element of every flat view is the same
        # coordinate: elementwise rules do not care about the order
        flat = [t.permute(order).view(-1) for t in tensors]
        n = first.numel()
        pool = self._pool(first.dtype, scratch, min(n, BLOCK))
        for start in range(0, n, BLOCK):
            stop = min(n, start + BLOCK)
            yield [f[start:stop] for f in flat], [b[: stop - start] for b in pool]

    def _pool(self, dtype: torch.dtype, count: int, size: int) -> list[torch.Tensor]:
        """`count` CPU buffers of dtype and >= size elements, the same tensors on every
        call. Kept on the optimizer, out of its state: state_dict and checkpoints never
        see them, and pickling drops them."""
        pool = self.__dict__.setdefault("_scratch_pool", {})  # absent after unpickling
        buffers = pool.setdefault(dtype, [])
        for i in range(count):
            if i == len(buffers):
                buffers.append(torch.empty(size, dtype=dtype))
            elif buffers[i].numel() < size:  # grown to the largest block seen, <= BLOCK
                buffers[i] = torch.empty(size, dtype=dtype)
        return buffers[:count]

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
