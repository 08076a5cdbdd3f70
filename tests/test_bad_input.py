"""Every bad input answered with one line `fmnist: error: ...`, exit status != 0, no
traceback, nothing half-written: resource bombs, odd pictures, hand-edited run files,
absurd values, unwritable outputs, a full disk, a closed pipe."""
from __future__ import annotations

import errno
import gzip
import json
import os
import stat
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from fmnist import api, runs
from fmnist.cli import main
from fmnist.data import parse_idx, read_idx, write_idx
from fmnist.data.images import MAX_PIXELS, read_images, read_picture
from fmnist.data.idx import MAX_IDX_BYTES
from fmnist.errors import DataError, IDXFormatError

from conftest import FILENAMES


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def toy_run(tmp_path, epochs=1):
    from test_train import toy_config

    return api.train(toy_config(epochs=epochs), out=tmp_path / "run", plots=False)


# ------------------------------------------------------------------ resource bombs
def idx_header(code: int, shape: tuple[int, ...]) -> bytes:
    return struct.pack(f">HBB{len(shape)}I", 0, code, len(shape), *shape)


@pytest.mark.parametrize("shape", [
    (2**31, 28, 28),  # 1.7 TB of images
    (2**32 - 1,) * 4,  # a product past 2**64: no integer overflow lets it through
    (1_000_002, 28, 28),  # just past the cap
])
def test_a_header_declaring_too_much_is_refused_before_reading(shape):
    for data in (idx_header(0x08, shape) + b"\0" * 100, gzip.compress(idx_header(0x08, shape) + b"\0" * 100)):
        with pytest.raises(IDXFormatError, match="declares shape"):
            parse_idx(data, "bomb")


def test_a_gzip_bomb_stops_inflating_where_the_header_ends():
    # a plausible header, then 64 MB more than it declares: inflation stops one byte past it
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    bomb = z.compress(idx_header(0x08, (10, 28, 28))) + z.compress(b"\0" * (64 << 20)) + z.flush()
    assert len(bomb) < 1_000_000
    t0 = time.perf_counter()
    with pytest.raises(IDXFormatError, match="longer than the header says"):
        parse_idx(bomb, "bomb.gz")
    assert time.perf_counter() - t0 < 2  # it did not inflate the 64 MB


def test_a_gzip_bomb_without_an_idx_header_is_cut_short():
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    bomb = z.compress(b"\1" * (256 << 20)) + z.flush()
    with pytest.raises(IDXFormatError, match="bad magic"):
        parse_idx(bomb, "bomb.gz")


