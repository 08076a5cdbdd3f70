"""Find a data set's files on disk, verify them, or download them from the mirrors.

Where we look, in order (first folder that holds all four files wins):
  1. an explicit `data_dir` (the folder itself, or its `<name>/` subfolder); when one is
     given it is the only place searched, so a wrong folder is never silently bypassed,
  2. `$FMNIST_DATA/<name>/` (one folder per data set, like ../shared/data),
  3. the user cache `$XDG_CACHE_HOME/fmnist/<name>/` (default `~/.cache/fmnist`),
  4. Keras' `~/.keras/datasets/<name>/`,
  5. torchvision's `<root>/FashionMNIST/raw/` with root `./data` (or `data_dir`).
Files may be the published .gz or their gunzipped copies; both are verified.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ChecksumError, DataError, DataNotFoundError, IDXFormatError
from .idx import MAX_IDX_BYTES, decompress, is_gzip, read_bytes
from .sources import DATASETS, ROLES, DataSource, FileSpec, get_source

DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_RETRIES = 3


def cache_dir() -> Path:
    """The user cache: downloads and decoded arrays live under it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fmnist"


def search_dirs(source: DataSource, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder that may hold the data set's files, in the order we try them."""
    roots: list[tuple[Path, bool]] = []  # (root, may the files sit in the root itself?)
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), True))
    else:
        if os.environ.get("FMNIST_DATA"):
            roots.append((Path(os.environ["FMNIST_DATA"]).expanduser(), False))
        roots += [(cache_dir(), False), (Path.home() / ".keras" / "datasets", False),
                  (Path("data"), False)]
    dirs: list[Path] = []
    for root, direct in roots:
        if direct:
            dirs.append(root)
        dirs += [root / folder for folder in source.folder_names()]
        dirs += [root / folder / "raw" for folder in source.folder_aliases]  # torchvision
    return list(dict.fromkeys(dirs))  # drop repeats, keep order


def _file_in(folder: Path, spec: FileSpec) -> Path | None:
    for name in (spec.filename, spec.raw_name):
        if (folder / name).is_file():
            return folder / name
    return None


def find_files(source: str | DataSource,
               data_dir: str | os.PathLike | None = None) -> dict[str, Path] | None:
    """role -> path in the first folder that holds all four files, else None. Stats only."""
    source = get_source(source)
    for folder in search_dirs(source, data_dir):
        found = {role: _file_in(folder, source.files[role]) for role in ROLES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def _identify(md5: str | None, sha256: str | None) -> str | None:
    """'MNIST's train-images-idx3-ubyte.gz' if the digests belong to a registered file."""
    for name in DATASETS:
        other = DATASETS.get(name)
        for spec in other.files.values():
            if md5 == spec.md5 or sha256 == spec.sha256:
                return f"{other.title}'s {spec.filename}"
    return None


def verify_bytes(data: bytes, spec: FileSpec, source: DataSource, name: str) -> bytes:
    """Check `data` (the file's bytes) against `spec`; return the decompressed content.

    The .gz md5 is checked first (cheap, and the published figure); a re-compressed or
    gunzipped copy is accepted when its decompressed sha256 matches.
    """
    md5 = hashlib.md5(data).hexdigest() if is_gzip(data) else None
    raw = decompress(data, name) if is_gzip(data) else data
    if md5 == spec.md5:
        return raw
    sha256 = hashlib.sha256(raw).hexdigest()
    if sha256 == spec.sha256:
        return raw
    wanted = f"{source.title}'s {spec.filename}"
    other = _identify(md5, sha256)
    if other:
        raise ChecksumError(f"{name}: this is {other}, not {wanted}; point --data-dir or "
                            f"FMNIST_DATA at the {source.name} files")
    raise ChecksumError(f"{name}: checksum mismatch (sha256 of content {sha256[:12]}..., "
                        f"expected {spec.sha256[:12]}...): corrupt, or not {wanted}; "
                        "delete it and run `fmnist data get`")


def verify_file(path: Path, spec: FileSpec, source: DataSource) -> bytes:
    # bounded: a huge or sparse file is refused by its size before it is read
    try:
        data = read_bytes(path)
    except IDXFormatError as exc:  # too large, a folder or a device under the file's name
        if not Path(path).exists():
            raise  # gone since it was found: "no such file"
        elsewhere = f"point --data-dir or FMNIST_DATA at the {source.name} files"
        if not os.access(path, os.R_OK):
            raise IDXFormatError(f"{exc}; make it readable, or {elsewhere}") from None
        raise IDXFormatError(f"{exc}; not {source.title}'s {spec.filename}: delete it and run "
                             f"`fmnist data get`, or {elsewhere}") from None
    return verify_bytes(data, spec, source, str(path))


def _download_one(url: str, dest: Path, spec: FileSpec, source: DataSource,
                  timeout: float, progress: bool) -> None:
    """Stream `url` into a temp file beside `dest`, verify, then rename into place."""
    from tqdm import tqdm  # imported here: only downloads need it

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=spec.filename,
                      disable=not progress, leave=False) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
                    if out.tell() > MAX_IDX_BYTES:  # a mirror that never stops sending
                        raise urllib.error.URLError(f"more than {MAX_IDX_BYTES:,} bytes: not "
                                                    f"{spec.filename}")
            if total is not None and out.tell() != total:
                raise urllib.error.URLError(f"got {out.tell()} of {total} bytes")
        verify_file(Path(tmp), spec, source)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a failed or interrupted download leaves nothing to trust


