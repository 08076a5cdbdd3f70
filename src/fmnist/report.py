"""One self-contained HTML page for a run or comparison directory: report.html.

Everything is inside the file (images as base64 data: URIs, inline CSS), so it can be mailed
or opened offline; it references no URL at all. It embeds the PNGs already in the directory
(draw them first with plots.draw_run / plots.draw_comparison) and reads the numbers from
config.json, metrics.json and runs/*.json. A missing part becomes a short note.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import RunError
from .fsutil import atomic_write_text
from .metrics import final_value, group_runs, macro_average, mean_std
from .plots_compare import read_runs

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
    data = base64.b64encode(path.read_bytes()).decode("ascii")
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


def _read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e.msg})") from None


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
    config = _read_json(directory / name)
    if config is None:
        return _note(f"No {name} in this directory.")
    return _table(["setting", "value"], _flatten(config), cls="settings")


def _pct(mean: float, std: float, n: int) -> str:
    return "n/a" if n == 0 or math.isnan(mean) else f"{100 * mean:.2f} \u00b1 {100 * std:.2f}%"


def _run_report(d: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    metrics = _read_json(d / "metrics.json") or {}
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
    return f"Run {d.name}", headline, sections


def _comparison_report(d: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    groups = group_runs(read_runs(d))
    summary = _read_json(d / "summary.json")  # compare.py's rows: how each lr was chosen
    chosen = {(r.get("optimizer"), r.get("lr")): r.get("lr_chosen_by", "")
              for r in (summary if isinstance(summary, list) else []) if isinstance(r, dict)}
    rows, best = [], None
    for g in groups:
        # a run file's own fields (compare.py writes them) first, else its history's last record
        val = mean_std([r.get("final_val_acc", final_value(r, "val_acc")) for r in g["ok"]])
        test = mean_std([r["test_acc"] for r in g["ok"]])
        secs = mean_std([r.get("seconds", final_value(r, "seconds")) for r in g["runs"]])
        rows.append([g["optimizer"], "n/a" if g["lr"] is None else f"{g['lr']:g}",
                     chosen.get((g["optimizer"], g["lr"]), ""), f"{len(g['ok'])}/{len(g['runs'])}",
                     _pct(*val), _pct(*test), "n/a" if secs[2] == 0 else f"{secs[0]:.1f}"])
        if val[2] and (best is None or val[0] > best[1]):  # ranked on validation, not test
            best = (g["label"], val[0], val[1], test[0], test[1])
    if groups:
        n = sum(len(g["runs"]) for g in groups)
        top = (f"; best by validation accuracy: <b>{_e(best[0])}</b>, val <b>{100 * best[1]:.2f} "
               f"\u00b1 {100 * best[2]:.2f}%</b>, test {100 * best[3]:.2f} \u00b1 "
               f"{100 * best[4]:.2f}%") if best else ""
        headline = f'<p class="headline">{n} runs in {len(groups)} settings{top}</p>'
        table = _table(["optimizer", "lr", "lr chosen by", "seeds (not diverged / all)", "final val acc (mean \u00b1 std)",
                        "test acc (mean \u00b1 std)", "seconds per run (mean)"], rows) \
            + _note("Mean and sample std over the seeds that did not diverge.")
    else:
        headline = _note("No runs/*.json in this comparison yet.")
        table = _note("Nothing to summarise.")
    sections = [
        ("settings", "Settings", _settings(d, "comparison.json")),
        ("summary", "Summary", table),
        ("comparison-curves", "Curves", _image(d / "comparison_curves.png", "comparison curves", "runs/*.json")),
        ("comparison-final", "Final test accuracy",
         _image(d / "comparison_final.png", "final test accuracy", "runs/*.json")),
    ]
    return f"Comparison {d.name}", headline, sections


def is_comparison(directory: Path) -> bool:
    """A comparison directory (fmnist compare) rather than a run directory (fmnist train)."""
    return (Path(directory) / "runs").is_dir()


def write_report(directory: str | os.PathLike) -> Path:
    """Write directory/report.html (atomically) for a run or, when it has runs/, a comparison."""
    d = Path(directory)
    if not d.is_dir():
        raise RunError(f"{d} is not a directory; pass a run or comparison directory")
    # (id, heading, html) per section; the ids are stable anchors: report.html#confusion
    if not is_comparison(d) and not (d / "config.json").exists():
        raise RunError(f"{d}: neither a run (no config.json) nor a comparison (no runs/); "
                       "pass a folder written by `fmnist train` or `fmnist compare`")
    title, headline, sections = (_comparison_report if is_comparison(d) else _run_report)(d)
    nav = "<nav>" + "".join(f'<a href="#{_e(i)}">{_e(t)}</a>' for i, t, _ in sections) + "</nav>"
    body = "\n".join(_section(*s) for s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_e(title)}</h1>\n{headline}\n{nav}\n{body}\n</body>\n</html>\n")
    return atomic_write_text(d / "report.html", page)
