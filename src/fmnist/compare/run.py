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
from ..errors import ConfigError, FmnistError, RunError
from ..loop import TrainingDiverged
from ..metrics import summarise_runs
from .execute import Execution, Failure, check_ready, run_cells
from .plan import PRESETS, Cell, Plan

Log = Callable[[str], None]


def run_cell(plan: Plan, cell: Cell, out: Path, log: Log) -> dict:
    """Train one cell, or read it back when an earlier call finished it."""
    config = cell.config(plan.base)
    cell_dir = runs.check_member_dir(out, cell.name)
    fix = runs.member_fix(cell_dir)  # a damaged file read again fails again: not "restore it"
    if (cell_dir / runs.CONFIG).is_file():
        if runs.load_config(cell_dir, fix) != config:
            raise ConfigError(f"{cell_dir}: was run with other settings; give a new --out for "
                              "this comparison (or delete that folder)")
        if runs.read_metrics(cell_dir, fix) is not None:
            log(f"  {cell.name}: done before, skipped")
            if not plan.keep_checkpoints:  # killed after its metrics, before this cleanup
                runs.RunStore(cell_dir).remove_checkpoints()
            return runs.read_member(cell_dir)
    try:
        if (cell_dir / runs.CHECKPOINT).is_file():
            try:
                resume(cell_dir, plots=False)
            except RunError as exc:  # its checkpoint or history: the run's own fix, or the cell's
                raise RunError(f"{exc}; for this comparison's cell: {fix}") from None
        else:
            shutil.rmtree(cell_dir, ignore_errors=True)  # cut short before its first epoch
            train(config, out=cell_dir, plots=False, argv=["fmnist", "compare", "cell", cell.name])
    except TrainingDiverged:
        pass  # recorded in the cell's metrics.json
    if not plan.keep_checkpoints:
        runs.RunStore(cell_dir).remove_checkpoints()
    record = runs.read_member(cell_dir)
    val = record["final_val_acc"]
    state = ("DIVERGED" if record["diverged"] else
             (f"val {100 * val:.2f}% " if val is not None else "") + f"test {100 * record['test_acc']:.2f}%")
    log(f"  {cell.name}: {state} ({record['seconds'] or 0:.0f}s)")
    return record


def check_plan(plan: Plan) -> None:
    """Every optimizer's cell config (its keywords, --opt-arg, --model-arg), as `fmnist train`
    checks one, without loading any data."""
    for name, lr in plan.optimizers:
        check(Cell(name, lr or plan.grid(name)[0].lr, plan.seeds[0]).config(plan.base))


def _chosen_lr(optimizer: str, records: list[dict]) -> float:
    """The grid's rate with the best final validation accuracy (ties: the smaller rate)."""
    ok = [r for r in records if not r["diverged"]]
    if not ok:
        raise ConfigError(f"{optimizer}: every learning rate of the grid diverged; give one "
                          f"with --optimizers {optimizer}:LR")
    return max(ok, key=lambda r: (r["final_val_acc"], -r["lr"]))["lr"]


