"""The uploader: every spooled file reaches the store byte-identical, proven by reading it
back, before the spool deletes it; outages, damaged uploads and restarts lose nothing.

Real parts only: the local store on disk, moto over HTTPS (Object Lock, retention) and, where
a byte must be flipped in flight, moto over plain HTTP behind tests/tcp_proxy.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.spool import Spool
from recorder.uploader import MIB, StorageWarning, Uploader, UploaderStats
from storage import LocalObjectStore, ObjectInfo, ObjectStore, S3ObjectStore

from .. import s3util
from ..s3util import S3Server, make_s3_store
from ..tcp_proxy import TcpProxy

# The session's moto servers (plain HTTP and HTTPS), shared with tests/storage.
moto_endpoint = s3util.moto_endpoint
moto_tls = s3util.moto_tls

P = "calls/2026/11/c0ffee/"
UNTIL = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)


def retention(key: str) -> tuple[datetime | None, str]:
    return UNTIL, "GOVERNANCE"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_sha(store: ObjectStore, key: str) -> str:
    """SHA-256 of the object's bytes as downloaded now (not the hash the store keeps)."""
    h = hashlib.sha256()
    for chunk in store.open(key):
        h.update(chunk)
    return h.hexdigest()


def payloads(n: int, prefix: str = P) -> dict[str, bytes]:
    """n files in the recorder's layout: chain links, signatures, segments, of mixed sizes."""
    out: dict[str, bytes] = {}
    for i in range(1, n + 1):
        if i % 3 == 1:
            out[f"{prefix}chain/{i:06d}.json"] = b'{"index":%d}' % i + os.urandom(200)
        elif i % 3 == 2:
            out[f"{prefix}chain/{i:06d}.sig"] = os.urandom(64)
        else:
            out[f"{prefix}p1/{i:06d}.webm"] = os.urandom(30_000 * i)
    return out


def fast_uploader(spool: Spool, store: ObjectStore, **kw: Any) -> Uploader:
    kw.setdefault("backoff_initial_s", 0.02)
    kw.setdefault("backoff_max_s", 0.2)
    kw.setdefault("close_grace_s", 3.0)
    return Uploader(spool, store, **kw)


def codes(warnings: list[StorageWarning]) -> list[str]:
    return [w.code for w in warnings]


@asynccontextmanager
async def running(uploader: Uploader) -> AsyncIterator[Uploader]:
    uploader.start()
    try:
        yield uploader
    finally:
        await uploader.close()


