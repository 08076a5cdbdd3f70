"""One self-contained HTML page for a run or comparison directory: report.html.

Everything is inside the file (images as base64 data: URIs, inline CSS), so it can be mailed
or opened offline; it references no URL at all. It embeds the PNGs already in the directory
(draw them first with plots.draw_run / plots.draw_comparison) and reads the numbers through
fmnist.runs: config.json and metrics.json of a run; plan.json and summary.json of a
comparison. A missing part becomes a short note.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import runs
from .errors import RunError
from .fsutil import atomic_write_text, read_limited
from .metrics import macro_average, summarise_runs

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.headline { font-size: 1.3em; margin: 0.3em 0 1em; } .headline b { color: #0072B2; }
nav a { margin-right: 1em; color: #0072B2; }
.note { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #e8eef4; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f7f7f7; } tr.total td { font-weight: bold; background: #e8eef4; }
td.worst { background: #f6d5c2 !important; }
.settings td { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
img { max-width: 100%; height: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _section(id_: str, title: str, content: str) -> str:
    return f'<section>\n<h2 id="{_e(id_)}">{_e(title)}</h2>\n{content}\n</section>'


def _image(path: Path, alt: str, source: str) -> str:
    """The PNG as a data: URI, or a note naming the missing file and what draws it."""
    if not path.is_file():
        return _note(f"{path.name} is missing (it is drawn from {source}).")
    data = base64.b64encode(read_limited(path, 64 << 20, "PNG figure")).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "",
           total_last: bool = False, highlight: tuple[int, int] | None = None) -> str:
    """An HTML table; `total_last` bolds the last row, `highlight` (row, col) shades one cell."""
    rows = list(rows)
    out = [f'<table class="{_e(cls)}">', "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for r, row in enumerate(rows):
        cells = "".join(('<td class="worst">' if (r, c) == highlight else "<td>") + f"{_e(v)}</td>"
                        for c, v in enumerate(row))
        out.append(('<tr class="total">' if total_last and r == len(rows) - 1 else "<tr>") + cells + "</tr>")
    return "\n".join(out + ["</table>"])


def _flatten(config: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested config -> [("model.name", "2c2d"), ...]; lists shown as JSON."""
    if not isinstance(config, dict):
        return [(prefix or "value", json.dumps(config) if isinstance(config, list) else str(config))]
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        rows += _flatten(value, name) if isinstance(value, dict) and value else \
            [(name, json.dumps(value) if isinstance(value, (list, dict)) else str(value))]
    return rows


def _settings(directory: Path, name: str) -> str:
    if not (directory / name).is_file():
        return _note(f"No {name} in this directory.")
    config = runs.read_json(directory / name)
    return _table(["setting", "value"], _flatten(config), cls="settings")


