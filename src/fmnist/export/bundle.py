"""`fmnist export`: a run's model as the files asked for, each verified or checked first."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

FORMATS = ("onnx", "safetensors")
ONNX_FILE = "model.onnx"


def parse_formats(text: str) -> tuple[str, ...]:
    """"onnx,safetensors" -> ("onnx", "safetensors"); an unknown name is refused."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ConfigError(f"--format {text!r}: use one or more of {', '.join(FORMATS)}, "
                          "comma-separated")
    return names


def load_for_export(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None):
    """The run (fp32 CPU model) and its test split, the images every export is checked on."""
    from ..api import Run, data_folder
    from ..data import load

    run = Run.load(run_dir, device="cpu")
    test = load(run.config.data.dataset, "test", data_dir=data_folder(run.config, data_dir))
    return run, test


def export_run(run_dir: str | os.PathLike, formats: tuple[str, ...] = FORMATS,
               out: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
               tolerance: float | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Write out/model.onnx (verified against torch on the test split) and/or
    out/model.safetensors with out/model.json; default out: RUN_DIR/export."""
    from ..runs import check_writable
    from . import need
    from .onnx import TOLERANCE, export_onnx

    out = Path(out) if out is not None else Path(run_dir) / "export"
    check_writable(out)
    # the optional packages first, so a missing one costs no export and no test scoring
    if "onnx" in formats:
        for module in ("onnx", "onnxscript", "onnxruntime"):
            need(module, "ONNX export")
    if "safetensors" in formats:
        need("safetensors", "safetensors export")
    run, test = load_for_export(run_dir, data_dir)
    written: list[Path] = []
    if "onnx" in formats:
        path, check = export_onnx(run, out / ONNX_FILE, test.images, test.labels,
                                  TOLERANCE if tolerance is None else tolerance)
        log(check.summary())
        acc = (run.metrics or {}).get("test_acc")
        if acc is not None:
            log(f"the run's own test accuracy: {100 * acc:.2f}% ({run.facts.precision} as trained)")
        written.append(path)
    if "safetensors" in formats:
        from .weights import export_safetensors
        paths, checked = export_safetensors(run, out, test.images)
        log(checked)
        written += paths
    return written
