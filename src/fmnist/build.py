"""config -> the parts of a run: data on the device, model, optimizer, device, precision.

The only place that builds them: training, resuming, loading a finished run, every cell
of a comparison and the checks before a run all call `build`, so they cannot disagree
about what a run is. What the build resolved (classes, input scaling, model arguments,
augmentation, precision) comes back as `Facts`, which the run directory records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from .config import Facts, RunConfig
from .data import get_source
from .data.batches import Augment
from .device import (autocast_factory, check_threads, resolve_device, resolve_precision,
                     uses_convolutions)
from .errors import ConfigError
from .models import build_model, whiten_first_conv
from .optim import build_optimizer
from .prepare import TrainData, prepare_data

Autocast = Callable[[], ContextManager]
# training images whose patches the whitened first layer is computed from: the leading
# eigenvectors of a 36x36 covariance settle long before this (~0.1 s on one core)
WHITEN_IMAGES = 2000


@dataclass
class Parts:
    """Everything a training loop or a reader of a run needs, built from one config."""

    config: RunConfig
    facts: Facts
    device: torch.device
    autocast: Autocast  # the forward pass's precision context
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None  # None when built only to score
    data: TrainData | None  # None when built without data (loading a run, checks)
    augment: Augment | None  # training batches' augmentation, None: off


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Weight decay on conv and linear weights only: decaying batch-norm scales and biases
    only fights the normalisation (the usual practice, as in timm and airbench)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [g for g in ({"params": decay}, {"params": rest, "weight_decay": 0.0}) if g["params"]]


def build(config: RunConfig, *, data: bool = True, facts: Facts | None = None,
          device: str | None = None, optimizer: bool = True) -> Parts:
    """Build the parts of a run.

    data: load the splits onto the device (training); without it the facts come from
    `facts` (a saved run) or from the data-set registry (checks before a run).
    device: overrides config.train.device (a saved run opened on another machine).
    """
    dev = resolve_device(device or config.train.device)
    precision = resolve_precision(config.train.precision, dev)
    prepared = prepare_data(config.data, dev, eval_subset=config.train.eval_subset) if data else None
    model_args = facts.model_args if facts else {
        **config.model.kwargs, "num_classes": _num_classes(config, prepared)}
    torch.manual_seed(config.train.seed)  # the initial weights
    model = build_model(config.model.name, **model_args).to(dev)
    convolutional = uses_convolutions(model)
    if convolutional:
        # channels_last: oneDNN's and cuDNN's fast convolution layout; with bf16, 2.2x the
        # training throughput of fp32 NCHW for the cnn on 2 cores (benchmarks/model_speed.py)
        model = model.to(memory_format=torch.channels_last)
    if config.model.whiten and prepared is not None:  # (a saved run's weights come later)
        train = prepared.train
        whiten_first_conv(model, train.normalise(train.images[:WHITEN_IMAGES]))
    elif config.model.whiten and not convolutional:
        raise ConfigError(f"whiten: model {config.model.name} has no conv layer; drop --whiten")
    d = config.data
    # augment unless told otherwise where the model has a spatial prior to exploit: a crop
    # or flip teaches an MLP little, and this follows any newly registered model
    augmented = d.augment if d.augment is not None else convolutional
    augment = Augment(d.crop_pad, d.flip, d.erase) if augmented else None
    if facts is None:
        facts = _facts(config, prepared, model_args, augmented, precision)
    opt = (build_optimizer(config.optim.name, param_groups(model), **config.optim.hyperparameters())
           if optimizer else None)
    return Parts(config, facts, dev, autocast_factory(precision, dev), model, opt, prepared, augment)


def check(config: RunConfig) -> Facts:
    """Build model and optimizer once on the CPU from the registry's facts: unknown names,
    bad model keywords and impossible hyperparameters fail here, in well under a second,
    before any data is loaded or downloaded; so do more threads than this machine has."""
    check_threads(config.train.threads)
    return build(config, data=False, device="cpu").facts


def _num_classes(config: RunConfig, prepared: TrainData | None) -> int:
    return len(prepared.class_names) if prepared else get_source(config.data.dataset).num_classes


def _facts(config: RunConfig, prepared: TrainData | None, model_args: dict, augment: bool,
           precision: str) -> Facts:
    scaling = config.data.scaling
    if prepared is not None:
        return Facts(len(prepared.class_names), tuple(prepared.class_names), prepared.mean,
                     prepared.std, model_args, augment, precision, len(prepared.train),
                     len(prepared.val), len(prepared.test), scaling,
                     max(len(prepared.train) // config.train.batch_size, 1),
                     test_overlap_excluded=prepared.test_overlap_excluded)
    source = get_source(config.data.dataset)  # no data loaded: what the registry knows
    if scaling == "unit":
        mean, std = 0.0, 1.0
    else:
        mean = source.mean if source.mean is not None else math.nan
        std = source.std if source.std is not None else math.nan
    return Facts(source.num_classes, tuple(source.class_names), mean, std, model_args,
                 augment, precision, scaling=scaling)
