"""From a DataConfig to the device-resident splits a run trains and scores on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import DataConfig
from .data import load, normalisation, stratified_split
from .data.batches import DeviceData

EVAL_SUBSET_SEED = 12345  # the fixed training subset scored each epoch, same for all runs


@dataclass
class TrainData:
    train: DeviceData  # the training images minus the validation split
    val: DeviceData  # stratified hold-out of the training images (may be empty)
    train_eval: DeviceData  # fixed subset of `train`, scored in eval mode each epoch
    test: DeviceData  # the official test split: scored only at the end
    class_names: tuple[str, ...]
    mean: float
    std: float
    test_overlap_excluded: int = 0  # training images dropped as exact copies of test images


def prepare_data(cfg: DataConfig, device: torch.device, eval_subset: int = 10000) -> TrainData:
    train = load(cfg.dataset, "train", data_dir=cfg.data_dir)
    test = load(cfg.dataset, "test", data_dir=cfg.data_dir)
    # unit: pixels / 255 as they are (the Dissecting Adam paper's inputs); standard: zero
    # mean and unit variance, 2.8x the scale for Fashion-MNIST
    mean, std = normalisation(cfg.dataset, train.images) if cfg.scaling == "standard" else (0.0, 1.0)
    images, labels = train.images, train.labels
    excluded = 0
    if cfg.exclude_test_overlap:  # before the subset and the validation split: neither sees them
        from .data.duplicates import in_other
        copies = in_other(images, test.images)
        images, labels, excluded = images[~copies], labels[~copies], int(copies.sum())
    if cfg.train_limit is not None and cfg.train_limit < len(labels):
        # a quick experiment: a stratified subset, chosen independently of the run seed
        _, keep = stratified_split(labels, cfg.train_limit, seed=cfg.split_seed + 1)
        images, labels = images[keep], labels[keep]
    train_idx, val_idx = stratified_split(labels, cfg.val_size, cfg.split_seed)
    rng = np.random.default_rng(EVAL_SUBSET_SEED)
    subset = np.sort(rng.permutation(train_idx)[:eval_subset])

    def on_device(images: np.ndarray, labels: np.ndarray) -> DeviceData:
        return DeviceData(images, labels, mean, std, device)

    return TrainData(
        train=on_device(images[train_idx], labels[train_idx]),
        val=on_device(images[val_idx], labels[val_idx]),
        train_eval=on_device(images[subset], labels[subset]),
        test=on_device(test.images, test.labels),
        class_names=train.class_names, mean=mean, std=std, test_overlap_excluded=excluded)