async def poll_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """For conditions that change with time alone (lag): a short poll, bounded."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def spool_files(spool: Spool) -> set[str]:
    root = spool.directory
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture(params=["local", "s3_tls"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The local store, and S3 over HTTPS on a fresh Object Lock bucket."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("moto_tls")
    return make_s3_store(server.endpoint, ca_file=server.ca_file)


@pytest.fixture
async def tls_proxy(moto_tls: S3Server) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(moto_tls.host, moto_tls.port) as proxy:
        yield proxy


@pytest.fixture
async def http_proxy(moto_endpoint: str) -> AsyncIterator[TcpProxy]:
    host, port = moto_endpoint.rsplit(":", 1)
    async with TcpProxy(host, int(port), corrupt_min_bytes=4096) as proxy:
        yield proxy


async def proxied_store(
    proxy: TcpProxy, server: S3Server, timeout_s: float = 1
) -> tuple[S3ObjectStore, S3ObjectStore]:
    """A store through the proxy (short timeouts, no SDK retries: the uploader's own retry
    loop is under test) and a direct one on the same bucket for checking. Made in a thread:
    the proxy runs on this event loop, which a blocking call here would stall."""
    via = await asyncio.to_thread(
        make_s3_store, proxy.endpoint, ca_file=server.ca_file, timeout_s=timeout_s, retries=0
    )
    direct = make_s3_store(server.endpoint, ca_file=server.ca_file, bucket=via.bucket)
    return via, direct


class UploadWitness:
    """on_uploaded: at that moment the spool must still hold the file and the store must
    hold the same bytes (so the spool never deletes before a verified upload). Problems are
    collected, not raised (the uploader would hold the key back and retry)."""

    def __init__(self, spool: Spool, direct: ObjectStore, originals: dict[str, bytes]) -> None:
        self.spool = spool
        self.direct = direct
        self.originals = originals
        self.order: list[str] = []
        self.problems: list[str] = []

    def __call__(self, key: str, info: ObjectInfo) -> None:
        want = self.originals[key]
        path = self.spool.path(key)
        if not path.exists() or path.read_bytes() != want:
            self.problems.append(f"{key}: spool file gone or changed before on_uploaded")
        if stored_sha(self.direct, key) != sha(want):
            self.problems.append(f"{key}: stored bytes differ at on_uploaded")
        if (info.size, info.sha256) != (len(want), sha(want)):
            self.problems.append(f"{key}: reported {info.size} bytes, sha256 {info.sha256}")
        self.order.append(key)


async def test_uploads_in_commit_order_byte_identical(store: ObjectStore, tmp_path: Path) -> None:
    """Files committed while the uploader runs arrive in commit order, byte-identical, with
    their retention, and leave the spool only after their verified upload."""
    spool = Spool(tmp_path / "spool")
    originals = payloads(7)
    originals[f"{P}p2/000001.webm"] = os.urandom(11 * 1024 * 1024)  # multipart on S3
    witness = UploadWitness(spool, store, originals)
    async with running(fast_uploader(spool, store, retention=retention, on_uploaded=witness)) as up:
        for key, data in originals.items():  # no kick: the spool's listener wakes it
            spool.commit_bytes(key, data)
        st = await up.wait_until(lambda s: s.uploaded_count == len(originals), 60)
    assert witness.problems == [] and witness.order == list(originals)
    for key, data in originals.items():
        assert stored_sha(store, key) == sha(data)
        info = store.stat(key)
        assert (info.retain_until, info.retention_mode) == (UNTIL, "GOVERNANCE")
    assert store.stat(f"{P}p1/000003.webm").content_type == "video/webm"
    assert spool.pending() == [] and spool_files(spool) == set()
    assert (st.pending_count, st.failures, st.reuploads, st.already_present) == (0, 0, 0, 0)
    assert st.uploaded_bytes == sum(len(d) for d in originals.values())
    assert st.healthy and up.warnings() == []


async def test_a_burst_gathers_and_a_flush_sends_it_without_waiting(tmp_path: Path) -> None:
    """Files committed after an idle spell wait `gather_s` for the rest of their burst (one
    wake-up of the worker for all); a flush (a call's last files) or wait_idle cuts the wait
    short: with a 10-minute gathering time, these arrive well within the 30 s allowed."""
    spool = Spool(tmp_path / "spool")
    store = LocalObjectStore(tmp_path / "objects")
    originals = payloads(6)
    burst1, burst2 = list(originals.items())[:3], list(originals.items())[3:]
    witness = UploadWitness(spool, store, originals)
    async with running(fast_uploader(spool, store, on_uploaded=witness, gather_s=600)) as up:
        for key, data in burst1:
            spool.commit_bytes(key, data)  # the spool's listener wakes it: it gathers
        with pytest.raises(TimeoutError):  # nothing goes before the burst is flushed
            await up.wait_until(lambda s: s.uploaded_count > 0, 0.5)
        up.flush()
        await up.wait_until(lambda s: s.uploaded_count == 3, 30)
        for key, data in burst2:
            spool.commit_bytes(key, data)
        await up.wait_idle(30)  # flushes too
    assert witness.problems == [] and witness.order == list(originals)
    async with running(fast_uploader(spool, store, gather_s=600)) as up:
        with up.hurry():  # a call closing: each of its files goes as it comes
            for n in (1, 2):
                spool.commit_bytes(f"{P}replay/p{n}.webm", b"replay %d" % n)
                await up.wait_until(lambda s, n=n: s.uploaded_count == n, 30)
    async with running(fast_uploader(spool, store, gather_s=0.05)) as up:
        spool.commit_bytes(f"{P}p1/000099.webm", b"after a short gathering wait")
        st = await up.wait_until(lambda s: s.uploaded_count == 1, 30)  # no flush needed
    assert st.pending_count == 0
    with pytest.raises(ValueError, match="gather_s"):
        Uploader(spool, store, gather_s=-1)


class CountingStore(LocalObjectStore):
    """The local store, counting retention writes made after the put."""

    set_retention_calls = 0

    def set_retention(self, key: str, retain_until: datetime, mode: str = "GOVERNANCE") -> None:
        self.set_retention_calls += 1
        super().set_retention(key, retain_until, mode)


async def test_the_local_store_gets_each_object_with_its_retention_in_one_put(
    tmp_path: Path,
) -> None:
    """The hub's policy counts days from now: asked once per file, its date goes in with the
    put, and no second retention write follows (each costs a sidecar write and two fsyncs)."""
    spool = Spool(tmp_path / "spool")
    store = CountingStore(tmp_path / "objects")
    asked: dict[str, datetime] = {}

    def days_from_now(key: str) -> tuple[datetime, str]:
        asked[key] = datetime.now(UTC) + timedelta(days=365)
        return asked[key], "GOVERNANCE"

    originals = payloads(6)
    for key, data in originals.items():
        spool.commit_bytes(key, data)
    async with running(fast_uploader(spool, store, retention=days_from_now)) as up:
        await up.wait_idle(30)
    assert store.set_retention_calls == 0
    assert asked.keys() == originals.keys()
    for key, data in originals.items():
        info = store.stat(key)
        assert (info.retain_until, info.retention_mode) == (asked[key], "GOVERNANCE")
        assert stored_sha(store, key) == sha(data)


async def test_pinned_prefix_keeps_its_files(store: ObjectStore, tmp_path: Path) -> None:
    """Files under a pinned prefix are uploaded and verified but stay in the spool (marked
    uploaded); other calls' files are deleted; release after unpin deletes the kept ones."""
    spool = Spool(tmp_path / "spool")
    pinned = payloads(4)
    other = payloads(2, prefix="calls/2026/11/beef/")
    spool.pin(P)
    for key, data in {**pinned, **other}.items():
        spool.commit_bytes(key, data)
    async with running(fast_uploader(spool, store)) as up:
        await up.wait_idle(30)
    assert spool_files(spool) == set(pinned)
    assert all(spool.is_uploaded(k) for k in pinned)
    for key, data in {**pinned, **other}.items():
        assert stored_sha(store, key) == sha(data)
    spool.unpin(P)
    assert spool.release(P) == len(pinned)
    assert spool_files(spool) == set()


async def test_object_already_stored_counts_as_uploaded(store: ObjectStore, tmp_path: Path) -> None:
    """After a crash between upload and spool deletion the object is there: verified, not sent
    again. A damaged object left under a key is replaced (and counted as a re-upload)."""
    spool = Spool(tmp_path / "spool")
    good, damaged = f"{P}p1/000001.webm", f"{P}p1/000002.webm"
    data = {good: os.urandom(50_000), damaged: os.urandom(50_000)}
    before = store.put(good, data[good])
    store.put(damaged, data[damaged][:-1] + b"X")
    for key, value in data.items():
        spool.commit_bytes(key, value)
    async with running(fast_uploader(spool, store, retention=retention)) as up:
        await up.wait_idle(30)
        st = up.stats
    assert (st.uploaded_count, st.already_present, st.reuploads, st.failures) == (2, 1, 1, 0)
    after = store.stat(good)
    assert (after.version_id, after.last_modified) == (before.version_id, before.last_modified)
    assert after.retain_until == UNTIL
    for key, value in data.items():
        assert stored_sha(store, key) == sha(value)
    assert spool_files(spool) == set()


async def test_locked_object_with_other_content_holds_only_its_key(
    store: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A retained object with other content cannot be replaced: that file stays in the spool,
    held back with a warning, and the files after it are still uploaded."""
    spool = Spool(tmp_path / "spool")
    blocked, later = f"{P}p1/000001.webm", f"{P}p1/000002.webm"
    store.put(blocked, b"someone else's bytes", retain_until=UNTIL)
    spool.commit_bytes(blocked, b"our segment")
    spool.commit_bytes(later, b"the next segment")
    with caplog.at_level(logging.ERROR, logger="recorder.uploader"):
        async with running(fast_uploader(spool, store)) as up:
            st = await up.wait_until(lambda s: s.uploaded_count == 1 and s.held == 1, 30)
            assert not st.healthy and st.failures >= 1
            held = [w for w in up.warnings() if w.code == "upload_held"]
            assert [w.params["key"] for w in held] == [blocked], up.warnings()
            assert [e.key for e in spool.pending()] == [blocked]
    assert spool.path(blocked).read_bytes() == b"our segment"
    assert store.get(blocked) == b"someone else's bytes"
    assert store.get(later) == b"the next segment"
    assert any(f"upload held back: key={blocked} attempt=1" in r.message for r in caplog.records)


async def test_a_spool_file_damaged_after_its_commit_is_held_not_uploaded(
    store: ObjectStore, tmp_path: Path
) -> None:
    """The spool keeps the digest committed with a file (the chain link's): a file changed on
    local disk afterwards is never stored as verified; its key is held back with a warning
    naming the spool, and the files after it still go."""
    spool = Spool(tmp_path / "spool")
    damaged, later = f"{P}p1/000001.webm", f"{P}p1/000002.webm"
    src = tmp_path / "segment"
    src.write_bytes(b"the segment as linked")
    spool.commit_file(damaged, src, sha256=sha(b"the segment as linked"))
    spool.commit_bytes(later, b"the next segment")
    with open(spool.path(damaged), "r+b") as f:  # bit rot, or someone's edit
        f.write(b"X")
    async with running(fast_uploader(spool, store, retention=retention)) as up:
        st = await up.wait_until(lambda s: s.uploaded_count == 1 and s.held == 1, 30)
        assert any(
            w.code == "upload_held"
            and w.params["key"] == damaged
            and "damaged on local disk" in w.params["reason"]
            for w in up.warnings()
        ), up.warnings()
        assert [e.key for e in spool.pending()] == [damaged]
    assert not store.exists(damaged)
    assert store.get(later) == b"the next segment"
    assert st.reuploads == 0


async def test_storage_outage_refused_then_silent_loses_nothing(
    tls_proxy: TcpProxy, moto_tls: S3Server, tmp_path: Path
) -> None:
    """Storage refuses connections, then drops traffic silently, while files keep coming: all
    stay spooled, failures are counted; once it is back every object arrives byte-identical,
    retained, and only then leaves the spool."""
    via, direct = await proxied_store(tls_proxy, moto_tls)
    spool = Spool(tmp_path / "spool")
    originals = payloads(12)
    witness = UploadWitness(spool, direct, originals)
    keys = list(originals)
    up = fast_uploader(spool, via, retention=retention, on_uploaded=witness)
    async with running(up):
        tls_proxy.set_mode("refuse")
        for key in keys[:6]:
            spool.commit_bytes(key, originals[key])
        await up.wait_until(lambda s: s.failures >= 3, 30)
        await tls_proxy.wait_until(lambda p: p.refused >= 3, 10)
        assert not up.stats.healthy and "unreachable" in (up.stats.last_error or "")

        tls_proxy.set_mode("blackhole")
        failures = up.stats.failures
        for key in keys[6:]:
            spool.commit_bytes(key, originals[key])
        await tls_proxy.wait_until(lambda p: p.blackholed >= 2, 30)
        await up.wait_until(lambda s: s.failures >= failures + 2, 30)
        assert up.stats.uploaded_count == 0 and witness.order == []
        assert spool_files(spool) == set(keys)
        assert list(direct.list(P)) == []

        tls_proxy.set_mode("pass")
        await up.wait_idle(60)
        st = up.stats
    assert witness.problems == [] and witness.order == keys
    for key, data in originals.items():
        assert stored_sha(direct, key) == sha(data)
        assert direct.stat(key).retain_until == UNTIL
    assert spool_files(spool) == set()
    assert st.uploaded_count == len(keys) and st.failures >= 4 and st.reuploads == 0
    assert st.healthy and st.consecutive_failures == 0


async def test_corrupted_upload_is_caught_by_read_back(
    http_proxy: TcpProxy, moto_endpoint: str, tmp_path: Path
) -> None:
    """A proxy flips one byte in one upload: the store takes it, the read-back catches it,
    the object is sent again, and ends byte-identical (retained only once verified)."""
    via, direct = await proxied_store(http_proxy, S3Server(moto_endpoint), timeout_s=2)
    spool = Spool(tmp_path / "spool")
    originals = payloads(6)
    for key, data in originals.items():
        spool.commit_bytes(key, data)
    http_proxy.set_mode("corrupt_once")
    witness = UploadWitness(spool, direct, originals)
    async with running(fast_uploader(spool, via, retention=retention, on_uploaded=witness)) as up:
        await up.wait_idle(30)
        st = up.stats
    assert http_proxy.corruptions == 1 and http_proxy.mode == "pass"
    assert (st.reuploads, st.failures, st.uploaded_count) == (1, 0, len(originals))
    assert witness.problems == [] and witness.order == list(originals)
    for key, data in originals.items():
        assert stored_sha(direct, key) == sha(data)
        assert direct.stat(key).retain_until == UNTIL
    assert spool_files(spool) == set()


async def test_restart_resumes_pending_uploads(
    tls_proxy: TcpProxy, moto_tls: S3Server, tmp_path: Path
) -> None:
    """An uploader closed mid-outage (a store call hanging on a silent server) returns within
    its grace time and leaves everything spooled; a new uploader on a new Spool of the same
    directory (a restart) uploads it all."""
    via, direct = await proxied_store(tls_proxy, moto_tls)
    root = tmp_path / "spool"
    spool = Spool(root)
    originals = payloads(5)
    tls_proxy.set_mode("blackhole")
    first = fast_uploader(spool, via, retention=retention)
    first.start()
    for key, data in originals.items():
        spool.commit_bytes(key, data)
    await tls_proxy.wait_until(lambda p: p.blackholed >= 1, 10)
    started = time.monotonic()
    await first.close()
    await first.close()  # twice is fine
    assert time.monotonic() - started < 3.5
    assert first.stats.uploaded_count == 0
    assert spool_files(spool) == set(originals)

    tls_proxy.set_mode("pass")
    again = Spool(root)
    assert [e.key for e in again.pending()] == list(originals)
    async with running(fast_uploader(again, via, retention=retention)) as second:
        await second.wait_idle(30)
        assert second.stats.uploaded_count == len(originals)
    for key, data in originals.items():
        assert stored_sha(direct, key) == sha(data)
    assert spool_files(again) == set()


async def test_upload_lag_warning_comes_and_goes(
    tls_proxy: TcpProxy, moto_tls: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file waiting longer than lag_warn_s raises an upload-lag warning (logged as an
    error, shown in warnings()); when storage is back and the spool drains, it clears."""
    via, direct = await proxied_store(tls_proxy, moto_tls)
    spool = Spool(tmp_path / "spool")
    tls_proxy.set_mode("refuse")
    up = fast_uploader(spool, via, lag_warn_s=0.3)
    with caplog.at_level(logging.INFO, logger="recorder.uploader"):
        async with running(up):
            spool.commit_bytes(f"{P}p1/000001.webm", b"late segment")
            assert "upload_lag" not in codes(up.warnings())
            await poll_until(lambda: "upload_lag" in codes(up.warnings()))
            assert up.stats.lag_s > 0.3 and up.stats.pending_count == 1
            assert "store_failing" in codes(up.warnings())
            (lag,) = [w for w in up.warnings() if w.code == "upload_lag"]
            assert lag.params["limit_s"] == 0.3 and lag.params["pending_files"] == 1
            await poll_until(
                lambda: any(
                    r.levelno == logging.ERROR and "storage warning: upload lag" in r.message
                    for r in caplog.records
                )
            )
            tls_proxy.set_mode("pass")
            await up.wait_idle(30)
            await up.wait_until(lambda s: s.healthy, 10)
            assert up.warnings() == [] and up.stats.lag_s == 0.0
    assert direct.get(f"{P}p1/000001.webm") == b"late segment"
    assert any("storage warning cleared: upload_lag" in r.message for r in caplog.records)


async def test_low_disk_warning(tmp_path: Path) -> None:
    """Free space under min_free_bytes on the spool's file system is a warning."""
    spool = Spool(tmp_path / "spool")
    store = LocalObjectStore(tmp_path / "objects")
    roomy = fast_uploader(spool, store, min_free_bytes=0)
    assert roomy.warnings() == []
    limit = spool.free_bytes() + 2**40
    cramped = fast_uploader(spool, store, min_free_bytes=limit)
    (warning,) = cramped.warnings()
    assert warning.code == "disk_low"
    assert warning.params["limit_mib"] == limit // MIB
    assert 0 <= warning.params["free_mib"] < warning.params["limit_mib"]
    assert warning.params["directory"] == str(spool.directory)
    assert warning.message.startswith("spool disk nearly full")


async def test_wait_idle_times_out_while_storage_is_down(
    tls_proxy: TcpProxy, moto_tls: S3Server, tmp_path: Path
) -> None:
    """wait_idle raises TimeoutError rather than pretend; the file stays spooled."""
    via, _ = await proxied_store(tls_proxy, moto_tls)
    spool = Spool(tmp_path / "spool")
    spool.commit_bytes(f"{P}p1/000001.webm", b"x")
    tls_proxy.set_mode("refuse")
    async with running(fast_uploader(spool, via)) as up:
        await up.wait_until(lambda s: s.failures >= 1, 10)
        with pytest.raises(TimeoutError):
            await up.wait_idle(0.3)
    assert spool_files(spool) == {f"{P}p1/000001.webm"}


def test_stats_before_start(tmp_path: Path) -> None:
    """A new uploader reports what the spool holds (for /metrics before the first pass)."""
    spool = Spool(tmp_path / "spool")
    spool.commit_bytes("a/b.webm", b"12345")
    st = Uploader(spool, LocalObjectStore(tmp_path / "objects")).stats
    assert isinstance(st, UploaderStats)
    assert (st.pending_count, st.pending_bytes, st.uploaded_count, st.healthy) == (1, 5, 0, True)


def test_a_storage_warning_has_a_known_code() -> None:
    """StorageWarning refuses a code no page can word; a held key is its own subject."""
    with pytest.raises(ValueError, match="unknown storage warning code"):
        StorageWarning("disk_full", {}, "spool disk full")
    held = StorageWarning("upload_held", {"key": "a/b.webm", "reason": "locked"}, "held")
    assert held.subject == "upload_held:a/b.webm"
    assert StorageWarning("disk_low", {}, "low").subject == "disk_low"
