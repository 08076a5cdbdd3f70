"""`fmnist demo`: a static site that runs a run's model in the browser, offline.

site/
  index.html, demo.js, prepare.js   the page (package data under export/site/)
  model.onnx                        `fmnist export`'s file, verified on the test images
  model.json                        class names, input name, accuracy, for the page
  ort/                              onnxruntime-web's single-threaded wasm build, copied
                                    from the npm package `make demo-deps` installs
Any static server serves it (python -m http.server); nothing is fetched from elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from ..errors import FmnistError, WriteError
from ..fsutil import atomic_write_json, read_limited

PAGE_FILES = ("index.html", "demo.js", "prepare.js")
# the wasm-only bundle (no WebGL/WebGPU code), its emscripten loader and the wasm binary:
# "threaded" in the name, but with numThreads = 1 it runs without SharedArrayBuffer
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_PACKAGE = Path("web") / "node_modules" / "onnxruntime-web"
MARKER = "model.json"  # a folder holding it and index.html is a demo we may replace


def find_ort_web(ort_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """onnxruntime-web's dist/ folder and version: --ort-dir, else $FMNIST_ORT_WEB, else
    web/node_modules/onnxruntime-web/dist in the project (or the current folder)."""
    if ort_dir is not None:
        candidates = [Path(ort_dir)]
    elif os.environ.get("FMNIST_ORT_WEB"):
        candidates = [Path(os.environ["FMNIST_ORT_WEB"])]
    else:  # an editable install: src/fmnist/export/demo.py -> the project root
        roots = (Path(__file__).resolve().parents[3], Path.cwd())
        candidates = [root / ORT_PACKAGE / "dist" for root in roots]
    for folder in candidates:
        if all((folder / name).is_file() for name in ORT_FILES):
            return folder, _version(folder.parent / "package.json")
    raise FmnistError(f"onnxruntime-web not found in {candidates[0]} (it needs "
                      f"{', '.join(ORT_FILES)}); run `make demo-deps` (npm installs the pinned "
                      "version into web/node_modules), or give --ort-dir DIST_FOLDER")


def _version(package_json: Path) -> str:
    try:
        return str(json.loads(read_limited(package_json, 1 << 20, "package.json"))["version"])
    except (FmnistError, ValueError, KeyError, TypeError):
        return "unknown"


def check_site_target(out: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier demo."""
    if out.exists() and not out.is_dir():
        raise WriteError(f"--out {out}: is a file; give a folder for the site", out)
    earlier_demo = (out / MARKER).is_file() and (out / "index.html").is_file()
    if out.is_dir() and any(out.iterdir()) and not earlier_demo:
        raise WriteError(f"--out {out}: holds other files; give an empty or new folder "
                         "(an earlier demo there is replaced)", out)


def build_demo(run_dir: str | os.PathLike, out: str | os.PathLike = "site",
               data_dir: str | os.PathLike | None = None, ort_dir: str | os.PathLike | None = None,
               tolerance: float | None = None, log=print) -> Path:
    """Write the site into `out`: built in a temp folder beside it, then swapped in whole."""
    from ..runs import check_writable
    from . import need
    from .bundle import ONNX_FILE, load_for_export
    from .onnx import INPUT, TOLERANCE, export_onnx

    out = Path(out)
    check_site_target(out)
    check_writable(out.parent if str(out.parent) else Path("."))
    ort_folder, ort_version = find_ort_web(ort_dir)  # before the slow part
    for module in ("onnx", "onnxscript", "onnxruntime"):
        need(module, "The demo's ONNX export")
    run, test = load_for_export(run_dir, data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _, check = export_onnx(run, tmp / ONNX_FILE, test.images, test.labels,
                               TOLERANCE if tolerance is None else tolerance)
        log(check.summary())
        site = resources.files("fmnist.export") / "site"
        for name in PAGE_FILES:
            (tmp / name).write_bytes(site.joinpath(name).read_bytes())
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort_folder / name, tmp / "ort" / name)
        m = run.metrics or {}
        atomic_write_json(tmp / MARKER, {
            "model": run.config.model.name, "run": Path(run_dir).resolve().name,
            "class_names": list(run.facts.class_names), "input_name": INPUT,
            "test_accuracy": m.get("test_acc"), "test_images": len(test.labels),
            "onnx_accuracy": check.accuracy, "ort_version": ort_version})
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap(new: Path, out: Path) -> None:
    """Put the finished site at `out`; an earlier demo there goes only once the new one is
    complete, so a failure leaves the old site (or nothing), never half of one."""
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "site")
        os.replace(new, out)
        os.chmod(out, 0o755)  # mkdtemp makes 0700; a site is meant to be read
    except OSError as exc:
        if old is not None and not out.exists():
            os.replace(old / "site", out)
        raise WriteError(f"{out}: could not be written ({exc.strerror or exc})", out) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
