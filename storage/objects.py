"""Object stores: recordings and other blobs, on a local directory or an S3 server (MinIO).

Both stores hash what they write (SHA-256, kept with the object) because S3 servers may not
check checksums; retention and legal hold refuse deletion and replacement while they hold.
Retention can also be set after the write (`set_retention`), so a writer can read an object
back and replace it if it arrived damaged before locking it for years.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE, REPLACE, CopySource
from minio.error import MinioException, S3Error
from minio.helpers import ObjectWriteResult
from minio.retention import Retention

from .errors import ObjectLocked, ObjectNotFound, ObjectStoreError

__all__ = [
    "CHUNK_SIZE",
    "PART_SIZE",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "validate_key",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
PART_SIZE = 10 * 1024 * 1024
RETENTION_MODES = (GOVERNANCE, COMPLIANCE)
SIDECAR_SUFFIX = ".meta.json"
MAX_KEY_BYTES = 1024
_HEX = frozenset("0123456789abcdef")

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    sha256: str | None = None
    last_modified: datetime | None = None
    content_type: str = "application/octet-stream"
    retain_until: datetime | None = None
    retention_mode: str | None = None
    legal_hold: bool = False
    version_id: str | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"negative size: {self.size}")
        if self.sha256 is not None and (len(self.sha256) != 64 or set(self.sha256) - _HEX):
            raise ValueError(f"not a sha256 hex digest: {self.sha256!r}")
        if self.retain_until is not None and self.retain_until.tzinfo is None:
            raise ValueError("retain_until must be timezone-aware")

    def locked(self, now: datetime) -> str | None:
        """Why the object cannot be deleted at `now`, or None if it can."""
        if self.legal_hold:
            return "legal hold"
        if self.retain_until is not None and self.retain_until > now:
            return f"retained until {self.retain_until.isoformat()}"
        return None


class ObjectStore(Protocol):
    # True when put_file stores the very file it is given (the local store's hard link, or
    # a copy checked against `sha256` before it is stored): the caller that checked the file
    # need not read the object back, and may give its retention to put_file.
    stores_files_in_place: bool

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo: ...
    def put_file(
        self,
        key: str,
        path: Path,
        size: int,
        *,
        sha256: str,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo:
        """Store a closed, durable local file (the spool's) as `key`. `sha256` is the
        caller's digest of it, kept as the object's hash as given: unless the store
        `stores_files_in_place`, the caller proves the stored bytes by reading them back
        (and sets retention only then)."""
        ...

    def stat(self, key: str) -> ObjectInfo: ...
    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes: ...
    def open(self, key: str) -> Iterator[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def set_retention(self, key: str, retain_until: datetime, mode: str = GOVERNANCE) -> None: ...
    def set_legal_hold(self, key: str, on: bool) -> None: ...
    def presigned_get(self, key: str, expires_s: int) -> str | None: ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError("empty object key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError("object key too long")
    if "\\" in key or "\x00" in key or key.startswith("/"):
        raise ValueError(f"bad object key: {key!r}")
    for part in key.split("/"):
        # Empty parts, "." and ".." and hidden names (our temp files) are all refused.
        if not part or part.startswith("."):
            raise ValueError(f"bad object key: {key!r}")
    if key.endswith(SIDECAR_SUFFIX):
        raise ValueError(f"object key uses the reserved suffix {SIDECAR_SUFFIX}: {key!r}")
    return key


def _check_put_args(retain_until: datetime | None, mode: str, length: int | None) -> None:
    if mode not in RETENTION_MODES:
        raise ValueError(f"retention mode must be one of {RETENTION_MODES}, not {mode!r}")
    if retain_until is not None and retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    if length is not None and length < 0:
        raise ValueError(f"negative length: {length}")


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"bad range: offset={offset} length={length}")


def _check_retention_change(
    info: ObjectInfo, retain_until: datetime, mode: str, now: datetime
) -> None:
    """Refuse what Object Lock refuses: shortening an active retention, or weakening it
    from COMPLIANCE to GOVERNANCE (an expired retention may be replaced freely)."""
    if info.retain_until is None or info.retain_until <= now:
        return
    if retain_until < info.retain_until:
        raise ObjectLocked(
            info.key, f"retention until {info.retain_until.isoformat()} cannot be shortened"
        )
    if info.retention_mode == COMPLIANCE and mode != COMPLIANCE:
        raise ObjectLocked(info.key, "COMPLIANCE retention cannot be weakened")


class _HashingReader:
    """Wraps a stream; hashes and counts the bytes read through it (at most `limit`)."""

    def __init__(self, stream: BinaryIO, limit: int | None = None) -> None:
        self._stream = stream
        self._left = limit
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        if self._left is not None:
            size = self._left if size < 0 else min(size, self._left)
            if size == 0:
                return b""
        data = self._stream.read(size)
        self.hash.update(data)
        self.size += len(data)
        if self._left is not None:
            self._left -= len(data)
        return data


def _as_stream(data: bytes | BinaryIO, length: int | None) -> tuple[BinaryIO, int | None]:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if length is not None and length != len(raw):
            raise ValueError(f"length {length} does not match data of {len(raw)} bytes")
        return io.BytesIO(raw), len(raw)
    return data, length


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Local directory


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, name: str, chunks: Iterator[bytes]) -> Path:
    """Write chunks to a hidden temp file in `directory`, fsynced; return its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


class LocalObjectStore:
    """Objects as files under `root`; metadata in a JSON sidecar `<file>.meta.json`."""

    stores_files_in_place = True

    def __init__(self, root: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(path.name + SIDECAR_SUFFIX)

    def _read_meta(self, path: Path) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads(self._sidecar(path).read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return meta

    def _write_meta(self, path: Path, meta: dict[str, Any]) -> None:
        data = json.dumps(meta, sort_keys=True).encode()
        tmp = _write_temp(path.parent, path.name + SIDECAR_SUFFIX, iter([data]))
        os.replace(tmp, self._sidecar(path))
        _fsync_dir(path.parent)

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo:
        path = self._path(key)
        _check_put_args(retain_until, mode, length)
        stream, length = _as_stream(data, length)
        if path.exists():
            self._refuse_if_locked(key, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = _HashingReader(stream, length)
        try:
            tmp = _write_temp(path.parent, path.name, iter(lambda: reader.read(CHUNK_SIZE), b""))
        except OSError as err:
            raise ObjectStoreError(f"cannot write {key}: {err}", key=key) from err
        if length is not None and reader.size != length:
            tmp.unlink()
            raise ObjectStoreError(f"{key}: stream ended after {reader.size} of {length} bytes")
        sha256 = reader.hash.hexdigest()
        meta = {
            "sha256": sha256,
            "size": reader.size,
            "content_type": content_type,
            "retain_until": retain_until.isoformat() if retain_until else None,
            "retention_mode": mode if retain_until else None,
            "legal_hold": False,
        }
        meta_tmp = _write_temp(
            path.parent, path.name + SIDECAR_SUFFIX, iter([json.dumps(meta).encode()])
        )
        # Old sidecar goes first: a crash in between leaves no metadata, never wrong metadata.
        self._sidecar(path).unlink(missing_ok=True)
        os.replace(tmp, path)
        os.replace(meta_tmp, self._sidecar(path))
        _fsync_dir(path.parent)
        return self.stat(key)

    def put_file(
        self,
        key: str,
        path: Path,
        size: int,
        *,
        sha256: str,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo:
        """The file itself: a hard link where the file system allows, else a copy checked
        against `sha256` before it is stored. A linked file is neither rewritten nor
        rehashed (the caller checked it), and its metadata, retention included, costs one
        sidecar write: two fsyncs in all (bench/recorder_thread.py: the uploader's
        filesystem work was most of its CPU)."""
        _check_put_args(retain_until, mode, size)
        target = self._path(key)
        if target.exists():
            self._refuse_if_locked(key, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            os.link(path, tmp)
        except OSError:  # another file system, or links not allowed: copy it
            tmp = self._copy_checked(key, path, target, size, sha256)
        try:
            st = tmp.stat()
            if st.st_size != size:
                raise ObjectStoreError(f"{key}: the file is not {size} bytes", key=key)
            meta = {
                "sha256": sha256,
                "size": size,
                "content_type": content_type,
                "retain_until": retain_until.isoformat() if retain_until else None,
                "retention_mode": mode if retain_until else None,
                "legal_hold": False,
            }
            meta_tmp = _write_temp(
                target.parent, target.name + SIDECAR_SUFFIX, iter([json.dumps(meta).encode()])
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sidecar(target).unlink(missing_ok=True)
        os.replace(tmp, target)
        os.replace(meta_tmp, self._sidecar(target))
        _fsync_dir(target.parent)
        return self._info(key, st, meta)

    @staticmethod
    def _copy_checked(key: str, src: Path, target: Path, size: int, sha256: str) -> Path:
        """A durable temp copy of `src` beside `target`, refused unless it is `size` bytes
        hashing to `sha256`."""
        try:
            with open(src, "rb") as f:
                reader = _HashingReader(f)
                tmp = _write_temp(
                    target.parent, target.name, iter(lambda: reader.read(CHUNK_SIZE), b"")
                )
        except OSError as err:
            raise ObjectStoreError(f"cannot write {key}: {err}", key=key) from err
        if (reader.size, reader.hash.hexdigest()) != (size, sha256):
            tmp.unlink()
            raise ObjectStoreError(
                f"{key}: the file read {reader.size} bytes / sha256 "
                f"{reader.hash.hexdigest()}, expected {size} / {sha256}",
                code="IntegrityError",
                key=key,
            )
        return tmp

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError as err:
            raise ObjectNotFound(key) from err
        return self._info(key, st, self._read_meta(path))

    @staticmethod
    def _info(key: str, st: os.stat_result, meta: dict[str, Any]) -> ObjectInfo:
        retain_until = meta.get("retain_until")
        return ObjectInfo(
            key=key,
            size=st.st_size,
            sha256=meta.get("sha256"),
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            content_type=meta.get("content_type") or "application/octet-stream",
            retain_until=datetime.fromisoformat(retain_until) if retain_until else None,
            retention_mode=meta.get("retention_mode"),
            legal_hold=bool(meta.get("legal_hold", False)),
        )

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        _check_range(offset, length)
        path = self._path(key)
        try:
            with path.open("rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError as err:
            raise ObjectNotFound(key) from err

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            f = path.open("rb")
        except FileNotFoundError as err:
            raise ObjectNotFound(key) from err
        return self._chunks(f)

    @staticmethod
    def _chunks(f: BinaryIO) -> Iterator[bytes]:
        with f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames.clear()
                continue
            for name in filenames:
                key = base + name
                if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                    continue
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def _refuse_if_locked(self, key: str, path: Path) -> None:
        reason = self.stat(key).locked(self._clock())
        if reason:
            raise ObjectLocked(key, reason)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not path.exists():
            raise ObjectNotFound(key)
        self._refuse_if_locked(key, path)
        path.unlink()
        self._sidecar(path).unlink(missing_ok=True)
        _fsync_dir(path.parent)
        parent = path.parent
        while parent != self.root:  # prune empty directories, as S3 has none
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def set_retention(self, key: str, retain_until: datetime, mode: str = GOVERNANCE) -> None:
        _check_put_args(retain_until, mode, None)
        path = self._path(key)
        _check_retention_change(self.stat(key), retain_until, mode, self._clock())
        meta = self._read_meta(path)
        meta["retain_until"] = retain_until.isoformat()
        meta["retention_mode"] = mode
        self._write_meta(path, meta)

    def set_legal_hold(self, key: str, on: bool) -> None:
        path = self._path(key)
        if not path.exists():
            raise ObjectNotFound(key)
        meta = self._read_meta(path)
        meta["legal_hold"] = bool(on)
        self._write_meta(path, meta)

    def presigned_get(self, key: str, expires_s: int) -> str | None:
        validate_key(key)
        return None


# --------------------------------------------------------------------------------------------
# S3 (MinIO in production)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class S3ObjectStore:
    """Objects in one bucket of an S3-compatible server, through the `minio` SDK."""

    stores_files_in_place = False  # the server may store other bytes: read them back

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str = "",
        secure: bool = True,
        ca_file: str | None = None,
        object_lock: bool = False,
        create_bucket: bool = True,
        timeout_s: float = 30.0,
        retries: int = 3,
        clock: Callable[[], datetime] = _utcnow,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.ca_file = ca_file
        self._clock = clock
        self._object_lock: bool | None = None
        http = urllib3.PoolManager(
            # A silent endpoint (a firewall dropping packets, a host gone) is noticed by
            # the connect timeout: at 30 s, with the retries, an outage took two minutes
            # to show. `timeout_s` bounds each read (a large part may be slow).
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=timeout_s),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
                raise_on_status=False,  # the last 5xx reaches the SDK, which reports it
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region or None,
            http_client=http,
        )
        if create_bucket:
            self._call(None, lambda: self._ensure_bucket(region, object_lock))

    def __repr__(self) -> str:  # no credentials
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    def _ensure_bucket(self, region: str, object_lock: bool) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=region or None, object_lock=object_lock)
            logger.info("created bucket %s (object lock %s)", self.bucket, object_lock)
        except S3Error as err:
            if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _call(self, key: str | None, fn: Callable[[], T]) -> T:
        """Run one SDK call, mapping its errors to ours."""
        try:
            return fn()
        except S3Error as err:
            if err.code == "NoSuchKey" and key is not None:
                raise ObjectNotFound(key) from err
            raise ObjectStoreError(
                f"S3 {err.code}: {err.message} ({self.bucket}/{key or ''})", code=err.code, key=key
            ) from err
        except urllib3.exceptions.HTTPError as err:
            raise ObjectStoreError(
                f"storage unreachable: {self.endpoint}: {type(err).__name__}: {err}",
                code="unreachable",
                key=key,
            ) from err
        except MinioException as err:
            raise ObjectStoreError(f"S3 error: {err}", key=key) from err

    @property
    def object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once, then cached)."""
        if self._object_lock is None:
            try:
                self._call(None, lambda: self._client.get_object_lock_config(self.bucket))
                self._object_lock = True
            except ObjectStoreError as err:
                if err.code not in ("ObjectLockConfigurationNotFoundError", "NotImplemented"):
                    raise
                self._object_lock = False
        return self._object_lock

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo:
        validate_key(key)
        _check_put_args(retain_until, mode, length)
        if retain_until is not None and not self.object_lock:
            raise ObjectStoreError(
                f"bucket {self.bucket} has no object lock: cannot retain {key}",
                code="NoObjectLock",
                key=key,
            )
        if self.object_lock:
            # A versioned bucket would take the write as a new version and leave the locked
            # one hidden behind it: an evidence key is replaced only when nothing locks it.
            # (Checked, not atomic: the lock itself is what keeps old versions safe.)
            self._refuse_if_locked(key)
        if isinstance(data, bytes | bytearray | memoryview):
            # The hash is known before the upload: one request carries data and hash.
            digest = hashlib.sha256(data).hexdigest()
            stream, length = _as_stream(data, length)
            result = self._upload(key, stream, length, content_type, {"sha256": digest})
            size = length or 0
        else:
            # Stream it, hashing on the way; S3 metadata is fixed at upload, so the hash is
            # added afterwards by a server-side copy onto itself (then the copied-from version,
            # if the bucket keeps versions, is removed). A crash in between leaves no hash.
            reader = _HashingReader(data, length)
            result = self._upload(key, reader, length, content_type, None)
            if length is not None and reader.size != length:
                self._remove(key, result.version_id)
                raise ObjectStoreError(
                    f"{key}: stream ended after {reader.size} of {length} bytes", key=key
                )
            digest, size = reader.hash.hexdigest(), reader.size
            self._call(
                key,
                lambda: self._client.copy_object(
                    self.bucket,
                    key,
                    CopySource(self.bucket, key, version_id=result.version_id),
                    metadata={"sha256": digest, "Content-Type": content_type},
                    metadata_directive=REPLACE,
                ),
            )
            if result.version_id:
                self._remove(key, result.version_id)
        if retain_until is not None:
            retention = Retention(mode, retain_until.astimezone(UTC))
            self._call(key, lambda: self._client.set_object_retention(self.bucket, key, retention))
        info = self.stat(key)
        if info.size != size or info.sha256 != digest:
            raise ObjectStoreError(
                f"{key}: stored {info.size} bytes / sha256 {info.sha256}, sent {size} / {digest}",
                code="IntegrityError",
                key=key,
            )
        return info

    def put_file(
        self,
        key: str,
        path: Path,
        size: int,
        *,
        sha256: str,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        mode: str = GOVERNANCE,
    ) -> ObjectInfo:
        """Streamed from the file in one request that carries the caller's hash. What the
        server stored is only known by reading it back: give retention here only when
        that is not needed."""
        validate_key(key)
        _check_put_args(retain_until, mode, size)
        if self.object_lock:
            self._refuse_if_locked(key)  # as in put
        with open(path, "rb") as f:
            self._upload(key, f, size, content_type, {"sha256": sha256})
        if retain_until is not None:
            self.set_retention(key, retain_until, mode)
        return self.stat(key)

    def _upload(
        self,
        key: str,
        stream: Any,
        length: int | None,
        content_type: str,
        metadata: dict[str, str] | None,
    ) -> ObjectWriteResult:
        return self._call(
            key,
            lambda: self._client.put_object(
                self.bucket,
                key,
                stream,
                length if length is not None else -1,
                content_type=content_type,
                metadata=metadata,  # type: ignore[arg-type]
                part_size=PART_SIZE,
            ),
        )

    def _remove(self, key: str, version_id: str | None) -> None:
        self._call(key, lambda: self._client.remove_object(self.bucket, key, version_id=version_id))

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = self._call(key, lambda: self._client.stat_object(self.bucket, key))
        headers = {k.lower(): v for k, v in (obj.metadata or {}).items()}
        return ObjectInfo(
            key=key,
            size=obj.size or 0,
            sha256=headers.get("x-amz-meta-sha256"),
            last_modified=obj.last_modified,
            content_type=obj.content_type or "application/octet-stream",
            retain_until=_parse_time(headers.get("x-amz-object-lock-retain-until-date")),
            retention_mode=headers.get("x-amz-object-lock-mode"),
            legal_hold=headers.get("x-amz-object-lock-legal-hold", "").upper() == "ON",
            version_id=obj.version_id,
        )

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_key(key)
        _check_range(offset, length)
        if length == 0:
            self.stat(key)
            return b""
        try:
            resp = self._call(
                key,
                lambda: self._client.get_object(
                    self.bucket, key, offset=offset, length=length or 0
                ),
            )
        except ObjectStoreError as err:
            if err.code == "InvalidRange":  # offset at or past the end, as a file read gives
                return b""
            raise
        try:
            return self._call(key, resp.read)
        finally:
            resp.close()
            resp.release_conn()

    def open(self, key: str) -> Iterator[bytes]:
        validate_key(key)
        resp = self._call(key, lambda: self._client.get_object(self.bucket, key))
        return self._chunks(key, resp)

    def _chunks(self, key: str, resp: Any) -> Iterator[bytes]:
        try:
            chunks = resp.stream(CHUNK_SIZE)
            while True:
                chunk = self._call(key, lambda: next(chunks, None))
                if chunk is None:
                    return
                yield chunk
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        objects = self._call(
            None,
            lambda: list(self._client.list_objects(self.bucket, prefix=prefix, recursive=True)),
        )
        return iter([o.object_name for o in objects if o.object_name and not o.is_dir])

    def _refuse_if_locked(self, key: str) -> None:
        try:
            info = self.stat(key)
        except ObjectNotFound:
            return
        reason = info.locked(self._clock())
        if reason:
            raise ObjectLocked(key, reason)

    def delete(self, key: str) -> None:
        info = self.stat(key)
        reason = info.locked(self._clock())
        if reason:
            raise ObjectLocked(key, reason)
        # The current version by id: a plain delete in a versioned bucket would only hide it.
        try:
            self._remove(key, info.version_id)
        except ObjectStoreError as err:
            if err.code == "AccessDenied":  # the server's own lock check
                raise ObjectLocked(key, f"refused by server: {err}") from err
            raise

    def set_retention(self, key: str, retain_until: datetime, mode: str = GOVERNANCE) -> None:
        _check_put_args(retain_until, mode, None)
        info = self.stat(key)
        if not self.object_lock:
            raise ObjectStoreError(
                f"bucket {self.bucket} has no object lock: cannot retain {key}",
                code="NoObjectLock",
                key=key,
            )
        _check_retention_change(info, retain_until, mode, self._clock())
        retention = Retention(mode, retain_until.astimezone(UTC))
        try:
            self._call(key, lambda: self._client.set_object_retention(self.bucket, key, retention))
        except ObjectStoreError as err:
            if err.code == "AccessDenied":  # the server's own lock check
                raise ObjectLocked(key, f"refused by server: {err}") from err
            raise

    def set_legal_hold(self, key: str, on: bool) -> None:
        self.stat(key)  # a missing key is ObjectNotFound (moto answers 500 instead)
        if on:
            self._call(key, lambda: self._client.enable_object_legal_hold(self.bucket, key))
        else:
            self._call(key, lambda: self._client.disable_object_legal_hold(self.bucket, key))

    def presigned_get(self, key: str, expires_s: int) -> str | None:
        validate_key(key)
        return self._call(
            key,
            lambda: self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_s)
            ),
        )
