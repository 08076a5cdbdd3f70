"""Run a plan into a comparison directory: each cell an ordinary run directory.

Resumable: a cell with metrics.json is done and read back, a cell cut short resumes from
its checkpoint, so the same command continues an interrupted comparison. A folder made
with other settings is refused rather than mixed.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .. import runs
from ..api import resume, train
from ..build import build, check
from ..errors import ConfigError
from ..loop import TrainingDiverged
from ..metrics import summarise_runs
from .plan import Cell, Plan

Log = Callable[[str], None]


def run_cell(plan: Plan, cell: Cell, out: Path, log: Log) -> dict:
    """Train one cell, or read it back when an earlier call finished it."""
    config = cell.config(plan.base)
    cell_dir = runs.member_dir(out, cell.name)
    if (cell_dir / runs.CONFIG).is_file():
        if runs.load_config(cell_dir) != config:
            raise ConfigError(f"{cell_dir}: was run with other settings; give a new --out for "
                              "this comparison (or delete that folder)")
        if runs.read_metrics(cell_dir) is not None:
            log(f"  {cell.name}: done before, skipped")
            return runs.read_member(cell_dir)
    try:
        if (cell_dir / runs.CHECKPOINT).is_file():
            resume(cell_dir, plots=False)
        else:
            shutil.rmtree(cell_dir, ignore_errors=True)  # cut short before its first epoch
            train(config, out=cell_dir, plots=False, argv=["fmnist", "compare", "cell", cell.name])
    except TrainingDiverged:
        pass  # recorded in the cell's metrics.json
    if not plan.keep_checkpoints:
        runs.RunStore(cell_dir).remove_checkpoints()
    record = runs.read_member(cell_dir)
    state = ("DIVERGED" if record["diverged"] else
             f"val {100 * record['final_val_acc']:.2f}% test {100 * record['test_acc']:.2f}%")
    log(f"  {cell.name}: {state} ({record['seconds'] or 0:.0f}s)")
    return record


def choose_lr(plan: Plan, optimizer: str, out: Path, log: Log) -> float:
    """Grid search on the first seed: the lr with the best final validation accuracy."""
    cells = plan.grid(optimizer)
    log(f"{optimizer}: grid search over lr {', '.join(f'{c.lr:g}' for c in cells)} "
        f"(seed {plan.seeds[0]})")
    tried = [run_cell(plan, c, out, log) for c in cells]
    ok = [r for r in tried if not r["diverged"]]
    if not ok:
        raise ConfigError(f"{optimizer}: every learning rate of the grid diverged; give one "
                          f"with --optimizers {optimizer}:LR")
    return max(ok, key=lambda r: (r["final_val_acc"], -r["lr"]))["lr"]


def run_plan(plan: Plan, out: str | Path, log: Log = print) -> dict:
    """Run every cell of `plan` into `out`; returns (and writes) summary.json's content."""
    out = Path(out)
    settings = plan.settings()
    saved = runs.read_plan(out)
    if saved is not None and {k: saved.get(k) for k in settings} != settings:
        differs = next(k for k in settings if saved.get(k) != settings[k])
        raise ConfigError(f"{out}: was run with other settings ({differs} differs); give a new "
                          "--out for this comparison (or delete that folder)")
    runs.check_writable(out)
    if saved is None:
        check(plan.base)  # unknown names, then missing data, fail before the folder is made
        build(plan.base, optimizer=False)
        runs.save_plan(out, {**settings, **plan.extra})
    chosen_by, records = {}, []
    for optimizer, lr in plan.optimizers:
        chosen_by[optimizer] = "fixed"
        if lr is None:  # the grid's cell at the chosen lr is also the first seed's cell
            lr, chosen_by[optimizer] = choose_lr(plan, optimizer, out, log), "grid search (validation accuracy)"
        log(f"{optimizer} lr={lr:g} ({chosen_by[optimizer]}): {len(plan.seeds)} seeds")
        records += [run_cell(plan, Cell(optimizer, lr, s), out, log) for s in plan.seeds]
    rows = [{**row, "lr_chosen_by": chosen_by[row["optimizer"]]} for row in summarise_runs(records)]
    summary = {"rows": rows, "test_acc": "final weights on the official test split; "
               "nothing was chosen on it"}
    runs.save_summary(out, summary)
    return summary


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
                     f"{r['seconds'] or 0:>6.0f}")
    lines.append("test acc: the final weights on the 10k test images (mean ± std over seeds); "
                 "learning rates were never chosen on it.")
    return "\n".join(lines)

