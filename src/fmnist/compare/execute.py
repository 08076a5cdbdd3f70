"""Where a plan's cells run: in this process, in N worker processes, or as Ray tasks.

Every cell is independent (its own seed, data order and run directory), so they can run in
any order and anywhere; the numbers depend only on the cell's config. Each worker gets its
share of the CPU threads (OMP_NUM_THREADS, which `device.usable_cores` honours) or its own
GPU. A worker that dies is reported by the cell's name and the others finish; the same
command run again runs only the cells still missing.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from ..config import setting
from ..errors import ConfigError, FmnistError
from ..progress import bar as progress_bar
from .plan import Cell, Plan

Log = Callable[[str], None]

RAY_UNIT = 1e-4  # Ray's resource precision: a smaller fraction is refused
MAX_CPUS, MAX_GPUS = 1024, 64  # more for one cell is a typo, and Ray would wait for it forever


@dataclass(frozen=True)
class Execution:
    """How the cells run; none of it changes a number (each cell's config does)."""

    jobs: int = setting(1, "cells run at a time in separate processes, each with its share of "
                        "the CPU threads (or its own GPU); the same numbers as --jobs 1 with "
                        "the same --threads")
    ray: str | None = setting(None, "run the cells as tasks on a Ray cluster at ADDRESS, or on a "
                              "local one when no address is given (pip install 'fmnist[ray]')",
                              nargs="?", const="local", metavar="ADDRESS")
    # None: not given (1 CPU, no GPU), so that either given without --ray is refused, not ignored
    cpus_per_run: float | None = setting(None, "with --ray: CPUs each cell reserves (and its "
                                         "threads) (default: 1)")
    gpus_per_run: float | None = setting(None, "with --ray: GPUs each cell reserves (default: 0)")

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"jobs={self.jobs}: must be >= 1")
        given = [f for f, v in (("--cpus-per-run", self.cpus_per_run),
                                ("--gpus-per-run", self.gpus_per_run)) if v is not None]
        if given and self.ray is None:
            raise ConfigError(f"{' and '.join(given)}: what each cell reserves on a Ray cluster, "
                              f"so only with --ray; add --ray, or drop {'them' if len(given) > 1 else 'it'} "
                              "(--jobs N runs the cells in processes here)")
        # Ray refuses a fraction finer than 1e-4 of a resource, and raises a traceback on nan
        # or inf after the cluster has started; a cell that reserves more than any machine
        # has waits forever for it
        for flag, value, zero_ok, high in (("--cpus-per-run", self.cpus_per_run, False, MAX_CPUS),
                                           ("--gpus-per-run", self.gpus_per_run, True, MAX_GPUS)):
            if value is not None and not (math.isfinite(value) and (
                    RAY_UNIT <= value <= high or (zero_ok and value == 0))):
                raise ConfigError(f"{flag} {value:g}: give {'0 or ' if zero_ok else ''}a number "
                                  f"from {RAY_UNIT:g} (Ray's smallest fraction) to {high}")

    @property
    def cpus(self) -> float:
        """CPUs a Ray task reserves."""
        return 1.0 if self.cpus_per_run is None else self.cpus_per_run

    @property
    def gpus(self) -> float:
        """GPUs a Ray task reserves."""
        return 0.0 if self.gpus_per_run is None else self.gpus_per_run


@dataclass(frozen=True)
class Failure:
    """A cell that did not finish, and why."""

    name: str
    why: str
    retry: bool = True  # False: an FmnistError, whose message names its fix; running again won't


def run_cells(plan: Plan, cells: list[Cell], out: Path, log: Log,
              execution: Execution = Execution(), progress: bool = False) -> dict[str, dict | Failure]:
    """cell name -> its record (runs.read_member), or a Failure where its worker failed;
    `progress`: one bar over the cells, naming the running ones (worker processes)."""
    from .run import run_cell

    if not cells:
        return {}
    if execution.ray is not None:
        return _on_ray(plan, cells, out, log, execution)
    if execution.jobs == 1:
        return {c.name: run_cell(plan, c, out, log) for c in cells}
    return _in_processes(plan, cells, out, log, execution.jobs, progress)


# --- N worker processes -----------------------------------------------------------------

def _worker(plan: Plan, cell: Cell, out: str, threads: int, gpu: str | None, conn,
            parent: int) -> None:
    """One cell in a fresh process: its thread share and GPU are set before torch loads."""
    from ..procs import die_with_parent

    die_with_parent(parent)  # a killed compare's cells stop with it
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if os.environ.get("FMNIST_TEST_KILL_CELL") == cell.name:  # fault injection, for the tests
        os.kill(os.getpid(), 9)
    try:
        from .run import run_cell
        run_cell(plan, cell, Path(out), lambda _m: None)
        conn.send(None)
    except FmnistError as exc:
        conn.send(Failure(cell.name, str(exc), retry=False))
    except BaseException as exc:  # noqa: BLE001 - a worker reports everything, then ends
        conn.send(Failure(cell.name, f"{type(exc).__name__}: {exc}"))