def run_plan(plan: Plan, out: str | Path, log: Log | None = print,
             execution: Execution = Execution(), progress: bool = False) -> dict:
    """Run every cell of `plan` into `out`; returns (and writes) summary.json's content.

    Two waves of independent cells: the grid searches of every optimizer whose rate is not
    given, then every seed at the chosen rates (the grid's cell at the chosen rate is also the
    first seed's). Cells whose worker failed are named at the end, after the rest finished."""
    out, log = Path(out), log or (lambda _m: None)
    runs.check_comparison_out(out)
    settings = plan.settings()
    saved = runs.read_plan(out)
    if saved is not None and not any(runs.member_dir(out, "").glob("*")):
        saved = None  # nothing ran yet: a corrected command may plan the folder afresh
    if saved is not None and {k: saved.get(k) for k in settings} != settings:
        differs = next(k for k in settings if saved.get(k) != settings[k])
        raise ConfigError(f"{out}: was run with other settings ({differs} differs); give a new "
                          "--out for this comparison (or delete that folder)")
    check_ready(execution)
    if saved is None:
        check_plan(plan)  # then the data, before the folder
        build(plan.base, optimizer=False)
        runs.save_plan(out, {**settings, **plan.extra})
    searched = [name for name, lr in plan.optimizers if lr is None]
    grid = [c for name in searched for c in plan.grid(name)]
    if grid:
        log(f"grid search: {', '.join(searched)} over {plan.grid_points} rates each (seed "
            f"{plan.seeds[0]}, final validation accuracy)")
    done = run_cells(plan, grid, out, log, execution, progress)
    _raise_failures(done)
    chosen = {name: (lr, "fixed") if lr is not None else
              (_chosen_lr(name, [done[c.name] for c in plan.grid(name)]),
               "grid search (validation accuracy)") for name, lr in plan.optimizers}
    for name, (lr, how) in chosen.items():
        log(f"{name} lr={lr:g} ({how}): {len(plan.seeds)} seeds")
    cells = [Cell(name, chosen[name][0], s) for name, _ in plan.optimizers for s in plan.seeds]
    # seed by seed: a long plan stopped part-way leaves whole seeds, every optimizer alike
    todo = sorted((c for c in cells if c.name not in done), key=lambda c: plan.seeds.index(c.seed))
    done.update(run_cells(plan, todo, out, log, execution, progress))
    _raise_failures(done)
    records = [done[c.name] for c in cells]
    rows = [{**row, "lr_chosen_by": chosen[row["optimizer"]][1]} for row in summarise_runs(records)]
    summary = {"rows": rows, "notes": plan.notes(),
               "paper": PRESETS[plan.preset].paper if plan.preset else {},
               "test_acc": "final weights on the official test split; nothing was chosen on it"}
    runs.save_summary(out, summary)
    return summary


def _raise_failures(done: dict) -> None:
    failed = [r for r in done.values() if isinstance(r, Failure)]
    if failed:
        # an error of ours names its own fix (a damaged cell fails again on every retry); a
        # worker that died or crashed may well finish when the same command runs it again
        retry = [f.name for f in failed if f.retry]
        again = ("" if not retry else ": run the same command again to retry these" if len(retry) == len(failed)
                 else f": run the same command again to retry {', '.join(retry)} (and the others "
                 "after their fixes)")
        raise FmnistError(f"{len(failed)} cell(s) failed: " + "; ".join(f"{f.name}: {f.why}" for f in failed)
                          + "; the others are done" + again)


def format_table(rows: list[dict], paper: dict | None = None) -> str:
    """The summary rows as a table; `paper`: optimizer -> the paper's final test accuracy."""
    def pm(mean, std, scale=100.0):  # accuracies in %, 2 decimals; losses as they are, 4
        if mean is None:
            return "      -       "
        return f"{scale * mean:6.2f} ± {scale * std:4.2f}" if scale == 100.0 else f"{mean:.4f} ± {std:.4f}"

    head = (f"{'optimizer':<10} {'lr':>8}  {'final val acc %':>15}  {'best val acc %':>15}  "
            f"{'test acc %':>15}  {'test loss':>15}  {'diverged':>8}  {'s/run':>6}"
            + ("  paper %" if paper else ""))
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['optimizer']:<10} {r['lr']:>8.3g}  {pm(r['final_val_acc'], r['final_val_acc_std']):>15}"
                     f"  {pm(r['best_val_acc'], r['best_val_acc_std']):>15}  "
                     f"{pm(r['test_acc'], r['test_acc_std']):>15}  "
                     f"{pm(r['test_loss'], r['test_loss_std'], 1.0):>15}  {r['diverged']:>8}  "
                     f"{r['seconds'] or 0:>6.0f}"
                     + (f"  {100 * paper[r['optimizer']]:7.1f}" if paper and r["optimizer"] in paper else ""))
    ranked = sorted((r for r in rows if r["test_acc"] is not None), key=lambda r: -r["test_acc"])
    lines.append("ranking by mean final test accuracy: " + " > ".join(r["optimizer"] for r in ranked))
    lines.append("test: the final weights on the 10k test images (mean ± std over seeds); "
                 "learning rates were never chosen on it.")
    return "\n".join(lines)

