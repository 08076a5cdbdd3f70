"""Out-of-sample class probabilities by k-fold cross-validation, through the project's own
build and training loop: each fold's model is built by `build` and trained by `loop.fit`
on the other folds, then scores the fold it never saw. Confident learning (data/audit.py)
needs exactly this: a probability for every image from a model that did not train on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import Facts, RunConfig, _check, _check_numbers, setting

# Every fold trains in fp32, whatever the machine: "auto" would pick bf16 autocast on GPUs and
# on CPUs with bf16 instructions and fp32 elsewhere, and the suspects' count and the accuracies
# would then move between machines for the same data and settings (and the cache key would
# not say why). The audit's model is small; fp32 costs it little.
PRECISION = "fp32"


@dataclass(frozen=True)
class CrossValConfig:
    folds: int = setting(5, "cross-validation folds: each image is scored by a model trained "
                         "on the other folds")
    model: str = setting("mlp", "the model trained in each fold (a fast one: probabilities, "
                         "not accuracy records, are the point)", flag="--cv-model")
    epochs: int = setting(6, "epochs per fold", flag="--cv-epochs")
    seed: int = setting(0, "folds, weights and data order", flag="--cv-seed")

    def __post_init__(self) -> None:
        # named by their flags: "epochs=0" would not say which of the audit's settings it is
        _check_numbers(self, flags=True)
        _check(2 <= self.folds <= 20, "--folds", self.folds, "must be in 2..20")
        _check(1 <= self.epochs <= 100, "--cv-epochs", self.epochs, "must be in 1..100")
        # a misspelt --cv-model is refused here, not when the first fold is built after a
        # minute of duplicate scans (models.py imports torch only when a model is built)
        from .models import MODELS

        _check(self.model in MODELS, "--cv-model", self.model,
               f"unknown model; give --cv-model one of {', '.join(MODELS.names())}")

    def run_config(self) -> RunConfig:
        """The training settings of every fold, fixed here so that an audit's numbers do not
        move when a recipe is retuned: Adam 4e-3 one-cycle at batch 256 (the mlp reaches
        89% in 6 epochs), no augmentation, no validation split, the last weights, and no label
        smoothing, which would cap every probability at 0.9 and blur the confidences
        confident learning ranks. fp32 (PRECISION) on every machine."""
        return RunConfig().replace(
            data={"val_size": 0, "augment": False}, model={"name": self.model},
            optim={"name": "adam", "lr": 4e-3, "weight_decay": 0.0},
            train={"epochs": self.epochs, "batch_size": 256, "warmup_epochs": min(1.0, self.epochs / 3),
                   "label_smoothing": 0.0, "seed": self.seed, "select": "last", "eval_subset": 0,
                   "precision": PRECISION})


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold number of each image: every class dealt round-robin over the folds after a
    seeded shuffle, so each fold holds each class in proportion."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % folds
    return fold


def out_of_sample(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                  mean: float, std: float, cfg: CrossValConfig, extra: np.ndarray | None = None,
                  log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(probs (N, C) of `images`, each from the fold model that did not see it; probs of
    `extra` (e.g. the test split) from one more model trained on all of `images`, or None)."""
    fold = stratified_folds(labels, cfg.folds, cfg.seed)
    probs = np.zeros((len(images), len(class_names)))
    for k in range(cfg.folds):
        held = fold == k
        probs[held] = _train_and_score(images[~held], labels[~held], images[held], class_names,
                                       mean, std, cfg)
        if log:
            acc = (probs[held].argmax(1) == labels[held]).mean()
            log(f"fold {k + 1}/{cfg.folds}: {cfg.model} scores its {held.sum():,} held-out "
                f"images at {100 * acc:.2f}%")
    extra_probs = None
    if extra is not None and len(extra):
        extra_probs = _train_and_score(images, labels, extra, class_names, mean, std, cfg)
    return probs, extra_probs


def _train_and_score(x: np.ndarray, y: np.ndarray, held: np.ndarray, class_names: tuple[str, ...],
                     mean: float, std: float, cfg: CrossValConfig) -> np.ndarray:
    from .build import build
    from .data.batches import DeviceData
    from .evaluate import probabilities
    from .loop import fit
    from .prepare import TrainData

    config = cfg.run_config()
    facts = Facts(len(class_names), tuple(class_names), mean, std,
                  {"num_classes": len(class_names)}, False, config.train.precision)
    parts = build(config, data=False, facts=facts)
    none = np.zeros((0, 28, 28), np.uint8)

    def on_device(images: np.ndarray, labels: np.ndarray) -> DeviceData:
        return DeviceData(images, labels, mean, std, parts.device)

    # no validation split and no training subset to score: the loop skips empty splits
    parts.data = TrainData(train=on_device(x, y), val=on_device(none, none[:, 0, 0]),
                           train_eval=on_device(none, none[:, 0, 0]),
                           test=on_device(held, np.zeros(len(held), np.int64)),
                           class_names=tuple(class_names), mean=mean, std=std)
    fit(parts, config.train)
    return probabilities(parts.model, parts.data.test, config.train.eval_batch_size, parts.autocast)