def test_a_huge_sparse_file_under_a_data_set_name(synthetic_source, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for role, name in FILENAMES.items():
        (folder / name).write_bytes((synthetic_source.folder / name).read_bytes())
    with open(folder / FILENAMES["train_images"], "wb") as f:
        f.truncate(8 << 30)  # 8 GiB, sparse: nothing on disk, everything in a read_bytes()
    t0 = time.perf_counter()
    fix = (f"not Fashion-MNIST's {FILENAMES['train_images']}: delete it and run `fmnist data "
           "get`, or point --data-dir or FMNIST_DATA at the fashion-mnist files")
    assert main(["data", "verify", "--data-dir", str(folder)]) == 1
    line = one_error_line(capsys)
    assert "8,589,934,592 bytes" in line and FILENAMES["train_images"] in line
    assert fix in line, line
    assert main(["data", "info", "--data-dir", str(folder)]) == 1
    line = one_error_line(capsys)
    assert "more than a data set file can hold" in line and fix in line, line
    with pytest.raises(IDXFormatError):
        read_idx(folder / FILENAMES["train_images"])
    assert time.perf_counter() - t0 < 10


def test_predict_refuses_an_idx_bomb_and_predicts_the_rest(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    bomb = tmp_path / "bomb.idx.gz"
    bomb.write_bytes(gzip.compress(idx_header(0x08, (2**31, 28, 28))))
    good = write_idx(tmp_path / "good.idx", toy.arrays["test_images"][:3])
    capsys.readouterr()
    assert main(["predict", str(run.dir), "--images", str(bomb), str(good)]) == 1
    line = one_error_line(capsys)
    assert "1 of 2 files not predicted" in line and "bomb.idx.gz" in line and "declares shape" in line
    assert len((run.dir / "predictions-bomb.idx.gz.csv").read_text().splitlines()) == 4  # the 3 good


# ------------------------------------------------------------------ pictures
def garment(h=120, w=80) -> np.ndarray:
    """A dark garment-like shape on a white page: the 8-bit reference picture."""
    page = np.full((h, w), 235, np.uint8)
    page[20:100, 15:65] = 40
    page[20:45, 4:75] = 60  # sleeves (71 wide: 24.85 px at 28, clear of a rounding edge)
    return page


def reference() -> np.ndarray:
    from fmnist.data.images import prepare

    return prepare(garment())


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.abs(a.astype(int) - b.astype(int)).mean() < 4 and (a > 0).sum() > 100


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "F01", "P", "PA", "LA", "RGBA", "CMYK", "1", "RGB", "L"])
def test_every_picture_mode_is_read_like_its_8_bit_version(tmp_path, mode):
    grey = garment()
    if mode == "I;16":
        img, suffix = Image.fromarray(grey.astype(np.uint16) * 257), ".png"  # 16-bit PNG
    elif mode == "I":  # 16-bit data in 32-bit ints: how older Pillows open 16-bit PNGs
        img, suffix = Image.fromarray(grey.astype(np.int32) * 257), ".tif"
    elif mode in ("F", "F01"):
        scale = 1 / 255 if mode == "F01" else 1.0
        img, suffix = Image.fromarray(grey.astype(np.float32) * scale), ".tif"
    elif mode == "P":
        img, suffix = Image.fromarray(grey).convert("P"), ".png"
    elif mode == "PA":  # palette with a transparent background: paper-white
        img = Image.fromarray(grey).convert("P")
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        img, suffix = img, ".png"
    elif mode in ("LA", "RGBA"):  # transparent background, garment opaque
        alpha = np.where(grey > 128, 0, 255).astype(np.uint8)
        img = Image.merge("LA", [Image.fromarray(np.where(grey > 128, 0, grey).astype(np.uint8)),
                                 Image.fromarray(alpha)])
        img, suffix = (img if mode == "LA" else img.convert("RGBA")), ".png"
    elif mode == "CMYK":
        img, suffix = Image.fromarray(grey).convert("CMYK"), ".tif"
    elif mode == "1":  # bilevel: like the 8-bit version of the same two levels
        grey = np.where(grey > 128, 255, 0).astype(np.uint8)
        img, suffix = Image.fromarray(grey).convert("1"), ".png"
    else:
        img, suffix = Image.fromarray(grey).convert(mode), ".png"
    path = tmp_path / f"x{suffix}"
    if mode == "PA":
        img.save(path, transparency=img.info["transparency"])
    else:
        img.save(path)
    with Image.open(path) as check:  # the file really is in the mode under test
        assert check.mode.startswith(mode.rstrip("01") if mode != "PA" else "P") or mode in ("I", "LA")
    from fmnist.data.images import prepare

    assert close(read_picture(path), prepare(grey)), mode


def test_wide_range_pictures_are_scaled_by_their_range_not_clipped(tmp_path):
    from fmnist.data.images import prepare

    grey = garment().astype(np.int64)
    stretched = ((grey - grey.min()) * 255 / (grey.max() - grey.min())).round().astype(np.uint8)
    for mode, values in (("I", grey * 1_000_000 - 5_000_000), ("F", grey * 1e6 - 3e7)):
        img = Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32), mode)
        img.save(tmp_path / "w.tif")
        x = read_picture(tmp_path / "w.tif")
        assert close(x, prepare(stretched)), mode  # its own range mapped onto 0..255
        assert (x == 255).mean() < 0.5, mode  # not saturated to white


def test_an_animation_is_read_from_its_first_frame(tmp_path):
    first, second = Image.fromarray(garment()), Image.fromarray(np.full((120, 80), 235, np.uint8))
    first.save(tmp_path / "a.gif", save_all=True, append_images=[second], duration=100, loop=0)
    assert close(read_picture(tmp_path / "a.gif"), reference())


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, needle", [
    (60000, 60000, "decompression bomb"),  # Pillow's own limit: refused at open
    (13000, 13000, "shrink it first"),  # over Pillow's limit and ours
    (9000, 8000, "9000 x 8000 pixels"),  # under Pillow's limit, over ours
    (MAX_PIXELS + 1, 1, "pixels"),
])
def test_a_picture_too_large_is_refused_before_decoding(tmp_path, width, height, needle):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(width, height))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=needle):
        read_picture(path)
    assert time.perf_counter() - t0 < 1


def test_a_large_photo_is_shrunk_early(tmp_path):
    big = np.asarray(Image.fromarray(garment()).resize((4000, 6000), Image.NEAREST))
    Image.fromarray(big).convert("RGB").save(tmp_path / "photo.jpg", quality=90)
    Image.fromarray(big).save(tmp_path / "photo.png")
    for name in ("photo.jpg", "photo.png"):
        t0 = time.perf_counter()
        x = read_picture(tmp_path / name)
        assert time.perf_counter() - t0 < 3, name
        assert close(x, reference()), name


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a", png_header(0, 10)])
def test_broken_pictures_are_named(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.png"):
        read_picture(path)


def test_several_pictures_the_bad_ones_named_the_good_ones_read(tmp_path):
    Image.fromarray(garment()).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "big.png").write_bytes(png_header(13000, 13000))
    images, names, failures = read_images([tmp_path / "bad.jpg", tmp_path / "good.png",
                                           tmp_path / "big.png", tmp_path / "missing.png"])
    assert names == ["good.png"] and images.shape == (1, 28, 28)
    assert [f.split(":")[0].split("/")[-1] for f in failures] == ["bad.jpg", "big.png", "missing.png"]


