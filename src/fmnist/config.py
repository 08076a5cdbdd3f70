"""Dataclass configs, one per part; each checks its fields and names the bad one.

They compose into `RunConfig`, which is saved as config.json in the run directory.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SCHEDULES = ("constant", "step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {why}")


def _check_numbers(obj: Any) -> None:
    """Every numeric field finite; every seed a valid 32-bit seed (numpy and torch agree)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float):
            _check(math.isfinite(value), f.name, value, "must be a finite number")
        if f.name.endswith("seed"):
            _check(isinstance(value, int) and 0 <= value < 2**31, f.name, value,
                   "must be an integer in 0 .. 2**31-1")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion-mnist"  # registry name
    data_dir: str | None = None  # explicit folder of IDX files; None: search (see fmnist.data)
    val_size: int = 5000  # images held out of the 60k for validation (stratified); 0: none
    split_seed: int = 0  # which images go to validation; fixed apart from the run seed
    train_limit: int | None = None  # use a stratified subset of this many training images
    augment: bool | None = None  # crop+flip on the device; None: on for CNNs, off for MLPs
    crop_pad: int = 1  # random crop after zero padding by this many pixels (shift <= 1 px)
    flip: bool = True  # random horizontal flip (garments are left-right symmetric)
    erase: float = 0.0  # probability of random erasing (a rectangle set to 0)

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(self.val_size >= 0, "val_size", self.val_size, "must be >= 0")
        _check(self.train_limit is None or self.train_limit > self.val_size, "train_limit",
               self.train_limit, f"must exceed val_size={self.val_size}")
        _check(0 <= self.crop_pad <= 8, "crop_pad", self.crop_pad, "must be in 0..8")
        _check(0.0 <= self.erase <= 1.0, "erase", self.erase, "must be a probability in [0, 1]")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cnn"  # registry name: see `fmnist models`
    kwargs: dict = field(default_factory=dict)  # passed to the factory, e.g. {"dropout": 0.1}


@dataclass(frozen=True)
class OptimConfig:
    name: str = "nesterov"  # registry name: see `fmnist optimizers`
    lr: float | None = None  # peak learning rate; None: the optimizer's default
    weight_decay: float | None = None  # on conv/linear weights only; None: the optimizer's
    kwargs: dict = field(default_factory=dict)  # other hyperparameters, e.g. {"beta": 0.9}

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(self.lr is None or self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.weight_decay is None or self.weight_decay >= 0, "weight_decay",
               self.weight_decay, "must be >= 0")

    def hyperparameters(self) -> dict:
        hp = dict(self.kwargs)
        if self.lr is not None:
            hp["lr"] = self.lr
        if self.weight_decay is not None:
            hp["weight_decay"] = self.weight_decay
        return hp


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15  # passes over the training split
    batch_size: int = 256  # images per step
    schedule: str = "onecycle"  # learning-rate schedule, one of SCHEDULES
    warmup_epochs: float = 2.5  # linear warm-up (onecycle, cosine), in epochs
    label_smoothing: float = 0.1  # cross-entropy label smoothing in [0, 1)
    clip_grad: float | None = None  # max global gradient norm; None: no clipping
    patience: int | None = None  # stop after this many epochs without a better val acc
    seed: int = 0  # weights, data order, augmentation, dropout
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); auto: bf16 where the hardware has it
    threads: int = 0  # CPU threads for torch; 0: every core this process may use
    tta: bool = False  # score images and their mirror images, averaged (val and test alike)
    eval_subset: int = 10000  # training images scored each epoch (fixed subset, eval mode)
    eval_batch_size: int = 1000  # images per forward pass when scoring

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(self.epochs >= 0, "epochs", self.epochs, "must be >= 0")
        _check(self.batch_size > 0, "batch_size", self.batch_size, "must be > 0")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule,
               f"use one of {', '.join(SCHEDULES)}")
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
               "must be in [0, 1)")
        _check(self.clip_grad is None or self.clip_grad > 0, "clip_grad", self.clip_grad,
               "must be > 0")
        _check(self.patience is None or self.patience > 0, "patience", self.patience,
               "must be > 0")
        _check(self.device in DEVICES, "device", self.device, f"use one of {', '.join(DEVICES)}")
        _check(self.precision in PRECISIONS, "precision", self.precision,
               f"use one of {', '.join(PRECISIONS)}")
        _check(self.threads >= 0, "threads", self.threads, "must be >= 0")
        _check(self.eval_subset >= 0, "eval_subset", self.eval_subset, "must be >= 0")
        _check(self.eval_batch_size > 0, "eval_batch_size", self.eval_batch_size, "must be > 0")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # the default recipe (measured with benchmarks/train.py): Nesterov SGD, peak lr 0.2
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("nesterov", 0.2, 5e-4))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(self.train.patience is None or self.data.val_size > 0, "patience",
               self.train.patience, "early stopping watches the validation split: give "
               "val_size > 0 or drop patience")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        parts = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
                 "train": TrainConfig}
        try:
            return cls(**{k: parts[k](**d.get(k, {})) for k in parts})
        except TypeError as exc:  # an unknown or missing field in a saved config
            raise ConfigError(f"config does not match this version of fmnist: {exc}") from None

    def replace(self, **parts: Any) -> "RunConfig":
        """Copy with some parts changed: cfg.replace(train={"epochs": 3}).

        Naming another optimizer drops the learning rate and weight decay that were set
        for the old one (back to the new optimizer's defaults) unless they are given too.
        """
        optim = parts.get("optim")
        if optim and optim.get("name", self.optim.name) != self.optim.name:
            parts["optim"] = {"lr": None, "weight_decay": None, **optim}
        new = {k: dataclasses.replace(getattr(self, k), **v) for k, v in parts.items()}
        return dataclasses.replace(self, **new)