def _pct(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{100 * mean:.2f} \u00b1 {100 * std:.2f}%"


def _run_report(d: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    metrics = runs.read_metrics(d) or {}
    if "accuracy" in metrics:
        loss = f" \u00b7 loss {metrics['loss']:.4f}" if isinstance(metrics.get("loss"), (int, float)) else ""
        f1 = f" \u00b7 macro F1 {metrics['macro_f1']:.4f}" if isinstance(metrics.get("macro_f1"), (int, float)) else ""
        n = f" on {metrics['num_samples']:,} images" if isinstance(metrics.get("num_samples"), int) else ""
        w = {"last": " \u00b7 weights of the last epoch",
             "best": f" \u00b7 weights of epoch {metrics.get('best_epoch')} (best validation accuracy)"
             }.get(metrics.get("weights"), "")
        headline = (f'<p class="headline">Test accuracy <b>{100 * metrics["accuracy"]:.2f}%</b>'
                    f'{_e(n + loss + f1 + w)}</p>')
    else:
        headline = _note("No metrics.json: the run has not been evaluated yet.")
    per_class = metrics.get("per_class") or []
    if per_class:
        worst = min(range(len(per_class)), key=lambda c: per_class[c]["f1"])
        rows = [[r["name"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['support']:,}"]
                for r in per_class]
        m = macro_average(per_class)
        rows.append(["macro average", f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['support']:,}"])
        table = _table(["class", "precision", "recall", "F1", "support"], rows, total_last=True,
                       highlight=(worst, 3)) + _note("Macro average: unweighted mean over classes. Shaded: the lowest F1.")
    else:
        table = _note("No per-class metrics (metrics.json is missing or has none).")
    sections = [
        ("settings", "Settings", _settings(d, "config.json")),
        ("curves", "Training curves", _image(d / "curves.png", "training curves", "history.jsonl")),
        ("per-class", "Per-class metrics", table),
        ("confusion", "Confusion matrix", _image(d / "confusion.png", "confusion matrix", "metrics.json")),
        ("predictions", "Predictions", _image(d / "predictions.png", "predictions", "predictions.csv")),
        ("mistakes", "Most confident mistakes", _image(d / "mistakes.png", "mistakes", "predictions.csv")),
    ]
    explained = _explanations(d)
    if explained:
        sections.append(("explanations", "Explanations", explained))
    return f"Run {d.name}", headline, sections


def _explanations(d: Path) -> str:
    """The figures of `fmnist explain` with a line each, and why any was not drawn; empty
    when the run has not been explained."""
    record = runs.read_explain(d) or {}
    skipped = record.get("skipped", {})
    if not record and not any((d / name).is_file() for name in runs.EXPLAIN_FIGURES):
        return ""
    parts = []
    for name, (title, what) in runs.EXPLAIN_FIGURES.items():
        if (d / name).is_file():
            parts.append(f"<h3>{_e(title)}</h3>\n" + _note(f"{what} ({name})") + _image(d / name, title, "fmnist explain"))
        elif name in skipped:
            parts.append(f"<h3>{_e(title)}</h3>\n" + _note(f"Not drawn: {skipped[name]}."))
    return "\n".join(parts)


def _comparison_report(d: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    summary = runs.read_summary(d)  # computed once by `fmnist compare`
    rows = summary["rows"] if summary else summarise_runs(runs.read_members(d))
    table_rows, best = [], None
    for r in rows:
        n_ok = r["seeds"] - r["diverged"]
        table_rows.append([r["optimizer"], "n/a" if r["lr"] is None else f"{r['lr']:g}",
                           r.get("lr_chosen_by", ""), f"{n_ok}/{r['seeds']}",
                           _pct(r["final_val_acc"], r["final_val_acc_std"]),
                           _pct(r["test_acc"], r["test_acc_std"]),
                           "n/a" if r["seconds"] is None else f"{r['seconds']:.1f}"])
        if r["final_val_acc"] is not None and (best is None or r["final_val_acc"] > best["final_val_acc"]):
            best = r  # ranked on validation, never on test, where there is a validation split
    if rows:
        n = sum(r["seeds"] for r in rows)
        top = (f"; best by validation accuracy: <b>{_e(best['label'])}</b>, val <b>"
               f"{_pct(best['final_val_acc'], best['final_val_acc_std'])}</b>, test "
               f"{_pct(best['test_acc'], best['test_acc_std'])}") if best else ""
        ranked = sorted((r for r in rows if r["test_acc"] is not None), key=lambda r: -r["test_acc"])
        if not best and ranked:  # a plan that tunes nothing: its results are test figures
            top = "; by final test accuracy (every rate fixed, nothing chosen on it): " + " &gt; ".join(
                f"<b>{_e(r['label'])}</b> {_pct(r['test_acc'], r['test_acc_std'])}" for r in ranked)
        headline = f'<p class="headline">{n} runs in {len(rows)} settings{top}</p>'
        table = _table(["optimizer", "lr", "lr chosen by", "seeds (not diverged / all)",
                        "final val acc (mean \u00b1 std)", "test acc (mean \u00b1 std)",
                        "seconds of training per run (median)"], table_rows) \
            + _note("Mean and sample std over the seeds that did not diverge; test accuracy "
                    "of the final weights. Every seed is an ordinary run directory in runs/. "
                    + " ".join((summary or {}).get("notes", [])))
    else:
        headline = _note("No finished member runs in this comparison yet.")
        table = _note("Nothing to summarise.")
    sections = [
        ("settings", "Settings", _settings(d, runs.PLAN)),
        ("summary", "Summary", table),
        ("comparison-curves", "Curves", _image(d / "comparison_curves.png", "comparison curves", "the member runs")),
        ("comparison-final", "Final test accuracy",
         _image(d / "comparison_final.png", "final test accuracy", "the member runs")),
    ]
    return f"Comparison {d.name}", headline, sections


def write_report(directory: str | os.PathLike) -> Path:
    """Write directory/report.html (atomically) for a run or, when it has plan.json, a comparison."""
    d = Path(directory)
    if not d.is_dir():
        raise RunError(f"{d} is not a directory; pass a run or comparison directory")
    # (id, heading, html) per section; the ids are stable anchors: report.html#confusion
    if not runs.is_comparison(d) and not (d / "config.json").exists():
        raise RunError(f"{d}: neither a run (no config.json) nor a comparison (no plan.json); "
                       "pass a folder written by `fmnist train` or `fmnist compare`")
    title, headline, sections = (_comparison_report if runs.is_comparison(d) else _run_report)(d)
    nav = "<nav>" + "".join(f'<a href="#{_e(i)}">{_e(t)}</a>' for i, t, _ in sections) + "</nav>"
    body = "\n".join(_section(*s) for s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_e(title)}</h1>\n{headline}\n{nav}\n{body}\n</body>\n</html>\n")
    return atomic_write_text(d / "report.html", page)
