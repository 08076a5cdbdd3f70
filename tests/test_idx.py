"""IDX bytes <-> numpy arrays: round trips, the header layout, and every kind of bad file."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from fmnist.errors import WriteError

from fmnist.data import encode_idx, parse_idx, read_idx, write_idx
from fmnist.errors import DataError, IDXFormatError

DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def _random(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)  # the full range, extremes included
    values = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    values.reshape(-1)[:2] = (info.min, info.max)
    return values


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, dtype, shape, compress):
    array = _random(dtype, shape)
    path = write_idx(tmp_path / ("x.idx.gz" if compress else "x.idx"), array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")  # native order, whatever the file
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # torch.from_numpy warns on read-only arrays
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_compress_flag_overrides_the_suffix(tmp_path):
    array = _random("u1", (4, 4))
    assert write_idx(tmp_path / "a.gz", array, compress=False).read_bytes()[:2] != b"\x1f\x8b"
    assert write_idx(tmp_path / "b", array, compress=True).read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), read_idx(tmp_path / "b"))


def test_big_endian_input_round_trips(tmp_path):
    array = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x", array)), array)


def test_header_follows_the_format():
    # LeCun's layout, written out here by hand: 0, 0, type 0x08 (ubyte), 3 dimensions,
    # then big-endian uint32 sizes, then the bytes
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert encode_idx(array) == b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + array.tobytes()
    # multi-byte elements are big-endian on disk: int16 type 0x0B, float64 0x0E
    assert encode_idx(np.array([1, -2], dtype="<i2")) == (
        b"\x00\x00\x0b\x01" + struct.pack(">I", 2) + struct.pack(">2h", 1, -2))
    assert encode_idx(np.array([1.5], dtype="<f8"))[:4] == b"\x00\x00\x0e\x01"


def test_gzip_output_is_deterministic(tmp_path):
    array = _random("u1", (10, 28, 28))
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    os.utime(tmp_path / "a.gz", (0, 0))
    assert write_idx(tmp_path / "b.gz", array).read_bytes() == first  # no timestamp inside


def test_write_replaces_atomically(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "x.gz", _random("u1", (5, 5)))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(WriteError, match="x.gz: could not be written .No space left on device.; "
                                         "the previous version is intact"):
        write_idx(path, _random("u1", (9, 9), seed=1))
    assert path.read_bytes() == before  # the old file is whole
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]  # and no temp file is left


# ------------------------------------------------------------------ bad files
def _idx(array=None) -> bytes:
    return encode_idx(np.arange(60, dtype=np.uint8).reshape(3, 4, 5) if array is None else array)


BAD_FILES = {
    # name: (file bytes, words the message must contain)
    "truncated gzip": (gzip.compress(_idx(_random("u1", (50, 28, 28))))[:3000], "gzip"),
    "corrupt gzip": (b"\x1f\x8b\x08\x00" + b"not deflate data at all" * 10, "gzip"),
    "garbage": (b"this is not an IDX file, just some text\n" * 5, "magic"),
    "wrong magic": (b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc", "magic"),
    "nonzero magic": (b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc", "magic"),
    "gzip'd twice": (gzip.compress(gzip.compress(_idx())), "magic"),
    "payload shorter": (_idx()[:-1], "shorter"),
    "payload longer": (_idx() + b"\x00", "longer"),
    "header cut short": (b"\x00\x00\x08\x03" + struct.pack(">I", 3), "dimensions"),
    "three bytes": (b"\x00\x00\x08", "too short"),
    "empty": (b"", "empty"),
    "empty gzip": (gzip.compress(b""), "empty"),
}


@pytest.mark.parametrize("compress_again", [False, True], ids=["as-is", "in-gzip"])
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_raises_idx_format_error_naming_it(tmp_path, kind, compress_again):
    data, words = BAD_FILES[kind]
    if compress_again:
        if data[:2] == b"\x1f\x8b":
            pytest.skip("already gzip'd")
        data = gzip.compress(data)  # the same damage inside a valid gzip stream
    path = tmp_path / "bad-file-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(IDXFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert words in message
    assert "\n" not in message  # one line for the CLI
    assert isinstance(info.value, DataError)  # the CLI turns it into one line, exit 1


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.gz"
    with pytest.raises(IDXFormatError, match="no such file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(IDXFormatError, match="cannot read") as info:
        read_idx(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_parse_idx_names_the_source():
    with pytest.raises(IDXFormatError, match="^labels.gz: "):
        parse_idx(b"", "labels.gz")


@pytest.mark.parametrize("dtype", ["i8", "u2", "u4", "f2", "c8", "?", "U3"])
def test_unsupported_dtype_on_write(tmp_path, dtype):
    path = tmp_path / "x.gz"
    with pytest.raises(IDXFormatError, match="cannot store dtype") as info:
        write_idx(path, np.zeros(3, dtype=dtype))
    assert str(path) in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(IDXFormatError, match="uint8"):  # the message lists what works
        encode_idx(np.zeros(3, dtype=dtype))
