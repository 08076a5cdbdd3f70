"""The optimizer registry: torch's optimizers and ours, by name, with their defaults.

    opt = build_optimizer("msvag", model.parameters(), lr=0.3)

Each entry is an OptimizerSpec: a factory, the full set of hyperparameters it takes with
their defaults, and a one-line description for --help and the docs. build_optimizer
merges the defaults with the caller's values (the caller's win) and checks them, so
every mistake is a ConfigError that names the field:

    sgd       lr 0.1,  weight_decay 0                 plain SGD
    momentum  lr 0.01, momentum 0.9, weight_decay 0   heavy-ball momentum (torch's
    nesterov  lr 0.01, momentum 0.9, weight_decay 0   buf = 0.9 * buf + g is ~10 g, so
                                                      0.01 here is ~0.1 for msgd)
    adam      lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0 (L2, coupled)
    adamw     lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01 (decoupled)
    msgd      lr 0.1,  beta 0.9, weight_decay 0       paper's tuned F-MNIST rate
    mssd      lr 3e-4, beta 0.9, weight_decay 0       paper's tuned F-MNIST rate
    ssd       lr 3e-4, weight_decay 0                 M-SSD's rate, untuned
    msvag     lr 0.1,  beta 0.9, weight_decay 0       reference implementation's
                                                      (paper's tuned F-MNIST rate: 0.3)
    svag      lr 0.1,  beta 0.9, weight_decay 0       as msvag, untuned

Adam's betas are two scalar hyperparameters, beta1 and beta2, so that every value is a
number a command line or config.json can carry. Weight decay in our optimizers is
decoupled (theta -= lr * wd * theta, as AdamW).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ..errors import ConfigError
from ..registry import Registry
from ._base import FmnistOptimizer, NoDynamo, check_hparams
from .msgd import MSGD
from .sign import MSSD, SSD
from .svag import MSVAG, RHO_MAX, SVAG

__all__ = [
    "MSGD", "MSSD", "MSVAG", "OPTIMIZERS", "RHO_MAX", "SSD", "SVAG", "FmnistOptimizer",
    "OptimizerSpec", "build_optimizer", "format_optimizer_table", "optimizer_table", "register_optimizer",
]

TorchOptimizer = torch.optim.Optimizer
Factory = Callable[..., TorchOptimizer]  # factory(params, **hp) -> optimizer


@dataclass(frozen=True, eq=False)  # eq=False: hashable despite the dict
class OptimizerSpec:
    """One registry entry; defaults name every hyperparameter the factory takes."""

    name: str  # the registry key, as typed on the command line
    factory: Factory  # factory(params, **hp) -> torch.optim.Optimizer
    defaults: dict[str, Any] = field(default_factory=dict)  # hyperparameter -> default
    description: str = ""  # one line, for --help and the docs

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"optimizer name {self.name!r} must be non-empty, without spaces")
        if "\n" in self.description:
            raise ValueError(f"optimizer {self.name!r}: description must be one line")
        # a private copy: a caller editing the dict it passed must not change the entry
        object.__setattr__(self, "defaults", dict(self.defaults))
        check_hparams(self.defaults, f"optimizer {self.name!r} defaults")
        params = inspect.signature(self.factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            missing = sorted(set(self.defaults) - set(params))
            if missing:
                raise ValueError(f"optimizer {self.name!r}: factory takes no {', '.join(missing)}")

    @property
    def hyperparameters(self) -> list[str]:
        """The names build_optimizer accepts for this optimizer, sorted."""
        return sorted(self.defaults)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def register_optimizer(
    name: str, factory: Factory, defaults: dict[str, Any], description: str
) -> OptimizerSpec:
    """Add an optimizer to OPTIMIZERS; a duplicate name raises ValueError."""
    return OPTIMIZERS.add(name, OptimizerSpec(name, factory, defaults, description))


def build_optimizer(name: str, params: Iterable[Any], **hp: Any) -> TorchOptimizer:
    """The optimizer `name` over params (tensors or param-group dicts).

    hp overrides the entry's defaults; a value of None means "the default", so a CLI
    can pass its unset flags through. Raises UnknownNameError for an unknown name (the
    message lists the known ones) and ConfigError for a hyperparameter the optimizer
    does not take or an impossible value, naming the field.
    """
    spec = OPTIMIZERS.get(name)
    hp = {k: v for k, v in hp.items() if v is not None}
    unknown = sorted(set(hp) - set(spec.defaults))
    if unknown:
        raise ConfigError(
            f"optimizer {name!r} takes no {', '.join(unknown)}; "
            f"it takes: {', '.join(spec.hyperparameters)}"
        )
    merged = {**spec.defaults, **hp}
    check_hparams(merged, f"optimizer {name!r}")
    try:
        return spec.factory(params, **merged)
    except ConfigError:
        raise
    except ValueError as err:  # torch's own checks (nesterov without momentum, ...)
        raise ConfigError(f"optimizer {name!r}: {err}") from err


def optimizer_table() -> list[tuple[str, dict[str, Any], str]]:
    """(name, defaults, description) for every optimizer, sorted by name."""
    specs = [OPTIMIZERS.get(name) for name in OPTIMIZERS]
    return [(spec.name, dict(spec.defaults), spec.description) for spec in specs]


def format_optimizer_table() -> str:
    """`fmnist optimizers`: each name with its description, then its defaults."""
    rows = optimizer_table()
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {description}\n{'':<{width}}  defaults: "
                     + ", ".join(f"{k}={v}" for k, v in defaults.items())
                     for name, defaults, description in rows)


# --- torch's optimizers, behind factories whose keywords are our hyperparameter names


def _no_dynamo(cls: type[TorchOptimizer]) -> type[TorchOptimizer]:
    """torch's optimizer class without its imports of torch._dynamo (see NoDynamo): the
    update rule and the state_dict format stay torch's own."""
    raw_step = getattr(cls.step, "__wrapped__", cls.step)

    def step(self: TorchOptimizer, closure: Any = None) -> Any:
        # what torch's @_use_grad_for_differentiable does, less its dynamo graph break
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return raw_step(self, closure)

    # found by pickle (processes and Ray send runs' parts) as fmnist.optim._Adam etc.
    return type(cls.__name__, (NoDynamo, cls),
                {"step": step, "__module__": __name__, "__qualname__": f"_{cls.__name__}"})


