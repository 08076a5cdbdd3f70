"""Dataclass configs, one per part; each checks its fields and names the bad one.

They compose into `RunConfig`, which is saved as config.json in the run directory. Each
field's metadata carries its help text (and, where the name is not the field's, its flag):
the command line is derived from these classes (flags.py), so a setting is written once.
`Facts` are what building a run resolved (classes, input scaling, model arguments...):
config.json records them so that using a run never needs the training data.
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
SELECTIONS = ("best", "last")
SCALINGS = ("standard", "unit")


def setting(default: Any = None, help: str = "", **meta: Any) -> Any:
    """A config field with its help text; `factory` for mutable defaults, `flag` to name
    the command-line flag, `choices`, `metavar`, `cli=False` to keep it off the CLI."""
    factory = meta.pop("factory", None)
    kw = {"default_factory": factory} if factory else {"default": default}
    return field(metadata={"help": help, **meta}, **kw)


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    """`name`: a field ("epochs=0: ...") or a flag ("--cv-epochs 0: ...")."""
    if not ok:
        raise ConfigError(f"{name} {value!r}: {why}" if name.startswith("--") else f"{name}={value!r}: {why}")


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a config field (flags.add_fields derives it the same way)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _check_numbers(obj: Any, flags: bool = False) -> None:
    """Every numeric field finite; every seed a valid 32-bit seed (numpy and torch agree).
    `flags`: name each field by its flag, for a config whose fields and flags differ
    (CrossValConfig's epochs is --cv-epochs)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = flag_of(f) if flags else f.name
        if isinstance(value, float):
            _check(math.isfinite(value), name, value, "must be a finite number")
        if f.name.endswith("seed"):
            _check(isinstance(value, int) and 0 <= value < 2**31, name, value,
                   "must be an integer in 0 .. 2**31-1")


def _check_types(obj: Any) -> None:
    """Every field of the type it declares (_check_type), first in __post_init__: a config
    built in Python (RunConfig().replace(train={"epochs": 1.5})) is held to what config.json
    is held to, before a range check compares "3" with 0 or a float batch size reaches the loop."""
    for f in dataclasses.fields(obj):
        _check_type(f, getattr(obj, f.name), f.name)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("fashion-mnist", "which data set (a registry name)")
    data_dir: str | None = setting(None, "folder holding the IDX files; when given, the only "
                                   "place searched (else $FMNIST_DATA/<dataset>, ~/.cache/fmnist, "
                                   "~/.keras/datasets, ./data/<TorchvisionName>/raw)", metavar="DIR")
    val_size: int = setting(5000, "validation images held out of the training split, "
                            "stratified (0 = none, then the last weights are scored)")
    split_seed: int = setting(0, "which images are held out for validation")
    train_limit: int | None = setting(None, "quick experiments: a stratified subset of N "
                                      "training images (validation included)", metavar="N")
    augment: bool | None = setting(None, "random crop and flip on the device (none: on for "
                                   "models with convolutions, off for the others)")
    crop_pad: int = setting(1, "random-crop padding in pixels (a shift of at most this)")
    flip: bool = setting(True, "random horizontal flips when augmenting (garments are "
                         "left-right symmetric)")
    erase: float = setting(0.0, "random-erasing probability when augmenting")
    scaling: str = setting("standard", "input scaling: standard (zero mean, unit std over the "
                           "training pixels) or unit (pixels / 255, in [0, 1])", choices=SCALINGS)
    exclude_test_overlap: bool = setting(False, "train without the training images whose pixels "
                                         "equal a test image's (exact duplicates, found by hashing; "
                                         "config.json records how many)")

    def __post_init__(self) -> None:
        _check_types(self)
        _check_numbers(self)
        _check(self.scaling in SCALINGS, "scaling", self.scaling, f"use one of {', '.join(SCALINGS)}")
        _check(self.val_size >= 0, "val_size", self.val_size, "must be >= 0")
        _check(self.train_limit is None or self.train_limit > self.val_size, "train_limit",
               self.train_limit, f"must exceed val_size={self.val_size}")
        _check(0 <= self.crop_pad <= 8, "crop_pad", self.crop_pad, "must be in 0..8")
        _check(0.0 <= self.erase <= 1.0, "erase", self.erase, "must be a probability in [0, 1]")


def _plain(value: Any, where: str) -> Any:
    """A keyword argument as config.json will hold it (tuples become lists), so a config
    read back equals the one written; anything JSON cannot carry is refused."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise ConfigError(f"{where}: {value!r} is not a number, string, list or mapping")


@dataclass(frozen=True)
class ModelConfig:
    name: str = setting("cnn", "model name (see `fmnist models`)", flag="--model")
    kwargs: dict = setting(help="model keyword, repeatable: --model-arg dropout=0.1",
                           factory=dict, flag="--model-arg")
    whiten: bool = setting(False, "initialise the first conv layer with the whitening of "
                           "training patches, +/- each leading eigenvector (airbench)")

    def __post_init__(self) -> None:
        _check_types(self)
        # the data set decides it (build passes its class count): a keyword would be ignored
        _check("num_classes" not in self.kwargs, "model.kwargs num_classes",
               self.kwargs.get("num_classes"), "the data set sets the number of classes; drop it")
        object.__setattr__(self, "kwargs", _plain(self.kwargs, "kwargs"))


@dataclass(frozen=True)
class OptimConfig:
    name: str = setting("nesterov", "optimizer name (see `fmnist optimizers`)", flag="--optimizer")
    lr: float | None = setting(None, "peak learning rate (none: the optimizer's own; another "
                               "--optimizer resets it to that one's)")
    weight_decay: float | None = setting(None, "weight decay on conv/linear weights (none: the "
                                         "optimizer's own; another --optimizer resets it)")
    kwargs: dict = setting(help="optimizer hyperparameter, repeatable: --opt-arg beta=0.9",
                           factory=dict, flag="--opt-arg")

    def __post_init__(self) -> None:
        _check_types(self)
        _check_numbers(self)
        object.__setattr__(self, "kwargs", _plain(self.kwargs, "kwargs"))
        for key in ("lr", "weight_decay"):
            _check(key not in self.kwargs, "kwargs", self.kwargs, f"give {key} with --"
                   f"{key.replace('_', '-')}, not --opt-arg")
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


MAX_EPOCHS = 10**9  # a billion epochs: no run gets near, and epochs * steps stays a float
MAX_STEPS = 10**15


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(15, "passes over the training split")
    steps: int | None = setting(None, "a budget of optimizer steps instead of --epochs (the "
                                "data cycled epoch after epoch; none: --epochs decides)")
    eval_every: int | None = setting(None, "evaluate and checkpoint every N steps (and at the "
                                     "end; none: after every epoch)", metavar="N")
    batch_size: int = setting(256, "images per step")
    schedule: str = setting("onecycle", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = setting(2.5, "linear warm-up in epochs (onecycle, cosine)")
    label_smoothing: float = setting(0.1, "cross-entropy label smoothing, in [0, 1)")
    hard_fraction: float = setting(0.0, "loss-weighted sampling (online batch selection): "
                                   "after the first epoch, each epoch draws passes of this "
                                   "fraction of the training images, the ones with the "
                                   "largest loss most often; 0: off, every epoch one "
                                   "shuffle of all", metavar="F")
    hard_pressure: float = setting(100.0, "loss-weighted sampling: the weight of the "
                                   "hardest image over the easiest's (1: all alike)",
                                   metavar="P")
    clip_grad: float | None = setting(None, "max global gradient norm (none: no clipping)")
    patience: int | None = setting(None, "early stopping: evaluations (epochs, or every "
                                   "--eval-every steps) without a better validation accuracy "
                                   "(none: off)")
    seed: int = setting(0, "seed of the weights, data order, augmentation and dropout")
    device: str = setting("auto", "auto: cuda when torch sees a GPU, else cpu", choices=DEVICES)
    precision: str = setting("auto", "auto: bf16 autocast on GPUs and on CPUs with bf16 "
                             "instructions, else fp32", choices=PRECISIONS)
    threads: int = setting(0, "CPU threads for torch (0: every usable core)")
    tta: bool = setting(False, "test-time augmentation: score each image and its mirror "
                        "image, averaged (validation and test alike)")
    tta_shifts: bool = setting(False, "at the final scoring (the test set, predictions, "
                               "exported models) also average the image moved one pixel "
                               "up, down, left and right; epochs are still chosen without")
    select: str = setting("best", "weights scored on the test set: best (by validation "
                          "accuracy; the last without a validation split) or last",
                          choices=SELECTIONS)
    eval_test: bool = setting(False, "also score the test set after every epoch, for the "
                              "curves only (nothing is chosen on it)")
    eval_subset: int = setting(10000, "training images scored each epoch (a fixed subset, "
                               "eval mode)")
    eval_batch_size: int = setting(1000, "images per forward pass when scoring")

    def __post_init__(self) -> None:
        _check_types(self)
        _check_numbers(self)
        # the upper bounds: far past any run, and below where the schedule's float arithmetic
        # (steps an epoch times epochs, warm-up steps) overflows into a traceback
        _check(0 <= self.epochs <= MAX_EPOCHS, "epochs", self.epochs, f"must be in [0, {MAX_EPOCHS:,}]")
        _check(self.steps is None or 1 <= self.steps <= MAX_STEPS, "steps", self.steps,
               f"must be in [1, {MAX_STEPS:,}]")
        _check(self.eval_every is None or 1 <= self.eval_every <= MAX_STEPS, "eval_every",
               self.eval_every, f"must be in [1, {MAX_STEPS:,}]")
        _check(self.batch_size > 0, "batch_size", self.batch_size, "must be > 0")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule,
               f"use one of {', '.join(SCHEDULES)}")
        _check(0 <= self.warmup_epochs <= MAX_EPOCHS, "warmup_epochs", self.warmup_epochs,
               f"must be in [0, {MAX_EPOCHS:,}]")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
               "must be in [0, 1)")
        # below 1%, a pass of a few images would make an epoch thousands of draws
        _check(self.hard_fraction == 0 or 0.01 <= self.hard_fraction <= 1, "hard_fraction",
               self.hard_fraction, "must be 0 (off) or in [0.01, 1]")
        _check(1 <= self.hard_pressure <= 1e6, "hard_pressure", self.hard_pressure,
               "must be in [1, 1e6] (1: every image alike)")
        _check(self.clip_grad is None or self.clip_grad > 0, "clip_grad", self.clip_grad,
               "must be > 0")
        _check(self.patience is None or self.patience > 0, "patience", self.patience,
               "must be > 0")
        _check(self.device in DEVICES, "device", self.device, f"use one of {', '.join(DEVICES)}")
        _check(self.precision in PRECISIONS, "precision", self.precision,
               f"use one of {', '.join(PRECISIONS)}")
        _check(self.threads >= 0, "threads", self.threads, "must be >= 0")
        _check(self.select in SELECTIONS, "select", self.select,
               f"use one of {', '.join(SELECTIONS)}")
        _check(self.eval_subset >= 0, "eval_subset", self.eval_subset, "must be >= 0")
        _check(self.eval_batch_size > 0, "eval_batch_size", self.eval_batch_size, "must be > 0")


PARTS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # the base every recipe is written over (recipes.py; the default recipe raises the
    # rate and shortens the run): Nesterov SGD, peak lr 0.2
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("nesterov", 0.2, 5e-4))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(self.train.patience is None or self.data.val_size > 0, "patience",
               self.train.patience, "early stopping watches the validation split: give "
               "val_size > 0 or drop patience")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> "RunConfig":
        """The config of a saved dict, checked as strictly as one from the command line."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: must be a JSON object, not {type(d).__name__}")
        parts = {}
        for key, part in PARTS.items():
            values = d.get(key, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: {key!r} must be an object of settings")
            known = {f.name for f in dataclasses.fields(part)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"{where}: {key}.{unknown[0]} is not a setting of this "
                                  "version of fmnist")
            try:  # each part checks its fields' types and ranges (_check_types)
                parts[key] = part(**values)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {key}.{exc}") from None
        return cls(**parts)

    def replace(self, **parts: Any) -> "RunConfig":
        """Copy with some parts changed: cfg.replace(train={"epochs": 3}).

        Naming another optimizer drops the learning rate, weight decay and keywords that
        were set for the old one (back to the new optimizer's defaults), and naming another
        model its keywords and whitening, unless they are given too.
        """
        for key, values in parts.items():
            if key not in PARTS or not isinstance(values, dict):
                raise ConfigError(f"replace({key}=...): give a part ({', '.join(PARTS)}) and "
                                  "a mapping of its settings")
            unknown = sorted(set(values) - {f.name for f in dataclasses.fields(PARTS[key])})
            if unknown:
                raise ConfigError(f"{key}.{unknown[0]} is not a setting of this version of fmnist")
        optim, model = parts.get("optim"), parts.get("model")
        if optim and optim.get("name", self.optim.name) != self.optim.name:
            parts["optim"] = {"lr": None, "weight_decay": None, "kwargs": {}, **optim}
        if model and model.get("name", self.model.name) != self.model.name:
            parts["model"] = {"kwargs": {}, "whiten": False, **model}
        new = {}
        for key, values in parts.items():
            try:
                new[key] = dataclasses.replace(getattr(self, key), **values)
            except ConfigError as exc:  # "epochs=1.5: ..." names the field; say whose
                raise ConfigError(f"{key}.{exc}") from None
        return dataclasses.replace(self, **new)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def _check_type(f: dataclasses.Field, value: Any, where: str) -> None:
    """A setting has its field's type: an int where an int belongs (a bool is no int here),
    None only where the field allows it."""
    alternatives = [t.strip() for t in str(f.type).split("|")]
    if value is None and "None" in alternatives:
        return
    for alt in alternatives:
        ok = _TYPES.get(alt, ())
        if isinstance(value, ok) and not (alt != "bool" and isinstance(value, bool)):
            if alt == "float" and isinstance(value, int) and not abs(value) < 2**1023:
                raise ConfigError(f"{where}={value}: too large for a number")
            return
    raise ConfigError(f"{where}={value!r}: must be {' or '.join(alternatives)}")


@dataclass(frozen=True)
class Facts:
    """What building a run resolved, recorded in config.json under "resolved": a reader
    (evaluate, predict, plots, export) rebuilds the model and scales inputs from these
    alone, as nanoGPT's checkpoints carry `model_args`."""

    num_classes: int  # outputs of the model
    class_names: tuple[str, ...]  # index -> name
    mean: float  # input scaling: x = (pixels / 255 - mean) / std
    std: float  # (scaling "unit": mean 0, std 1)
    model_args: dict  # every keyword the model factory was called with (num_classes too)
    augment: bool  # whether training batches were augmented (DataConfig.augment resolved)
    precision: str  # fp32 or bf16 (autocast) as trained
    train_size: int = 0  # images trained on, held out for validation, scored as test
    val_size: int = 0
    test_size: int = 0
    scaling: str = "standard"  # DataConfig.scaling; mean and std say what it does
    steps_per_epoch: int = 0  # optimizer steps in one pass over the training split
    test_overlap_excluded: int = 0  # training images dropped as copies of test images

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "facts") -> "Facts":
        try:
            facts = cls(**{**d, "class_names": tuple(d["class_names"])})
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"{where}: not the resolved facts of a run ({exc})") from None
        ok = (isinstance(facts.num_classes, int) and facts.num_classes >= 1
              and len(facts.class_names) == facts.num_classes
              and all(isinstance(n, str) for n in facts.class_names)
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in (facts.mean, facts.std))
              and facts.std > 0 and isinstance(facts.model_args, dict)
              and facts.model_args.get("num_classes") == facts.num_classes
              and isinstance(facts.precision, str) and isinstance(facts.scaling, str))
        if not ok:
            raise ConfigError(f"{where}: inconsistent values (classes, class names, mean, std, "
                              "model arguments, precision, scaling); restore the file written "
                              "by `fmnist train`")
        return facts
