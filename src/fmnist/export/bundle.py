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
    out/model.safetensors with out/model.json; default out: RUN_DIR/export. The files are
    one set: each is made and checked in memory, then all are written or none (a full disk
    leaves the earlier export whole, never new weights beside an old card)."""
    from ..fsutil import atomic_write_files, check_target
    from ..runs import check_writable
    from . import need
    from .onnx import TOLERANCE, verified_onnx
    from .weights import CARD_FILE, WEIGHTS_FILE

    out = Path(out) if out is not None else Path(run_dir) / "export"
    check_writable(out)
    names = [ONNX_FILE] * ("onnx" in formats) + [WEIGHTS_FILE, CARD_FILE] * ("safetensors" in formats)
    for name in names:  # a folder in a file's place: refused before the slow part
        check_target(out / name)
    # the optional packages first, so a missing one costs no export and no test scoring
    if "onnx" in formats:
        for module in ("onnx", "onnxscript", "onnxruntime"):
            need(module, "ONNX export")
    if "safetensors" in formats:
        need("safetensors", "safetensors export")
    run, test = load_for_export(run_dir, data_dir)
    files: dict[Path, bytes] = {}
    if "onnx" in formats:
        tol = TOLERANCE if tolerance is None else tolerance
        files[out / ONNX_FILE], check = verified_onnx(run, out / ONNX_FILE, test.images,
                                                      test.labels, tol)
        log(check.summary())
        acc = (run.metrics or {}).get("test_acc")
        if acc is not None:
            log(f"the run's own test accuracy: {100 * acc:.2f}% ({run.facts.precision} as trained)")
    if "safetensors" in formats:
        from .weights import safetensors_files
        weights, checked = safetensors_files(run, out, test.images)
        log(checked)
        files.update(weights)
    return atomic_write_files(files)