def test_predict_with_only_bad_pictures_writes_nothing(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"nope")
    capsys.readouterr()
    assert main(["predict", str(run.dir), "--images", str(tmp_path / "bad.png")]) == 1
    assert "bad.png: not an image" in one_error_line(capsys)
    assert not list(run.dir.glob("predictions-bad*"))


# ------------------------------------------------------------------ hand-edited run files
@pytest.mark.parametrize("name, content, command, needle", [
    ("history.jsonl", '{"epoch": 0}\n[1, 2]\n{"epoch": 2}\n', "plot", "line 2 is not an epoch record"),
    ("history.jsonl", '{"epoch": "zero"}\n{"epoch": 1}\n', "plot", "line 1 is not an epoch record"),
    ("metrics.json", '{"confusion": "lots"}', "plot", "confusion must be a square table"),
    ("metrics.json", '{"confusion": [[1, 2], [3]]}', "report", "confusion must be a square table"),
    ("metrics.json", '{"confusion": null}', "plot", "confusion must be a square table"),
    ("metrics.json", '{"confusion": [[1, 0], [0, 1000000000000000000000000000000]]}', "plot",
     "confusion holds a count above 1,099,511,627,776"),
    ("metrics.json", '{"confusion": [[1, 0], [0, -1]]}', "plot", "confusion must be a square table"),
    ("metrics.json", '{"confusion": [[1, 0], [0, 1]], "class_names": ["a", "b", "c"]}', "plot",
     "confusion has 2 rows but class_names names 3 classes"),
    ("metrics.json", json.dumps({"confusion": [[0] * 1001] * 1001}), "plot",
     "confusion has 1,001 rows, more than the 1,000 classes"),
    ("metrics.json", '{"per_class": [{"name": "a", "f1": "x"}]}', "report", "per_class"),
    ("metrics.json", '{"accuracy": "high"}', "report", "accuracy must be a number"),
    ("metrics.json", "[]", "report", "must be a JSON object"),
    ("metrics.json", "{", "report", "not valid JSON"),
    ("predictions.csv", "index,label,pred,p0\n1,2\n", "plot", "rows must hold"),
    ("predictions.csv", "a,b\n", "plot", "header must be"),
    ("predictions.csv", "", "plot", "predictions.csv: empty"),
    ("predictions.csv", "index,label,pred,p0\n0,0,0,nan\n", "report --redraw", "not a finite number"),
    ("config.json", "\xff\xfe", "evaluate", "not UTF-8 text"),
])
def test_hand_edited_run_files_are_named(toy, tmp_path, capsys, name, content, command, needle):
    run = toy_run(tmp_path)
    (run.dir / name).write_text(content, encoding="latin-1")
    capsys.readouterr()
    assert main([*command.split(), str(run.dir)]) == 1
    line = one_error_line(capsys)
    assert name in line and needle in line, line
    if name == "metrics.json":
        assert line.endswith("; restore the file written by `fmnist train`, or train again"), line
    if name == "predictions.csv":
        assert line.endswith(f"; restore it, or rewrite it with `fmnist predict {run.dir} --out "
                             f"{run.dir / name}`"), line


