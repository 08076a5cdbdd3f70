"""What a comparison runs: the DeepOBS protocol, presets and the plan of cells.

Each (optimizer, learning rate, seed) is one cell, an ordinary training run with a
constant learning rate, scored before training and after every epoch on a fixed
10,000-image subset of the training set and on the validation split (and on the test set,
for the curves only). Learning rates are given per optimizer, default to the optimizer's,
or are chosen by a log-spaced grid search on validation accuracy, never on the test set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..config import RunConfig, setting
from ..errors import ConfigError

# DeepOBS: plain cross-entropy, constant learning rates, no augmentation; the final weights
# are scored (an optimizer is judged by where it ends, not by a checkpoint picked for it)
PROTOCOL = {"data": {"augment": False}, "optim": {"weight_decay": None},
            "train": {"schedule": "constant", "warmup_epochs": 0.0, "label_smoothing": 0.0,
                      "select": "last", "eval_test": True}}


MAX_SEEDS, MAX_GRID = 1000, 100  # beyond these a plan is a typo, not an experiment


@dataclass(frozen=True)
class Preset:
    description: str
    base: dict  # RunConfig parts, applied over the protocol
    optimizers: tuple[tuple[str, float | None], ...]  # (name, tuned lr; None: grid search)
    seeds: int = 3
    lr_grid: bool = False  # search each rate on the validation split (log grid)
    paper: dict = field(default_factory=dict)  # optimizer -> the paper's final test accuracy


# Balles & Hennig (2018), Fashion-MNIST, problem P1: network P1, inputs in [0, 1], all
# 60,000 training images, fp32, 6,000 steps of batch 64, constant rates, beta 0.9, 10 seeds,
# test loss and accuracy every 600 steps
PAPER = {"model": {"name": "p1"},
         "data": {"augment": False, "scaling": "unit", "val_size": 0},
         "train": {"steps": 6000, "eval_every": 600, "batch_size": 64, "precision": "fp32",
                   "schedule": "constant", "warmup_epochs": 0.0, "label_smoothing": 0.0}}

PRESETS = {
    "dissecting-adam": Preset(
        "Balles & Hennig 2018, Fashion-MNIST (P1): the paper's experiment. Network P1, pixels "
        "/ 255, all 60,000 training images (the preset tunes nothing, so no validation split), "
        "fp32, 6,000 steps of batch 64, the paper's constant rates, beta 0.9, 10 seeds, the "
        "test set scored every 600 steps", PAPER,
        (("msgd", 0.1), ("adam", 1e-3), ("mssd", 3e-4), ("msvag", 0.3)), seeds=10,
        # read off the paper's figure at 6,000 steps (final test accuracy)
        paper={"adam": 0.918, "mssd": 0.915, "msvag": 0.910, "msgd": 0.908}),
    "dissecting-adam-tuned": Preset(
        "P1 for 6,000 steps of batch 64 as in the paper, but with our standard inputs (zero "
        "mean, unit std) and each rate re-tuned on a 5,000-image validation split (a log grid "
        "around the optimizer's default, first seed): what a user of today's defaults "
        "should pick", {**PAPER, "data": {"augment": False, "scaling": "standard", "val_size": 5000},
                        "train": {**PAPER["train"], "precision": "auto"}},
        (("msgd", None), ("adam", None), ("mssd", None), ("msvag", None)), seeds=3, lr_grid=True),
}


def protocol_base(preset: str | None = None) -> RunConfig:
    """The base config of a comparison: the defaults, the protocol, then the preset's."""
    base = RunConfig().replace(**PROTOCOL)
    return base.replace(**PRESETS[preset].base) if preset else base


@dataclass(frozen=True)
class Cell:
    optimizer: str
    lr: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.optimizer}-lr{self.lr:g}-seed{self.seed}"

    def config(self, base: RunConfig) -> RunConfig:
        """The cell's run: the base with this optimizer, rate and seed (a --weight-decay and
        --opt-arg given for the comparison apply to every optimizer that takes them)."""
        return base.replace(optim={"name": self.optimizer, "lr": self.lr,
                                   "weight_decay": base.optim.weight_decay,
                                   "kwargs": base.optim.kwargs}, train={"seed": self.seed})


