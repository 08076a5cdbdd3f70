"""Checkpoints: written atomically, read without ever unpickling code.

A checkpoint holds only tensors, dicts, lists, numbers, strings and None, so it is read
with `torch.load(weights_only=True)`: a best.pt received from someone else cannot run
code when `fmnist evaluate`, `predict` or `--resume` opens it (the full unpickler would
execute whatever the file's pickle says).
"""
from __future__ import annotations

import io
import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from ..fsutil import atomic_open
from .comparison import comparison_of
from .files import BEST, CHECKPOINT, CONFIG, METRICS, save_history

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save into a temp file, then rename: a kill midway leaves the old checkpoint."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    with atomic_open(path) as f:
        f.write(buffer.getbuffer())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.exists():
        comparison = comparison_of(path.parent)
        if comparison is not None and (path.parent / METRICS).is_file():
            # a finished cell: `fmnist compare` deleted its weights, as it does by default
            raise RunError(f"{path.parent}: a run of the comparison {comparison} whose weights "
                           "were not kept (compare deletes each run's checkpoints); run the "
                           "comparison again with --keep-checkpoints and a new --out")
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
                       f"torch.save); {_instead(path)}") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise RunError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                       f"{_instead(path)}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not a checkpoint written by this version of fmnist")
    return payload


def _instead(path: Path) -> str:
    """The fix for a damaged checkpoint file: the readers fall back from best.pt to
    checkpoint.pt where best.pt is missing, and nothing replaces checkpoint.pt."""
    if path.name == BEST:
        return "remove it to score checkpoint.pt (the last epoch's weights) instead, or train again"
    return "train again (evaluate and predict read best.pt, where the run has one)"


MAX_CHECKPOINT = 2 << 30  # 100 M parameters (the model cap) with Adam's two moments: 1.2 GB


def _check_archive(path: Path) -> None:
    """torch.save writes an uncompressed zip; one with compressed records (a zip bomb that
    inflates a 1 MB file to gigabytes) or larger than any model we build is refused."""
    import zipfile

    try:
        size = path.stat().st_size
        if not path.is_file() or size > MAX_CHECKPOINT:
            raise RunError(f"{path}: not a checkpoint we read ({size:,} bytes, or not a file); "
                           f"{_instead(path)}")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        else:
            return  # the legacy format: read by the safe unpickler, bounded by the file size
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise RunError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                       f"{_instead(path)}") from None
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
    # the loop never checkpoints weights a NaN reached (evaluate.all_finite), so these come from
    # an edited or foreign file: they would predict "class 0, nan%" for every image
    from ..evaluate import all_finite

    if not all_finite(model):
        raise RunError(f"{path}: holds NaN or infinite weights (not written by `fmnist "
                       "train`, which checkpoints only finite ones); train again")


# The settings a resumed run takes from the machine it resumes on, not from its checkpoint:
# where the data lies (resume falls back to the usual places when that folder has moved, and
# checksums make sure it is the same data), how many cores (resume takes min(threads, cores))
# and which device (a run trained on a GPU may go on on a CPU). Every other setting decides
# what the run is: its split, its steps, its schedule, its model and optimizer; precision
# too (bf16 and fp32 train to other numbers; "auto" already resolves on the machine).
MACHINE_SETTINGS = (("data", "data_dir"), ("train", "threads"), ("train", "device"))


def run_settings(config) -> dict:
    """What a checkpoint records of the run's settings: config.to_dict() less MACHINE_SETTINGS."""
    settings = config.to_dict()
    for part, name in MACHINE_SETTINGS:
        settings[part].pop(name, None)
    return settings


def check_settings(run_dir: Path, config, payload: dict) -> None:
    """Refuse to resume a run whose config.json no longer holds the settings its checkpoint
    was trained with: an edited epoch count, batch size or split would go on as another run
    (a new split can validate on images trained on; a longer one-cycle run raises the rate
    again) while the files still described the old one. A checkpoint written before the
    record (no "settings") is let through: resume compares its resolved sizes instead."""
    saved = payload.get("settings")
    if saved is None:
        return
    path = run_dir / CHECKPOINT
    if not (isinstance(saved, dict) and all(isinstance(v, dict) for v in saved.values())):
        raise RunError(f"{path}: its record of the run's settings is damaged; use a checkpoint "
                       "written by `fmnist train`")
    now = run_settings(config)
    for part, values in saved.items():
        for name, then in values.items():
            # a setting this version lacks was refused in config.json already; one it added
            # since the checkpoint was written has no record to compare with
            if part in now and name in now[part] and now[part][name] != then:
                raise RunError(f"{run_dir / CONFIG}: {part}.{name} is {_shown(now[part][name])} "
                               f"but the run's checkpoint was trained with {_shown(then)}; restore "
                               "the file written by `fmnist train`, or train again")


