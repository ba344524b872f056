"""One suite for every ObjectStore: the local directory and S3 (a real moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signaling.recording_hub import make_object_store
from storage import (
    LocalObjectStore,
    ObjectLocked,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
)

from ..conftest import fast_settings
from ..s3util import S3Server
from .conftest import free_port, make_s3_store

KEY = "calls/2026/11/c0ffee/p1/000001.webm"


class ChunkReader:
    """A non-seekable stream of unknown length, fed by a generator."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out


def test_put_get_stat_round_trip_with_sha256(object_store: ObjectStore) -> None:
    """What is put comes back byte for byte, with size and the SHA-256 hashlib computes."""
    data = os.urandom(50_000)
    info = object_store.put(KEY, data, content_type="video/webm")
    digest = hashlib.sha256(data).hexdigest()
    assert (info.key, info.size, info.sha256) == (KEY, len(data), digest)
    assert object_store.get(KEY) == data
    st = object_store.stat(KEY)
    assert (st.size, st.sha256, st.content_type) == (len(data), digest, "video/webm")
    assert st.last_modified is not None and st.last_modified.tzinfo is not None
    assert st.retain_until is None and st.legal_hold is False
    assert b"".join(object_store.open(KEY)) == data


def test_ranged_get(object_store: ObjectStore) -> None:
    """get(offset, length) returns that slice; past the end is empty."""
    data = bytes(range(256)) * 10
    object_store.put(KEY, data)
    assert object_store.get(KEY, offset=100, length=50) == data[100:150]
    assert object_store.get(KEY, offset=2500) == data[2500:]
    assert object_store.get(KEY, offset=0, length=0) == b""
    assert object_store.get(KEY, offset=len(data)) == b""
    with pytest.raises(ValueError):
        object_store.get(KEY, offset=-1)


def test_streamed_put_of_unknown_length(object_store: ObjectStore) -> None:
    """A 12 MiB stream of unknown length (multipart on S3) is stored and hashed on the way."""
    block = os.urandom(1024 * 1024)
    blocks = [bytes([i]) + block[1:] for i in range(12)]
    info = object_store.put(KEY, ChunkReader(iter(blocks)))  # type: ignore[arg-type]
    expected = b"".join(blocks)
    assert info.size == len(expected)
    assert info.sha256 == hashlib.sha256(expected).hexdigest()
    assert object_store.stat(KEY).sha256 == info.sha256
    assert hashlib.sha256(b"".join(object_store.open(KEY))).hexdigest() == info.sha256
    assert list(object_store.list("calls/")) == [KEY]


def test_streamed_put_of_known_length(object_store: ObjectStore) -> None:
    """A stream with a declared length is read up to that length."""
    info = object_store.put(KEY, io.BytesIO(b"abcdefXYZ"), 6)
    assert (info.size, object_store.get(KEY)) == (6, b"abcdef")
    assert info.sha256 == hashlib.sha256(b"abcdef").hexdigest()


def test_list_by_prefix_hides_sidecars(object_store: ObjectStore) -> None:
    """list(prefix) gives exactly the keys under it, sorted, and nothing else."""
    keys = [
        "calls/2026/11/a/p1/000001.webm",
        "calls/2026/11/a/p1/000002.webm",
        "calls/2026/11/a/p2/000001.webm",
        "calls/2026/12/b/p1/000001.webm",
        "exports/x.zip",
    ]
    for k in keys:
        object_store.put(k, k.encode())
    assert list(object_store.list("calls/2026/11/a/")) == keys[:3]
    assert list(object_store.list("calls/2026/11/a/p1/0000")) == keys[:2]
    assert list(object_store.list("calls/")) == keys[:4]
    assert list(object_store.list("")) == keys
    assert list(object_store.list("nothing/")) == []


def test_exists_and_delete(object_store: ObjectStore) -> None:
    """delete removes the object; it no longer exists, stats or lists."""
    object_store.put(KEY, b"x")
    assert object_store.exists(KEY)
    object_store.delete(KEY)
    assert not object_store.exists(KEY)
    assert list(object_store.list("")) == []
    with pytest.raises(ObjectNotFound):
        object_store.delete(KEY)


