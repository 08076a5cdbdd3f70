"""`fmnist demo`: a static site that runs a run's model in the browser, offline.

site/
  index.html, demo.js, prepare.js   the page (package data under export/site/)
  model.onnx                        `fmnist export`'s file, verified on the test images
  model.json                        class names, input name, accuracy, for the page
  fmnist-demo.json                  the marker: the site's files, so a later `fmnist demo`
                                    replaces this folder and no other
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
from ..fsutil import make_dirs, read_limited, remove_dirs, write_fix

PAGE_FILES = ("index.html", "demo.js", "prepare.js")
# the wasm-only bundle (no WebGL/WebGPU code), its emscripten loader and the wasm binary:
# "threaded" in the name, but with numThreads = 1 it runs without SharedArrayBuffer
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_PACKAGE = Path("web") / "node_modules" / "onnxruntime-web"
MODEL_JSON = "model.json"  # what the page reads: class names, input name, accuracy
# the marker: written last into every site, listing its files; only a folder holding it
# (and nothing else) is an earlier demo that `fmnist demo` may replace
MARKER, DEMO_FORMAT = "fmnist-demo.json", 1
MAX_ORT_FILE = 64 << 20  # onnxruntime-web's wasm binary is ~12 MB


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


def demo_files(folder: Path) -> list[str] | None:
    """The names a demo fmnist wrote in `folder` says it holds (its marker file), else None."""
    try:
        marker = json.loads(read_limited(folder / MARKER, 1 << 20, "demo marker"))
    except (FmnistError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("fmnist_demo") != DEMO_FORMAT:
        return None
    files = marker.get("files")
    if not isinstance(files, list):
        return None
    return [f for f in files if isinstance(f, str)]


def check_site_target(out: Path) -> None:
    """Refuse to replace anything but an empty folder or a demo fmnist wrote: one whose marker
    file says so, holding nothing the demo did not write (index.html and model.json alone
    prove nothing: a TF.js app has both, and replacing the folder would delete the app)."""
    if out.exists() and not out.is_dir():
        raise WriteError(f"--out {out}: is a file; give a folder for the site", out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    written = demo_files(out)
    if written is None:
        raise WriteError(f"--out {out}: holds other files, and no {MARKER} says fmnist wrote "
                         "them; give an empty or new folder (a demo with its marker is "
                         f"replaced; one written before demos had a {MARKER}: delete it once)", out)
    extra = sorted(p.name for p in out.iterdir() if p.name not in written)
    if extra:
        raise WriteError(f"--out {out}: an earlier demo, but it also holds files the demo did "
                         f"not write ({', '.join(extra[:5])}); move them out, or give another "
                         "folder", out)


def build_demo(run_dir: str | os.PathLike, out: str | os.PathLike = "site",
               data_dir: str | os.PathLike | None = None, ort_dir: str | os.PathLike | None = None,
               tolerance: float | None = None, log=print) -> Path:
    """Write the site into `out`: made in memory, written into a temp folder beside it, then
    swapped in whole. Nothing is created on disk (no parent folder either) until the model
    is verified; a failure removes what was made and leaves an earlier demo as it was."""
    from .. import __version__
    from ..runs import check_writable
    from . import need
    from .bundle import ONNX_FILE, load_for_export
    from .onnx import INPUT, TOLERANCE, verified_onnx

    out = Path(out)
    check_site_target(out)
    check_writable(out.parent if str(out.parent) else Path("."))
    ort_folder, ort_version = find_ort_web(ort_dir)  # before the slow part
    for module in ("onnx", "onnxscript", "onnxruntime"):
        need(module, "The demo's ONNX export")
    run, test = load_for_export(run_dir, data_dir)
    model_bytes, check = verified_onnx(run, out / ONNX_FILE, test.images, test.labels,
                                       TOLERANCE if tolerance is None else tolerance)
    log(check.summary())
    site = resources.files("fmnist.export") / "site"
    files = {name: site.joinpath(name).read_bytes() for name in PAGE_FILES}
    files[ONNX_FILE] = model_bytes
    m = run.metrics or {}
    files[MODEL_JSON] = _json({
        "model": run.config.model.name, "run": Path(run_dir).resolve().name,
        "class_names": list(run.facts.class_names), "input_name": INPUT,
        "test_accuracy": m.get("test_acc"), "test_images": len(test.labels),
        "onnx_accuracy": check.accuracy, "ort_version": ort_version})
    for name in ORT_FILES:
        files[f"ort/{name}"] = read_limited(ort_folder / name, MAX_ORT_FILE, "onnxruntime-web file")
    files[MARKER] = _json({"fmnist_demo": DEMO_FORMAT, "fmnist_version": __version__,
                           "files": sorted({name.split("/")[0] for name in files} | {MARKER})})
    _write_site(files, out)
    return out


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def _write_site(files: dict[str, bytes], out: Path) -> None:
    """`files` (relative name -> bytes) as the folder `out`, whole or not at all; the folders
    made for it are removed again on failure, and the message names `out`, not a temp path."""
    was = "the earlier demo there is intact" if out.exists() else "nothing was written"
    created, tmp = [], None
    try:
        created = make_dirs(out.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        for name, data in files.items():
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(data)
        _swap(tmp, out)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_dirs(created)
        if isinstance(exc, OSError):  # a full disk, a quota, no permission
            raise WriteError(f"{out}: could not be written ({exc.strerror or exc}); {was}",
                             out, write_fix(exc, "try again")) from None
        raise


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
        was = "the earlier demo there is intact" if old is not None else "nothing was written"
        raise WriteError(f"{out}: could not be written ({exc.strerror or exc}); {was}", out,
                         write_fix(exc, "try again")) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
