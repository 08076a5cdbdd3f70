"""Compare optimizers the DeepOBS way: same model, same data order per seed, several seeds.

Each (optimizer, learning rate, seed) is one training run with a constant learning rate,
scored before training and after every epoch on a fixed 10,000-image subset of the training
set and on the validation split (and, for the curves only, on the test set). A run whose
loss becomes NaN or infinite is recorded as diverged. Learning rates are given per
optimizer or picked by a log-spaced grid search on validation accuracy, never on the test
set. Every run is one JSON file in <dir>/runs/ (grid-search runs in <dir>/grid/); a
comparison that is started again skips the runs whose file exists.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import RunConfig
from .errors import ConfigError, FmnistError
from .fsutil import atomic_write_json
from .loop import TrainingDiverged, fit
from .metrics import mean_std
from .optim import OPTIMIZERS
from .runs import load_config, save_config

Log = Callable[[str], None]


@dataclass(frozen=True)
class Preset:
    description: str
    base: dict  # RunConfig parts
    optimizers: tuple[tuple[str, float], ...]  # (name, tuned lr)
    seeds: int = 3


PRESETS = {
    "dissecting-adam": Preset(
        "Balles & Hennig 2018, Fashion-MNIST: network P1, batch 64, constant learning "
        "rates, beta 0.9; 7 epochs of 859 steps = 6,013 steps (the paper: 6,000)",
        {"model": {"name": "p1"}, "data": {"augment": False},
         "train": {"epochs": 7, "batch_size": 64, "schedule": "constant", "warmup_epochs": 0,
                   "label_smoothing": 0.0}},
        (("msgd", 0.1), ("adam", 1e-3), ("mssd", 3e-4), ("msvag", 0.3))),
}


@dataclass(frozen=True)
class Plan:
    base: RunConfig  # model, data and training settings shared by every run
    optimizers: tuple[tuple[str, float | None], ...]  # (name, lr or None: grid search)
    seeds: tuple[int, ...] = (0, 1, 2)
    grid_points: int = 5  # learning rates tried per optimizer, log-spaced
    grid_span: float = 10.0  # the grid runs from default/span to default*span
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.optimizers:
            raise ConfigError("optimizers: name at least one, e.g. --optimizers sgd,adam")
        if not self.seeds:
            raise ConfigError("seeds: must be at least 1")
        if self.base.data.val_size <= 0:
            raise ConfigError("val_size: a comparison scores a validation split; give "
                              "--val-size > 0")
        for name, lr in self.optimizers:
            OPTIMIZERS.get(name)
            if lr is not None and not lr > 0:
                raise ConfigError(f"learning rate of {name}: {lr} must be > 0")


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


def run_name(optimizer: str, lr: float, seed: int) -> str:
    return f"{optimizer}-lr{lr:g}-seed{seed}"


def one_run(base: RunConfig, optimizer: str, lr: float, seed: int, folder: Path,
            log: Log) -> dict:
    """Train one (optimizer, lr, seed), or read its JSON when an earlier call finished it."""
    path = folder / f"{run_name(optimizer, lr, seed)}.json"
    config = base.replace(optim={"name": optimizer, "lr": lr, "weight_decay": None},
                          train={"seed": seed})
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("config") != config.to_dict():
            raise ConfigError(f"{path}: was run with other settings; give a new --out for "
                              "this comparison (or delete that folder)")
        log(f"  {path.stem}: done before, skipped")
        return record
    work = folder / ".work" / path.stem  # checkpoints while it trains; resumed if cut short
    try:
        if load_config(work) != config:
            shutil.rmtree(work)  # left by a comparison with other settings: start afresh
    except FmnistError:
        pass  # no earlier attempt
    work.mkdir(parents=True, exist_ok=True)
    save_config(work, config)
    t0 = time.perf_counter()
    record = {"optimizer": optimizer, "lr": lr, "seed": seed, "config": config.to_dict()}
    try:
        history = fit(config, work, resume=True, progress=False, eval_test=True).history
        last = history[-1]
        record.update(diverged=False, history=history, test_acc=last["test_acc"],
                      test_loss=last["test_loss"], final_val_acc=last["val_acc"],
                      best_val_acc=max((r["val_acc"] for r in history if r["val_acc"] is not None),
                                       default=None))
    except TrainingDiverged as exc:
        from .runs import load_history
        record.update(diverged=True, history=load_history(work), test_acc=None,
                      test_loss=None, final_val_acc=None, best_val_acc=None,
                      diverged_at={"epoch": exc.epoch, "step": exc.step})
    record["seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(path, record)
    shutil.rmtree(work, ignore_errors=True)
    state = "DIVERGED" if record["diverged"] else f"val {100 * record['final_val_acc']:.2f}% " \
            f"test {100 * record['test_acc']:.2f}%"
    log(f"  {path.stem}: {state} ({record['seconds']:.0f}s)")
    return record


def choose_lr(base: RunConfig, optimizer: str, plan: Plan, folder: Path, log: Log) -> tuple[float, list[dict]]:
    """Grid search on the first seed: the lr with the best final validation accuracy."""
    default = OPTIMIZERS.get(optimizer).defaults["lr"]
    grid = lr_grid(default, plan.grid_points, plan.grid_span)
    log(f"{optimizer}: grid search over lr {', '.join(f'{g:g}' for g in grid)} (seed {plan.seeds[0]})")
    tried = [one_run(base, optimizer, lr, plan.seeds[0], folder, log) for lr in grid]
    ok = [r for r in tried if not r["diverged"]]
    if not ok:
        raise ConfigError(f"{optimizer}: every learning rate of the grid diverged; give one "
                          f"with --optimizers {optimizer}:LR")
    best = max(ok, key=lambda r: (r["final_val_acc"], -r["lr"]))
    return best["lr"], tried


def compare(plan: Plan, out: Path, log: Log = print) -> list[dict]:
    """Run the whole plan into `out`; returns one summary row per optimizer."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", {
        "base": plan.base.to_dict(), "optimizers": plan.optimizers, "seeds": plan.seeds,
        "grid_points": plan.grid_points, "grid_span": plan.grid_span, **plan.extra})
    rows = []
    for optimizer, lr in plan.optimizers:
        chosen_by = "fixed"
        if lr is None:
            lr, _ = choose_lr(plan.base, optimizer, plan, out / "grid", log)
            chosen_by = "grid search (validation accuracy)"
            _copy_grid_run(out, optimizer, lr, plan.seeds[0])
        log(f"{optimizer} lr={lr:g} ({chosen_by}): {len(plan.seeds)} seeds")
        runs = [one_run(plan.base, optimizer, lr, s, out / "runs", log) for s in plan.seeds]
        rows.append(summarise(optimizer, lr, chosen_by, runs))
    atomic_write_json(out / "summary.json", rows)
    return rows