def _in_processes(plan: Plan, cells: list[Cell], out: Path, log: Log, jobs: int, progress: bool) -> dict:
    from .. import runs
    from ..device import usable_cores

    threads = max(1, usable_cores() // jobs)
    gpus = _gpus()  # cells take them in turn; with fewer GPUs than jobs, cells share one
    ctx = mp.get_context("spawn")  # a fresh interpreter: no torch state forked mid-flight
    pending, running, results = list(cells), {}, {}
    bar = progress_bar(progress, total=len(cells), desc="cells", unit="cell", dynamic_ncols=True)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                cell = pending.pop(0)
                slot = next(i for i in range(jobs) if i not in {s for s, *_ in running.values()})
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(plan, cell, str(out), threads,
                                                         gpus[slot % len(gpus)] if gpus else None, send,
                                                         os.getpid()),
                                   name=f"fmnist-{cell.name}", daemon=True)
                proc.start()
                send.close()
                running[proc.sentinel] = (slot, proc, recv, cell)
            bar.set_postfix_str("running: " + ", ".join(c.name for *_, c in running.values()))
            for sentinel in wait(list(running)):
                _slot, proc, recv, cell = running.pop(sentinel)
                proc.join()
                try:  # None: done; a Failure: its error; nothing at all: the worker died
                    failure = recv.recv()
                except EOFError:
                    failure = Failure(cell.name, f"its worker died (exit code {proc.exitcode})")
                if failure is None:
                    results[cell.name] = runs.read_member(runs.member_dir(out, cell.name))
                    log(f"  {cell.name}: done")
                else:
                    results[cell.name] = failure
                    log(f"  {cell.name}: FAILED: {failure.why}")
                bar.update()
    finally:
        bar.close()
        for _slot, proc, _recv, _cell in running.values():  # interrupted: stop the others
            proc.terminate()
    return results


def _gpus() -> list[str]:
    """The GPUs the cells share, as CUDA_VISIBLE_DEVICES entries for the workers: the
    parent's own entries where it has the variable (an index, or a GPU-<uuid>: "0" in a
    worker would be another GPU than the parent's "3"), else torch's indices."""
    # without importing torch here: a CUDA_VISIBLE_DEVICES list says which to share
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


# --- Ray ----------------------------------------------------------------------------------

def _ray_cell(plan: Plan, cell: Cell) -> dict[str, bytes]:
    """A cell on a Ray worker, in a local temp folder; returns its run directory's files, so
    the driver needs no file system shared with the cluster."""
    import tempfile

    from .run import run_cell

    with tempfile.TemporaryDirectory() as tmp:
        run_cell(plan, cell, Path(tmp), lambda _m: None)
        folder = Path(tmp) / "runs" / cell.name
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def check_ready(execution: Execution) -> None:
    """Refuse an execution that cannot start here, before the comparison's folder is made."""
    import importlib.util

    if execution.ray is not None and importlib.util.find_spec("ray") is None:
        raise ConfigError(NO_RAY)


NO_RAY = "--ray needs Ray: pip install 'fmnist[ray]'"


def _on_ray(plan: Plan, cells: list[Cell], out: Path, log: Log, execution: Execution) -> dict:
    try:
        import ray
    except ImportError:
        raise ConfigError(NO_RAY) from None
    from .. import runs
    from ..fsutil import atomic_write_bytes

    todo = [c for c in cells
            if runs.read_metrics(runs.member_dir(out, c.name), runs.member_fix(runs.member_dir(out, c.name))) is None]
    results = {c.name: runs.read_member(runs.member_dir(out, c.name)) for c in cells if c not in todo}
    if not todo:
        return results
    if not ray.is_initialized():
        if execution.ray == "local":
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=execution.ray, log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=execution.cpus, num_gpus=execution.gpus,
                      max_retries=0)(_ray_cell)
    refs = {task.remote(plan, c): c for c in todo}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        cell = refs.pop(done[0])
        try:
            files = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's error or its death
            cause = getattr(exc, "cause", None)  # RayTaskError: the worker's own exception
            results[cell.name] = (Failure(cell.name, str(cause), retry=False) if isinstance(cause, FmnistError)
                                  else Failure(cell.name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
            log(f"  {cell.name}: FAILED on Ray: {results[cell.name].why}")
            continue
        folder = runs.check_member_dir(out, cell.name)
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == runs.METRICS):
            atomic_write_bytes(folder / name, data)  # metrics.json last: it marks the cell done
        results[cell.name] = runs.read_member(folder)
        log(f"  {cell.name}: done on Ray")
    return results