def _shown(value: Any) -> str:
    """A setting as config.json spells it (null, true, "cnn")."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


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
            "optimizer": parts.optimizer.state_dict(), "settings": run_settings(parts.config),
            **state.to_dict()})
        save_history(self.dir, state.history)

    def best(self, parts, epoch: int) -> None:
        save_checkpoint(self.dir / BEST, {"model_name": parts.config.model.name,
                                          "model": parts.model.state_dict(), "epoch": epoch})

    def restore(self, parts, ck: dict | None = None) -> dict:
        """Load checkpoint.pt (or `ck`, its payload read already) into built parts; returns
        the loop state it recorded."""
        path = self.dir / CHECKPOINT
        ck = load_checkpoint(path, parts.device) if ck is None else ck
        load_weights(parts.model, ck, parts.config.model.name, path)
        problem = _optimizer_problem(ck.get("optimizer"), parts.optimizer)
        if problem:  # before load_state_dict: a moment of the wrong shape can crash a fused step
            raise RunError(f"{path}: damaged optimizer state ({problem}); train again")
        try:
            # the saved groups carry the last scheduled lr; the loop reads the peak lr (the
            # schedule's 1.0) from the built optimizer's groups, so put the peaks back
            peaks = [g["lr"] for g in parts.optimizer.param_groups]
            parts.optimizer.load_state_dict(ck["optimizer"])
            for group, peak in zip(parts.optimizer.param_groups, peaks):
                group["lr"] = peak
            state = {k: ck[k] for k in ("history", "step", "best_acc", "best_epoch", "bad_epochs")}
            state.update({k: ck[k] for k in ("losses", "order") if ck.get(k) is not None})
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
            raise RunError(f"{path}: incomplete or damaged checkpoint ({type(exc).__name__}); "
                           "train again") from None
        problem = _state_problem(state) or _sampling_problem(state, parts)
        if problem:
            raise RunError(f"{path}: {problem}; use a checkpoint written by `fmnist train`")
        if state.get("losses") is not None:  # a tensor of its own: the loop writes into it
            state["losses"] = state["losses"].detach().clone(memory_format=torch.contiguous_format)
        return state

    def remove_checkpoints(self) -> None:
        """A comparison keeps its members' numbers, not their 13 MB of weights each."""
        for name in (CHECKPOINT, BEST):
            (self.dir / name).unlink(missing_ok=True)


def _same_kind(value: Any, built: Any) -> bool:
    """Whether a saved optimizer setting has the type of the built optimizer's own."""
    if isinstance(built, bool) or built is None:  # flags (foreach, fused, ...): None or bool
        return value is None or isinstance(value, bool)
    if isinstance(built, (int, float)):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if isinstance(built, (tuple, list)):
        return (isinstance(value, (tuple, list)) and len(value) == len(built)
                and all(_same_kind(v, b) for v, b in zip(value, built)))
    if isinstance(built, torch.Tensor):
        return isinstance(value, torch.Tensor) and value.shape == built.shape
    return type(value) is type(built)


def _optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """What is wrong with a checkpoint's optimizer state for the built optimizer, else None:
    torch's load_state_dict trusts it, and a hand-edited one fails deep inside a step (a
    moment of the wrong shape crashed fused Adam with a segmentation fault)."""
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
            and isinstance(saved.get("param_groups"), list)):
        return "not an optimizer's state dict"
    built_groups = optimizer.state_dict()["param_groups"]
    if len(saved["param_groups"]) != len(built_groups):
        return f"{len(saved['param_groups'])} parameter groups, the optimizer has {len(built_groups)}"
    params, ids = [], []
    for group, built, live in zip(saved["param_groups"], built_groups, optimizer.param_groups):
        if not (isinstance(group, dict) and isinstance(group.get("params"), list)
                and len(group["params"]) == len(built["params"])):
            return "a parameter group does not list the model's parameters"
        for key, want in built.items():  # a key an older torch did not save gets its default
            if key != "params" and key in group and not _same_kind(group[key], want):
                return f"setting {key!r} is {group.get(key)!r}"
        params += live["params"]
        ids += group["params"]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or len(set(ids)) != len(ids):
        return "parameter ids are not distinct integers"
    shape = dict(zip(ids, (p.shape for p in params)))
    for pid, st in saved["state"].items():
        if pid not in shape or not isinstance(st, dict):
            return f"state for an unknown parameter {pid!r}"
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1 and v.shape != shape[pid]:
                    return f"{name!r} of parameter {pid} has shape {tuple(v.shape)}, not {tuple(shape[pid])}"
            elif not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
                return f"{name!r} of parameter {pid} is {v!r}"
    return None


def _sampling_problem(state: dict, parts) -> str | None:
    """What is wrong with a checkpoint's loss-weighted sampling state (loop.State's losses
    and order) for the run it resumes, else None."""
    from ..loop import epoch_images

    tc = parts.config.train
    n = len(parts.data.train) if parts.data is not None else None
    losses, order = state.get("losses"), state.get("order")
    if tc.hard_fraction > 0 and state["step"] > 0 and losses is None:
        return "holds no per-image losses for its loss-weighted sampling"
    # float32, as the loop writes each batch's losses into it (a half or double tensor, or one
    # that requires grad, would fail there with a traceback)
    if losses is not None and not (isinstance(losses, torch.Tensor)
                                   and losses.dtype == torch.float32 and not losses.requires_grad
                                   and losses.shape == (n,) and not losses.isnan().any()):
        return f"its per-image losses are not {n} float32 numbers"
    if order is not None and not (
            isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.ndim == 1
            and (len(order) == 0 or 0 <= int(order.min()) and int(order.max()) < (n or 0))):
        return "its epoch's order is not a list of training images"
    if tc.hard_fraction > 0 and n:
        per_epoch = max(n // tc.batch_size, 1)
        if state["step"] % per_epoch:  # mid-epoch: the rest of the epoch goes on in its order
            want = n if state["step"] < per_epoch else epoch_images(n, tc.batch_size)
            if order is None or len(order) != want:
                return f"its epoch's order is not the {want} images of an epoch"
    return None


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
        # scores are numbers, or None for a split that is not scored (NaN: an empty one)
        bad = [k for k, v in r.items() if k.endswith(("_loss", "_acc")) or k in ("lr", "batch_loss")
               if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool))]
        if bad:
            return f"a history record whose {bad[0]} is not a number"
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
