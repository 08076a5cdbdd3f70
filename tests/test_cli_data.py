"""`fmnist data ...`: the happy paths on the real files, and every error as one line, exit 1."""
from __future__ import annotations

import functools
import gzip
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import fmnist.data.fetch as fetch_mod
from fmnist.cli import main

from conftest import FILENAMES


def _one_error_line(capsys, *names: str | Path) -> str:
    """The stderr of a failed command: one `fmnist: error:` line naming `names`."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fmnist: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], err
    return lines[0]


@pytest.fixture
def corrupt_copy(real_data_dir, tmp_path):
    """Factory: a folder holding the real Fashion-MNIST files, one of them damaged.

    The three intact files are symlinks (cheap); the damaged one is a real file.
    """

    def make(role: str, damage) -> tuple[Path, Path]:
        folder = tmp_path / "copy"
        folder.mkdir()
        for name in FILENAMES.values():
            (folder / name).symlink_to(real_data_dir / "fashion-mnist" / name)
        bad = folder / FILENAMES[role]
        data = bad.read_bytes()
        bad.unlink()
        bad.write_bytes(damage(data))
        return folder, bad

    return make


def _flip_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


DAMAGE = {
    "truncated": (lambda data: data[: len(data) // 2], "truncated"),
    "flipped byte": (_flip_byte, ""),  # a CRC error or a checksum mismatch, either is fine
    # verify compares checksums only: a file that is no gzip at all is a mismatch
    "empty": (lambda data: b"", "checksum mismatch"),
    "garbage": (lambda data: b"<html>404 Not Found</html>\n" * 10, "checksum mismatch"),
    "wrong content": (lambda data: gzip.compress(gzip.decompress(data)[:-1] + b"\x07"),
                      "checksum mismatch"),
}


# ------------------------------------------------------------------ happy paths
@pytest.mark.real_data
def test_verify_real_data_in_a_subprocess(real_data_dir, tmp_path):
    env = {**os.environ, "FMNIST_DATA": str(real_data_dir),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "fmnist", "data", "verify"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok    ") == 4
    assert "Fashion-MNIST: all 4 files verified" in done.stdout
    assert done.stderr == ""


@pytest.mark.real_data
def test_verify_in_process(real_data_dir, capsys):
    assert main(["data", "verify", "--data-dir", str(real_data_dir)]) == 0
    out = capsys.readouterr().out
    for name in FILENAMES.values():
        assert f"ok    {real_data_dir / 'fashion-mnist' / name}" in out


@pytest.mark.real_data
def test_info_counts_6000_per_class(real_data_dir, capsys, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    for i, name in enumerate(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]):
        row = next(line for line in out.splitlines() if line.strip().startswith(f"{i} {name}"))
        assert row.split()[-2:] == ["6000", "1000"], row
    assert "60000" in out and "10000" in out
    assert "pixel mean 0.2860, std 0.3530" in out


@pytest.mark.real_data
def test_show_writes_a_png(real_data_dir, tmp_path, capsys):
    pytest.importorskip("fmnist.plots")
    out = tmp_path / "sub" / "x.png"
    assert main(["data", "show", "--data-dir", str(real_data_dir), "--split", "test",
                 "--per-class", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out


# ------------------------------------------------------------------ errors: exit 1, one line
@pytest.mark.real_data
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_verify_a_damaged_file(corrupt_copy, capsys, kind):
    damage, words = DAMAGE[kind]
    folder, bad = corrupt_copy("test_labels", damage)
    assert main(["data", "verify", "--data-dir", str(folder)]) == 1
    line = _one_error_line(capsys, bad)
    assert words in line
    assert "1 of 4" in line


@pytest.mark.real_data
def test_info_on_a_damaged_file(corrupt_copy, capsys):
    folder, bad = corrupt_copy("test_images", DAMAGE["truncated"][0])
    assert main(["data", "info", "--data-dir", str(folder)]) == 1
    assert "truncated" in _one_error_line(capsys, bad)


@pytest.mark.real_data
def test_mnist_files_under_the_fashion_mnist_name(real_data_dir, capsys):
    if not (real_data_dir / "mnist" / FILENAMES["train_images"]).is_file():
        pytest.skip(f"no MNIST files under {real_data_dir}/mnist")
    assert main(["data", "info", "--data-dir", str(real_data_dir / "mnist")]) == 1
    line = _one_error_line(capsys, real_data_dir / "mnist" / FILENAMES["train_images"])
    assert "this is MNIST's" in line


@pytest.mark.parametrize("cmd", ["verify", "info", "show"])
def test_missing_files_without_download(cmd, tmp_path, capsys, monkeypatch):
    # verify never downloads; info and show would, so every mirror is made unreachable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setattr(fetch_mod, "download", functools.partial(
        fetch_mod.download, mirrors=(dead,), retries=1, backoff_s=0.0, timeout=2))
    empty = tmp_path / "empty"
    empty.mkdir()  # exists but holds nothing (a missing folder is refused outright)
    argv = ["data", cmd, "--data-dir", str(empty)]
    if cmd == "show":
        argv += ["--out", str(tmp_path / "x.png")]
    assert main(argv) == 1
    line = _one_error_line(capsys, empty)
    if cmd == "verify":
        assert "not found" in line and "fmnist data get" in line
    else:  # says what to copy where
        assert "could not download" in line and "train-images-idx3-ubyte.gz" in line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("under", ["x.png", "deeper/x.png"])
def test_show_out_under_a_file_says_the_file_is_in_the_way(tmp_path, capsys, under):
    photo = tmp_path / "img" / "photo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"a photo")
    assert main(["data", "show", "--out", str(photo / under)]) == 1  # before any data is read
    line = _one_error_line(capsys, photo / under)
    assert f"{photo} is a file, so no folder can be made there; give another path" in line
    assert "File exists" not in line and "Not a directory" not in line
    assert photo.read_bytes() == b"a photo"


def test_get_with_every_mirror_dead(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setattr(fetch_mod, "download", functools.partial(
        fetch_mod.download, mirrors=(dead,), retries=1, backoff_s=0.0, timeout=2))
    assert main(["data", "get", "--quiet"]) == 1  # no data_dir: into the cache
    line = _one_error_line(capsys, fetch_mod.cache_dir() / "fashion-mnist")
    assert "offline?" in line and "FMNIST_DATA" in line
    leftovers = list((fetch_mod.cache_dir() / "fashion-mnist").iterdir())
    assert leftovers == []


# ------------------------------------------------------------------ errors: exit 2 (argparse)
@pytest.mark.parametrize("argv", [
    ["data", "verify", "--dataset", "kmnist"],
    ["data", "show", "--per-class", "0"],
    ["data", "show", "--per-class", "1000000000"],  # an 8 TiB mosaic
    ["data", "show", "--split", "val"],
    ["data"],
])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" in err
    if "kmnist" in argv:
        assert "invalid choice: 'kmnist'" in err and "fashion-mnist" in err


@pytest.mark.real_data
@pytest.mark.parametrize("command", ["info", "verify"])
def test_data_commands_that_draw_nothing_do_not_import_matplotlib(real_data_dir, command):
    # matplotlib costs ~0.5 s to import: only `fmnist data show` draws
    code = ("import sys\nfrom fmnist.cli import main\n"
            f"assert main(['data', {command!r}, '--data-dir', {str(real_data_dir)!r}]) == 0\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
            "assert 'tqdm' not in sys.modules, 'tqdm imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert done.returncode == 0, done.stderr[-500:]
