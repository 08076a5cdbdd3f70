"""Checkpoints: written atomically, read without ever unpickling code.

A checkpoint holds only tensors, dicts, lists, numbers, strings and None, so it is read
with `torch.load(weights_only=True)`: a best.pt received from someone else cannot run
code when `fmnist evaluate`, `predict` or `--resume` opens it (the full unpickler would
execute whatever the file's pickle says).
"""
from __future__ import annotations

import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from ..fsutil import atomic_open
from .files import BEST, CHECKPOINT, save_history

CHECKPOINT_FORMAT = 1


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
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: we refuse them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the pickle names a Python callable: code, not data
            raise RunError(f"{path}: refused: it holds Python objects besides tensors and "
                           "numbers, and opening it could run code; use a checkpoint written "
                           "by `fmnist train`") from None
        raise RunError(f"{path}: unreadable checkpoint (not tensors and numbers written by "
                       "torch.save); use the other checkpoint or train again") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise RunError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                       f"use the other checkpoint or train again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not a checkpoint written by this version of fmnist")
    return payload


MAX_CHECKPOINT = 2 << 30  # 100 M parameters (the model cap) with Adam's two moments: 1.2 GB


def _check_archive(path: Path) -> None:
    """torch.save writes an uncompressed zip; one with compressed records (a zip bomb that
    inflates a 1 MB file to gigabytes) or larger than any model we build is refused."""
    import zipfile

    try:
        size = path.stat().st_size
        if not path.is_file() or size > MAX_CHECKPOINT:
            raise RunError(f"{path}: not a checkpoint we read ({size:,} bytes, or not a file); "
                           "remove it and use the run's other checkpoint, or train again")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        else:
            return  # the legacy format: read by the safe unpickler, bounded by the file size
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise RunError(f"{path}: unreadable checkpoint ({type(exc).__name__}); use the other "
                       "checkpoint or train again") from None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos) or \
            sum(i.file_size for i in infos) > MAX_CHECKPOINT:
        raise RunError(f"{path}: refused: compressed or oversized records (torch.save writes "
                       "neither); use a checkpoint written by `fmnist train`")


def load_weights(model: torch.nn.Module, payload: dict, model_name: str, path: Path) -> None:
    """Load a checkpoint's weights, refusing one written for another model."""
    saved = payload.get("model_name")
    if saved != model_name:
        raise RunError(f"{path}: holds weights for model {saved!r}, not {model_name!r}")
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: weights do not fit model {model_name!r} ({first})") from None


class RunStore:
    """The training loop's store (loop.Store): checkpoint.pt, best.pt and history.jsonl."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)

    @property
    def checkpoint_name(self) -> str:
        return str(self.dir / CHECKPOINT)

    def checkpoint(self, parts, state) -> None:
        save_checkpoint(self.dir / CHECKPOINT, {
            "model_name": parts.config.model.name, "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(), **state.to_dict()})
        save_history(self.dir, state.history)

    def best(self, parts, epoch: int) -> None:
        save_checkpoint(self.dir / BEST, {"model_name": parts.config.model.name,
                                          "model": parts.model.state_dict(), "epoch": epoch})

    def restore(self, parts) -> dict:
        """Load checkpoint.pt into built parts; returns the loop state it recorded."""
        path = self.dir / CHECKPOINT
        ck = load_checkpoint(path, parts.device)
        load_weights(parts.model, ck, parts.config.model.name, path)
        try:
            # the saved groups carry the last scheduled lr; the loop reads the peak lr (the
            # schedule's 1.0) from the built optimizer's groups, so put the peaks back
            peaks = [g["lr"] for g in parts.optimizer.param_groups]
            parts.optimizer.load_state_dict(ck["optimizer"])
            for group, peak in zip(parts.optimizer.param_groups, peaks):
                group["lr"] = peak
            state = {k: ck[k] for k in ("history", "step", "best_acc", "best_epoch", "bad_epochs")}
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise RunError(f"{path}: incomplete or damaged checkpoint ({type(exc).__name__}); "
                           "train again") from None
        problem = _state_problem(state)
        if problem:
            raise RunError(f"{path}: {problem}; use a checkpoint written by `fmnist train`")
        return state

    def remove_checkpoints(self) -> None:
        """A comparison keeps its members' numbers, not their 13 MB of weights each."""
        for name in (CHECKPOINT, BEST):
            (self.dir / name).unlink(missing_ok=True)


def _state_problem(state: dict) -> str | None:
    """What is wrong with a checkpoint's loop state, else None (a hand-edited file)."""
    history = state["history"]
    if not isinstance(history, list) or not history:
        return "holds no history"

    def number(v, kind=(int, float)) -> bool:
        return isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v)

    for r in history:
        if not (isinstance(r, dict) and number(r.get("epoch")) and number(r.get("step"), int)
                and number(r.get("seconds"))):
            return "a history record without a numeric epoch, step and seconds"
    if not number(state["step"], int) or state["step"] != history[-1]["step"]:
        return "its step does not match its history"
    if not (isinstance(state["best_acc"], (int, float)) and not isinstance(state["best_acc"], bool)):
        return "best_acc is not a number"
    best = state["best_epoch"]
    if best is not None and not (number(best, int) and 0 <= best < len(history)):
        return "best_epoch is not a record of its history"
    if not (number(state["bad_epochs"], int) and state["bad_epochs"] >= 0):
        return "bad_epochs is not a count"
    return None
