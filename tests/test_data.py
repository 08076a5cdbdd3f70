"""The data layer: load, verify, search order, the decoded cache, splits, statistics, download."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import fmnist.data.dataset as dataset_mod
import fmnist.data.fetch as fetch_mod
from fmnist.data import (DATASETS, ROLES, cache_dir, download, find_files, load, locate,
                         normalisation, pixel_stats, stratified_split, verify_file, write_idx)
from fmnist.errors import (ChecksumError, ConfigError, DataError, DataNotFoundError,
                           IDXFormatError, UnknownNameError)

from conftest import FILENAMES


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ load
@pytest.mark.parametrize("split, n", [("train", 200), ("test", 50)])
def test_load_synthetic(synthetic_source, split, n):
    source, folder = synthetic_source
    data = load(source, split, data_dir=folder, download=False)
    assert data.images.shape == (n, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.images, synthetic_source.arrays[f"{split}_images"])
    np.testing.assert_array_equal(data.labels, synthetic_source.arrays[f"{split}_labels"])
    assert len(data) == n and data.split == split and data.dataset == "synthetic"
    assert data.class_names == source.class_names
    assert data.images.flags.writeable and data.labels.flags.writeable


def test_load_finds_the_name_subfolder(make_synthetic_source, tmp_path):
    syn = make_synthetic_source(folder=tmp_path / "root" / "synthetic")
    assert len(load(syn.source, "test", data_dir=tmp_path / "root", download=False)) == 50


def test_counts_that_differ_name_both_files(make_synthetic_source):
    labels = np.arange(199, dtype=np.uint8) % 10  # 199 labels for 200 images
    syn = make_synthetic_source(overrides={"train_labels": labels})
    with pytest.raises(DataError, match="200 images but .* 199 labels") as info:
        load(syn.source, "train", data_dir=syn.folder, download=False)
    assert str(syn.folder / FILENAMES["train_images"]) in str(info.value)
    assert str(syn.folder / FILENAMES["train_labels"]) in str(info.value)


@pytest.mark.parametrize("bad", [10, 255])
def test_label_outside_the_classes(make_synthetic_source, bad):
    labels = np.arange(50, dtype=np.uint8) % 10
    labels[17] = bad
    syn = make_synthetic_source(overrides={"test_labels": labels})
    with pytest.raises(DataError, match=f"label {bad} is outside 0-9") as info:
        load(syn.source, "test", data_dir=syn.folder, download=False)
    assert str(syn.folder / FILENAMES["test_labels"]) in str(info.value)


def test_images_of_the_wrong_shape(make_synthetic_source):
    syn = make_synthetic_source(overrides={"test_images": np.zeros((50, 32, 32), np.uint8)})
    with pytest.raises(DataError, match=r"\(N, 28, 28\)"):
        load(syn.source, "test", data_dir=syn.folder, download=False)


def test_checksum_mismatch_names_the_file(make_synthetic_source):
    other = np.zeros(200, np.uint8)  # valid IDX, but not the file the source describes
    syn = make_synthetic_source(overrides={"train_labels": other}, checksums_of_regular=True)
    path = syn.folder / FILENAMES["train_labels"]
    with pytest.raises(ChecksumError, match="checksum mismatch") as info:
        load(syn.source, "train", data_dir=syn.folder, download=False)
    assert str(path) in str(info.value) and "fmnist data get" in str(info.value)
    # the test split does not involve that file and still loads
    assert len(load(syn.source, "test", data_dir=syn.folder, download=False)) == 50


def test_truncated_file_is_an_idx_error(synthetic_source):
    source, folder = synthetic_source
    path = folder / FILENAMES["train_images"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IDXFormatError, match="truncated") as info:
        load(source, "train", data_dir=folder, download=False)
    assert str(path) in str(info.value)


def test_unreadable_path_is_a_data_error(synthetic_source, tmp_path):
    source, _ = synthetic_source
    with pytest.raises(DataError, match="cannot read") as info:
        verify_file(tmp_path, source.files["train_images"], source)  # a folder
    assert str(tmp_path) in str(info.value)


def test_gunzipped_and_recompressed_copies_are_accepted(synthetic_source, tmp_path):
    source, folder = synthetic_source
    raw, recompressed = tmp_path / "raw", tmp_path / "recompressed"
    raw.mkdir(), recompressed.mkdir()
    for name in FILENAMES.values():
        content = gzip.decompress((folder / name).read_bytes())
        (raw / name.removesuffix(".gz")).write_bytes(content)  # torchvision keeps these
        (recompressed / name).write_bytes(gzip.compress(content, compresslevel=1))
        assert (recompressed / name).read_bytes() != (folder / name).read_bytes()  # new md5
    for where in (raw, recompressed):  # both verified by the sha256 of the content
        data = load(source, "train", data_dir=where, download=False, cache=False)
        np.testing.assert_array_equal(data.images, synthetic_source.arrays["train_images"])


@pytest.mark.real_data
def test_mnist_where_fashion_mnist_was_asked_for(real_data_dir):
    if not (real_data_dir / "mnist" / FILENAMES["train_images"]).is_file():
        pytest.skip(f"no MNIST files under {real_data_dir}/mnist")
    with pytest.raises(ChecksumError) as info:
        load("fashion-mnist", "test", data_dir=real_data_dir / "mnist", download=False)
    message = str(info.value)
    assert "MNIST's t10k-" in message and "not Fashion-MNIST's" in message
    assert str(real_data_dir / "mnist") in message


def test_unknown_dataset_lists_the_names():
    with pytest.raises(UnknownNameError) as info:
        load("kmnist", "train", download=False)
    assert "kmnist" in str(info.value)
    for name in DATASETS.names():
        assert name in str(info.value)


def test_unknown_split(synthetic_source):
    source, folder = synthetic_source
    with pytest.raises(ConfigError, match="'val'.*train, test"):
        load(source, "val", data_dir=folder)


def test_missing_files_without_download(synthetic_source, tmp_path):
    source, _ = synthetic_source
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="fmnist data get") as info:
        load(source, "train", data_dir=tmp_path / "empty", download=False)
    assert str(tmp_path / "empty") in str(info.value)


# ------------------------------------------------------------------ where we look
def _copy(folder: Path, dest: Path, gunzip: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILENAMES.values():
        data = (folder / name).read_bytes()
        if gunzip:
            (dest / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
        else:
            (dest / name).write_bytes(data)
    return dest


def test_search_order(synthetic_source, tmp_path, monkeypatch):
    source, folder = synthetic_source
    explicit = _copy(folder, tmp_path / "explicit")
    env = _copy(folder, tmp_path / "env" / "synthetic")
    cached = _copy(folder, cache_dir() / "synthetic")
    keras = _copy(folder, Path.home() / ".keras" / "datasets" / "synthetic")
    torchvision = _copy(folder, Path("data") / "Synthetic" / "raw", gunzip=True)
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "env"))

    def where(data_dir=None) -> Path | None:
        found = find_files(source, data_dir)
        if found is None:
            return None
        assert len({p.parent for p in found.values()}) == 1  # all four from one folder
        return found["train_images"].parent

    assert where(explicit) == explicit  # 1. an explicit data_dir
    assert where() == env  # 2. $FMNIST_DATA/<name>
    monkeypatch.delenv("FMNIST_DATA")
    assert where() == cached  # 3. the cache
    shutil.rmtree(cached)
    assert where() == keras  # 4. ~/.keras/datasets/<name>
    shutil.rmtree(keras)
    assert where() == Path("data") / "Synthetic" / "raw"  # 5. torchvision's ./data layout
    data = load(source, "test", download=False)  # gunzipped files: the sha256 path
    np.testing.assert_array_equal(data.labels, synthetic_source.arrays["test_labels"])
    shutil.rmtree("data")
    assert where() is None


def test_a_folder_missing_one_file_is_skipped(synthetic_source, tmp_path, monkeypatch):
    source, folder = synthetic_source
    partial = _copy(folder, tmp_path / "env" / "synthetic")
    (partial / FILENAMES["test_labels"]).unlink()
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "env"))
    found = find_files(source, folder.parent / "nothing-here")
    assert found is None
    full = _copy(folder, cache_dir() / "synthetic")
    assert find_files(source)["test_labels"].parent == full


def test_torchvision_layout_under_data_dir(synthetic_source, tmp_path):
    source, folder = synthetic_source
    _copy(folder, tmp_path / "root" / "Synthetic" / "raw", gunzip=True)
    assert len(load(source, "train", data_dir=tmp_path / "root", download=False)) == 200


# ------------------------------------------------------------------ the decoded cache
def _cache_files(name: str = "synthetic") -> list[str]:
    return _files(cache_dir() / "decoded" / name)


def test_second_load_reads_the_cache(synthetic_source, monkeypatch):
    source, folder = synthetic_source
    first = load(source, "train", data_dir=folder, download=False)
    assert _cache_files() == ["train-images.npy", "train-labels.npy", "train.key.json"]

    def no_decode(*args, **kwargs):
        raise AssertionError("a warm load must not verify or decode the .gz files")

    monkeypatch.setattr(dataset_mod, "verify_file", no_decode)
    second = load(source, "train", data_dir=folder, download=False)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.images.dtype == np.uint8 and second.labels.dtype == np.int64


def test_cache_false_neither_reads_nor_writes(synthetic_source):
    source, folder = synthetic_source
    load(source, "train", data_dir=folder, download=False, cache=False)
    assert _cache_files() == []


def _rewrite(path: Path, array: np.ndarray) -> None:
    """New content, same size, and an mtime clearly later than the old one."""
    old = path.stat()
    write_idx(path, array)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 5_000_000_000))


def test_a_changed_source_file_is_verified_again_not_served_stale(synthetic_source):
    source, folder = synthetic_source
    load(source, "train", data_dir=folder, download=False)
    path = folder / FILENAMES["train_images"]
    size = path.stat().st_size
    new_images = np.random.default_rng(99).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    _rewrite(path, new_images)
    assert path.stat().st_size == size  # only the content and mtime say it changed
    with pytest.raises(ChecksumError, match=str(path)):
        load(source, "train", data_dir=folder, download=False)
    # a source that vouches for the new file gets the new images, not the cached old ones
    spec = dataclasses.replace(source.files["train_images"],
                               md5=hashlib.md5(path.read_bytes()).hexdigest())
    newer = dataclasses.replace(source, files={**source.files, "train_images": spec})
    data = load(newer, "train", data_dir=folder, download=False)
    np.testing.assert_array_equal(data.images, new_images)


CORRUPTIONS = {
    "garbage": lambda p: p.write_bytes(b"this is not a numpy file" * 3),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "wrong shape": lambda p: np.save(p, np.zeros((200, 14, 14), np.uint8)),
    "wrong length": lambda p: np.save(p, np.zeros((10, 28, 28), np.uint8)),
    "wrong dtype": lambda p: np.save(p, np.zeros((200, 28, 28), np.float32)),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_damaged_cache_is_ignored(synthetic_source, kind):
    source, folder = synthetic_source
    load(source, "train", data_dir=folder, download=False)
    CORRUPTIONS[kind](cache_dir() / "decoded" / "synthetic" / "train-images.npy")
    data = load(source, "train", data_dir=folder, download=False)
    np.testing.assert_array_equal(data.images, synthetic_source.arrays["train_images"])
    # and the next load is warm again from a rewritten, healthy cache
    again = load(source, "train", data_dir=folder, download=False)
    np.testing.assert_array_equal(again.images, synthetic_source.arrays["train_images"])


@pytest.mark.parametrize("labels", [np.full(200, 10, np.int64), np.zeros(200, np.uint8),
                                    np.zeros(199, np.int64)], ids=["range", "dtype", "length"])
def test_damaged_cached_labels_are_ignored(synthetic_source, labels):
    source, folder = synthetic_source
    load(source, "train", data_dir=folder, download=False)
    np.save(cache_dir() / "decoded" / "synthetic" / "train-labels.npy", labels)
    data = load(source, "train", data_dir=folder, download=False)
    np.testing.assert_array_equal(data.labels, synthetic_source.arrays["train_labels"])


def test_a_damaged_key_is_ignored(synthetic_source):
    source, folder = synthetic_source
    load(source, "test", data_dir=folder, download=False)
    (cache_dir() / "decoded" / "synthetic" / "test.key.json").write_text("{not json")
    assert len(load(source, "test", data_dir=folder, download=False)) == 50


# ------------------------------------------------------------------ validation split
def test_stratified_split_deterministic_and_stratified():
    labels = np.repeat(np.arange(10), 100)  # 10 balanced classes, 1000 samples
    np.random.default_rng(0).shuffle(labels)
    train, val = stratified_split(labels, 100, seed=3)
    again_train, again_val = stratified_split(labels, 100, seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(val, stratified_split(labels, 100, seed=4)[1])
    assert np.bincount(labels[val], minlength=10).tolist() == [10] * 10  # exactly val/10
    assert len(np.intersect1d(train, val)) == 0  # disjoint
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    assert np.all(np.diff(val) > 0) and np.all(np.diff(train) > 0)  # sorted indices


def test_stratified_split_fraction_equals_count():
    labels = np.repeat(np.arange(10), 60)
    by_fraction = stratified_split(labels, 0.1, seed=1)
    by_count = stratified_split(labels, 60, seed=1)
    for a, b in zip(by_fraction, by_count):
        np.testing.assert_array_equal(a, b)


def test_stratified_split_keeps_unbalanced_proportions():
    labels = np.repeat(np.arange(3), [500, 300, 200])
    _, val = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [100, 60, 40]
    _, val = stratified_split(labels, 7, seed=0)  # rounding remainders still add up
    assert len(val) == 7


def test_stratified_split_zero():
    train, val = stratified_split(np.arange(20) % 10, 0)
    assert len(val) == 0 and len(train) == 20


@pytest.mark.parametrize("val_size", [100, 101, 10**6, -1, -0.1])
def test_stratified_split_bad_sizes(val_size):
    labels = np.arange(100) % 10
    with pytest.raises(ConfigError, match="val_size"):
        stratified_split(labels, val_size)


# ------------------------------------------------------------------ statistics
def test_pixel_stats_against_numpy():
    images = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    mean, std = pixel_stats(images)
    scaled = images.astype(np.float64) / 255.0
    assert mean == pytest.approx(scaled.mean(), rel=1e-12)
    assert std == pytest.approx(scaled.std(), rel=1e-9)
    assert pixel_stats(np.full((2, 28, 28), 7, np.uint8)) == (pytest.approx(7 / 255), 0.0)
    floats = images[:10].astype(np.float32)  # other dtypes: the direct formula
    assert pixel_stats(floats) == pytest.approx((floats.mean() / 255, floats.std() / 255))


def test_normalisation(synthetic_source):
    assert normalisation("fashion-mnist") == (0.2860, 0.3530)
    source, _ = synthetic_source  # no registered figures: computed from the images
    images = synthetic_source.arrays["train_images"]
    assert normalisation(source, images) == pixel_stats(images)
    with pytest.raises(ConfigError, match="train_images"):
        normalisation(source)


# ------------------------------------------------------------------ download
class _Mirror(http.server.BaseHTTPRequestHandler):
    """Serves server.folder; server.mode: ok, wrong (other bytes), half, garbage (no HTTP)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits.append(self.path)
        path = self.server.folder / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        mode = self.server.mode
        if mode == "garbage":
            self.wfile.write(b"SSH-2.0-not-http\r\n\r\n")
            return
        if mode == "wrong":
            body = gzip.compress(b"\x00\x00\x08\x01" + len(body).to_bytes(4, "big") + body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # "half": promise the whole file, send half, close (HTTP/1.0: the connection ends)
        self.wfile.write(body[: len(body) // 2] if mode == "half" else body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirror(synthetic_source):
    """A local HTTP server serving the synthetic .gz files; yields (server, base URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.folder, server.mode, server.hits = synthetic_source.folder, "ok", []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 whose port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


FAST = dict(timeout=5, retries=2, backoff_s=0.01, progress=False)


@pytest.fixture
def fast_download(monkeypatch):
    """locate()/load() download with short retries, as the defaults wait seconds."""
    monkeypatch.setattr(fetch_mod, "download", functools.partial(download, **FAST))


def test_download_through_load_skips_a_dead_mirror(synthetic_source, mirror, dead_url,
                                                   fast_download):
    server, url = mirror
    source = dataclasses.replace(synthetic_source.source, mirrors=(dead_url, url))
    data = load(source, "train", progress=False)  # nothing local: into the cache
    np.testing.assert_array_equal(data.images, synthetic_source.arrays["train_images"])
    dest = cache_dir() / "synthetic"
    assert _files(dest) == sorted(FILENAMES.values())  # all four, no temp files
    for role in ROLES:
        assert (dest / FILENAMES[role]).read_bytes() == (synthetic_source.folder / FILENAMES[role]).read_bytes()
    assert sorted(server.hits) == sorted(f"/{n}" for n in FILENAMES.values())
    # the next locate finds them in the cache and downloads nothing
    assert locate(source, download_missing=False)["train_images"].parent == dest
    load(source, "test", progress=False)
    assert len(server.hits) == 4


def test_download_keeps_verified_files(synthetic_source, mirror, tmp_path):
    server, url = mirror
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copy(synthetic_source.folder / FILENAMES["train_images"], dest)
    (dest / FILENAMES["test_images"]).write_bytes(b"half a download")  # fetched again
    download(synthetic_source.source, dest, mirrors=(url,), **FAST)
    assert sorted(server.hits) == sorted(f"/{FILENAMES[r]}" for r in ROLES if r != "train_images")
    assert _files(dest) == sorted(FILENAMES.values())
    assert len(load(synthetic_source.source, "test", data_dir=dest, download=False)) == 50


def test_a_mirror_serving_a_wrong_file(synthetic_source, mirror, tmp_path):
    server, url = mirror
    server.mode = "wrong"
    dest = tmp_path / "dest"
    with pytest.raises(DataNotFoundError, match="checksum mismatch"):
        download(synthetic_source.source, dest, mirrors=(url,), **FAST)
    assert _files(dest) == []  # nothing under the final name, no temp file
    assert len(server.hits) == 1  # a wrong file is not fetched again: retrying cannot help


def test_a_download_cut_short(synthetic_source, mirror, tmp_path):
    server, url = mirror
    server.mode = "half"
    dest = tmp_path / "dest"
    with pytest.raises(DataNotFoundError, match="got .* of .* bytes"):
        download(synthetic_source.source, dest, mirrors=(url,), **FAST)
    assert _files(dest) == []  # no *.part, no half file under the final name
    assert len(server.hits) == FAST["retries"]  # a broken transfer is retried


def test_a_mirror_that_speaks_no_http_is_skipped(synthetic_source, mirror, tmp_path):
    server, url = mirror
    server.mode = "garbage"
    good = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    good.folder, good.mode, good.hits = synthetic_source.folder, "ok", []
    thread = threading.Thread(target=good.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        good_url = f"http://127.0.0.1:{good.server_address[1]}/"
        download(synthetic_source.source, tmp_path / "dest", mirrors=(url, good_url), **FAST)
    finally:
        good.shutdown()
        good.server_close()
    assert _files(tmp_path / "dest") == sorted(FILENAMES.values())


def test_all_mirrors_dead(synthetic_source, dead_url, tmp_path):
    dest = tmp_path / "dest"
    with pytest.raises(DataNotFoundError) as info:
        download(synthetic_source.source, dest, mirrors=(dead_url, dead_url + "other/"), **FAST)
    message = str(info.value)
    assert "offline?" in message and str(dest) in message  # where to put the files
    for name in FILENAMES.values():
        assert name in message
    assert "FMNIST_DATA" in message
    assert _files(dest) == []


def test_no_mirrors_at_all(synthetic_source, tmp_path, fast_download):
    with pytest.raises(DataNotFoundError, match="no mirror configured") as info:
        load(synthetic_source.source, "train", progress=False)  # the source has no mirrors
    assert str(cache_dir() / "synthetic") in str(info.value)


# ------------------------------------------------------------------ the real files
@pytest.fixture(scope="module")
def real_splits():
    """Both real splits, decoded once for the module (no cache involved)."""
    from conftest import REAL_DATA

    if not (REAL_DATA / "fashion-mnist" / FILENAMES["train_images"]).is_file():
        pytest.skip(f"real Fashion-MNIST files not found under {REAL_DATA}/fashion-mnist")
    return {s: load("fashion-mnist", s, data_dir=REAL_DATA, download=False, cache=False)
            for s in ("train", "test")}


@pytest.mark.real_data
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(real_splits, split, n):
    data = real_splits[split]
    assert data.images.shape == (n, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert np.bincount(data.labels, minlength=10).tolist() == [n // 10] * 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


@pytest.mark.real_data
def test_real_pixel_stats_match_the_registry(real_splits):
    mean, std = pixel_stats(real_splits["train"].images)
    source = DATASETS.get("fashion-mnist")
    assert (round(mean, 4), round(std, 4)) == (source.mean, source.std)


@pytest.mark.real_data
def test_real_files_found_through_fmnist_data(real_data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    found = locate("fashion-mnist", download_missing=False)
    assert found["test_labels"] == real_data_dir / "fashion-mnist" / FILENAMES["test_labels"]
    assert len(load("fashion-mnist", "test", download=False)) == 10000


def test_missing_explicit_data_dir_is_an_error_not_a_fallback(tmp_path):
    from fmnist.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="no such folder"):
        load("fashion-mnist", "test", data_dir=tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_fractional_count_is_refused():
    from fmnist.data import stratified_split

    with pytest.raises(ConfigError, match="val_size=2.5"):
        stratified_split(np.arange(100) % 10, 2.5)
