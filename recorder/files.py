"""Durable local files: fsync, atomic replace, hashing. Shared by the recorder's modules."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

_CHUNK = 1 << 20


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a directory's entries (a rename, a new file), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace `path` with `data` durably: hidden temp file, fsync, rename, fsync directory.

    Readers see the old file or the whole new one, never a part; the temp file is hidden
    (a leading dot) so stores and uploaders skip it. `sync_dir=False` leaves the directory
    fsync to the caller (one for several files written in a row).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_path(path.parent)


def file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def stage_for_spool(path: Path) -> Path:
    """A hard link to a durable file, for the spool to move into place; the original stays
    (the recorder builds the replay files, and the chain writer reopens its chain, from
    them). Hidden and `.tmp`: a crash before the spool takes it leaves nothing adopted."""
    staged = path.with_name(f".{path.name}.spool.tmp")
    staged.unlink(missing_ok=True)
    os.link(path, staged)
    return staged