@dataclass(frozen=True)
class Plan:
    base: RunConfig  # model, data and training settings shared by every cell
    optimizers: tuple[tuple[str, float | None], ...]  # (name, lr or None: grid search)
    seeds: tuple[int, ...] = (0, 1, 2)
    grid_points: int = 5  # learning rates tried per optimizer, log-spaced
    grid_span: float = 10.0  # the grid runs from default/span to default*span
    preset: str | None = None
    keep_checkpoints: bool = False  # keep each cell's checkpoint.pt and best.pt
    extra: dict = field(default_factory=dict)  # recorded in plan.json (the command line)

    def __post_init__(self) -> None:
        if not self.optimizers:
            raise ConfigError("optimizers: name at least one, e.g. --optimizers sgd,adam")
        names = [name for name, _ in self.optimizers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # the chosen rates, the summary's rows and the ranking are keyed by name
            raise ConfigError(f"--optimizers: {', '.join(twice)} named twice; a comparison runs "
                              "one learning rate per optimizer: name each once (to compare rates "
                              "of one optimizer, use --lr-grid, or one comparison per rate)")
        if not 1 <= len(self.seeds) <= MAX_SEEDS:
            raise ConfigError(f"seeds: between 1 and {MAX_SEEDS}")
        if not 1 <= self.grid_points <= MAX_GRID:
            raise ConfigError(f"grid_points={self.grid_points}: must be in 1..{MAX_GRID}")
        if self.base.data.val_size <= 0 and any(lr is None for _, lr in self.optimizers):
            raise ConfigError("val_size: a grid search chooses rates on a validation split; "
                              "give --val-size > 0")
        for name, lr in self.optimizers:
            _default_lr(name)  # an unknown name fails here, listing the known ones
            if lr is not None and not (math.isfinite(lr) and lr > 0):
                raise ConfigError(f"learning rate of {name}: {lr} must be a finite number > 0")

    def grid(self, optimizer: str) -> list[Cell]:
        """The grid-search cells of an optimizer: its log grid on the first seed."""
        default = _default_lr(optimizer)
        return [Cell(optimizer, lr, self.seeds[0])
                for lr in lr_grid(default, self.grid_points, self.grid_span)]

    def notes(self) -> list[str]:
        """What a reader of the results should know about how they were obtained."""
        out = []
        if self.base.data.val_size == 0:
            out.append("no validation split: this plan tunes nothing (every rate is fixed), "
                       "so every training image trains, and results are final test figures")
        if self.preset and PRESETS[self.preset].paper:
            out.append("paper: the final test accuracy read off Balles & Hennig's figure")
        return out

    def describe(self) -> str:
        """What the command line prints before it starts: the preset, the notes, the cells."""
        t = self.base.train
        budget = f"{t.steps:,} steps" if t.steps else f"{t.epochs} epoch(s)"
        return "\n".join(([f"preset {self.preset}: {PRESETS[self.preset].description}"]
                          if self.preset else []) + self.notes() + [
            f"comparing {', '.join(n for n, _ in self.optimizers)} on {self.base.model.name}, "
            f"{len(self.seeds)} seed(s), {budget} each"])

    def settings(self) -> dict[str, Any]:
        """What plan.json records; a folder of other settings is refused (command aside)."""
        return {"base": self.base.to_dict(), "optimizers": [list(o) for o in self.optimizers],
                "seeds": list(self.seeds), "grid_points": self.grid_points,
                "grid_span": self.grid_span, "preset": self.preset}


def _default_lr(optimizer: str) -> float:
    from ..optim import OPTIMIZERS  # torch: imported when a plan is made, not for --help

    return OPTIMIZERS.get(optimizer).defaults["lr"]


def parse_optimizers(text: str) -> tuple[tuple[str, float | None], ...]:
    """'msgd,adam:1e-3' -> (('msgd', None), ('adam', 0.001))."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, lr = item.partition(":")
        try:
            out.append((name, float(lr) if lr else None))
        except ValueError:
            raise ConfigError(f"--optimizers {item!r}: write NAME or NAME:LR, e.g. adam:1e-3") from None
    return tuple(out)


def lr_grid(default: float, points: int, span: float) -> list[float]:
    """`points` learning rates, log-spaced from default/span to default*span."""
    if points == 1:
        return [default]
    exps = np.linspace(-1, 1, points)
    return [float(f"{default * span ** e:.3g}") for e in exps]


@dataclass(frozen=True)
class Options:
    """How `make_plan` builds a plan; `fmnist compare` derives its flags from these fields."""

    optimizers: str | None = setting(None, "e.g. msgd,adam:1e-3,msvag:0.3, each optimizer once "
                                     "(no LR: the optimizer's default, or --lr-grid)",
                                     metavar="NAME[:LR],...")
    preset: str | None = setting(None, "dissecting-adam: the paper's Fashion-MNIST experiment (P1, "
                                 "pixels / 255, 6,000 steps of batch 64, its rates, 10 seeds); "
                                 "dissecting-adam-tuned: each rate re-tuned on a validation split, "
                                 "standard inputs", choices=tuple(PRESETS))
    seeds: int | None = setting(None, "seeds per optimizer (none: 3, or the preset's)")
    # None: not given, so that --no-lr-grid overrides a preset that searches (default: off)
    lr_grid: bool | None = setting(None, "choose each learning rate not given by a log-spaced grid "
                                   "search (first seed, best final validation accuracy) "
                                   "(default: the --preset's when its optimizers run, else off)")
    grid_points: int = setting(5, "learning rates in the grid, default/10 .. default*10")
    keep_checkpoints: bool = setting(False, "keep each run's checkpoint.pt and best.pt")


def make_plan(optimizers: str | Sequence[tuple[str, float | None]] | None = None, *,
              preset: str | None = None, seeds: int | None = None, lr_grid: bool | None = None,
              grid_points: int = 5, overrides: dict[str, dict] | None = None,
              keep_checkpoints: bool = False, extra: dict | None = None) -> Plan:
    """The plan of a comparison, the same from Python as from `fmnist compare`.

    optimizers: 'msgd,adam:1e-3' or pairs; None: the preset's. A rate not given is the
    optimizer's default, or with `lr_grid` chosen by grid search (None: the preset's when its
    optimizers run, else off; False overrides a preset that searches). overrides: RunConfig
    parts applied over the protocol and preset (the command line's flags).
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    base = protocol_base(preset).replace(**(overrides or {}))
    if isinstance(optimizers, str):
        optimizers = parse_optimizers(optimizers)
    if not optimizers:
        if not preset:
            raise ConfigError("--optimizers: name the optimizers to compare, e.g. "
                              "--optimizers msgd,adam:1e-3,msvag (or use --preset)")
        optimizers = PRESETS[preset].optimizers
        given: dict = {}  # with --lr-grid, a preset's rates are searched afresh
        if lr_grid is None:  # --no-lr-grid given: each rate not fixed runs at its default
            lr_grid = PRESETS[preset].lr_grid
    else:
        given = {n: lr for n, lr in optimizers if lr is not None}
    if lr_grid:  # search every learning rate that was not given explicitly
        chosen = tuple((n, given.get(n)) for n, _ in optimizers)
    else:  # no grid: an optimizer without a learning rate runs at its default
        chosen = tuple((n, lr if lr is not None else _default_lr(n))
                       for n, lr in optimizers)
    n_seeds = seeds if seeds is not None else (PRESETS[preset].seeds if preset else 3)
    if not 1 <= n_seeds <= MAX_SEEDS:
        raise ConfigError(f"seeds={n_seeds}: must be in 1..{MAX_SEEDS}")
    return Plan(base, chosen, tuple(range(n_seeds)), grid_points=grid_points, preset=preset,
                keep_checkpoints=keep_checkpoints, extra=extra or {})
