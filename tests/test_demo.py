"""fmnist demo without a browser: the site's files, and prepare.js against data/images.py
(node runs the page's own script on the same pixels Pillow decoded)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from fmnist.cli import main
from fmnist.data.images import prepare, read_picture

SITE = Path(__file__).resolve().parents[1] / "src" / "fmnist" / "export" / "site"
# prepare.js follows Pillow 13's order of the two resampling passes; an older Pillow always
# runs the horizontal one first, which moves some pixels by a grey level or two
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13
RESIZE_TOL = 0 if PILLOW_13 else 3
NODE = shutil.which("node")
RUNNER = """
const prep = require(process.argv[1]);
let input = "";
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((c) => Array.from(c.rgba
    ? prep.preparePicture(Uint8ClampedArray.from(Buffer.from(c.rgba, "base64")), c.w, c.h).pixels
    : prep.prepare(Uint8Array.from(Buffer.from(c.grey, "base64")), c.w, c.h).pixels));
  process.stdout.write(JSON.stringify(out));
});
"""


def run_js(cases: list[dict]) -> list[np.ndarray]:
    if NODE is None:
        pytest.skip("node is not installed: prepare.js is checked against Python with node")
    done = subprocess.run([NODE, "-e", RUNNER, str(SITE / "prepare.js")], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [np.array(o, np.uint8).reshape(28, 28) for o in json.loads(done.stdout)]


def _b64(a: np.ndarray) -> str:
    import base64
    return base64.b64encode(np.ascontiguousarray(a, np.uint8).tobytes()).decode()


def random_picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A garment-like blob (any brightness) with noise on a light or dark background."""
    img = np.full((h, w), float(rng.choice([0, 30, 220, 255])))
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
    img[y0:y1, x0:x1] = rng.integers(0, 256)
    img += rng.normal(0, rng.choice([0, 5, 40]), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def test_prepare_js_equals_python_on_grey_arrays():
    rng = np.random.default_rng(0)
    pictures = [random_picture(rng, *rng.integers(3, 160, 2)) for _ in range(120)]
    pictures += [np.zeros((5, 9), np.uint8), np.full((40, 30), 255, np.uint8)]  # blank, white
    got = run_js([{"w": p.shape[1], "h": p.shape[0], "grey": _b64(p)} for p in pictures])
    for p, g in zip(pictures, got):
        assert np.abs(g.astype(int) - prepare(p)).max() <= RESIZE_TOL, f"picture {p.shape}"


def test_prepare_js_equals_python_on_picture_files(tmp_path):
    """Colour, transparency and a picture big enough to be box-reduced first: the RGBA that
    Pillow decodes goes to prepare.js; Python's answer is read_picture's on the file."""
    rng = np.random.default_rng(1)
    files = []
    for i, (h, w) in enumerate([(60, 45), (300, 200), (97, 131)]):
        rgb = np.stack([random_picture(rng, h, w) for _ in range(3)], -1)
        files.append(tmp_path / f"rgb{i}.png")
        Image.fromarray(rgb, "RGB").save(files[-1])
    alpha = rng.integers(0, 256, (80, 64), dtype=np.uint8)
    rgba = np.dstack([random_picture(rng, 80, 64)] * 3 + [alpha])
    files.append(tmp_path / "alpha.png")
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(files[-1])
    big = np.full((2100, 1500), 255, np.uint8)
    big[300:1800, 400:1100] = 40
    files.append(tmp_path / "big.png")
    Image.fromarray(big).save(files[-1])
    cases = []
    for f in files:
        with Image.open(f) as img:
            arr = np.asarray(img.convert("RGBA"))
        cases.append({"w": arr.shape[1], "h": arr.shape[0], "rgba": _b64(arr)})
    for f, g in zip(files, run_js(cases)):
        want = read_picture(f)
        # the box reduction of big pictures rounds like Pillow's to within a grey level
        tol = 2 if f.name == "big.png" else RESIZE_TOL
        assert np.abs(g.astype(int) - want).max() <= tol, f.name


def fake_ort(folder: Path) -> Path:
    from fmnist.export.demo import ORT_FILES
    dist = folder / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_text("// stand-in")
    (dist.parent / "package.json").write_text('{"version": "0.0-test"}')
    return dist


def test_demo_writes_a_self_contained_site(toy, tmp_path, capsys):
    pytest.importorskip("onnxscript", reason="the export extra is not installed")
    from test_export import toy_run

    run = toy_run(tmp_path)
    dist = fake_ort(tmp_path / "web")
    site = tmp_path / "site"
    args = ["demo", str(run.dir), "--out", str(site), "--ort-dir", str(dist), "--threads", "1"]
    assert main(args) == 0
    assert "agree on 100/100" in capsys.readouterr().out
    names = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert names == ["demo.js", "fmnist-demo.json", "index.html", "model.json", "model.onnx",
                     "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm",
                     "ort/ort.wasm.min.js", "prepare.js"]
    meta = json.loads((site / "model.json").read_text())
    assert meta["class_names"][0] == "class0" and meta["ort_version"] == "0.0-test"
    assert meta["test_accuracy"] == run.metrics["test_acc"] and meta["input_name"] == "pixels"
    page = (site / "index.html").read_text() + (site / "demo.js").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from another host
    assert "numThreads = 1" in page
    # again into the same folder: the earlier demo is replaced, and nothing else is left
    (site / "model.onnx").write_bytes(b"old")
    assert main(args) == 0
    assert (site / "model.onnx").stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


def test_demo_refuses_what_it_cannot_do(toy, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "not-a-run"
    dist = fake_ort(tmp_path / "web")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["demo", str(run_dir), "--out", str(other), "--ort-dir", str(dist)]) == 1
    err = capsys.readouterr().err
    assert "holds other files" in err and err.count("\n") == 1
    assert (other / "notes.txt").read_text() == "mine"
    args = ["demo", str(run_dir), "--out", str(tmp_path / "s"), "--ort-dir", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "onnxruntime-web not found" in err and "make demo-deps" in err
    assert not (tmp_path / "s").exists()
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the export extra missing
    assert main(["demo", str(run_dir), "--out", str(tmp_path / "s"), "--ort-dir", str(dist)]) == 1
    err = capsys.readouterr().err
    assert "onnxscript" in err and "fmnist[export]" in err and err.count("\n") == 1


def _site_args(run, dist, site, *more):
    return ["demo", str(run.dir), "--out", str(site), "--ort-dir", str(dist), "--threads", "1", *more]


def test_demo_replaces_only_a_folder_its_marker_proves_is_a_demo(toy, tmp_path, capsys):
    pytest.importorskip("onnxscript", reason="the export extra is not installed")
    from test_export import toy_run

    run = toy_run(tmp_path)
    dist = fake_ort(tmp_path / "web")
    app = tmp_path / "app"  # a TF.js app: index.html and model.json, but not ours
    app.mkdir()
    for name in ("index.html", "model.json", "app.js", "group1-shard1of1.bin"):
        (app / name).write_text(name)
    assert main(_site_args(run, dist, app)) == 1
    err = capsys.readouterr().err
    assert "holds other files" in err and "fmnist-demo.json" in err and err.count("\n") == 1
    assert sorted(p.name for p in app.iterdir()) == [
        "app.js", "group1-shard1of1.bin", "index.html", "model.json"]
    site = tmp_path / "site"
    assert main(_site_args(run, dist, site)) == 0
    (site / "notes.txt").write_text("mine")  # the user's file inside an earlier demo
    capsys.readouterr()
    assert main(_site_args(run, dist, site)) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and err.count("\n") == 1
    assert (site / "notes.txt").read_text() == "mine"
    (site / "notes.txt").unlink()
    assert main(_site_args(run, dist, site)) == 0  # its own demo: replaced


def test_a_failed_demo_leaves_no_folders_and_names_the_users_path(toy, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxscript", reason="the export extra is not installed")
    import errno
    import pathlib

    import fmnist.export.onnx as ex
    from test_export import toy_run

    run = toy_run(tmp_path)
    dist = fake_ort(tmp_path / "web")
    site = tmp_path / "nd" / "a" / "b" / "site"
    # a full disk while the page is written
    real_write = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if self.name == "prepare.js":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    assert main(_site_args(run, dist, site)) == 1
    err = capsys.readouterr().err
    assert err == f"fmnist: error: {site}: could not be written (No space left on device); nothing was written; free some space and try again\n"
    assert not (tmp_path / "nd").exists()
    # over an earlier demo: that one is left whole
    monkeypatch.setattr(pathlib.Path, "write_bytes", real_write)
    assert main(_site_args(run, dist, site)) == 0
    before = {p.name: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    capsys.readouterr()
    assert main(_site_args(run, dist, site)) == 1
    assert "the earlier demo there is intact" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in site.parent.iterdir()) == ["site"]  # no temp folder
    monkeypatch.setattr(pathlib.Path, "write_bytes", real_write)
    # a model that fails its check: refused before any folder is made, named where it was asked
    real = ex.export_proto
    monkeypatch.setattr(ex, "export_proto", lambda m: real(ex.PixelModel(m.model, m.mean, m.std * 1.01)))
    other = tmp_path / "nd2" / "a" / "site"
    assert main(_site_args(run, dist, other)) == 1
    err = capsys.readouterr().err
    assert f"{other / 'model.onnx'}: not written" in err and ".site." not in err
    assert not (tmp_path / "nd2").exists()
