"""The run directory: config, history, checkpoints, metrics and predictions.

runs/<time>-<model>/
  config.json      every setting and the command line
  history.jsonl    one JSON record per epoch (epoch 0 = before the first step)
  checkpoint.pt    the last epoch's state (model, optimizer, history), for --resume
  best.pt          the weights with the best validation accuracy so far
  metrics.json     test accuracy and loss, per-class report, confusion matrix
  predictions.csv  index, true label, predicted label, the class probabilities
Every file is written atomically, so a run killed at any moment leaves only whole files.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .errors import RunError
from .fsutil import atomic_open, atomic_write_json, atomic_write_text

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
CHECKPOINT_FORMAT = 1


def new_run_dir(root: str | os.PathLike, model: str) -> Path:
    """A fresh runs/<YYYYmmdd-HHMMSS>-<model>/ (suffixed -2, -3 ... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{model}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def save_config(run_dir: Path, config: RunConfig, argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    atomic_write_json(run_dir / "config.json", {
        **config.to_dict(), "command": " ".join(argv), "torch": torch.__version__})


def load_config(run_dir: str | os.PathLike) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is {run_dir} a run directory made by `fmnist train`?") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def save_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """history.jsonl as records sorted by epoch, the last one kept where a resumed run repeats
    an epoch; a torn last line (the trainer mid-append) is ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    by_epoch: dict[Any, dict[str, Any]] = {}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) - 1:
                break
            raise RunError(f"{path}: line {n + 1} is not JSON ({e.msg}); fix or delete that line") from None
        by_epoch[record.get("epoch", n)] = record
    return [by_epoch[k] for k in sorted(by_epoch)]


def load_history(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    return read_history(path) if path.exists() else []


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save into a temp file, then rename: a kill midway leaves the old checkpoint."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    with atomic_open(path) as f:
        f.write(buffer.getbuffer())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.exists():
        raise RunError(f"{path}: no checkpoint; the run did not finish an epoch yet, "
                       "or this is not a run directory")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise RunError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                       f"use the other checkpoint or train again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not a checkpoint written by this version of fmnist")
    return payload


def load_weights(model: torch.nn.Module, payload: dict, model_name: str, path: Path) -> None:
    """Load a checkpoint's weights, refusing one written for another model."""
    saved = payload.get("model_name")
    if saved != model_name:
        raise RunError(f"{path}: holds weights for model {saved!r}, not {model_name!r}")
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise RunError(f"{path}: weights do not fit model {model_name!r} ({first})") from None


def save_predictions(run_dir: Path, labels: np.ndarray, probs: np.ndarray,
                     name: str = "predictions.csv") -> Path:
    """One row per image: index, true label (-1 if unknown), predicted label, probabilities."""
    k = probs.shape[1]
    header = "index,label,pred," + ",".join(f"p{i}" for i in range(k))
    pred = probs.argmax(1)
    table = np.column_stack([np.arange(len(probs)), labels, pred])
    lines = [header] + [
        f"{i},{t},{p}," + ",".join(f"{q:.6f}" for q in row)
        for (i, t, p), row in zip(table.tolist(), probs.tolist())]
    return atomic_write_text(run_dir / name, "\n".join(lines) + "\n")


def save_metrics(run_dir: Path, metrics: dict) -> Path:
    return atomic_write_json(run_dir / "metrics.json", metrics)
