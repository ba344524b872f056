"""The spool: closed files on local disk, waiting for a verified upload.

The file for object key K is `directory / K`, so the spool is readable without this code
and a restart needs no journal: the directory is scanned once, at construction, and from
then on this object (the only writer, in one process) keeps the index in memory.

- Commit order is kept in the files' modification times: each commit stamps a strictly
  increasing nanosecond time on the file before it is renamed into place, so a rescan after a
  restart gives the same order (unless the wall clock went backwards across the restart).
  That time is also the commit time the upload lag is measured from.
- A commit is durable when it returns: the file is fsynced, renamed into place, and every
  directory it changed is fsynced. Temp files live in `.tmp/` and are deleted at start.
- Deletions and "uploaded" markers are not fsynced: losing one to a crash only makes the
  uploader verify that object once more, which it does anyway for anything pending.
- A pinned prefix (persisted in `.pins.json`) keeps its files after their verified upload,
  marked by an empty hidden sidecar `.<name>.uploaded`, until the prefix is unpinned and
  released; the recorder needs a call's segments to build its replay files.

Names starting with "." (temp files, markers) and `*.torn` files are never entries; object
keys cannot have such names (storage.objects.validate_key).
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorder.files import fsync_path
from storage.objects import validate_key

__all__ = ["Backlog", "Spool", "SpoolEntry", "SpoolError"]

logger = logging.getLogger(__name__)

TEMP_DIR = ".tmp"
PINS_FILE = ".pins.json"
MARKER_SUFFIX = ".uploaded"
TORN_SUFFIX = ".torn"

CommitListener = Callable[["SpoolEntry"], None]


class SpoolError(Exception):
    """A spool operation that cannot be done (unknown key, a key committed twice with
    different content, a file that cannot be moved into place)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One committed file; `mtime` is its commit time (seconds since the epoch).

    `sha256` is the digest the committer vouched for (the one its chain link names), so the
    uploader need not hash the file again; None after a restart (the scan does not hash).
    """

    key: str
    path: Path
    size: int
    mtime: float
    sha256: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for upload: files, bytes, and the commit time of the oldest (or None)."""

    count: int
    bytes: int
    oldest_mtime: float | None


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}{MARKER_SUFFIX}")


def _check_key(key: str) -> str:
    validate_key(key)
    if key.endswith(TORN_SUFFIX):
        raise ValueError(f"spool key uses the reserved suffix {TORN_SUFFIX}: {key!r}")
    return key


