"""IDX bytes <-> numpy arrays, plain or gzip'd; nothing else.

The format (LeCun's, used by MNIST and Fashion-MNIST): two zero bytes, one byte for the
element type, one byte for the number of dimensions; then one big-endian uint32 per
dimension; then the elements in row-major order, big-endian.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import IDXFormatError
from ..fsutil import atomic_write_bytes

# type byte -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def decompress(data: bytes, name: str = "<bytes>") -> bytes:
    """Gunzip `data`, turning every flavour of broken gzip into one IDXFormatError."""
    try:
        return gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise IDXFormatError(f"{name}: corrupt or truncated gzip data ({exc}); "
                             "delete the file and fetch it again") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file (gzip'd or not) into an array in native byte order."""
    if is_gzip(data):
        data = decompress(data, name)
    if len(data) == 0:
        raise IDXFormatError(f"{name}: empty file; fetch it again")
    if len(data) < 4:
        raise IDXFormatError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack_from(">HBB", data)
    if zero != 0 or code not in IDX_DTYPES:
        raise IDXFormatError(f"{name}: bad magic number 0x{data[:4].hex()} (not an IDX file, "
                             "or gzip'd twice?)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{name}: header promises {ndim} dimensions but the file ends "
                             f"after {len(data)} bytes")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "shorter" if got < expected else "longer"
        raise IDXFormatError(f"{name}: payload is {what} than the header says "
                             f"(shape {tuple(shape)} needs {expected} bytes, found {got}); "
                             "the file is truncated or corrupt")
    # frombuffer is a read-only view of `data`; astype copies once into native order and
    # writable memory (torch.from_numpy warns on read-only arrays; 60000 images: ~10-15 ms)
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file from disk, gzip'd or not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IDXFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise IDXFormatError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_idx(data, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.itemsize > 1 else array.dtype
    if native not in _CODES:
        known = ", ".join(str(dt) for dt in _CODES)
        raise IDXFormatError(f"IDX cannot store dtype {array.dtype}; use one of {known}")
    if array.ndim > 255:
        raise IDXFormatError(f"IDX stores at most 255 dimensions, not {array.ndim}")
    code = _CODES[native]
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX, atomically; gzip'd when `compress` or the name ends in .gz."""
    path = Path(path)
    try:
        data = encode_idx(array)
    except IDXFormatError as exc:  # name the file the caller was writing
        raise IDXFormatError(f"{path}: {exc}") from None
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: same bytes every time
    return atomic_write_bytes(path, data)