def test_a_truncated_predictions_csv_is_rewritten_by_the_command_named(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    csv_path = run.dir / "predictions.csv"
    whole = csv_path.read_bytes()
    csv_path.write_bytes(whole[:len(whole) // 2])  # a copy cut short mid-row
    capsys.readouterr()
    assert main(["report", "--redraw", str(run.dir)]) == 1
    line = one_error_line(capsys)
    assert "rows must hold 13 numbers each" in line, line
    command = line.rsplit("`", 2)[1].split()  # the fix's command, as the user would type it
    assert command[:2] == ["fmnist", "predict"]
    assert main(command[1:]) == 0
    assert csv_path.read_bytes() == whole  # the same file: no test-time augmentation in toy
    assert main(["report", "--redraw", str(run.dir)]) == 0


@pytest.mark.parametrize("edit", [
    lambda ck: {**ck, "model": [1, 2, 3]},
    lambda ck: {**ck, "model": {"0.weight": "x"}},
    lambda ck: {k: v for k, v in ck.items() if k != "history"},
    lambda ck: {**ck, "history": []},
    lambda ck: {**ck, "optimizer": {"state": 1}},
])
def test_hand_edited_checkpoints_are_named(toy, tmp_path, capsys, edit):
    import torch

    run = toy_run(tmp_path)
    path = run.dir / "checkpoint.pt"
    torch.save(edit(runs.load_checkpoint(path)), path)
    (run.dir / "best.pt").unlink()  # evaluate falls back on checkpoint.pt
    capsys.readouterr()
    codes = [main(["train", "--resume", str(run.dir), "--no-plots", "--quiet"])]
    line = one_error_line(capsys)
    assert "checkpoint.pt" in line, line
    codes.append(main(["evaluate", str(run.dir)]))
    if codes[1] == 1:  # weights that still fit evaluate fine; any that do not are named
        assert "checkpoint.pt" in one_error_line(capsys)
    assert codes[0] == 1


# ------------------------------------------------------------------ absurd values
@pytest.mark.parametrize("argv, needle", [
    (["--model", "mlp2", "--model-arg", "hidden=[100000, 100000]"], "hidden[0] must be an integer in 1..65,536"),
    (["--model", "mlp2", "--model-arg", "hidden=[60000, 60000]"], "3,647,760,010 parameters"),
    (["--model", "cnn", "--model-arg", "widths=(4096, 4096, 4096)"], "parameters"),
    (["--model", "resnet", "--model-arg", "blocks=100000"], "blocks must be an integer in 1..64"),
    (["--model", "resnet", "--model-arg", "width=10**9"], "width"),
    (["--model", "mlp2", "--model-arg", "hidden=[8]*1000"], "at most 64"),
    (["--threads", "100000"], "threads=100000: this process may use"),
    (["--model-arg", "dropout=1.5"], "dropout"),
    (["--lr", "nan"], "finite"),
    (["--batch-size", "-5"], "batch_size=-5"),
])
def test_absurd_values_are_refused_quickly(toy, tmp_path, capsys, argv, needle):
    t0 = time.perf_counter()
    assert main(["train", "--dataset", "toy", "--val-size", "100", *argv, "--no-plots", "--quiet",
                 "--out", str(tmp_path / "run")]) == 1
    assert needle in one_error_line(capsys)
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ output locations
def test_outputs_that_cannot_be_written(toy, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    train = ["train", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs", "1",
             "--no-plots", "--quiet"]
    for argv, needle in [
        ([*train, "--out", str(a_file / "run")], "is a file, so no folder can be made there"),
        ([*train, "--out", str(a_file)], "is a file; give a folder"),
        ([*train, "--runs-dir", str(a_file / "runs")], "--runs-dir"),
        (["compare", "--dataset", "toy", "--optimizers", "sgd", "--out", str(a_file)], "is a file"),
        (["data", "show", "--out", str(a_file / "x.png")], "file"),
    ]:
        assert main(argv) == 1, argv
        assert needle in one_error_line(capsys), argv
    run = toy_run(tmp_path)
    assert main(["predict", str(run.dir), "--out", str(a_file / "p.csv")]) == 1
    assert "is a file" in one_error_line(capsys)
    fifo = tmp_path / "fifo"  # like /dev/full: a special file is never replaced by a file
    os.mkfifo(fifo)
    for argv in (["predict", str(run.dir), "--out", str(fifo)], ["data", "show", "--out", str(fifo)]):
        assert main(argv) == 1
        assert "is not a regular file" in one_error_line(capsys)
        assert stat.S_ISFIFO(fifo.stat().st_mode)

    def no_permission(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "mkdir", no_permission)
    assert main([*train, "--out", str(tmp_path / "new" / "run")]) == 1
    assert "Permission denied" in one_error_line(capsys)


# ------------------------------------------------------------------ a full disk
def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(toy, tmp_path, capsys, monkeypatch):
    import os

    import fmnist.fsutil as fsutil

    real_mkstemp, real_fsync = fsutil.tempfile.mkstemp, fsutil.os.fsync
    names: dict[int, str] = {}  # fd -> temp file name
    checkpoints = {"n": 0}

    def mkstemp(*a, **k):
        fd, name = real_mkstemp(*a, **k)
        names[fd] = os.path.basename(name)
        return fd, name

    def fsync(fd):  # the disk fills up while the third checkpoint (after epoch 2) is written
        if names.get(fd, "").startswith(".checkpoint.pt."):
            checkpoints["n"] += 1
            if checkpoints["n"] >= 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs", "3",
            "--batch-size", "50", "--threads", "1", "--no-plots", "--quiet", "--out", str(out)]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert "No space left on device" in line and "--resume" in line and "is intact" in line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    saved = runs.load_checkpoint(out / "checkpoint.pt")  # whole and loadable: epoch 1's
    assert saved["history"][-1]["epoch"] == 1
    monkeypatch.setattr(fsutil.os, "fsync", real_fsync)  # space freed
    assert main(["train", "--resume", str(out), "--no-plots", "--quiet"]) == 0
    assert runs.read_metrics(out)["epochs_run"] == 3


@pytest.mark.parametrize("out_given", [True, False])
def test_a_full_disk_at_the_first_checkpoint_leaves_nothing_in_the_way(toy, tmp_path, capsys,
                                                                       monkeypatch, out_given):
    # nothing to resume: the folder (or its config.json) would make the same command fail
    # with "already holds a run", and --resume with "no checkpoint"
    import os

    import fmnist.fsutil as fsutil

    real_mkstemp, real_fsync = fsutil.tempfile.mkstemp, fsutil.os.fsync
    names: dict[int, str] = {}

    def mkstemp(*a, **k):
        fd, name = real_mkstemp(*a, **k)
        names[fd] = os.path.basename(name)
        return fd, name

    def fsync(fd):
        if names.get(fd, "").startswith(".checkpoint.pt."):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("the user's")
    where = (["--out", str(tmp_path / "new" / "run")] if out_given else
             ["--runs-dir", str(tmp_path / "runs")])
    argv = ["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs", "1",
            "--batch-size", "50", "--threads", "1", "--no-plots", "--quiet", *where]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert "No space left on device" in line and "train again" in line
    assert not (tmp_path / "new").exists()  # nor the folders made for it
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]
    monkeypatch.setattr(fsutil.os, "fsync", real_fsync)  # space freed: the same command runs
    assert main(argv) == 0


def test_an_edited_data_set_or_model_in_config_json_is_named(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs", "1",
                 "--batch-size", "50", "--threads", "1", "--no-plots", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    original = json.loads((out / "config.json").read_text())
    edits = [(("data", "dataset"), "mnist", "data set 'mnist' has the classes 0, 1, 2, ..., but the run "
              "was trained on class0, class1, class2"),
             (("data", "dataset"), "nosuch", "unknown data set 'nosuch'"),
             (("model", "name"), "nosuch", "unknown model 'nosuch'"),
             (("resolved", "model_args"), {"hidden": 3}, "inconsistent values")]
    for (part, key), value, needle in edits:
        edited = json.loads(json.dumps(original))
        edited[part][key] = value
        (out / "config.json").write_text(json.dumps(edited))
        for command in (["evaluate", str(out)], ["predict", str(out)]):
            assert main(command) == 1
            line = one_error_line(capsys)
            assert line.startswith(f"fmnist: error: {out / 'config.json'}: ") and needle in line, line
    edited = json.loads(json.dumps(original))  # --resume builds the model from model.kwargs
    edited["model"]["kwargs"] = {"dropout": "x"}
    (out / "config.json").write_text(json.dumps(edited))
    assert main(["train", "--resume", str(out), "--no-plots", "--quiet"]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"fmnist: error: {out / 'config.json'}: ") and "dropout" in line, line
    (out / "config.json").write_text(json.dumps(original))
    assert main(["evaluate", str(out)]) == 0


def test_resume_finds_the_data_where_its_training_folder_has_gone(toy, tmp_path, capsys):
    import shutil

    copy = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "data" / "toy", copy)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs", "2",
            "--batch-size", "50", "--threads", "1", "--no-plots", "--quiet", "--data-dir", str(copy)]
    from conftest import cut_short
    from fmnist import recipes
    from fmnist.cli import build_parser
    from fmnist.flags import overrides

    config = recipes.config_from(None, overrides(build_parser().parse_args(argv)))
    cut_short(config, out, "epoch", 1)
    shutil.rmtree(copy)  # moved away; $FMNIST_DATA still has the same files
    assert main(["train", "--resume", str(out), "--no-plots", "--quiet"]) == 0
    assert runs.read_metrics(out)["epochs_run"] == 2


def full_disk_for(monkeypatch, *names: str):
    """Writing a file named in `names` fails at its fsync as on a full disk (ENOSPC), in
    this process and any it forks; the returned function frees the space."""
    import fmnist.fsutil as fsutil

    real_mkstemp, real_fsync = fsutil.tempfile.mkstemp, fsutil.os.fsync
    tmp: dict[int, str] = {}  # fd -> temp file name, ".NAME.XXXX.tmp"
    full = {"on": True}

    def mkstemp(*a, **k):
        fd, name = real_mkstemp(*a, **k)
        tmp[fd] = os.path.basename(name)
        return fd, name

    def fsync(fd):
        if full["on"] and any(tmp.get(fd, "").startswith(f".{n}.") for n in names):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    return lambda: full.update(on=False)


@pytest.mark.parametrize("figure", ["confusion.png", "mistakes.png", "report.html"])
def test_a_full_disk_after_training_says_the_run_is_complete(toy, tmp_path, capsys, monkeypatch, figure):
    """The run is scored before its figures are drawn: the error says so, and how to finish
    (mistakes.png is drawn in a forked process, report.html last)."""
    free = full_disk_for(monkeypatch, figure)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs",
                 "1", "--threads", "1", "--quiet", "--out", str(out)]) == 1
    line = one_error_line(capsys)
    acc = 100 * runs.read_metrics(out)["test_acc"]
    assert f"{out / figure}: could not be written (No space left on device)" in line, line
    assert f"the run is complete and scored (test accuracy {acc:.2f}%" in line, line
    assert f"free some space, then `fmnist report --redraw {out}`" in line, line
    assert "nothing was written" not in line and "try again" not in line, line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    free()
    assert main(["report", "--redraw", str(out)]) == 0
    assert (out / figure).is_file() and (out / "report.html").is_file()


