"""The files of a run directory other than checkpoints: every reader and writer of them.

Every file is written atomically (fsutil), so a run killed at any moment leaves only whole
files; every reader checks what it reads and names the file and the fix when it is wrong.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..config import Facts, RunConfig
from ..errors import ConfigError, FmnistError, RunError
from ..fsutil import atomic_write_json, atomic_write_text, read_limited

CONFIG, HISTORY, METRICS, PREDICTIONS = "config.json", "history.jsonl", "metrics.json", "predictions.csv"
CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
EXPLAIN = "explain.json"
EXPLAIN_FIGURES = {  # `fmnist explain`'s figures -> (title, what it shows), in the report's order
    "explain-ig.png": ("Where the model looks: Integrated Gradients", "attribution to the predicted class"),
    "explain-occlusion.png": ("Where the model looks: occlusion",
                              "fall of the predicted class's logit when a patch is blacked out"),
    "explain-tsne.png": ("What the features separate: t-SNE", "penultimate-layer features of every test image"),
    "explain-filters.png": ("What the first layer learned", "the first convolution's filters"),
    "explain-class-means.png": ("Each class as the model sees it", "mean test image per class after input scaling"),
}


def new_run_dir(root: str | os.PathLike, model: str) -> Path:
    """A fresh runs/<YYYYmmdd-HHMMSS>-<model>/ (suffixed -2, -3 ... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{model}"
    _mkdir(Path(root))
    for k in range(1, 1000):
        path = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir()  # exist_ok=False: two runs started in the same second get two folders
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"{path}: cannot create the run directory ({exc.strerror})") from None
    raise RunError(f"{base}: 999 runs of this name in one second; give --out")


def check_writable(folder: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse a folder that cannot be made or written in (under a file, read-only), before
    any data is loaded or anything is built."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{flag} {folder}: is a file; give a folder")
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise RunError(f"{flag} {folder}: {base} is a file, so no folder can be made there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise RunError(f"{flag} {folder}: {base} is not writable; choose a folder you can write to")
    return folder


RUN_FILES = (CHECKPOINT, METRICS, CONFIG, HISTORY)  # any of them: the folder holds a run


def check_out(out: str | os.PathLike) -> Path:
    """Refuse an --out that cannot take a new run, before anything is built or written."""
    from .comparison import is_comparison  # comparison.py reads runs through this module

    out = check_writable(out)
    if is_comparison(out):  # its report.html and figures would be mixed with the run's
        raise RunError(f"--out {out} holds a comparison (plan.json of `fmnist compare`); "
                       "choose another --out for this run")
    if _unstarted(out):  # killed before its first checkpoint (SIGKILL: no clean-up ran)
        raise RunError(f"{out} holds a run that never reached its first checkpoint (nothing "
                       f"to resume); delete {out}, or choose another --out")
    if any((out / name).exists() for name in RUN_FILES):
        raise RunError(f"{out} already holds a run (or another tool's files); use --resume "
                       f"{out} to continue a run, or choose another --out")
    return out


def _unstarted(out: Path) -> bool:
    """A folder holding only the config.json of an fmnist run that never reached its first
    checkpoint (claimed, or written, then killed): nothing to resume. Another tool's
    config.json is not taken for one (it is no one's to tell to delete)."""
    path = out / CONFIG
    if not path.is_file() or any((out / n).exists() for n in (CHECKPOINT, METRICS)):
        return False
    try:
        if path.stat().st_size == 0:  # claimed (train's claim), killed before it was written
            return True
        d = json.loads(read_limited(path, 1 << 20, "config"))
    except (OSError, ValueError, FmnistError):
        return False
    return isinstance(d, dict) and {"fmnist", "resolved", "train"} <= d.keys()


def make_run_dir(out: str | os.PathLike | None, root: str | os.PathLike, model: str) -> Path:
    """The run's folder, created now: the caller has built everything the run needs."""
    if out is None:
        return new_run_dir(root, model)
    _mkdir(Path(out))
    return Path(out)


def discard_unstarted(run_dir: Path, created: bool) -> None:
    """A run that failed before its first checkpoint (a full disk at epoch 0's) cannot be
    resumed, and its config.json would make `--out` refuse the same command as "already
    holds a run": remove the files a starting run writes, and the folder if the run made it
    and nothing else is in it, so that the command can simply be run again."""
    for name in (CONFIG, HISTORY, BEST, CHECKPOINT, "curves.png"):
        (run_dir / name).unlink(missing_ok=True)
    if created:
        try:
            run_dir.rmdir()
        except OSError:  # not empty: someone else's files stay, and the folder with them
            pass


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run directory ({exc.strerror})") from None


# no run file is larger: a history of 100,000 evaluations, 10,000 predictions of 1,000
# classes; a bigger one (or a device, a pipe) is refused before it is read
MAX_RUN_FILE = 256 << 20


def read_text(path: Path, fix: str) -> str:
    """A run file's text, bounded, as UTF-8; every way it can be unreadable named."""
    if not Path(path).exists():
        raise RunError(f"{path}: missing; {fix}")
    try:
        return read_limited(path, MAX_RUN_FILE, "run file").decode("utf-8")
    except FmnistError as exc:
        raise RunError(f"{exc}; {fix}") from None
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text; {fix}") from None


def read_json(path: Path, fix: str = "restore it or run again") -> Any:
    text = read_text(path, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc.msg}); {fix}") from None
    except (ValueError, RecursionError) as exc:  # 5,000-digit numbers, nesting 100,000 deep
        raise RunError(f"{path}: not JSON we read ({type(exc).__name__}); {fix}") from None


