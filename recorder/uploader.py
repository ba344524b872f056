"""Background upload of the spool: every file reaches the object store, proven byte for byte,
before the spool lets it go.

Per file, in commit order:
1. hash the spooled file (size, SHA-256);
2. stat its key: an object already there (a crash between upload and spool deletion, or a
   damaged upload never verified) is read back in full; identical, it counts as uploaded;
   otherwise it is deleted if allowed and replaced;
3. put it (without retention), stat it and read it back in full. S3 servers may store a body
   that does not match its checksum, and the sha256 the store keeps is the one the client
   sent, so only the bytes read back prove what is stored. A mismatch is deleted and sent
   again, counted in `reuploads`;
4. only then set its retention (a damaged object locked for years could never be replaced),
   call `on_uploaded`, and let the spool delete the file (or keep it, under a pinned prefix).

A store that `stores_files_in_place` (the local store: a hard link of the spooled file)
holds the very bytes of the spool: there, step 3 checks the spooled file against its digest
first (the same read as a read-back) and puts it with its retention in one write.

Files come in bursts (a segment with its link and signature, several participants' segments
close together): after an idle spell the uploader lets them gather for `gather_s` before a
pass, so its worker thread wakes once for the lot. On the VM here a thread's wake-up costs
more than its work on a small file (bench/recording.py: uploader thread 0.11-0.14 CPU-s per
20 s window without gathering, 0.04-0.06 with 5 s). `flush()` (a call's last files, tests)
cuts the wait short, and while a call closes (`hurry()`) nothing waits: its last segments,
replay files and manifest are stored as they come.

A storage failure (unreachable, timeout, server error, local store I/O) ends the pass; after
an exponential backoff the queue is tried again from its head, so nothing is skipped and
order is kept. A conflict that only one key has (an object under lock with other content, an
unreadable spool file, a failing `on_uploaded`) holds that key back with its own backoff and
an admin warning while the rest goes on. Blocking store calls run in one worker thread owned
by the uploader; the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from storage.errors import ObjectLocked, ObjectNotFound, ObjectStoreError
from storage.objects import ObjectInfo, ObjectStore

from .spool import Spool, SpoolEntry

__all__ = ["OnUploaded", "RetentionPolicy", "StorageWarning", "Uploader", "UploaderStats"]

logger = logging.getLogger(__name__)

GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MIB = 1024 * 1024
CHUNK = MIB
CONTENT_TYPES = {
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "mp4": "video/mp4",
    "json": "application/json",
    "pem": "application/x-pem-file",
    "md": "text/markdown; charset=utf-8",
}

RetentionPolicy = Callable[[str], tuple[datetime | None, str]]
OnUploaded = Callable[[str, ObjectInfo], None]
T = TypeVar("T")


@dataclass(frozen=True)
class UploaderStats:
    """A snapshot for /metrics and the admin page."""

    pending_count: int
    pending_bytes: int
    lag_s: float  # age of the oldest file waiting for upload; 0 when none
    uploaded_count: int  # verified and handed back to the spool (already_present included)
    uploaded_bytes: int
    already_present: int  # found in the store, verified identical, not sent again
    reuploads: int  # sent again because the read-back differed
    failures: int  # failed attempts, all retried
    consecutive_failures: int  # storage failures since the last success
    held: int  # keys held back by a conflict of their own
    last_error: str | None
    healthy: bool  # the store answers and nothing is held back


# The conditions an admin should see (`StorageWarning.code`).
WARNING_CODES = frozenset({"upload_lag", "disk_low", "store_failing", "upload_held"})


@dataclass(frozen=True)
class StorageWarning:
    """A condition an admin should see now: a stable `code` (one of WARNING_CODES), its
    figures for a page to word in its own language, and the English text the logs use.

    `params` by code: upload_lag (`lag_s`, `limit_s`, `pending_files`, `pending_bytes`),
    disk_low (`free_mib`, `limit_mib`, `directory`), store_failing (`failures`,
    `last_error`), upload_held (`key`, `reason`).
    """

    code: str
    params: dict[str, Any]
    message: str

    def __post_init__(self) -> None:
        if self.code not in WARNING_CODES:
            raise ValueError(f"unknown storage warning code {self.code!r}")

    @property
    def subject(self) -> str:
        """What it is about, once: the code, and for a held key the key too (for the log)."""
        return f"{self.code}:{self.params['key']}" if self.code == "upload_held" else self.code


@dataclass
class _Hold:
    reason: str
    until: float  # time.monotonic()
    delay_s: float


class _LocalFileError(Exception):
    """The spooled file itself cannot be read: retrying the store will not help."""


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _digest(chunks: Iterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _hash_file(path: Path) -> tuple[int, str]:
    try:
        return _digest(_file_chunks(path))
    except OSError as err:
        raise _LocalFileError(f"spool file unreadable: {err}") from err


def _retained(info: ObjectInfo, until: datetime, mode: str) -> bool:
    """Whether the object already has at least this retention."""
    if info.retain_until is None or info.retain_until < until:
        return False
    return info.retention_mode in (mode, COMPLIANCE)


class Uploader:
    """Uploads a spool to an object store in the background; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        *,
        retention: RetentionPolicy | None = None,
        on_uploaded: OnUploaded | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        lag_warn_s: float = 300.0,
        min_free_bytes: int = 1024 * MIB,
        verify_attempts: int = 3,
        check_interval_s: float = 30.0,
        close_grace_s: float = 5.0,
        gather_s: float = 0.0,
    ) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        if lag_warn_s <= 0 or check_interval_s <= 0 or close_grace_s < 0:
            raise ValueError("lag_warn_s and check_interval_s must be > 0, close_grace_s >= 0")
        if min_free_bytes < 0 or verify_attempts < 1 or gather_s < 0:
            raise ValueError("need min_free_bytes >= 0, verify_attempts >= 1, gather_s >= 0")
        self._spool = spool
        self._store = store
        self._retention = retention
        self._on_uploaded = on_uploaded
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._lag_warn_s = lag_warn_s
        self._min_free_bytes = min_free_bytes
        self._verify_attempts = verify_attempts
        self._check_interval_s = check_interval_s
        self._close_grace_s = close_grace_s
        self._gather_s = gather_s

        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="uploader")
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._gathered = False  # this burst has had its gathering wait
        self._hurry = 0  # calls closing now: no gathering while any is
        self._changed = asyncio.Event()
        self._closed = False

        self._hashes: dict[str, tuple[int, str]] = {}
        self._attempts: dict[str, int] = {}
        self._held: dict[str, _Hold] = {}
        self._delay_s = backoff_initial_s
        self._warned: set[str] = set()
        self._uploaded_count = 0
        self._uploaded_bytes = 0
        self._already_present = 0
        self._reuploads = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._last_error: str | None = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task (in the running loop); pending files from an earlier
        process are in the spool and go first."""
        if self._task is not None or self._closed:
            raise RuntimeError("uploader already started or closed")
        self._loop = asyncio.get_running_loop()
        self._spool.add_listener(self._on_commit)
        self._task = self._loop.create_task(self._run(), name="uploader")
        backlog = self._spool.backlog()
        logger.info(
            "uploader started for %r: %d files (%d bytes) pending",
            self._store,
            backlog.count,
            backlog.bytes,
        )

    def kick(self) -> None:
        """Something was committed: look at the spool (after the gathering wait). Safe
        from any thread."""
        self._set(self._wake)

    def flush(self) -> None:
        """Send what is pending without the gathering wait (a call's last files). Safe from
        any thread."""
        self._set(self._flush)
        self._set(self._wake)

    @contextlib.contextmanager
    def hurry(self) -> Iterator[None]:
        """While inside (a call closing, on the event loop), files are sent as soon as they
        are spooled; a gathering wait under way ends at once."""
        self._hurry += 1
        self.flush()
        try:
            yield
        finally:
            self._hurry -= 1

    def _set(self, event: asyncio.Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def close(self) -> None:
        """Stop uploading; what is pending stays in the spool for the next start. Waits up to
        `close_grace_s` for a store call already running in the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._spool.remove_listener(self._on_commit)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            waiter = asyncio.wrap_future(inflight)
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.wait([waiter], timeout=self._close_grace_s)
            if not inflight.done():
                logger.warning("uploader closed with a store call still running")
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("uploader closed: %d files pending", self._spool.backlog().count)

    def _on_commit(self, entry: SpoolEntry) -> None:
        self.kick()

    # --- state for metrics and tests ------------------------------------------------------

    @property
    def stats(self) -> UploaderStats:
        backlog = self._spool.backlog()
        lag = 0.0 if backlog.oldest_mtime is None else max(0.0, time.time() - backlog.oldest_mtime)
        return UploaderStats(
            pending_count=backlog.count,
            pending_bytes=backlog.bytes,
            lag_s=lag,
            uploaded_count=self._uploaded_count,
            uploaded_bytes=self._uploaded_bytes,
            already_present=self._already_present,
            reuploads=self._reuploads,
            failures=self._failures,
            consecutive_failures=self._consecutive_failures,
            held=len(self._held),
            last_error=self._last_error,
            healthy=self._consecutive_failures == 0 and not self._held,
        )

    def warnings(self) -> list[StorageWarning]:
        """Conditions an admin should see now: upload lag, low disk, failing store, held keys."""
        out: list[StorageWarning] = []
        st = self.stats
        if st.pending_count and st.lag_s > self._lag_warn_s:
            out.append(
                StorageWarning(
                    "upload_lag",
                    {
                        "lag_s": round(st.lag_s, 1),
                        "limit_s": self._lag_warn_s,
                        "pending_files": st.pending_count,
                        "pending_bytes": st.pending_bytes,
                    },
                    f"upload lag: the oldest spooled file has waited {st.lag_s:.1f} s "
                    f"(limit {self._lag_warn_s:g} s); {st.pending_count} files, "
                    f"{st.pending_bytes} bytes pending",
                )
            )
        free = self._spool.free_bytes()
        if free < self._min_free_bytes:
            free_mib, limit_mib = free // MIB, self._min_free_bytes // MIB
            directory = str(self._spool.directory)
            out.append(
                StorageWarning(
                    "disk_low",
                    {"free_mib": free_mib, "limit_mib": limit_mib, "directory": directory},
                    f"spool disk nearly full: {free_mib} MiB free (limit {limit_mib} MiB) "
                    f"at {directory}",
                )
            )
        if st.consecutive_failures:
            out.append(
                StorageWarning(
                    "store_failing",
                    {"failures": st.consecutive_failures, "last_error": st.last_error},
                    f"object store failing: {st.consecutive_failures} failed attempts in a "
                    f"row; last: {st.last_error}",
                )
            )
        for key, hold in self._held.items():
            out.append(
                StorageWarning(
                    "upload_held",
                    {"key": key, "reason": hold.reason},
                    f"upload of {key} held back: {hold.reason}",
                )
            )
        return out

    def _log_warnings(self) -> None:
        """Log each warning once when it appears (error) and when it clears (info)."""
        current = {w.subject: w for w in self.warnings()}
        for subject in current.keys() - self._warned:
            logger.error("storage warning: %s", current[subject].message)
        for subject in self._warned - current.keys():
            logger.info("storage warning cleared: %s", subject)
        self._warned = set(current)

    async def wait_until(
        self, predicate: Callable[[UploaderStats], bool], timeout_s: float
    ) -> UploaderStats:
        """Wait until `predicate(stats)` holds, re-checked after every attempt; raises
        TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                stats = self.stats
                if predicate(stats):
                    return stats
                await changed.wait()

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait until nothing is pending (for tests and a draining shutdown)."""
        self.flush()
        await self.wait_until(lambda s: s.pending_count == 0, timeout_s)

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._pass()
            except Exception:  # a bug: log it, keep the uploader alive
                logger.exception("uploader pass failed")
                await asyncio.sleep(self._backoff_max_s)

    async def _pass(self) -> None:
        self._wake.clear()
        flushed = self._flush.is_set()  # taken once: a flush counts for the next burst only
        self._flush.clear()
        self._log_warnings()
        now = time.monotonic()
        entries = [
            e
            for e in self._spool.pending()
            if e.key not in self._held or self._held[e.key].until <= now
        ]
        if not entries:
            self._bump()
            if not self._held:  # idle: the next burst gathers (a held key's retry does not)
                self._gathered = False
            await self._sleep_until_woken(self._idle_timeout())
            return
        if not self._gathered:
            self._gathered = True
            if self._gather_s > 0 and not flushed and not self._hurry:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._gather_s):
                        await self._flush.wait()
                return  # the next pass takes what has gathered
        for entry in entries:
            if not self._spool.is_pending(entry.key):
                continue
            ok = await self._attempt(entry)
            self._bump()
            self._log_warnings()
            if not ok:
                await asyncio.sleep(self._delay_s)
                self._delay_s = min(self._delay_s * 2, self._backoff_max_s)
                return

    def _idle_timeout(self) -> float:
        timeout = self._check_interval_s
        now = time.monotonic()
        for hold in self._held.values():
            timeout = min(timeout, max(0.0, hold.until - now))
        return timeout

    async def _sleep_until_woken(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    async def _attempt(self, entry: SpoolEntry) -> bool:
        """One try at one file; False when the store failed (back off, restart the pass)."""
        key = entry.key
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        log_extra = {"object_key": key, "attempt": attempt}
        try:
            info, present = await self._upload(entry, attempt)
        except (ObjectLocked, _LocalFileError) as err:
            self._hold(key, attempt, str(err))
            return True
        except (ObjectStoreError, OSError, TimeoutError) as err:
            self._failures += 1
            self._consecutive_failures += 1
            self._last_error = f"{key}: {err}"
            logger.warning(
                "upload failed: key=%s attempt=%d, retry in %.2f s: %s",
                key,
                attempt,
                self._delay_s,
                err,
                extra=log_extra,
            )
            return False
        except Exception as err:
            logger.exception("upload of %s failed unexpectedly", key, extra=log_extra)
            self._hold(key, attempt, f"{type(err).__name__}: {err}")
            return True
        self._uploaded_count += 1
        self._uploaded_bytes += info.size
        self._already_present += present
        self._consecutive_failures = 0
        self._delay_s = self._backoff_initial_s
        self._attempts.pop(key, None)
        self._hashes.pop(key, None)
        self._held.pop(key, None)
        logger.info(
            "uploaded: key=%s size=%d attempt=%d%s",
            key,
            info.size,
            attempt,
            " (already stored)" if present else "",
            extra=log_extra,
        )
        return True

    def _hold(self, key: str, attempt: int, reason: str) -> None:
        previous = self._held.get(key)
        delay = (
            self._backoff_initial_s
            if previous is None
            else min(previous.delay_s * 2, self._backoff_max_s)
        )
        self._held[key] = _Hold(reason, time.monotonic() + delay, delay)
        self._failures += 1
        self._last_error = f"{key}: {reason}"
        logger.error(
            "upload held back: key=%s attempt=%d, retry in %.2f s: %s",
            key,
            attempt,
            delay,
            reason,
            extra={"object_key": key, "attempt": attempt},
        )

    # --- one file -------------------------------------------------------------------------

    async def _upload(self, entry: SpoolEntry, attempt: int) -> tuple[ObjectInfo, bool]:
        """Send (if needed) and verify one file; returns its info and whether it was
        already stored. Raises on failure; the spool keeps the file. The store calls run
        in the worker thread as one job (one wake-up of the event loop per file)."""
        verified, present = await self._blocking(self._transfer, entry, attempt)
        if self._on_uploaded is not None:
            self._on_uploaded(entry.key, verified)
        self._spool.done(entry.key)
        return verified, present

    def _transfer(self, entry: SpoolEntry, attempt: int) -> tuple[ObjectInfo, bool]:
        """Worker thread: steps 1-4 of the module docstring but the spool's release."""
        key = entry.key
        local = self._hashes.get(key)
        if local is None:
            # The committer's digest (the chain link's) when the spool has it: a spool file
            # damaged since then fails the read-back instead of being uploaded as is.
            local = (entry.size, entry.sha256) if entry.sha256 else _hash_file(entry.path)
            self._hashes[key] = local
        verified: ObjectInfo | None = None
        present = False
        existing = self._stat_or_none(key)
        if existing is not None:
            if self._verify(existing, local):
                verified, present = existing, True
            else:
                self._count_reupload(key, attempt, "another object is stored under this key")
                self._delete_if_allowed(key)
        # Once per file: the hub's policy counts days from now, so a second call would ask
        # for a later date than the one just stored (and a needless second write).
        retain_until, mode = (None, GOVERNANCE) if self._retention is None else self._retention(key)
        sends = 0
        if verified is None and self._store.stores_files_in_place:
            verified = self._put_in_place(entry, local, retain_until, mode)
        while verified is None:
            sends += 1
            info = self._put(entry, local[1])
            if self._verify(info, local):
                verified = info
            elif sends >= self._verify_attempts:
                raise ObjectStoreError(
                    f"{key}: read-back still differs after {sends} uploads",
                    code="IntegrityError",
                    key=key,
                )
            else:
                if entry.sha256 and sends == 1 and _hash_file(entry.path) != local:
                    # Not the store's fault: the spool file changed after its commit (the
                    # local store may even share its inode). Hold it back for an operator.
                    self._delete_if_allowed(key)
                    raise _LocalFileError(
                        "spool file differs from the digest committed for it (sha256 "
                        f"{local[1][:16]}…): damaged on local disk"
                    )
                self._count_reupload(key, attempt, "read-back differs from the spooled file")
                self._delete_if_allowed(key)
        if retain_until is not None and not _retained(verified, retain_until, mode):
            self._store.set_retention(key, retain_until, mode)
            verified = self._store.stat(key)
        return verified, present

    def _put_in_place(
        self,
        entry: SpoolEntry,
        local: tuple[int, str],
        retain_until: datetime | None,
        mode: str,
    ) -> ObjectInfo:
        """Step 3 for a store that keeps the spooled file itself: the file is checked against
        the digest committed for it, then stored with its retention; reading it back would
        read the same bytes again. (Without a committed digest, `local` was hashed from this
        very file.)"""
        if entry.sha256 and _hash_file(entry.path) != local:
            raise _LocalFileError(
                f"spool file differs from the digest committed for it (sha256 {local[1][:16]}…):"
                " damaged on local disk"
            )
        return self._store.put_file(
            entry.key,
            entry.path,
            entry.size,
            sha256=local[1],
            content_type=content_type(entry.key),
            retain_until=retain_until,
            mode=mode,
        )

    def _count_reupload(self, key: str, attempt: int, why: str) -> None:
        self._reuploads += 1
        logger.warning(
            "re-uploading: key=%s attempt=%d: %s",
            key,
            attempt,
            why,
            extra={"object_key": key, "attempt": attempt},
        )

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._executor.submit(fn, *args)
        self._inflight = future
        return await asyncio.wrap_future(future)

    # --- blocking helpers (worker thread) -------------------------------------------------

    def _stat_or_none(self, key: str) -> ObjectInfo | None:
        try:
            return self._store.stat(key)
        except ObjectNotFound:
            return None

    def _verify(self, info: ObjectInfo, local: tuple[int, str]) -> bool:
        """Stat says the right size (and hash, when it keeps one), and the bytes read back
        hash to the spooled file's SHA-256."""
        size, sha256 = local
        if info.size != size or info.sha256 not in (None, sha256):
            return False
        return _digest(self._store.open(info.key)) == local

    def _delete_if_allowed(self, key: str) -> None:
        """Remove a wrong object so no stale version stays behind; a locked one stays, and the
        put that follows says so (ObjectLocked)."""
        with contextlib.suppress(ObjectNotFound, ObjectLocked):
            self._store.delete(key)

    def _put(self, entry: SpoolEntry, sha256: str) -> ObjectInfo:
        """Store the spooled file under its key; returns what the store says it holds."""
        try:
            with entry.path.open("rb"):
                pass  # unreadable here is the spool's problem, not the store's
        except OSError as err:
            raise _LocalFileError(f"spool file unreadable: {err}") from err
        return self._store.put_file(
            entry.key, entry.path, entry.size, sha256=sha256, content_type=content_type(entry.key)
        )
