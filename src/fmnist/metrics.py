"""Classification metrics from labels and probabilities: NumPy only, pure functions.

`summary` is what a run saves as metrics.json; `summarise_runs` is the one place that
computes a comparison's statistics (summary.json, the report and the figures use it).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

NLL_EPS = 1e-12  # probabilities are clipped to [NLL_EPS, 1] so a confident mistake costs 27.6, not inf


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    # one bincount over the flattened (true, pred) pair index: no Python loop over samples
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den == 0 (no warnings)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def per_class_report(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per class: precision, recall, f1, support, accuracy (= recall); 0 where undefined."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not fit {len(class_names)} class names")
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true samples per class
    predicted = cm.sum(axis=0)  # predictions per class
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return [
        {
            "class": c,
            "name": str(class_names[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            "accuracy": float(recall[c]),
        }
        for c in range(len(class_names))
    ]


def macro_average(per_class: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean of precision, recall and F1 over classes; support is the total."""
    if not per_class:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    return {
        key: float(np.mean([row[key] for row in per_class])) for key in ("precision", "recall", "f1")
    } | {"support": int(sum(row["support"] for row in per_class))}


def summary(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Everything metrics.json holds, from true labels and (N, C) class probabilities."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (y_true.size, len(class_names)):
        raise ValueError(
            f"probs must have shape (N, C) = ({y_true.size}, {len(class_names)}), got {probs.shape}"
        )
    if y_true.size == 0:
        raise ValueError("summary needs at least one sample")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    per_class = per_class_report(cm, class_names)
    p_true = np.clip(probs[np.arange(y_true.size), y_true], NLL_EPS, 1.0)
    return {
        "accuracy": float(np.mean(y_pred == y_true)),
        "loss": float(-np.mean(np.log(p_true))),  # mean negative log-likelihood
        "num_samples": int(y_true.size),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "class_names": [str(n) for n in class_names],
        "macro_f1": macro_average(per_class)["f1"],
    }


def format_summary(m: dict[str, Any], where: str) -> str:
    """`fmnist evaluate`'s lines: accuracy, loss and macro F1, then each class."""
    return "\n".join([f"{where} accuracy {100 * m['accuracy']:.2f}%  loss {m['loss']:.4f}  "
                      f"macro F1 {m['macro_f1']:.4f}"] + [
        f"  {r['name']:<12} precision {r['precision']:.3f}  recall {r['recall']:.3f}  f1 {r['f1']:.3f}"
        for r in m["per_class"]])


# --- optimizer comparisons -------------------------------------------------------------

def is_diverged(run: dict[str, Any]) -> bool:
    """A run counts as diverged if it says so or its final test accuracy is not a finite number."""
    acc = run.get("test_acc")
    return bool(run.get("diverged")) or not (isinstance(acc, (int, float)) and math.isfinite(acc))


def run_label(optimizer: str, lr: float | None) -> str:
    return f"{optimizer} (lr={lr:g})" if lr is not None else str(optimizer)


def group_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs grouped by (optimizer, lr) in order of first appearance.

    Each group: {"optimizer", "lr", "label", "runs" (all), "ok" (not diverged), "diverged" (count)}.
    """
    groups: dict[tuple[str, Any], dict[str, Any]] = {}
    for run in runs:
        key = (str(run.get("optimizer", "?")), run.get("lr"))
        group = groups.setdefault(
            key, {"optimizer": key[0], "lr": key[1], "label": run_label(*key), "runs": [], "ok": [], "diverged": 0}
        )
        group["runs"].append(run)
        if is_diverged(run):
            group["diverged"] += 1
        else:
            group["ok"].append(run)
    return list(groups.values())


def final_value(run: dict[str, Any], key: str) -> float | None:
    """The last finite value of `key` in a run's history (None when never recorded)."""
    for record in reversed(run.get("history") or []):
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1 (0 for one value), n) over the values that are not None; nan when none."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if xs.size == 0:
        return math.nan, math.nan, 0
    return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else 0.0, int(xs.size)


SUMMARISED = ("final_val_acc", "best_val_acc", "test_acc", "test_loss")


def summarise_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (optimizer, lr): mean and sample std over the seeds that did not diverge
    of each key in SUMMARISED, how many diverged, the median seconds of training, the names
    of the member runs. `runs` are comparison records (runs.read_member)."""
    rows = []
    for g in group_runs(runs):
        seconds = [r["seconds"] for r in g["runs"] if isinstance(r.get("seconds"), (int, float))]
        row = {"optimizer": g["optimizer"], "lr": g["lr"], "label": g["label"],
               "seeds": len(g["runs"]), "diverged": g["diverged"],
               "seconds": float(np.median(seconds)) if seconds else None,
               "runs": [r.get("name") for r in g["runs"]]}
        for key in SUMMARISED:
            mean, std, n = mean_std([r.get(key) for r in g["ok"]])
            row[key], row[f"{key}_std"] = (mean, std) if n else (None, None)
        rows.append(row)
    return rows
