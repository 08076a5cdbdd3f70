"""A comparison directory: plan.json, summary.json and runs/<cell>/, each an ordinary run.

comparisons/<time>-<model>/
  plan.json      the base config, the optimizers and rates asked for, seeds, grid, command
  summary.json   one row per optimizer (its chosen rate, mean ± std over seeds), computed once
  runs/<optimizer>-lr<lr>-seed<seed>/   a run directory per cell, grid-search cells included
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..fsutil import atomic_write_json
from .files import (METRICS, RUN_FILES, check_writable, finite, load_config, load_history, read_checked,
                    read_metrics)

PLAN, SUMMARY, MEMBERS = "plan.json", "summary.json", "runs"


def is_comparison(directory: str | os.PathLike) -> bool:
    """A comparison directory (fmnist compare) rather than a run directory (fmnist train)."""
    return (Path(directory) / PLAN).is_file()


def check_comparison_out(out: str | os.PathLike) -> Path:
    """Refuse an --out that cannot take a comparison (a file, unwritable, or a run directory
    of `fmnist train`, whose report.html it would overwrite), before anything is written."""
    out = check_writable(out)
    held = next((name for name in RUN_FILES if (out / name).exists()), None)
    if held:  # a comparison keeps its runs in runs/, never at its top
        raise RunError(f"--out {out} already holds a run of `fmnist train` ({held}); a "
                       "comparison needs a folder of its own: choose another --out")
    check_member_dir(out)
    return out


def check_member_dir(directory: str | os.PathLike, name: str | None = None) -> Path:
    """runs/ of a comparison, or runs/<name>/: a file in its place is named as what it is,
    not as an --out the user never gave."""
    members = Path(directory) / MEMBERS
    for path, what in ((members, "its member runs"), (members / (name or ""), f"the run of cell {name}")):
        if path.exists() and not path.is_dir():
            raise RunError(f"{path}: is a file where the comparison keeps {what}; delete it and "
                           "run the comparison's `fmnist compare` again")
    return members / name if name else members


def member_fix(run_dir: str | os.PathLike) -> str:
    """The fix for a damaged file of a member run: restoring it is rarely possible and running
    the same command again reads the same file, so the cell's folder goes and runs afresh."""
    return f"delete {run_dir} and run the comparison's `fmnist compare` again: that cell runs afresh"


def save_plan(directory: Path, plan: dict) -> Path:
    return atomic_write_json(Path(directory) / PLAN, plan)


def read_plan(directory: Path) -> dict | None:
    return read_checked(Path(directory) / PLAN,
                        lambda plan: None if isinstance(plan, dict) else "must be a JSON object",
                        "delete the comparison folder and run it again")


def save_summary(directory: Path, summary: dict) -> Path:
    return atomic_write_json(Path(directory) / SUMMARY, summary)


def read_summary(directory: Path) -> dict | None:
    return read_checked(Path(directory) / SUMMARY, _summary_problem,
                        "run the same `fmnist compare` again to recompute it")


ROW_KEYS = {"optimizer": str, "seeds": int, "diverged": int, "label": str, "runs": list}


def _summary_problem(summary: Any) -> str | None:
    if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
        return "not a comparison summary"
    for row in summary["rows"]:
        if not isinstance(row, dict) or any(not isinstance(row.get(k), t) for k, t in ROW_KEYS.items()):
            return "a row without its optimizer, label, seeds, diverged count and member runs"
        if any(not isinstance(n, str) or Path(n).name != n or n in ("", ".", "..") for n in row["runs"]):
            return "a member run that is not a folder of runs/"  # never a path out of it
        for key in ("lr", "seconds", "final_val_acc", "final_val_acc_std", "test_acc", "test_acc_std"):
            v = row.get(key)
            if v is not None and finite(v) is None:
                return f"{key} is not a number"
    return None


def member_dir(directory: Path, name: str) -> Path:
    return Path(directory) / MEMBERS / name


def comparison_of(run_dir: str | os.PathLike) -> Path | None:
    """The comparison directory whose member (cell) `run_dir` is, else None."""
    run_dir = Path(run_dir)
    if run_dir.parent.name == MEMBERS and is_comparison(run_dir.parent.parent):
        return run_dir.parent.parent
    return None


def read_member(run_dir: Path) -> dict[str, Any] | None:
    """One finished member run as a record for the comparison figures and summary:
    {name, optimizer, lr, seed, history, diverged, test_acc, test_loss, final_val_acc,
    best_val_acc, seconds}; None while
    it has no metrics.json (not run yet, or cut short)."""
    fix = member_fix(run_dir)
    metrics = read_metrics(run_dir, fix)
    if metrics is None:
        return None
    why = _member_problem(metrics)
    if why:  # `{}` was read as a diverged run and silently dropped from the ranking
        raise RunError(f"{Path(run_dir) / METRICS}: {why}; {fix}")
    config = load_config(run_dir, fix)
    history = load_history(run_dir, fix)
    return {"name": Path(run_dir).name, "optimizer": config.optim.name, "lr": config.optim.lr,
            "seed": config.train.seed, "history": history,
            "diverged": bool(metrics.get("diverged")),
            "test_acc": finite(metrics.get("test_acc")), "test_loss": finite(metrics.get("test_loss")),
            "final_val_acc": finite(metrics.get("final_val_acc")),
            "best_val_acc": finite(metrics.get("best_val_acc")),
            "seconds": finite(metrics.get("train_seconds"))}


def _member_problem(m: dict) -> str | None:
    """What a member's metrics.json lacks of what a record needs (read_metrics checked the
    types of what is there), else None."""
    if not isinstance(m.get("diverged"), bool):
        return ("diverged must be true or false" if "diverged" in m else
                "no diverged (true or false), test_acc, test_loss: not a finished run's metrics")
    if m["diverged"]:
        return None  # a run that diverged has no scores
    for key in ("test_acc", "test_loss", "train_seconds"):
        if finite(m.get(key)) is None:
            return f"{key} must be a number (the run is not marked diverged)"
    for key in ("final_val_acc", "best_val_acc"):
        if key not in m or (m[key] is not None and finite(m[key]) is None):
            return f"{key} must be a number, or null for a run without a validation split"
    return None


def read_members(directory: str | os.PathLike, names: list[str] | None = None) -> list[dict[str, Any]]:
    """The finished member runs named (default: those summary.json lists, else every
    finished one), in that order."""
    directory = Path(directory)
    if names is None:
        summary = read_summary(directory)
        names = ([n for row in summary["rows"] for n in row.get("runs", [])] if summary
                 else sorted(p.name for p in (directory / MEMBERS).glob("*") if p.is_dir()))
    records = (read_member(member_dir(directory, n)) for n in names)
    return [r for r in records if r is not None]