def test_a_full_disk_under_predict_and_data_show_names_the_fix(toy, tmp_path, capsys, monkeypatch):
    run = toy_run(tmp_path)
    full_disk_for(monkeypatch, "p.csv", "x.png")
    for argv, name in [(["predict", str(run.dir), "--out", str(tmp_path / "p.csv")], "p.csv"),
                       (["data", "show", "--dataset", "toy", "--out", str(tmp_path / "x.png")], "x.png")]:
        capsys.readouterr()
        assert main(argv) == 1, argv
        line = one_error_line(capsys)
        assert line == (f"fmnist: error: {tmp_path / name}: could not be written (No space left "
                        "on device); free some space and try again"), line
        assert not list(tmp_path.glob(f".{name}.*")) and not (tmp_path / name).exists()


# ------------------------------------------------------------------ pipes and help
def test_a_closed_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "fmnist", "optimizers"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written: `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err


def test_help_says_what_resume_does(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "other training flags are refused" in text and "ignored" not in text


def test_cap_on_idx_bytes_covers_the_largest_family_member():
    assert MAX_IDX_BYTES >= 814_255 * 28 * 28  # EMNIST's 814,255 images fit


# ------------------------------------------------------------------ found in review
def test_devices_pipes_and_huge_run_files_are_refused_before_reading(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    fifo = tmp_path / "f.idx"
    os.mkfifo(fifo)
    for images in ("/dev/zero", str(fifo)):  # /dev/zero reports size 0; a FIFO blocks forever
        assert main(["predict", str(run.dir), "--images", images]) == 1
        assert "is not a regular file" in one_error_line(capsys)
    (run.dir / "history.jsonl").unlink()
    (run.dir / "history.jsonl").symlink_to("/dev/zero")
    assert main(["plot", str(run.dir)]) == 1
    assert "history.jsonl: is not a regular file" in one_error_line(capsys)
    (run.dir / "history.jsonl").unlink()
    with open(run.dir / "metrics.json", "wb") as f:
        f.truncate(20 << 30)  # sparse 20 GiB
    assert main(["report", str(run.dir)]) == 1
    assert "more than a run file can hold" in one_error_line(capsys)


@pytest.mark.parametrize("name, content, needle", [
    ("config.json", "[" * 100000 + "]" * 100000, "not JSON we read"),
    ("metrics.json", '{"accuracy": ' + "9" * 5000 + "}", "not JSON we read"),
    ("history.jsonl", "\xff\xfe{}\n", "not UTF-8"),
    ("predictions.csv", "index,label,pred,p0,p1\n0,7,0,0.5,0.5\n", "a label outside"),
])
def test_run_files_that_once_gave_tracebacks(toy, tmp_path, capsys, name, content, needle):
    run = toy_run(tmp_path)
    (run.dir / name).write_bytes(content.encode("latin-1"))
    capsys.readouterr()
    assert main(["plot" if name != "config.json" else "evaluate", str(run.dir)]) == 1
    line = one_error_line(capsys)
    assert name in line and needle in line, line


@pytest.mark.parametrize("edit, needle", [
    (lambda ck: {**ck, "history": [{"x": 1}]}, "history record"),
    (lambda ck: {**ck, "step": "7"}, "step does not match"),
    (lambda ck: {**ck, "best_acc": "x"}, "best_acc"),
    (lambda ck: {**ck, "best_epoch": 99}, "best_epoch"),
    (lambda ck: {**ck, "history": [{**r, "seconds": None} for r in ck["history"]]}, "history record"),
])
def test_a_checkpoints_loop_state_is_checked(toy, tmp_path, capsys, edit, needle):
    import torch

    run = toy_run(tmp_path, epochs=2)
    path = run.dir / "checkpoint.pt"
    torch.save(edit(runs.load_checkpoint(path)), path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run.dir), "--no-plots", "--quiet"]) == 1
    line = one_error_line(capsys)
    assert "checkpoint.pt" in line and needle in line, line


def test_a_compressed_checkpoint_is_refused_before_inflating(toy, tmp_path, capsys):
    import zipfile

    run = toy_run(tmp_path)
    path = run.dir / "best.pt"
    with zipfile.ZipFile(path) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:  # what a zip bomb needs
        for info, data in members:
            z.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    capsys.readouterr()
    assert main(["evaluate", str(run.dir)]) == 1
    assert "best.pt: refused: compressed" in one_error_line(capsys)


def test_postscript_named_png_never_reaches_ghostscript(tmp_path):
    (tmp_path / "evil.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(DataError, match="not an image Pillow can read"):
        read_picture(tmp_path / "evil.png")


def test_a_large_16_bit_picture(tmp_path):
    big = np.asarray(Image.fromarray(garment()).resize((1600, 2400), Image.NEAREST)).astype(np.uint16) * 257
    Image.fromarray(big).save(tmp_path / "big16.png")
    assert close(read_picture(tmp_path / "big16.png"), reference())


def test_a_rotated_phone_photo_is_turned_upright(tmp_path):
    upright = Image.fromarray(garment()).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned 90 degrees
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    assert close(read_picture(tmp_path / "phone.jpg"), reference())


def test_an_empty_idx_file_is_named(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    write_idx(tmp_path / "empty.idx", np.zeros((0, 28, 28), np.uint8))
    capsys.readouterr()
    assert main(["predict", str(run.dir), "--images", str(tmp_path / "empty.idx")]) == 1
    assert "empty.idx: holds no images" in one_error_line(capsys)


def test_compare_flags_apply_to_every_optimizer_and_are_checked_first(toy, tmp_path, capsys):
    base = ["compare", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs", "1",
            "--threads", "1", "--seeds", "1", "--no-plots", "--quiet"]
    out = tmp_path / "wd"
    assert main([*base, "--optimizers", "msgd", "--weight-decay", "0.01", "--opt-arg", "beta=0.8",
                 "--out", str(out)]) == 0
    optim = runs.load_config(runs.member_dir(out, "msgd-lr0.1-seed0")).optim
    assert optim.weight_decay == 0.01 and optim.kwargs == {"beta": 0.8}  # honoured, not dropped
    for argv, needle in [
        (["--optimizers", "adam", "--opt-arg", "momentum=0.5"], "adam"),  # not nesterov's check
        (["--optimizers", "sgd", "--threads", "1000"], "threads=1000"),
        (["--optimizers", "sgd", "--opt-arg", "lr=3"], "give lr with --lr"),
        (["--optimizers", "sgd", "--seeds", "1000000000"], "seeds="),
        (["--optimizers", "sgd", "--lr-grid", "--grid-points", "1000000000"], "grid_points="),
    ]:
        assert main([*base, *argv, "--out", str(tmp_path / "bad")]) == 1, argv
        assert needle in one_error_line(capsys), argv
        assert not (tmp_path / "bad" / "plan.json").exists(), argv  # nothing planned


def test_tuple_model_arguments_resume(toy, tmp_path, capsys):
    argv = ["compare", "--dataset", "toy", "--val-size", "100", "--model", "mlp2", "--model-arg",
            "hidden=(32,16)", "--optimizers", "sgd", "--epochs", "1", "--seeds", "1", "--threads", "1",
            "--no-plots", "--quiet", "--out", str(tmp_path / "c")]
    assert main(argv) == 0
    done = tmp_path / "c" / "runs" / "sgd-lr0.1-seed0" / "metrics.json"
    before = done.stat().st_mtime_ns
    assert main(argv) == 0  # the same command again: read back, not "other settings"
    assert done.stat().st_mtime_ns == before


def test_an_unwritable_cache_costs_speed_not_correctness(synthetic_source, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(a_file))  # the cache cannot be made
    from fmnist.data import load

    assert len(load(synthetic_source.source, "train", data_dir=synthetic_source.folder)) == 200


def test_a_run_from_another_machine_finds_its_data_here(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    saved = json.loads((run.dir / "config.json").read_text())
    saved["data"]["data_dir"] = "/home/alice/data"  # trained elsewhere
    (run.dir / "config.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["evaluate", str(run.dir)]) == 0  # found through $FMNIST_DATA instead
    assert main(["evaluate", str(run.dir), "--data-dir", str(toy.folder)]) == 0


def test_an_existing_folder_of_other_files_is_not_clobbered(toy, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"mine": 1}')
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs", "1",
                 "--no-plots", "--quiet", "--out", str(other)]) == 1
    assert "already holds" in one_error_line(capsys)
    assert (other / "config.json").read_text() == '{"mine": 1}'


def test_a_huge_integer_in_a_float_setting(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    text = (run.dir / "config.json").read_text().replace('"lr": 0.003', '"lr": 1' + "0" * 400)
    (run.dir / "config.json").write_text(text)
    assert main(["train", "--resume", str(run.dir), "--no-plots", "--quiet"]) == 1
    assert "optim.lr" in one_error_line(capsys)


@pytest.mark.parametrize("rows", [[{}], ["x"], [{"runs": [1]}], [{"runs": ["../../elsewhere"]}], "rows"])
def test_a_hand_edited_summary_is_named(toy, tmp_path, capsys, rows):
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs",
                 "1", "--threads", "1", "--seeds", "1", "--optimizers", "sgd", "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    (out / "summary.json").write_text(json.dumps({"rows": rows}))
    capsys.readouterr()
    for command in ("report", "plot"):
        assert main([command, str(out)]) == 1
        assert "summary.json" in one_error_line(capsys)


@pytest.mark.parametrize("argv, needle", [
    (["--cv-epochs", "0"], "--cv-epochs 0"), (["--cv-epochs", "1000"], "--cv-epochs 1000"),
    (["--cv-seed", "-1"], "--cv-seed -1"), (["--folds", "1"], "--folds 1"),
    (["--cv-model", "nosuch"], "--cv-model 'nosuch'")])
def test_audit_cross_validation_flags_are_named_as_typed(tmp_path, capsys, argv, needle):
    # the fields are epochs and seed; the user typed --cv-epochs and --cv-seed
    assert main(["data", "audit", *argv, "--out", str(tmp_path / "a")]) == 1
    line = one_error_line(capsys)
    assert needle in line and "epochs=" not in line and "seed=" not in line, line


# ------------------------------------------------------------------ kills and races
def _train_argv(out, *more):
    return ["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs", "2",
            "--batch-size", "50", "--threads", "1", "--no-plots", "--quiet", "--out", str(out), *more]


def test_a_run_killed_before_its_first_checkpoint_says_to_delete_it(toy, tmp_path, capsys):
    # SIGKILL runs no clean-up: its config.json (or train's empty claim) is left alone
    for content in ("", None):
        out = tmp_path / f"killed{content is None}"
        out.mkdir()
        if content is None:
            assert main(_train_argv(tmp_path / "whole")) == 0
            (out / "config.json").write_bytes((tmp_path / "whole" / "config.json").read_bytes())
        else:
            (out / "config.json").write_text(content)
        capsys.readouterr()
        assert main(_train_argv(out)) == 1
        line = one_error_line(capsys)
        assert "never reached its first checkpoint" in line and f"delete {out}" in line, line


def test_two_runs_into_one_folder_never_both_finish_there(toy, tmp_path, capsys, monkeypatch):
    # the second starts after the first passed its --out check: it must not train into it
    from fmnist import api as A

    out, real_build = tmp_path / "same", A.build
    started = {}

    def build_then_another_claims(config, **kw):
        parts = real_build(config, **kw)
        if not started:  # while this run builds, another claims the folder
            started["x"] = 1
            out.mkdir(exist_ok=True)
            (out / "config.json").write_text("")
        return parts

    monkeypatch.setattr(A, "build", build_then_another_claims)
    assert main(_train_argv(out)) == 1
    line = one_error_line(capsys)
    assert "another `fmnist train` may be starting there" in line, line
    assert (out / "config.json").read_text() == ""  # the other run's claim, left to it


def test_a_resume_rewrites_the_history_and_clears_temp_files(toy, tmp_path):
    # killed between checkpoint.pt and history.jsonl (written in that order), mid-write of a
    # temp file: the checkpoint is the truth
    from conftest import cut_short
    from test_train import toy_config

    broken = cut_short(toy_config(epochs=2), tmp_path / "broken", "epoch", 2)
    lines = (broken / "history.jsonl").read_text().splitlines()
    (broken / "history.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # an epoch short
    (broken / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"half")
    resumed = api.resume(broken, plots=False)
    assert [r["epoch"] for r in runs.load_history(broken)] == [0, 1, 2] == \
        [r["epoch"] for r in resumed.history]
    assert not list(broken.glob(".*.tmp"))


def test_sigterm_is_an_interrupt_with_its_clean_up(real_data_dir, tmp_path):
    # a run stopped by SIGTERM in its first scoring leaves no folder, and says so in one line
    out = tmp_path / "run"
    argv = ["train", "--train-limit", "600", "--val-size", "100", "--model", "mlp", "--epochs",
            "1", "--threads", "1", "--no-plots", "--quiet", "--out", str(out)]
    code = ("import os, signal, sys\n"
            "import fmnist.loop as L\n"
            "real = L.score\n"
            "def score(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return real(*a, **k)\n"
            "L.score = score\n"
            "from fmnist.cli import entry\n"
            f"sys.argv = ['fmnist'] + {argv!r}\n"
            "entry()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "FMNIST_DATA": str(real_data_dir)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines() == ["fmnist: interrupted"], proc.stderr
    assert not out.exists()