class Spool:
    """Files waiting for upload under `directory`; thread-safe (commits may come from the
    recorder's threads, `done` from the uploader's event loop)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._tmp = self.directory / TEMP_DIR
        self._lock = threading.RLock()
        self._pending: dict[str, SpoolEntry] = {}  # in commit order
        self._kept: dict[str, SpoolEntry] = {}  # uploaded, kept for a pinned prefix
        self._pending_bytes = 0
        self._pins: set[str] = set()
        self._last_ns = 0
        self._listeners: list[CommitListener] = []
        self._scan()

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # --- start-up -------------------------------------------------------------------------

    def _scan(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._tmp.exists():
            shutil.rmtree(self._tmp)  # half-written commits of an earlier process
        self._tmp.mkdir()
        pins_path = self.directory / PINS_FILE
        if pins_path.exists():
            self._pins = set(json.loads(pins_path.read_text("utf-8")))
        found: list[tuple[int, str, SpoolEntry]] = []
        markers: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.directory):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(dirpath)
            rel = base.relative_to(self.directory).as_posix()
            prefix = "" if rel == "." else rel + "/"
            for name in filenames:
                if name.startswith("."):
                    if name.endswith(MARKER_SUFFIX):
                        markers.add(prefix + name[1 : -len(MARKER_SUFFIX)])
                    continue
                if name.endswith(TORN_SUFFIX):
                    continue
                key = prefix + name
                try:
                    _check_key(key)
                except ValueError:
                    logger.warning("spool: ignoring %s (not an object key)", base / name)
                    continue
                st = (base / name).stat()
                entry = SpoolEntry(key, base / name, st.st_size, st.st_mtime_ns / 1e9)
                found.append((st.st_mtime_ns, key, entry))
                self._last_ns = max(self._last_ns, st.st_mtime_ns)
        for _, key, entry in sorted(found, key=lambda f: (f[0], f[1])):
            if key in markers:
                self._kept[key] = entry
            else:
                self._pending[key] = entry
                self._pending_bytes += entry.size
        for key in markers - self._kept.keys():  # the file went; its marker stayed
            with contextlib.suppress(FileNotFoundError):
                _marker(self.path(key)).unlink()
        if self._pending or self._kept:
            logger.info(
                "spool %s: %d files (%d bytes) pending upload, %d uploaded and kept",
                self.directory,
                len(self._pending),
                self._pending_bytes,
                len(self._kept),
            )

    # --- queries --------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the file for `key` lives (whether or not it exists)."""
        return self.directory.joinpath(*_check_key(key).split("/"))

    def pending(self) -> list[SpoolEntry]:
        """Files waiting for upload, oldest commit first."""
        with self._lock:
            return list(self._pending.values())

    def backlog(self) -> Backlog:
        with self._lock:
            oldest = next(iter(self._pending.values()), None)
            return Backlog(
                len(self._pending), self._pending_bytes, oldest.mtime if oldest else None
            )

    def is_pending(self, key: str) -> bool:
        with self._lock:
            return key in self._pending

    def is_uploaded(self, key: str) -> bool:
        """Uploaded and verified, and still here because its prefix is (or was) pinned."""
        with self._lock:
            return key in self._kept

    def kept(self, prefix: str = "") -> list[SpoolEntry]:
        """Uploaded files kept for a pinned prefix, under `prefix`."""
        with self._lock:
            return [e for k, e in self._kept.items() if k.startswith(prefix)]

    def pinned(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pins)

    def free_bytes(self) -> int:
        """Space left for unprivileged writers on the spool's file system."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    # --- commits --------------------------------------------------------------------------

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener(entry)` after each commit (in the committing thread)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def commit_file(
        self, key: str, src_path: Path, *, sha256: str | None = None, synced: bool = False
    ) -> SpoolEntry:
        """Move a closed file into the spool as `key`, durably. Committing a key again with
        the same content is a no-op (the source is still consumed); other content is refused.
        `synced`: the caller has fsynced the file's bytes, and the name it leaves behind needs
        no durability (a hard link made for the spool)."""
        return self.commit_files([(key, Path(src_path), sha256)], synced=synced)[0]

    def commit_files(
        self, files: list[tuple[str, Path, str | None]], *, synced: bool = False
    ) -> list[SpoolEntry]:
        """`commit_file` for several (key, path, sha256) at once, in order: one fsync per
        directory changed rather than one per file."""
        entries: dict[str, SpoolEntry] = {}
        moved: list[tuple[Path, Path, str, str | None]] = []
        for key, src, sha256 in files:
            existing = self._existing(key)
            if existing is not None:
                if not filecmp.cmp(src, existing.path, shallow=False):
                    raise SpoolError(f"{key} is already spooled with other content")
                src.unlink()
                entries[key] = existing
                continue
            if not synced:
                fsync_path(src)
            moved.append((src, self.path(key), key, sha256))
        fresh: list[SpoolEntry] = []
        with self._lock:
            dirs: dict[Path, None] = {}
            for src, target, key, sha256 in moved:
                self._refuse_race(key)
                self._make_parents(target)
                ns = self._next_ns()
                os.utime(src, ns=(ns, ns))
                try:
                    os.replace(src, target)
                except OSError as err:
                    if err.errno != errno.EXDEV:
                        raise SpoolError(f"cannot spool {src} as {key}: {err}") from err
                    self._move_across_devices(src, target, ns)
                dirs[target.parent] = None
                if not synced and src.parent != target.parent:
                    dirs[src.parent] = None
                fresh.append(entries.setdefault(key, self._add(key, target, ns, sha256)))
            for directory in dirs:
                fsync_path(directory)
        for entry in fresh:
            self._notify(entry)
        return [entries[key] for key, _, _ in files]

    def commit_bytes(self, key: str, data: bytes) -> SpoolEntry:
        """Write `data` as `key` (temp file, fsync, rename, fsync dirs). Same rule as
        commit_file for a key committed again."""
        target = self.path(key)
        existing = self._existing(key)
        if existing is not None:
            if existing.size != len(data) or existing.path.read_bytes() != data:
                raise SpoolError(f"{key} is already spooled with other content")
            return existing
        tmp = self._write_temp(data)
        try:
            with self._lock:
                self._refuse_race(key)
                self._make_parents(target)
                ns = self._next_ns()
                os.utime(tmp, ns=(ns, ns))
                os.replace(tmp, target)
                fsync_path(target.parent)
                entry = self._add(key, target, ns, hashlib.sha256(data).hexdigest())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._notify(entry)
        return entry

    def _existing(self, key: str) -> SpoolEntry | None:
        with self._lock:
            return self._pending.get(key) or self._kept.get(key)

    def _refuse_race(self, key: str) -> None:
        if key in self._pending or key in self._kept:
            raise SpoolError(f"{key} was committed twice at once")

    def _write_temp(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        return Path(name)

    def _move_across_devices(self, src: Path, target: Path, ns: int) -> None:
        fd, name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self._tmp)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.utime(tmp, ns=(ns, ns))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        src.unlink()

    def _make_parents(self, target: Path) -> None:
        missing = []
        d = target.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as err:  # e.g. a file where a directory should be
                raise SpoolError(f"cannot make {d}: {err}") from err
            fsync_path(d.parent)

    def _next_ns(self) -> int:
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    def _add(self, key: str, path: Path, ns: int, sha256: str | None = None) -> SpoolEntry:
        entry = SpoolEntry(key, path, path.stat().st_size, ns / 1e9, sha256)
        self._pending[key] = entry
        self._pending_bytes += entry.size
        return entry

    def _notify(self, entry: SpoolEntry) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(entry)
            except Exception:
                logger.exception("spool listener failed for %s", entry.key)

    # --- after upload ---------------------------------------------------------------------

    def done(self, key: str) -> None:
        """The object for `key` was uploaded and verified: delete the local file, or, under a
        pinned prefix, mark it uploaded and keep it."""
        with self._lock:
            entry = self._pending.pop(key, None)
            if entry is None:
                raise SpoolError(f"not pending upload: {key}")
            self._pending_bytes -= entry.size
            if self._is_pinned(key):
                _marker(entry.path).touch()
                self._kept[key] = entry
                return
            self._delete(entry.path)

    def pin(self, prefix: str) -> None:
        """Keep files under `prefix` after their upload (until unpinned and released)."""
        if not prefix or prefix.startswith("/"):
            raise ValueError(f"bad spool prefix: {prefix!r}")
        with self._lock:
            self._pins.add(prefix)
            self._save_pins()

    def unpin(self, prefix: str) -> None:
        with self._lock:
            if prefix in self._pins:
                self._pins.discard(prefix)
                self._save_pins()

    def release(self, prefix: str) -> int:
        """Delete the uploaded files kept under `prefix` that no pin covers any more;
        returns how many. Files still waiting for upload are not touched."""
        released = 0
        with self._lock:
            for key, entry in list(self._kept.items()):
                if key.startswith(prefix) and not self._is_pinned(key):
                    del self._kept[key]
                    self._delete(entry.path)
                    released += 1
        return released

    def _is_pinned(self, key: str) -> bool:
        return any(key.startswith(p) for p in self._pins)

    def _save_pins(self) -> None:
        tmp = self._write_temp(json.dumps(sorted(self._pins)).encode())
        os.replace(tmp, self.directory / PINS_FILE)
        fsync_path(self.directory)

    def _delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _marker(path).unlink(missing_ok=True)
        parent = path.parent
        while parent != self.directory:  # prune directories left empty
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