def read_checked(path: Path, problem: Callable[[Any], str | None], fix: str) -> Any | None:
    """An optional JSON run file, None when absent; `problem(content)` names what is wrong
    with what its readers use (None: nothing), and that becomes the error with `fix`."""
    if not path.is_file():
        return None
    content = read_json(path, fix)
    why = problem(content)
    if why:
        raise RunError(f"{path}: {why}; {fix}")
    return content


# --- config.json: the settings, the resolved facts and the command line ---------------

class RunClaimed(RunError):
    """The folder was taken by another run starting at the same moment."""


def claim(run_dir: Path) -> None:
    """Take `run_dir` for a new run: config.json created exclusively (then replaced whole by
    save_config), so that of two `fmnist train --out SAME` started together one gets the
    folder and the other an error, instead of both finishing into it."""
    try:
        os.close(os.open(Path(run_dir) / CONFIG, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        raise RunClaimed(f"{run_dir} already holds a run (another `fmnist train` may be "
                         "starting there); choose another --out") from None
    except OSError as exc:
        raise RunError(f"{run_dir}: cannot create the run's config.json ({exc.strerror})") from None


def save_config(run_dir: Path, config: RunConfig, facts: Facts,
                argv: list[str] | None = None) -> Path:
    import torch

    argv = sys.argv if argv is None else argv
    return atomic_write_json(Path(run_dir) / CONFIG, {
        **config.to_dict(), "resolved": facts.to_dict(), "command": " ".join(argv),
        "torch": torch.__version__, "fmnist": __version__})


def _config_dict(run_dir: Path, fix: str | None = None) -> dict:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: is a file; give the run's directory (made by `fmnist train`)")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not (run_dir / CONFIG).is_file():
        raise RunError(f"{run_dir / CONFIG}: missing; " + (fix or f"is {run_dir} a run directory "
                                                            "made by `fmnist train`?"))
    return read_json(run_dir / CONFIG, *([fix] if fix else []))


def load_config(run_dir: str | os.PathLike, fix: str | None = None) -> RunConfig:
    """config.json's settings; `fix`: what a damaged file's error tells to do (a comparison's
    member is deleted and run again, not restored)."""
    path = Path(run_dir) / CONFIG
    d = _config_dict(Path(run_dir), fix)
    try:
        return RunConfig.from_dict({k: v for k, v in d.items() if k in ("data", "model", "optim", "train")}
                                   if isinstance(d, dict) else d, where=str(path))
    except ConfigError as exc:
        raise RunError(f"{exc}; {fix or 'restore the file written by `fmnist train`'}") from None


def load_facts(run_dir: str | os.PathLike) -> Facts | None:
    """The resolved facts of config.json; None for a run written before they were recorded."""
    path = Path(run_dir) / CONFIG
    d = _config_dict(Path(run_dir))
    if not isinstance(d, dict) or "resolved" not in d:
        return None
    try:
        return Facts.from_dict(d["resolved"], where=f"{path}: resolved")
    except ConfigError as exc:
        raise RunError(str(exc)) from None


# --- history.jsonl --------------------------------------------------------------------

def save_history(run_dir: Path, history: list[dict]) -> Path:
    return atomic_write_text(Path(run_dir) / HISTORY, "".join(json.dumps(r) + "\n" for r in history))


def read_history(path: str | os.PathLike, fix: str | None = None) -> list[dict[str, Any]]:
    """history.jsonl as records sorted by step (else epoch), the last one kept where a resumed
    run repeats one; a torn last line (the trainer mid-append) is ignored. `fix`: what a
    damaged file's error tells to do, besides fixing the line."""
    lines = read_text(Path(path), fix or "restore it or train again").splitlines()
    line_fix = "fix or delete that line" + (f", or {fix}" if fix else "")
    by_epoch: dict[Any, dict[str, Any]] = {}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) - 1:
                break
            raise RunError(f"{path}: line {n + 1} is not JSON ({e.msg}); {line_fix}") from None
        except (ValueError, RecursionError):
            raise RunError(f"{path}: line {n + 1} is not JSON we read; {line_fix}") from None
        # keyed by step (evaluations every N steps fall between epochs), else by epoch
        key = record.get("step", record.get("epoch", n)) if isinstance(record, dict) else None
        if not isinstance(key, (int, float)) or isinstance(key, bool) or finite(key) is None:
            raise RunError(f"{path}: line {n + 1} is not an epoch record; {line_fix}")
        by_epoch[key] = record
    return [by_epoch[k] for k in sorted(by_epoch)]


def load_history(run_dir: str | os.PathLike, fix: str | None = None) -> list[dict]:
    path = Path(run_dir) / HISTORY
    return read_history(path, fix) if path.exists() else []


# --- metrics.json and predictions.csv --------------------------------------------------

def save_metrics(run_dir: Path, metrics: dict) -> Path:
    return atomic_write_json(Path(run_dir) / METRICS, metrics)


def read_metrics(run_dir: str | os.PathLike, fix: str | None = None) -> dict | None:
    """metrics.json, or None when the run has not been scored yet; `fix`: what a damaged
    file's error tells to do."""
    return read_checked(Path(run_dir) / METRICS, _metrics_problem,
                        fix or "restore the file written by `fmnist train`, or train again")


def _metrics_problem(m: Any) -> str | None:
    """What is wrong with a metrics.json's content that its readers use, else None."""
    if not isinstance(m, dict):
        return "must be a JSON object"
    names = m.get("class_names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return "class_names must be a list of names"
    if "confusion" in m:  # null included: the figure reads whatever the key holds
        why = _confusion_problem(m["confusion"], names)
        if why:
            return why
    rows = m.get("per_class", [])
    keys = ("precision", "recall", "f1", "support")
    if not (isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                           and all(finite(r.get(k)) is not None for k in keys) for r in rows)):
        return "per_class must be a list of {name, precision, recall, f1, support}"
    for key in ("accuracy", "loss", "test_acc", "test_loss", "macro_f1", "train_seconds"):
        if m.get(key) is not None and finite(m[key]) is None:
            return f"{key} must be a number"
    for key in ("split", "weights"):  # written into exported files' string metadata
        if m.get(key) is not None and not isinstance(m[key], str):
            return f"{key} must be a name"
    return None


# beyond any run's confusion matrix: MAX_RUN_FILE is sized for 1,000 classes, and counts
# up to 2**40 keep the sum of 1,000 x 1,000 cells within int64 (the figure's dtype)
MAX_CLASSES, MAX_COUNT = 1000, 2**40


def _confusion_problem(cm: Any, names: list) -> str | None:
    """What is wrong with metrics.json's confusion, else None."""
    if not (isinstance(cm, list) and cm and all(
            isinstance(r, list) and len(r) == len(cm) and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r) for r in cm)):
        return "confusion must be a square table of counts (integers >= 0), one row per class"
    if len(cm) > MAX_CLASSES:
        return f"confusion has {len(cm):,} rows, more than the {MAX_CLASSES:,} classes a run can have"
    if any(v > MAX_COUNT for r in cm for v in r):
        return f"confusion holds a count above {MAX_COUNT:,}, more than any test split has images"
    if names and len(names) != len(cm):
        return f"confusion has {len(cm)} rows but class_names names {len(names)} classes"
    return None