def _verifies(path: Path, spec: FileSpec, source: DataSource) -> bool:
    try:
        verify_file(path, spec, source)
        return True
    except (OSError, DataError):
        return False


def _try_mirror(url: str, dest: Path, spec: FileSpec, source: DataSource, errors: list[str],
                *, timeout: float, retries: int, backoff_s: float, progress: bool) -> bool:
    """Up to `retries` attempts at one URL; failures are appended to `errors`."""
    for attempt in range(retries):
        try:
            _download_one(url, dest, spec, source, timeout, progress)
            return True
        except ChecksumError as exc:
            errors.append(f"{url}: {exc}")
            return False  # the mirror serves a wrong file: retrying will not help
        except (OSError, http.client.HTTPException, DataError, ValueError) as exc:
            # HTTPException: a server that speaks no HTTP (BadStatusLine) or cuts a chunked
            # body short (IncompleteRead); URLError is an OSError
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            if attempt + 1 < retries:
                time.sleep(backoff_s * (attempt + 1))
    return False


def download(source: str | DataSource, dest_dir: str | os.PathLike, *,
             mirrors: tuple[str, ...] | None = None, timeout: float = DOWNLOAD_TIMEOUT_S,
             retries: int = DOWNLOAD_RETRIES, backoff_s: float = 1.0,
             progress: bool = True) -> dict[str, Path]:
    """Download the four files into `dest_dir`, trying each mirror `retries` times."""
    source = get_source(source)
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataNotFoundError(f"{dest_dir}: cannot make the folder to download into "
                                f"({exc.strerror or exc}); point --data-dir or FMNIST_DATA at "
                                "the data set's files") from None
    mirrors = source.mirrors if mirrors is None else mirrors
    paths: dict[str, Path] = {}
    for role in ROLES:
        spec = source.files[role]
        dest = dest_dir / spec.filename
        paths[role] = dest
        if _verifies(dest, spec, source):
            continue  # kept from an earlier, partly finished download
        errors: list[str] = []
        for url in (base.rstrip("/") + "/" + spec.filename for base in mirrors):
            if _try_mirror(url, dest, spec, source, errors, timeout=timeout, retries=retries,
                           backoff_s=backoff_s, progress=progress):
                break
        else:
            last = errors[-1] if errors else "no mirror configured"
            raise DataNotFoundError(
                f"could not download {source.title}'s {spec.filename} ({last}); offline? "
                f"copy the four files {', '.join(s.filename for s in source.files.values())} "
                f"into {dest_dir} or point --data-dir / FMNIST_DATA at a folder holding them")
    return paths


def check_data_dir(data_dir: str | os.PathLike | None) -> None:
    """A --data-dir that is no folder is an error: a typo must not send the search
    elsewhere, nor a download into a new folder, nor pass unnoticed where a cached result
    makes the data unnecessary (`fmnist data audit`)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        what = "is a file, not a folder" if Path(data_dir).expanduser().exists() else "no such folder"
        raise DataNotFoundError(f"--data-dir {data_dir}: {what}; create it (files are "
                                "downloaded into it) or point at the folder of IDX files")


def locate(source: str | DataSource, data_dir: str | os.PathLike | None = None, *,
           download_missing: bool = True, progress: bool = True) -> dict[str, Path]:
    """role -> path of the data set's files, downloading them if no folder has them."""
    source = get_source(source)
    check_data_dir(data_dir)
    found = find_files(source, data_dir)
    if found:
        return found
    if not download_missing:
        places = ", ".join(str(d) for d in search_dirs(source, data_dir)[:4])
        raise DataNotFoundError(f"{source.title} not found (looked in {places}, ...); run "
                                "`fmnist data get`, or point --data-dir / FMNIST_DATA at it")
    # an explicit data_dir is where the user wants the files; otherwise the cache
    dest = Path(data_dir) if data_dir is not None else cache_dir() / source.name
    return download(source, dest, progress=progress)