def test_missing_key_is_object_not_found(object_store: ObjectStore) -> None:
    """Every read of a missing key raises ObjectNotFound (an ObjectStoreError)."""
    for op in (
        object_store.stat,
        object_store.get,
        object_store.open,
        lambda k: object_store.set_legal_hold(k, True),
    ):
        with pytest.raises(ObjectNotFound) as exc:
            op("calls/missing.webm")
        assert isinstance(exc.value, ObjectStoreError)
        assert exc.value.key == "calls/missing.webm"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "calls/../../etc/passwd",
        "..",
        "calls//x",
        "calls/x/",
        "calls\\x",
        "calls/./x",
        "calls/.hidden",
        "calls/x.webm.meta.json",
    ],
)
def test_bad_keys_are_refused(object_store: ObjectStore, key: str) -> None:
    """Keys that could escape the root or hide as internals are refused before any I/O."""
    with pytest.raises(ValueError):
        object_store.put(key, b"x")
    with pytest.raises(ValueError):
        object_store.stat(key)
    with pytest.raises(ValueError):
        object_store.delete(key)


def test_legal_hold_blocks_delete_until_lifted(object_store: ObjectStore) -> None:
    """An object on legal hold cannot be deleted; lifting the hold allows it."""
    object_store.put(KEY, b"evidence")
    object_store.set_legal_hold(KEY, True)
    assert object_store.stat(KEY).legal_hold is True
    with pytest.raises(ObjectLocked):
        object_store.delete(KEY)
    assert object_store.get(KEY) == b"evidence"
    object_store.set_legal_hold(KEY, False)
    assert object_store.stat(KEY).legal_hold is False
    object_store.delete(KEY)
    assert not object_store.exists(KEY)


def test_retention_blocks_delete(object_store: ObjectStore) -> None:
    """An object retained until later cannot be deleted before then."""
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    object_store.put(KEY, b"evidence", retain_until=until)
    st = object_store.stat(KEY)
    assert st.retain_until == until
    assert st.retention_mode == "GOVERNANCE"
    with pytest.raises(ObjectStoreError):
        object_store.delete(KEY)
    assert object_store.get(KEY) == b"evidence"


def test_put_onto_retained_key_is_refused(object_store: ObjectStore) -> None:
    """A retained object is not replaced by a new write (S3 would hide it under a new
    version); the stored bytes stay as they were."""
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    object_store.put(KEY, b"evidence", retain_until=until)
    with pytest.raises(ObjectLocked, match="retained until"):
        object_store.put(KEY, b"forgery")
    with pytest.raises(ObjectLocked):
        object_store.put(KEY, io.BytesIO(b"forgery"))
    assert object_store.get(KEY) == b"evidence"
    assert object_store.stat(KEY).sha256 == hashlib.sha256(b"evidence").hexdigest()


def test_put_onto_key_on_legal_hold_is_refused_until_lifted(object_store: ObjectStore) -> None:
    """A legal hold refuses replacement too; once lifted, the key can be written again."""
    object_store.put(KEY, b"evidence")
    object_store.set_legal_hold(KEY, True)
    with pytest.raises(ObjectLocked, match="legal hold"):
        object_store.put(KEY, b"forgery")
    assert object_store.get(KEY) == b"evidence"
    object_store.set_legal_hold(KEY, False)
    object_store.put(KEY, b"second")
    assert object_store.get(KEY) == b"second"


def test_put_onto_unlocked_key_replaces_it(object_store: ObjectStore) -> None:
    """Without retention or hold, a second put replaces the object and its hash."""
    object_store.put(KEY, b"first")
    info = object_store.put(KEY, b"second")
    assert object_store.get(KEY) == b"second"
    assert info.sha256 == hashlib.sha256(b"second").hexdigest()