def save_predictions(run_dir: Path, labels: np.ndarray, probs: np.ndarray,
                     name: str = PREDICTIONS) -> Path:
    """One row per image: index, true label (-1 if unknown), predicted label, probabilities."""
    k = probs.shape[1]
    header = "index,label,pred," + ",".join(f"p{i}" for i in range(k))
    pred = probs.argmax(1)
    table = np.column_stack([np.arange(len(probs)), labels, pred])
    lines = [header] + [
        f"{i},{t},{p}," + ",".join(f"{q:.6f}" for q in row)
        for (i, t, p), row in zip(table.tolist(), probs.tolist())]
    return atomic_write_text(Path(run_dir) / name, "\n".join(lines) + "\n")


def read_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """predictions.csv -> (index (N,) int, label (N,) int, probs (N, C) float)."""
    path = Path(path)
    # `fmnist predict` rewrites it from the run's weights in seconds; training again
    # would take minutes to hours
    fix = f"restore it, or rewrite it with `fmnist predict {path.parent} --out {path}`"
    try:
        rows = list(csv.reader(io.StringIO(read_text(path, fix), newline="")))
    except csv.Error as exc:
        raise RunError(f"{path}: not a CSV we read ({exc}); {fix}") from None
    if not any(rows):  # no line, or blank ones only
        raise RunError(f"{path}: empty; {fix}")
    header = rows[0]
    if header[:3] != ["index", "label", "pred"] or not header[3:] \
            or header[3:] != [f"p{c}" for c in range(len(header) - 3)]:
        raise RunError(f"{path}: header must be index,label,pred,p0,...; got "
                       f"{','.join(header[:6])[:80]}...; {fix}")
    try:
        table = np.array(rows[1:], dtype=np.float64).reshape(-1, len(header))
    except ValueError:
        raise RunError(f"{path}: rows must hold {len(header)} numbers each (cut short?); {fix}") from None
    if not np.isfinite(table).all():
        raise RunError(f"{path}: holds a value that is not a finite number; {fix}")
    k = table.shape[1] - 3
    labels = table[:, 1]
    if ((labels < -1) | (labels >= k) | (labels != np.round(labels))).any() or (table[:, 0] < 0).any():
        raise RunError(f"{path}: a label outside -1..{k - 1} or a negative index; {fix}")
    return table[:, 0].astype(np.int64), labels.astype(np.int64), table[:, 3:]


# --- explain.json: what `fmnist explain` drew, skipped and how long it took ---------------

def save_explain(run_dir: Path, record: dict) -> Path:
    return atomic_write_json(Path(run_dir) / EXPLAIN, record)


def read_explain(run_dir: str | os.PathLike) -> dict | None:
    """explain.json, or None when `fmnist explain` has not run."""
    def problem(e: Any) -> str | None:
        ok = isinstance(e, dict) and isinstance(e.get("skipped", {}), dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in e.get("skipped", {}).items())
        return None if ok else "must be an object whose skipped maps figure names to reasons"
    return read_checked(Path(run_dir) / EXPLAIN, problem, "run `fmnist explain` again")


def finite(value: Any) -> float | None:
    """A number read from a run file, None unless it is a finite number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None
