"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader (or a later run) sees either the old file or the whole new one, never half of
one, even when the writer is killed midway (SIGKILL included).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import FmnistError, WriteError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only if the block finishes without error."""
    path = check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write here ({exc.strerror or exc})", path,
                         write_fix(exc, "choose a folder you can write to")) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a quota, a vanished folder
            # only about this file: the caller may have written others already
            was = "; the previous version is intact" if path.exists() else ""
            raise WriteError(f"{path}: could not be written ({exc.strerror or exc}){was}", path,
                             write_fix(exc, "try again")) from None
        raise


def write_fix(exc: OSError, otherwise: str) -> str:
    """What to do about a failed write, by its cause."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space and try again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a folder you can write to"
    return otherwise


def check_target(path: str | os.PathLike) -> Path:
    """Refuse a file name that cannot be written atomically: a folder, an existing device
    or pipe (`--out /dev/full` must not replace the device node with a PNG), or a name
    under a file (`photo.jpg/x.png`)."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path}: is a folder; give a file name", path)
    if path.exists() and not path.is_file():
        raise WriteError(f"{path}: is not a regular file; give a file name", path)
    base = path.parent  # mkdir would say only "File exists" or "Not a directory"
    while not base.exists() and base != base.parent:
        base = base.parent
    if base.exists() and not base.is_dir():
        raise WriteError(f"{path}: {base} is a file, so no folder can be made there; give "
                         "another path", path)
    return path


def read_limited(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """A regular file's bytes, at most `limit` of them: a device (/dev/zero reports size 0),
    a pipe (blocks forever) or a huge or sparse file is refused before it is read."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows a symlink: what would be read
        if stat.S_ISDIR(st.st_mode):
            raise FmnistError(f"{path}: cannot read (a folder, not a {what})")
        if not stat.S_ISREG(st.st_mode):
            raise FmnistError(f"{path}: is not a regular file; give a {what}")
        if st.st_size > limit:
            raise FmnistError(f"{path}: {st.st_size:,} bytes, more than a {what} can hold "
                              f"({limit:,})")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise FmnistError(f"{path}: no such file") from None
    except OSError as exc:
        raise FmnistError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:  # grew while being read
        raise FmnistError(f"{path}: more than a {what} can hold ({limit:,} bytes)")
    return data


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def missing_dirs(folder: str | os.PathLike) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first."""
    missing, p = [], Path(folder)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing[::-1]


def make_dirs(folder: str | os.PathLike) -> list[Path]:
    """Create `folder` and its missing parents; returns those created, outermost first, so a
    command that then fails can take them away again (remove_dirs) instead of leaving a
    trail of empty folders. An OSError (full disk, no permission) is the caller's to word."""
    created = []
    for d in missing_dirs(folder):
        d.mkdir(exist_ok=True)
        created.append(d)
    return created


def remove_dirs(created: list[Path]) -> None:
    """Undo make_dirs: each folder it made, innermost first, if it is still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def atomic_write_files(files: dict[Path, bytes]) -> list[Path]:
    """Write several files as one set: all of them or none (the files that belong together,
    such as model.safetensors and its model.json).

    Every file goes to a temp file beside its target and is fsynced first, so a full disk
    fails while nothing has been replaced; then each is renamed over its target, the old one
    kept as a hard link until all are in place, so a rename that fails puts the old ones back.
    Folders created for the set are removed again on failure. A kill during the renames
    (microseconds, no data written) may leave part of the new set."""
    if not files:
        return []
    targets = [check_target(p) for p in files]
    names = ", ".join(p.name for p in targets)
    existed = [p for p in targets if p.exists()]
    kept = "; the earlier ones are intact" if existed else ""
    staged: list[tuple[Path, Path]] = []  # (temp file, target)
    moved: list[tuple[Path, Path | None]] = []  # (target, its old file) once renamed
    created: list[Path] = []
    failed = targets[0]
    try:
        for target, data in zip(targets, files.values()):
            failed = target
            created += make_dirs(target.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((Path(tmp), target))
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, target in staged:
            failed, old = target, None
            if target.exists():
                old = tmp.with_name(tmp.name + ".old")
                try:
                    os.link(target, old)  # the old file stays whole under a second name
                except OSError:  # no hard links here (FAT, some network file systems)
                    os.replace(target, old)
            moved.append((target, old))
            os.replace(tmp, target)
    except BaseException as exc:
        for target, old in reversed(moved):  # put the old set back
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, target)
                else:
                    os.unlink(target)
            with contextlib.suppress(OSError):  # a rename onto another link of the same
                if old is not None and os.path.samefile(old, target):  # file keeps both names
                    os.unlink(old)
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        remove_dirs(created)
        if isinstance(exc, OSError):  # a full disk, a quota, no permission
            raise WriteError(f"{failed}: could not be written ({exc.strerror or exc}); none of "
                             f"{names} was written{kept}", failed, write_fix(exc, "try again")) from None
        raise
    for _, old in moved:
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)
    return targets