def _copy_grid_run(out: Path, optimizer: str, lr: float, seed: int) -> None:
    """The grid's run at the chosen lr is also the first seed's run: do not train it twice."""
    name = f"{run_name(optimizer, lr, seed)}.json"
    src, dst = out / "grid" / name, out / "runs" / name
    if src.exists() and not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(dst, json.loads(src.read_text()))


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    mean, std, n = mean_std(values)
    return (mean, std) if n else (None, None)


def summarise(optimizer: str, lr: float, chosen_by: str, runs: list[dict]) -> dict:
    ok = [r for r in runs if not r["diverged"]]
    row = {"optimizer": optimizer, "lr": lr, "lr_chosen_by": chosen_by, "seeds": len(runs),
           "diverged": len(runs) - len(ok),
           "seconds": float(np.median([r["seconds"] for r in runs]))}
    for key in ("final_val_acc", "best_val_acc", "test_acc"):
        row[key], row[f"{key}_std"] = _mean_std([r[key] for r in ok])
    return row


def format_table(rows: list[dict]) -> str:
    def pm(mean, std):
        return "      -       " if mean is None else f"{100 * mean:6.2f} ± {100 * std:4.2f}"

    head = (f"{'optimizer':<10} {'lr':>8}  {'final val acc %':>15}  {'best val acc %':>15}  "
            f"{'test acc %':>15}  {'diverged':>8}  {'s/run':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['optimizer']:<10} {r['lr']:>8.3g}  {pm(r['final_val_acc'], r['final_val_acc_std']):>15}"
                     f"  {pm(r['best_val_acc'], r['best_val_acc_std']):>15}  "
                     f"{pm(r['test_acc'], r['test_acc_std']):>15}  {r['diverged']:>8}  "
                     f"{r['seconds']:>6.0f}")
    lines.append("test acc: the final weights on the 10k test images (mean ± std over seeds); "
                 "learning rates were never chosen on it.")
    return "\n".join(lines)

