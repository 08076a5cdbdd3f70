"""Checkpoints: written atomically, read without ever unpickling code.

A checkpoint holds only tensors, dicts, lists, numbers, strings and None, so it is read
with `torch.load(weights_only=True)`: a best.pt received from someone else cannot run
code when `fmnist evaluate`, `predict` or `--resume` opens it (the full unpickler would
execute whatever the file's pickle says).
"""
from __future__ import annotations

import io
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
        if not isinstance(state["history"], list) or not state["history"]:
            raise RunError(f"{path}: holds no history; train again")
        return state

    def remove_checkpoints(self) -> None:
        """A comparison keeps its members' numbers, not their 13 MB of weights each."""
        for name in (CHECKPOINT, BEST):
            (self.dir / name).unlink(missing_ok=True)
