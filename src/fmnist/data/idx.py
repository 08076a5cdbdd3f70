"""IDX bytes <-> numpy arrays, plain or gzip'd; nothing else.

The format (LeCun's, used by MNIST and Fashion-MNIST): two zero bytes, one byte for the
element type, one byte for the number of dimensions; then one big-endian uint32 per
dimension; then the elements in row-major order, big-endian.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import FmnistError, IDXFormatError
from ..fsutil import atomic_write_bytes, read_limited

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
# no IDX file we read can be larger: 1,000,000 images of 28x28 (EMNIST, the largest of the
# family, has 814,255) are 784 MB. A header that declares more is refused before reading,
# and gzip'd data is inflated in a stream that stops there: a bomb costs nothing
MAX_IDX_BYTES = 1_000_000 * 28 * 28 + 1024


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def decompress(data: bytes, name: str = "<bytes>", limit: int = MAX_IDX_BYTES) -> bytes:
    """Gunzip `data`, turning every flavour of broken gzip into one IDXFormatError.

    Streamed: an IDX header that declares more than `limit` bytes, or content that goes on
    past what its header declares, stops the inflation there (a gzip bomb costs nothing)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            head = gz.read(4)
            if len(head) == 4 and head[:2] == b"\0\0":  # an IDX header: read what it declares
                dims = gz.read(4 * head[3])
                head += dims
                size = _declared_size(head, name, limit) if len(dims) == 4 * head[3] else 0
                return head + gz.read(size + 1)  # one byte more shows a payload too long
            # not IDX content (gzip'd twice, another format): refused by its checksum or magic
            # number either way, so a little of it is enough to say what it is
            return head + gz.read(1 << 20)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise IDXFormatError(f"{name}: corrupt or truncated gzip data ({exc}); "
                             "delete the file and fetch it again") from None


def _declared_size(header: bytes, name: str, limit: int) -> int:
    """Payload bytes an IDX header declares, refused above `limit` (Python ints: no overflow)."""
    code, ndim = header[2], header[3]
    shape = struct.unpack_from(f">{ndim}I", header, 4)
    size = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    for d in shape:
        size *= d
    if size > limit:
        raise IDXFormatError(f"{name}: its header declares shape {tuple(shape)}, {size:,} bytes, "
                             f"more than any data set we read ({limit:,}); not a data set file")
    return size


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
    expected = _declared_size(data[:header], name, max(MAX_IDX_BYTES, len(data)))
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


def read_bytes(path: str | os.PathLike, limit: int = MAX_IDX_BYTES) -> bytes:
    """A file's bytes, refusing one larger than any IDX file we read before reading it (a
    huge or sparse file under a data set's name would otherwise fill the memory), and a
    device or pipe (/dev/zero, a FIFO) that would be read forever."""
    try:
        return read_limited(path, limit, "data set file")
    except FmnistError as exc:
        raise IDXFormatError(str(exc)) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file from disk, gzip'd or not, within MAX_IDX_BYTES."""
    return parse_idx(read_bytes(path), str(path))


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