def test_put_file_stores_the_file_with_the_callers_hash(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    """The uploader's path: a closed local file stored as is, its hash the caller's digest;
    the source file stays untouched and the stored bytes read back equal."""
    data = os.urandom(300_000)
    src = tmp_path / "spooled.webm"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    info = object_store.put_file(KEY, src, len(data), sha256=digest, content_type="video/webm")
    assert (info.key, info.size, info.sha256, info.content_type) == (
        KEY,
        len(data),
        digest,
        "video/webm",
    )
    assert object_store.get(KEY) == data
    assert src.read_bytes() == data
    src.unlink()  # the spool lets its copy go: the object stays
    assert object_store.get(KEY) == data


def test_put_file_with_retention_locks_the_object_at_once(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    """Where the store keeps the file itself (local), the uploader gives the retention with
    the put; every store then holds the object locked, with its hash."""
    src = tmp_path / "spooled.webm"
    src.write_bytes(b"evidence")
    digest = hashlib.sha256(b"evidence").hexdigest()
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    info = object_store.put_file(KEY, src, 8, sha256=digest, retain_until=until)
    assert (info.size, info.sha256, info.retain_until, info.retention_mode) == (
        8,
        digest,
        until,
        "GOVERNANCE",
    )
    assert object_store.stat(KEY).retain_until == until
    with pytest.raises(ObjectLocked):
        object_store.delete(KEY)
    assert object_store.get(KEY) == b"evidence"
    assert object_store.stores_files_in_place is isinstance(object_store, LocalObjectStore)


def test_put_file_onto_a_retained_key_is_refused(object_store: ObjectStore, tmp_path: Path) -> None:
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    object_store.put(KEY, b"evidence", retain_until=until)
    forgery = tmp_path / "forgery"
    forgery.write_bytes(b"forgery")
    with pytest.raises(ObjectLocked):
        object_store.put_file(KEY, forgery, 7, sha256=hashlib.sha256(b"forgery").hexdigest())
    assert object_store.get(KEY) == b"evidence"


def test_set_retention_after_the_write(object_store: ObjectStore) -> None:
    """Retention set on a stored object locks it; it may be extended, never shortened."""
    object_store.put(KEY, b"evidence")
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    object_store.set_retention(KEY, until)
    st = object_store.stat(KEY)
    assert (st.retain_until, st.retention_mode) == (until, "GOVERNANCE")
    with pytest.raises(ObjectLocked):
        object_store.delete(KEY)
    with pytest.raises(ObjectLocked):
        object_store.put(KEY, b"forgery")
    with pytest.raises(ObjectLocked, match="shortened"):
        object_store.set_retention(KEY, until - timedelta(minutes=30))
    later = until + timedelta(hours=1)
    object_store.set_retention(KEY, later)
    assert object_store.stat(KEY).retain_until == later
    assert object_store.get(KEY) == b"evidence"


def test_compliance_retention_cannot_be_weakened(object_store: ObjectStore) -> None:
    """COMPLIANCE retention cannot be turned into GOVERNANCE, even with a later date."""
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    object_store.put(KEY, b"evidence", retain_until=until, mode="COMPLIANCE")
    with pytest.raises(ObjectLocked, match="weakened"):
        object_store.set_retention(KEY, until + timedelta(hours=1), mode="GOVERNANCE")
    assert object_store.stat(KEY).retention_mode == "COMPLIANCE"


def test_set_retention_checks_its_arguments(object_store: ObjectStore) -> None:
    """A missing key is ObjectNotFound; a naive date or an unknown mode is refused."""
    until = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ObjectNotFound):
        object_store.set_retention("calls/missing.webm", until)
    object_store.put(KEY, b"x")
    with pytest.raises(ValueError):
        object_store.set_retention(KEY, datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        object_store.set_retention(KEY, until, mode="forever")
    assert object_store.stat(KEY).retain_until is None


def test_retention_arguments_are_checked(object_store: ObjectStore) -> None:
    """A naive retain_until or an unknown mode is refused."""
    with pytest.raises(ValueError):
        object_store.put(KEY, b"x", retain_until=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        object_store.put(KEY, b"x", retain_until=datetime(2030, 1, 1, tzinfo=UTC), mode="forever")


def test_presigned_get(object_store: ObjectStore) -> None:
    """S3 gives a link a browser can fetch with a Range (206); the local store gives None."""
    data = b"0123456789" * 100
    object_store.put(KEY, data)
    url = object_store.presigned_get(KEY, 60)
    if isinstance(object_store, LocalObjectStore):
        assert url is None
        return
    assert isinstance(object_store, S3ObjectStore) and url is not None
    scheme = "https" if object_store.ca_file else "http"
    assert url.startswith(f"{scheme}://127.0.0.1:")
    context = ssl.create_default_context(cafile=object_store.ca_file)
    req = urllib.request.Request(url, headers={"Range": "bytes=10-29"})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        assert resp.status == 206
        assert resp.read() == data[10:30]


# Local-only behaviour


def test_local_files_and_sidecar_layout(tmp_path: Path) -> None:
    """Objects are plain files under root with a JSON sidecar; no temp files remain."""
    store = LocalObjectStore(tmp_path)
    store.put(KEY, b"abc")
    path = tmp_path / KEY
    assert path.read_bytes() == b"abc"
    assert (tmp_path / (KEY + ".meta.json")).is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["000001.webm", "000001.webm.meta.json"]


def test_local_put_file_links_on_one_file_system_and_copies_across(
    tmp_path: Path,
) -> None:
    """On the store's file system the object is a hard link to the (durable) spool file, so
    no bytes are written again; from another file system (/dev/shm is its own tmpfs) the
    bytes are copied. Either way only the object and its sidecar remain."""
    store = LocalObjectStore(tmp_path / "objects")
    src = tmp_path / "spooled"
    src.write_bytes(b"segment bytes")
    digest = hashlib.sha256(b"segment bytes").hexdigest()
    store.put_file(KEY, src, 13, sha256=digest)
    assert os.path.samefile(src, tmp_path / "objects" / KEY)
    other = Path("/dev/shm") / f"put-file-{os.getpid()}"
    other.write_bytes(b"other bytes")
    try:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        key2 = KEY.replace("000001", "000002")
        info = store.put_file(key2, other, 11, sha256=hashlib.sha256(b"other bytes").hexdigest())
        assert info.size == 11 and store.get(key2) == b"other bytes"
        assert not os.path.samefile(other, tmp_path / "objects" / key2)
    finally:
        other.unlink()
    names = sorted(p.name for p in (tmp_path / "objects" / KEY).parent.iterdir())
    assert names == [
        "000001.webm",
        "000001.webm.meta.json",
        "000002.webm",
        "000002.webm.meta.json",
    ]


def test_local_put_file_copied_across_file_systems_is_checked_against_its_digest(
    tmp_path: Path,
) -> None:
    """A copy (no hard link possible) is stored only if it hashes to the caller's digest:
    the object is the spool's bytes even when it is not the spool's file."""
    store = LocalObjectStore(tmp_path / "objects")
    other = Path("/dev/shm") / f"put-file-checked-{os.getpid()}"
    other.write_bytes(b"changed since its commit")
    try:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev  # no hard link possible
        with pytest.raises(ObjectStoreError, match="expected 24") as err:
            store.put_file(KEY, other, 24, sha256=hashlib.sha256(b"committed").hexdigest())
        assert err.value.code == "IntegrityError"
    finally:
        other.unlink()
    assert not store.exists(KEY)
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []


def test_local_put_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    src = tmp_path / "spooled"
    src.write_bytes(b"abc")
    with pytest.raises(ObjectStoreError, match="not 10 bytes"):
        store.put_file(KEY, src, 10, sha256="0" * 64)
    assert not store.exists(KEY)
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []


def test_local_retention_expires(tmp_path: Path) -> None:
    """Once the retention date passes, the object can be deleted; until then not replaced."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    store = LocalObjectStore(tmp_path, clock=lambda: now)
    store.put(KEY, b"v1", retain_until=now + timedelta(days=1), mode="COMPLIANCE")
    assert store.stat(KEY).retention_mode == "COMPLIANCE"
    with pytest.raises(ObjectLocked):
        store.put(KEY, b"v2")
    with pytest.raises(ObjectLocked):
        store.delete(KEY)
    now += timedelta(days=2)
    store.delete(KEY)
    assert not store.exists(KEY)
    assert list(tmp_path.iterdir()) == []


def test_local_short_stream_is_refused(tmp_path: Path) -> None:
    """A stream shorter than its declared length leaves nothing behind."""
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ObjectStoreError):
        store.put(KEY, io.BytesIO(b"abc"), 10)
    assert not store.exists(KEY)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# S3-only behaviour


def test_s3_unreachable_endpoint_fails_fast() -> None:
    """A closed port gives ObjectStoreError('storage unreachable') within seconds."""
    endpoint = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ObjectStoreError, match="storage unreachable") as exc:
        S3ObjectStore(endpoint, "ak", "super-secret-key", "bucket", secure=False, retries=0)
    assert "super-secret-key" not in str(exc.value)
    store = S3ObjectStore(
        endpoint, "ak", "other-secret", "bucket", secure=False, create_bucket=False, timeout_s=1
    )
    with pytest.raises(ObjectStoreError, match="storage unreachable"):
        store.put(KEY, b"x")
    with pytest.raises(ObjectStoreError, match="storage unreachable"):
        store.stat(KEY)
    assert time.monotonic() - started < 10
    assert "other-secret" not in repr(store)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port that never answers a connection: its listen queue is full, so the kernel
    drops new SYNs, as a firewall dropping packets or a vanished host would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    host, port = server.getsockname()
    filler = socket.create_connection((host, port), timeout=5)  # fills the queue
    try:
        yield f"{host}:{port}"
    finally:
        filler.close()
        server.close()


def test_a_silent_s3_endpoint_is_noticed_at_the_connect_timeout(
    silent_endpoint: str, tmp_path: Path
) -> None:
    """The service's store (as `make_object_store` builds it from the settings) gives up
    connecting after `s3_connect_timeout_s`, whatever the read timeout: an outage shows in
    seconds, not minutes."""
    settings = fast_settings(
        tmp_path,
        s3_endpoint=silent_endpoint,
        s3_secure=False,
        s3_connect_timeout_s=0.3,
        s3_read_timeout_s=600.0,
    )
    started = time.monotonic()
    store = make_object_store(settings)  # the bucket check fails; the service starts anyway
    with pytest.raises(ObjectStoreError, match="storage unreachable"):
        store.stat(KEY)
    assert time.monotonic() - started < 30  # 600 s if the read timeout applied


def test_s3_retention_needs_object_lock(moto_endpoint: str) -> None:
    """Asking to retain in a bucket without Object Lock fails before anything is written."""
    store = make_s3_store(moto_endpoint, object_lock=False)
    assert store.object_lock is False
    with pytest.raises(ObjectStoreError, match="no object lock"):
        store.put(KEY, b"x", retain_until=datetime.now(UTC) + timedelta(hours=1))
    assert not store.exists(KEY)
    store.put(KEY, b"x")
    store.delete(KEY)
    assert not store.exists(KEY)


def test_s3_compliance_retention_on_request(moto_endpoint: str) -> None:
    """COMPLIANCE mode is used only when asked for, and the server refuses deletion too."""
    store = make_s3_store(moto_endpoint)
    until = datetime.now(UTC) + timedelta(hours=1)
    store.put(KEY, b"evidence", retain_until=until, mode="COMPLIANCE")
    assert store.stat(KEY).retention_mode == "COMPLIANCE"
    with pytest.raises(ObjectLocked):
        store.delete(KEY)


def test_local_put_after_retention_expired(tmp_path: Path) -> None:
    """Once retention has passed, the key may be written again."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    store = LocalObjectStore(tmp_path, clock=lambda: now)
    store.put(KEY, b"v1", retain_until=now + timedelta(days=1))
    now += timedelta(days=2)
    store.put(KEY, b"v2")
    assert store.get(KEY) == b"v2"


def test_s3_tls_needs_the_right_ca(moto_tls: S3Server) -> None:
    """Over HTTPS the server's certificate is checked: without its CA the store refuses to
    talk (no silent fallback to an unverified connection); with it, Object Lock works."""
    assert moto_tls.ca_file is not None
    with pytest.raises(ObjectStoreError, match="storage unreachable") as exc:
        S3ObjectStore(moto_tls.endpoint, "ak", "sk", "bucket-x", secure=True, retries=0)
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
    store = make_s3_store(moto_tls.endpoint, ca_file=moto_tls.ca_file)
    assert store.object_lock is True
    assert store.presigned_get(KEY, 60) is not None
