"""The Python API that mirrors the CLI: train(config) -> Run, run.evaluate(), run.predict(x)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import metrics as M
from .config import RunConfig
from .data import load, normalisation
from .data.batches import DeviceData
from .device import autocast_factory, resolve_device, resolve_precision, set_threads
from .errors import ConfigError, RunError
from .evaluate import probabilities
from .models import build_model
from .runs import (BEST, CHECKPOINT, load_checkpoint, load_config, load_history, load_weights,
                   new_run_dir, save_config, save_metrics, save_predictions)
from .loop import Fit, Log, fit


@dataclass
class Run:
    """A run directory with its config and the model holding its final weights."""

    dir: Path
    config: RunConfig
    model: torch.nn.Module
    history: list[dict]
    metrics: dict | None = None

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str = "cpu", prefer: str = BEST) -> "Run":
        """Rebuild the model of a finished run from best.pt (else checkpoint.pt)."""
        run_dir = Path(run_dir)
        config = load_config(run_dir)
        path = run_dir / prefer if (run_dir / prefer).exists() else run_dir / CHECKPOINT
        payload = load_checkpoint(path, device)
        model = build_model(config.model.name, **config.model.kwargs).to(device)
        load_weights(model, payload, config.model.name, path)
        model.eval()
        mpath = run_dir / "metrics.json"
        import json
        found = json.loads(mpath.read_text()) if mpath.exists() else None
        return cls(run_dir, config, model, load_history(run_dir), found)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self) -> Callable:
        device = self.device
        return autocast_factory(resolve_precision(self.config.train.precision, device), device)

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """(N, C) class probabilities for uint8 images (N, 28, 28) prepared like the data set."""
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ConfigError(f"predict wants uint8 images of shape (N, 28, 28), got "
                              f"{images.dtype} {images.shape}")
        mean, std = normalisation(self.config.data.dataset, load(
            self.config.data.dataset, "train", data_dir=self.config.data.data_dir).images
            if _needs_stats(self.config) else None)
        data = DeviceData(images, np.zeros(len(images), np.int64), mean, std, self.device)
        return probabilities(self.model, data, batch_size, self._autocast(),
                             self.config.train.tta)

    def evaluate(self, split: str = "test") -> dict:
        """metrics.json's dict for a split of the run's data set, scored afresh."""
        part = load(self.config.data.dataset, split, data_dir=self.config.data.data_dir)
        probs = self.predict(part.images)
        return M.summary(part.labels, probs, part.class_names)


def _needs_stats(config: RunConfig) -> bool:
    from .data import get_source
    source = get_source(config.data.dataset)
    return source.mean is None or source.std is None


def train(config: RunConfig | None = None, *, out: str | os.PathLike | None = None,
          root: str | os.PathLike = "runs", progress: bool = False, log: Log | None = None,
          argv: list[str] | None = None, plots: bool = True) -> Run:
    """Train `config` into a new run directory (`out`, else root/<time>-<model>/)."""
    config = config or RunConfig()
    check_buildable(config)  # before anything is written: a bad kwarg leaves no half run
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise RunError(f"--out {out}: is a file; give a folder for the run")
    if out is not None and (Path(out) / CHECKPOINT).exists():
        raise RunError(f"{out} already holds a run; use --resume {out} to continue "
                       "it, or choose another --out")
    run_dir = Path(out) if out is not None else new_run_dir(root, config.model.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir, config, argv)
    return _fit_and_finish(config, run_dir, False, progress, log, plots)


def check_buildable(config: RunConfig) -> None:
    """Build the model and optimizer once on the CPU: unknown names, bad model keywords and
    impossible hyperparameters fail here, in well under a second, before data is loaded."""
    from .loop import param_groups
    from .optim import build_optimizer

    model = build_model(config.model.name, **config.model.kwargs)
    build_optimizer(config.optim.name, param_groups(model), **config.optim.hyperparameters())


def resume(run_dir: str | os.PathLike, *, progress: bool = False, log: Log | None = None,
           plots: bool = True) -> Run:
    """Continue a killed run from its last checkpoint; ends as if never interrupted."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    load_checkpoint(run_dir / CHECKPOINT)  # fail early and clearly if there is none
    return _fit_and_finish(config, run_dir, True, progress, log, plots)


def _fit_and_finish(config: RunConfig, run_dir: Path, resuming: bool, progress: bool,
                    log: Log | None, plots: bool) -> Run:
    on_epoch = _curves_drawer(run_dir) if plots else None
    result = fit(config, run_dir, resume=resuming, progress=progress, log=log,
                 on_epoch=on_epoch)
    metrics = finish(result, config, run_dir)
    if plots:  # the figures and the one-page report, drawn from the files just written
        from .plots import draw_run
        from .report import write_report
        draw_run(run_dir, test_images=result.data.test.images.cpu().numpy())
        write_report(run_dir)
    return Run(run_dir, config, result.model, result.history, metrics)


def finish(result: Fit, config: RunConfig, run_dir: Path) -> dict:
    """Score the chosen weights on the test split; write metrics.json and predictions.csv."""
    model = result.model
    if result.best_epoch is not None:  # weights chosen on validation, never on test
        load_weights(model, load_checkpoint(run_dir / BEST, result.device),
                     config.model.name, run_dir / BEST)
    test = result.data.test
    probs = probabilities(model, test, config.train.eval_batch_size, result.autocast,
                          config.train.tta)
    labels = test.labels.cpu().numpy()
    metrics = M.summary(labels, probs, result.data.class_names)
    last = result.history[-1]
    metrics.update({
        "test_acc": metrics["accuracy"], "test_loss": metrics["loss"],
        "weights": "best" if result.best_epoch is not None else "last",
        "best_epoch": result.best_epoch, "epochs_run": last["epoch"],
        "stopped_early": result.stopped_early, "train_seconds": last["seconds"],
        "val_acc": (result.history[result.best_epoch] if result.best_epoch is not None
                    else last).get("val_acc"),  # of the weights scored
        "device": str(result.device),
        "torch": torch.__version__, "threads": torch.get_num_threads()})
    save_metrics(run_dir, metrics)
    save_predictions(run_dir, labels, probs)
    return metrics


def _curves_drawer(run_dir: Path) -> Callable[[list[dict]], None]:
    """Redraw curves.png after each epoch so a long run can be watched."""
    def draw(history: list[dict]) -> None:
        from .plots import training_curves
        from .plots_style import save_figure
        save_figure(training_curves(history), run_dir / "curves.png")
    return draw


def open_run(run_dir: str | os.PathLike, device: str = "auto") -> Run:
    """Run.load with the device chosen like training does."""
    dev = resolve_device(device)
    set_threads(0)
    return Run.load(run_dir, device=str(dev))
