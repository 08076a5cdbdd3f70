"""Shared fixtures: an isolated environment for every test, synthetic and real data sets.

Every test runs with its own empty cache (XDG_CACHE_HOME), its own HOME (so Keras'
~/.keras/datasets is empty), no FMNIST_DATA and a fresh working directory (the search path
includes ./data), so no test reads or writes the user's files by accident.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from fmnist.data import ROLES, DataSource, FileSpec, write_idx

REPO = Path(__file__).resolve().parents[1]
# captured at import, before `isolated_env` clears FMNIST_DATA for each test
REAL_DATA = Path(os.environ.get("FMNIST_DATA") or REPO.parent / "shared" / "data")

FILENAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = tuple(f"class{i}" for i in range(10))


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run only where torch sees a GPU (the GPU machine), and say why
    they were skipped elsewhere."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch sees none on this machine")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Empty cache and HOME, no FMNIST_DATA, cwd in a fresh folder."""
    root = tmp_path_factory.mktemp("env")
    for sub in ("cache", "home", "cwd"):
        (root / sub).mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.chdir(root / "cwd")
    return root


def _file_spec(path: Path) -> FileSpec:
    data = path.read_bytes()
    return FileSpec(path.name, hashlib.md5(data).hexdigest(),
                    hashlib.sha256(gzip.decompress(data)).hexdigest())


@dataclass
class Synthetic:
    """What `make_synthetic_source` wrote: the source, its folder and the arrays."""

    source: DataSource
    folder: Path
    arrays: dict[str, np.ndarray]  # role -> the array written

    def __iter__(self):  # so that `source, folder = synthetic_source` works
        return iter((self.source, self.folder))


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.uint8)


@pytest.fixture
def make_synthetic_source(tmp_path) -> Callable[..., Synthetic]:
    """Factory: a tiny four-file IDX data set in a tmp folder and a DataSource for it.

    The checksums are those of the files as written (md5 of the .gz, sha256 of the
    content), so `fmnist.data.load(source, ...)` accepts them; `overrides` (role -> array)
    are written in place of the random images / balanced labels, after the checksums of
    the regular files are taken when `checksums_of_regular=True` (to make files that do
    not match their source).
    """
    counter = iter(range(1000))

    def make(n_train: int = 200, n_test: int = 50, *, name: str = "synthetic",
             folder: Path | None = None, seed: int = 0, mirrors: tuple[str, ...] = (),
             overrides: dict[str, np.ndarray] | None = None,
             checksums_of_regular: bool = False,
             class_names: tuple[str, ...] = CLASS_NAMES) -> Synthetic:
        rng = np.random.default_rng(seed)
        folder = folder or tmp_path / f"synthetic{next(counter)}"
        arrays = {
            "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train_labels": _balanced_labels(n_train, rng),
            "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "test_labels": _balanced_labels(n_test, rng),
        }
        for role in ROLES:
            write_idx(folder / FILENAMES[role], arrays[role])
        files = {role: _file_spec(folder / FILENAMES[role]) for role in ROLES}
        for role, array in (overrides or {}).items():
            arrays[role] = array
            write_idx(folder / FILENAMES[role], array)
            if not checksums_of_regular:
                files[role] = _file_spec(folder / FILENAMES[role])
        source = DataSource(name=name, title="Synthetic", files=files,
                            class_names=class_names, mirrors=mirrors,
                            folder_aliases=("Synthetic",))
        return Synthetic(source, folder, arrays)

    return make


@pytest.fixture
def synthetic_source(make_synthetic_source) -> Synthetic:
    """200 train / 50 test random images with balanced labels; unpacks as (source, folder)."""
    return make_synthetic_source()


@pytest.fixture
def real_data_dir() -> Path:
    """The folder holding fashion-mnist/ (and mnist/): FMNIST_DATA or ../shared/data."""
    if not (REAL_DATA / "fashion-mnist" / FILENAMES["train_images"]).is_file():
        pytest.skip(f"real Fashion-MNIST files not found under {REAL_DATA}/fashion-mnist "
                    "(set FMNIST_DATA to the folder holding fashion-mnist/)")
    return REAL_DATA


def learnable(n: int, rng: np.random.Generator, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright horizontal band at row 2 + 2*label, plus noise."""
    labels = (np.arange(n) % classes).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 + 2 * y: 4 + 2 * y, 4:24] = 250
    return images, labels


@pytest.fixture
def toy(make_synthetic_source, tmp_path, monkeypatch):
    """A learnable synthetic data set registered as 'toy' for the test's duration."""
    from fmnist.data import DATASETS

    rng = np.random.default_rng(1)
    tr_x, tr_y = learnable(600, rng)
    te_x, te_y = learnable(100, rng)
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "data"))  # found as $FMNIST_DATA/toy
    syn = make_synthetic_source(name="toy", folder=tmp_path / "data" / "toy", overrides={
        "train_images": tr_x, "train_labels": tr_y, "test_images": te_x, "test_labels": te_y})
    DATASETS.add("toy", syn.source)
    yield syn
    DATASETS.remove("toy")


def write_member_run(comp_dir: Path, optimizer: str, lr: float, seed: int, history: list[dict],
                     test_acc: float | None, diverged: bool = False, seconds: float = 1.0) -> Path:
    """A finished member run of a comparison, written through fmnist.runs as `compare` does."""
    from fmnist import runs
    from fmnist.compare import Cell, protocol_base
    from fmnist.config import Facts

    cell = Cell(optimizer, lr, seed)
    run_dir = runs.member_dir(comp_dir, cell.name)
    run_dir.mkdir(parents=True)
    from fmnist.data import get_source

    config = cell.config(protocol_base())
    names = tuple(get_source(config.data.dataset).class_names)  # as a real run resolves them
    facts = Facts(10, names, 0.5, 0.25, {"num_classes": 10}, False, "fp32")
    runs.save_config(run_dir, config, facts, ["test"])
    runs.save_history(run_dir, history)
    vals = [r["val_acc"] for r in history if r.get("val_acc") is not None]
    runs.save_metrics(run_dir, {"diverged": diverged, "test_acc": None if diverged else test_acc,
                                "test_loss": None if diverged else 0.5, "train_seconds": seconds,
                                "final_val_acc": None if diverged else history[-1].get("val_acc"),
                                "best_val_acc": max(vals) if vals and not diverged else None})
    return run_dir


def cut_short(config, folder: Path, key: str, value) -> Path:
    """A run of `config` in `folder` killed right after the record whose `key` (epoch or
    step) is `value` was checkpointed: what a SIGKILL at that moment leaves."""
    from fmnist import runs
    from fmnist.build import build
    from fmnist.loop import fit

    class Killed(Exception):
        pass

    def kill(history):
        if history[-1][key] == value:
            raise Killed

    folder.mkdir(parents=True)
    parts = build(config)
    runs.save_config(folder, config, parts.facts)
    with pytest.raises(Killed):
        fit(parts, config.train, store=runs.RunStore(folder), on_epoch=kill)
    return folder