_SGD, _Adam, _AdamW = (_no_dynamo(c) for c in (torch.optim.SGD, torch.optim.Adam,
                                              torch.optim.AdamW))


def _fused(params: Any) -> tuple[list, bool]:
    """(params as a list, whether torch's fused kernel can step them all): one kernel a
    parameter instead of a dozen small ops, 2x faster steps of a small model on a CPU
    (one core: the mlp's Adam 0.35 -> 0.14 ms a step, the cnn's Nesterov 0.48 -> 0.24)."""
    groups = [dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in params]
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    return groups, all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)


def _sgd(params: Any, lr: float, weight_decay: float) -> TorchOptimizer:
    params, fused = _fused(params)
    return _SGD(params, lr=lr, weight_decay=weight_decay, fused=fused)


def _momentum(params: Any, lr: float, momentum: float, weight_decay: float) -> TorchOptimizer:
    params, fused = _fused(params)
    return _SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)


def _nesterov(params: Any, lr: float, momentum: float, weight_decay: float) -> TorchOptimizer:
    params, fused = _fused(params)
    return _SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True,
                fused=fused)


def _adam(
    params: Any, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> TorchOptimizer:
    params, fused = _fused(params)
    return _Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                 fused=fused)


def _adamw(
    params: Any, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> TorchOptimizer:
    params, fused = _fused(params)
    return _AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                  fused=fused)


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
_OURS = {"lr": 0.1, "beta": 0.9, "weight_decay": 0.0}  # M-SVAG's reference defaults
_PAPER = "Balles & Hennig 2018"

for _name, _factory, _defaults, _description in [
    ("sgd", _sgd, {"lr": 0.1, "weight_decay": 0.0},
     "plain stochastic gradient descent (torch SGD)"),
    ("momentum", _momentum, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
     "SGD with heavy-ball momentum (torch SGD)"),
    ("nesterov", _nesterov, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
     "SGD with Nesterov momentum (torch SGD)"),
    ("adam", _adam, {**_ADAM, "weight_decay": 0.0},
     "Adam (torch Adam; weight_decay is an L2 term in the gradient)"),
    ("adamw", _adamw, {**_ADAM, "weight_decay": 0.01}, "AdamW: Adam with decoupled weight decay"),
    ("msgd", MSGD, _OURS,
     f"M-SGD: step along the bias-corrected moving average of the gradient ({_PAPER})"),
    ("mssd", MSSD, {**_OURS, "lr": 3e-4},
     f"M-SSD: momentum sign descent, step along sign(moving average) ({_PAPER})"),
    ("ssd", SSD, {"lr": 3e-4, "weight_decay": 0.0},
     f"SSD: stochastic sign descent, step along sign(g) ({_PAPER})"),
    ("msvag", MSVAG, _OURS,
     f"M-SVAG: momentum SGD, each coordinate shrunk by its signal-to-noise ratio ({_PAPER})"),
    ("svag", SVAG, _OURS,
     f"SVAG: SGD, each coordinate shrunk by its signal-to-noise ratio ({_PAPER})"),
]:
    register_optimizer(_name, _factory, _defaults, _description)
del _name, _factory, _defaults, _description
