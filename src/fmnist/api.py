"""The Python API that mirrors the CLI: train(config) -> Run, resume, Run.load, predict.

Orchestration only: `build` makes the parts, `loop.fit` trains them, `runs` reads and
writes every file, `evaluate` and `metrics` score.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import metrics as M
from . import runs
from .build import Parts, build, check
from .config import Facts, RunConfig
from .data import load
from .data.batches import DeviceData
from .data.sources import DATASETS, get_source
from .device import resolve_device, set_threads, usable_cores
from .errors import ConfigError, RunError, UnknownNameError, WriteError
from .evaluate import probabilities
from .fsutil import missing_dirs, remove_dirs
from .loop import Log, State, TrainingDiverged, fit
from .prediction import Prediction, image_batch, predict_with


@dataclass
class Run:
    """A run directory with its config, resolved facts and the model holding its weights."""

    dir: Path
    parts: Parts
    history: list[dict]
    metrics: dict | None = None

    @property
    def config(self) -> RunConfig:
        return self.parts.config

    @property
    def facts(self) -> Facts:
        return self.parts.facts

    @property
    def model(self) -> torch.nn.Module:
        return self.parts.model

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str = "cpu", prefer: str = runs.BEST) -> "Run":
        """Rebuild a run's model from config.json alone and load best.pt (else checkpoint.pt);
        the training data is not touched."""
        run_dir = Path(run_dir)
        config = runs.load_config(run_dir)
        dev = resolve_device(device)  # a missing GPU is the flag's or the machine's, not the file's
        with _settings_of(run_dir):
            facts = runs.load_facts(run_dir) or _registry_facts(config, run_dir)
            _check_classes(config, facts, run_dir)
            parts = build(config, data=False, facts=facts, device=str(dev), optimizer=False)
        path = run_dir / prefer if (run_dir / prefer).exists() else run_dir / runs.CHECKPOINT
        runs.load_weights(parts.model, runs.load_checkpoint(path, parts.device),
                          config.model.name, path)
        parts.model.eval()
        return cls(run_dir, parts, runs.load_history(run_dir), runs.read_metrics(run_dir))

    def headline(self) -> str:
        """What `fmnist train` prints at the end."""
        m = self.metrics
        # the epoch of the weights scored: the last one's unless the best were kept (the
        # best epoch by validation is recorded either way, but "last weights, epoch 7" of 10
        # would name weights that were not scored)
        epoch = m["best_epoch"] if m["weights"] == "best" and m["best_epoch"] else m["epochs_run"]
        return (f"test accuracy {100 * m['test_acc']:.2f}%  (loss {m['test_loss']:.4f}, "
                f"{m['weights']} weights, epoch {epoch}, "
                f"{m['train_seconds']:.1f}s of training on {m['device']})\nrun directory: {self.dir}")

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """(N, C) class probabilities for uint8 images (N, 28, 28) prepared like the data set."""
        images = image_batch(images, "predict")
        data = DeviceData(images, np.zeros(len(images), np.int64), self.facts.mean,
                          self.facts.std, self.parts.device)
        tc = self.config.train
        return probabilities(self.model, data, batch_size, self.parts.autocast, tc.tta, tc.tta_shifts)

    def evaluate(self, split: str = "test", data_dir: str | os.PathLike | None = None) -> dict:
        """metrics.json's dict for a split of the run's data set, scored afresh."""
        with _settings_of(self.dir, (UnknownNameError,)):
            part = load(self.config.data.dataset, split, data_dir=data_folder(self.config, data_dir))
        return {"split": split, **M.summary(part.labels, self.predict(part.images), self.facts.class_names)}


def data_folder(config: RunConfig, override: str | os.PathLike | None = None) -> str | None:
    """Where a reader of a run finds its data set: `override`, else the folder the run was
    trained from if it exists here, else the usual places (a run from another machine)."""
    if override is not None:
        return str(override)
    saved = config.data.data_dir
    return saved if saved is not None and Path(saved).is_dir() else None


@contextlib.contextmanager
def _settings_of(run_dir: Path, kinds: tuple = (ConfigError, UnknownNameError)):
    """A setting of config.json that the registries refuse (an unknown model or data set, a
    model argument it lacks) came from the file, not from a flag: say which file."""
    try:
        yield
    except kinds as exc:
        raise RunError(f"{run_dir / runs.CONFIG}: {exc}; restore the file written by "
                       "`fmnist train`") from None


def _check_classes(config: RunConfig, facts: Facts, run_dir: Path) -> None:
    """The data set config.json names must be the one the run was trained on: an edited
    name would score, say, MNIST's digits under Fashion-MNIST's class names."""
    if config.data.dataset not in DATASETS:  # registered by the program that trained it:
        return  # the run still loads from its own facts (an unknown name fails where data loads)
    names = tuple(get_source(config.data.dataset).class_names)
    if names != tuple(facts.class_names):
        raise RunError(f"{run_dir / runs.CONFIG}: data set {config.data.dataset!r} has the "
                       f"classes {', '.join(names[:3])}, ..., but the run was trained on "
                       f"{', '.join(facts.class_names[:3])}, ...; restore the file written "
                       "by `fmnist train`")


def _registry_facts(config: RunConfig, run_dir: Path) -> Facts:
    """A run written before config.json recorded its facts: the registry's are the same
    for the data sets that register their pixel statistics."""
    facts = check(config)
    if not (np.isfinite(facts.mean) and np.isfinite(facts.std)):
        raise RunError(f"{run_dir / runs.CONFIG}: has no resolved input scaling (written by an "
                       "older fmnist); train the run again")
    return facts


def train(config: RunConfig | None = None, *, out: str | os.PathLike | None = None,
          root: str | os.PathLike = "runs", progress: bool = False, log: Log | None = None,
          argv: list[str] | None = None, plots: bool = True) -> Run:
    """Train `config` (None: the default recipe) into a new run directory (`out`, else
    root/<time>-<model>/).

    Nothing is written until the run can start: names and settings are checked, the data
    loaded and the model built first, so a failed start leaves no folder behind."""
    if config is None:
        from .recipes import RECIPES
        config = RECIPES.get("default").config()
    check(config)  # unknown names, bad keywords: fail before any data is loaded
    if out is not None:
        runs.check_out(out)
    else:
        runs.check_writable(root, "--runs-dir")
    set_threads(config.train.threads)
    parts = build(config)
    made = missing_dirs(out if out is not None else root)  # what make_run_dir creates
    run_dir = runs.make_run_dir(out, root, config.model.name)
    try:
        runs.claim(run_dir)
        runs.save_config(run_dir, config, parts.facts, argv)
        return _fit_and_finish(parts, run_dir, None, progress, log, plots)
    except runs.RunClaimed:  # another run's folder: nothing in it is ours to remove
        raise
    except BaseException:  # a full disk or ^C before epoch 0's checkpoint: nothing to resume
        if not (run_dir / runs.CHECKPOINT).exists():
            runs.discard_unstarted(run_dir, created=out is None or Path(out) in made)
            remove_dirs(made)
        raise


def resume(run_dir: str | os.PathLike, *, progress: bool = False, log: Log | None = None,
           plots: bool = True) -> Run:
    """Continue a killed run from its last checkpoint; ends as if never interrupted."""
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    # read once, before any data loads: a missing or damaged file and settings edited since
    # it was written fail in a second (restore loads its weights into the built parts)
    checkpoint = runs.load_checkpoint(run_dir / runs.CHECKPOINT)
    runs.check_settings(run_dir, config, checkpoint)
    saved = runs.load_facts(run_dir)
    # a run trained with more threads than this machine has resumes on the cores it has
    set_threads(min(config.train.threads, usable_cores()))
    # the data: from the folder it was trained from if that is still there, else the usual
    # places (checksums make sure it is the same data set); a folder since moved or removed
    # must not strand the run
    config = config.replace(data={"data_dir": data_folder(config)})
    if config.train.device == "cuda" and not torch.cuda.is_available():
        # the device is the machine's (runs.checkpoint.MACHINE_SETTINGS): a run trained on a
        # GPU goes on on this CPU, where --device cannot be given beside --resume
        config = config.replace(train={"device": "cpu"})
        if log:
            log("no CUDA GPU here: the run goes on on the CPU")
    with _settings_of(run_dir):
        parts = build(config)
    if saved is not None and _data_facts(saved) != _data_facts(parts.facts):
        raise RunError(f"{run_dir / runs.CONFIG}: its resolved classes, input scaling or model "
                       "arguments differ from what the data and settings give now; restore "
                       "the file written by `fmnist train`, or train again")
    if saved is not None:
        _check_sizes(saved, parts.facts, run_dir)
    state = State(**runs.RunStore(run_dir).restore(parts, checkpoint))
    # a kill between checkpoint.pt and history.jsonl (written in that order) left the history
    # an epoch short, and a kill mid-write a hidden temp file: the checkpoint is the truth
    runs.save_history(run_dir, state.history)
    for stale in run_dir.glob(".*.tmp"):  # fsutil's temp files: ".NAME.XXXXXXXX.tmp"
        stale.unlink(missing_ok=True)
    if log:
        log(f"resumed from {run_dir / runs.CHECKPOINT} after epoch {state.history[-1]['epoch']}")
    return _fit_and_finish(parts, run_dir, state, progress, log, plots)


def _check_sizes(saved: Facts, now: Facts, run_dir: Path) -> None:
    """The split and the steps a resumed run is built with must be those it was trained on:
    for a checkpoint written before it recorded the settings (runs.check_settings) the only
    guard against an edited val_size, train_limit or batch_size, which would go on with
    another split (validating on images trained on) or another schedule."""
    if not saved.train_size:  # config.json written before the sizes were recorded
        return
    for name, what in (("train_size", "training images"), ("val_size", "validation images"),
                       ("steps_per_epoch", "steps per epoch")):
        then, got = getattr(saved, name), getattr(now, name)
        if then != got:
            raise RunError(f"{run_dir / runs.CONFIG}: its settings now give {got:,} {what}, but "
                           f"the run was trained with {then:,} (resolved.{name}); restore the "
                           "file written by `fmnist train`, or train again")


def _data_facts(facts: Facts) -> tuple:
    """The facts a run's data and settings determine (not the machine's precision)."""
    return (facts.num_classes, facts.class_names, facts.mean, facts.std, facts.model_args)


def _fit_and_finish(parts: Parts, run_dir: Path, state: State | None, progress: bool,
                    log: Log | None, plots: bool) -> Run:
    store = runs.RunStore(run_dir)
    try:
        result = fit(parts, parts.config.train, state=state, store=store, progress=progress,
                     log=log, on_epoch=_curves_drawer(run_dir) if plots else None)
    except WriteError as exc:  # a full disk: the checkpoint of the last whole epoch is kept
        ck = run_dir / runs.CHECKPOINT
        first = _remedy(exc, run_dir)
        hint = (f"the last checkpoint {ck} is intact: {first}, then `fmnist train --resume "
                f"{run_dir}`") if ck.exists() else f"{first} and train again"
        raise exc.with_fix(hint) from None
    except TrainingDiverged as exc:  # recorded, so a comparison can count it
        runs.save_metrics(run_dir, {"diverged": True, "diverged_at": {"epoch": exc.epoch, "step": exc.step},
                                    "test_acc": None, "test_loss": None, "weights": None,
                                    "train_seconds": _last(runs.load_history(run_dir), "seconds")})
        raise
    metrics = finish(parts, result.history, result.best_epoch, result.stopped_early, run_dir)
    if plots:  # the figures and the one-page report, drawn from the files just written
        from .plots import draw_run
        from .report import write_report
        try:
            draw_run(run_dir, test_images=parts.data.test.images.cpu().numpy())
            write_report(run_dir)
        except WriteError as exc:  # a full disk now costs pictures, not the run
            raise exc.with_fix(
                f"the run is complete and scored (test accuracy {100 * metrics['test_acc']:.2f}%, "
                f"in {run_dir / runs.METRICS}): {_remedy(exc, run_dir)}, then `fmnist report "
                f"--redraw {run_dir}` draws its figures and report") from None
    return Run(run_dir, parts, result.history, metrics)


def _remedy(exc: WriteError, run_dir: Path) -> str:
    """The first step of a fix for a failed write inside the run's folder, by its cause
    (fsutil.write_fix chose the cause's own fix)."""
    if exc.fix.startswith("free some space"):
        return "free some space"
    if exc.fix.startswith("choose a folder"):  # the run's folder is given: make it writable
        return f"make {run_dir} writable"
    return "fix the cause"


def finish(parts: Parts, history: list[dict], best_epoch: int | None, stopped_early: bool,
           run_dir: Path) -> dict:
    """Score the selected weights on the test split; write metrics.json and predictions.csv."""
    tc = parts.config.train
    use_best = tc.select == "best" and best_epoch is not None  # chosen on validation, never test
    if use_best:
        path = run_dir / runs.BEST
        runs.load_weights(parts.model, runs.load_checkpoint(path, parts.device), parts.config.model.name, path)
    test = parts.data.test
    probs = probabilities(parts.model, test, tc.eval_batch_size, parts.autocast, tc.tta, tc.tta_shifts)
    labels = test.labels.cpu().numpy()
    metrics = {"split": "test", **M.summary(labels, probs, parts.facts.class_names)}
    scored = history[best_epoch] if use_best else history[-1]
    vals = [r["val_acc"] for r in history if r.get("val_acc") is not None]
    metrics.update({
        "test_acc": metrics["accuracy"], "test_loss": metrics["loss"], "diverged": False,
        "weights": "best" if use_best else "last",
        "best_epoch": history[best_epoch]["epoch"] if best_epoch is not None else None,
        "best_step": history[best_epoch]["step"] if best_epoch is not None else None,
        "epochs_run": history[-1]["epoch"], "steps": history[-1]["step"],
        "stopped_early": stopped_early, "train_seconds": history[-1]["seconds"],
        "val_acc": scored.get("val_acc"), "final_val_acc": history[-1].get("val_acc"),
        "best_val_acc": max(vals) if vals else None,
        "device": str(parts.device), "torch": torch.__version__, "threads": torch.get_num_threads()})
    # predictions first: metrics.json says the run is done (a comparison skips a cell that
    # has it), so a kill between the two must not leave a "done" run without predictions
    runs.save_predictions(run_dir, labels, probs)
    runs.save_metrics(run_dir, metrics)
    return metrics


def _last(history: list[dict], key: str):
    return history[-1].get(key) if history else None


# A watched run's curves.png is redrawn after an epoch at most this often: drawing costs
# ~0.35 s (0.9 s with matplotlib's first import), 3% of a 60-second run if done every epoch;
# the finished run's figures are drawn by draw_run in any case. A minute apart: a run that
# ends within it (the default recipe's) draws its curves once, at the end.
CURVES_EVERY_S = 60.0


def _curves_drawer(run_dir: Path, every_s: float = CURVES_EVERY_S) -> Callable[[list[dict]], None]:
    """Redraw curves.png after an epoch, every_s seconds apart, so a long run can be watched."""
    last = {"t": time.perf_counter()}

    def draw(history: list[dict]) -> None:
        if time.perf_counter() - last["t"] < every_s:
            return
        from .plots import save_figure, training_curves
        save_figure(training_curves(history), run_dir / "curves.png")
        last["t"] = time.perf_counter()
    return draw


def open_run(run_dir: str | os.PathLike, device: str = "auto") -> Run:
    """Run.load on the device chosen like training does, with every usable core."""
    dev = resolve_device(device)
    set_threads(0)
    return Run.load(run_dir, device=str(dev))


def predict(run: Run, images: list[Path] | None = None, split: str = "test",
            out: Path | None = None, data_dir: str | os.PathLike | None = None) -> Prediction:
    """Predict a split of the run's data set, or IDX files and pictures; write the CSV."""
    with _settings_of(run.dir, (UnknownNameError,)):  # the data set config.json names
        return predict_with(run.predict, run.facts.class_names, run.config.data.dataset, run.dir,
                            images, split, out, data_folder(run.config, data_dir))


def redraw(directory: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """(Re)draw a run's or a comparison's figures from its files."""
    from .plots import draw_comparison, draw_run

    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run or comparison directory")
    if runs.is_comparison(directory):
        written = draw_comparison(directory)
    else:
        config = runs.load_config(directory)
        test = load(config.data.dataset, "test", data_dir=data_folder(config, data_dir))
        written = draw_run(directory, test_images=test.images)
    if not written:
        raise RunError(f"{directory}: nothing to draw (no history.jsonl, metrics.json or runs/)")
    return written
