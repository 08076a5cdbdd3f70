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
from .files import (RUN_FILES, check_writable, finite, load_config, load_history, read_checked,
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
    return out


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


def read_member(run_dir: Path) -> dict[str, Any] | None:
    """One finished member run as a record for the comparison figures and summary:
    {name, optimizer, lr, seed, history, diverged, test_acc, test_loss, final_val_acc,
    best_val_acc, seconds}; None while
    it has no metrics.json (not run yet, or cut short)."""
    metrics = read_metrics(run_dir)
    if metrics is None:
        return None
    config = load_config(run_dir)
    history = load_history(run_dir)
    return {"name": Path(run_dir).name, "optimizer": config.optim.name, "lr": config.optim.lr,
            "seed": config.train.seed, "history": history,
            "diverged": bool(metrics.get("diverged")),
            "test_acc": finite(metrics.get("test_acc")), "test_loss": finite(metrics.get("test_loss")),
            "final_val_acc": finite(metrics.get("final_val_acc")),
            "best_val_acc": finite(metrics.get("best_val_acc")),
            "seconds": finite(metrics.get("train_seconds"))}


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
