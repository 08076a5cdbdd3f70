"""Compare optimizers the DeepOBS way: same model, same data order per seed, several seeds.

    plan = make_plan("msgd,adam:1e-3", overrides={"model": {"name": "mlp"}}, seeds=3)
    summary = run_plan(plan, "comparisons/mine")

A comparison is a folder of ordinary run directories (runs/comparison.py), one per cell
(optimizer, learning rate, seed), plus plan.json and summary.json. plan.py decides what
runs (torch-free, so `fmnist compare --help` is instant); run.py runs it, execute.py decides
where each cell runs (this process, N worker processes, or Ray tasks).
"""
from importlib import import_module

from .execute import Execution, Failure, run_cells
from .plan import PRESETS, PROTOCOL, Cell, Options, Plan, Preset, lr_grid, make_plan, parse_optimizers, protocol_base

_RUN = ("check_plan", "format_table", "run_cell", "run_plan")
__all__ = ["PRESETS", "PROTOCOL", "Cell", "Execution", "Failure", "Options", "Plan", "run_cells", "Preset", "lr_grid", "make_plan", "parse_optimizers",
           "protocol_base", *_RUN]


def __getattr__(name: str):
    if name in _RUN:
        return getattr(import_module(".run", __name__), name)
    raise AttributeError(f"module 'fmnist.compare' has no attribute {name!r}")
