"""Ed25519 signing keys of the evidence chain, and the set of keys a checker trusts.

The key directory holds `<key_id>.key` (PKCS8 PEM, mode 0600; directory 0700) per key and
`keys.json`, the registry of every key's public half and validity. Exactly one key is
current; rotating retires it, and it stays valid for what it signed while current. The
registry is re-read whenever it changes on disk, so a rotation by another process
(`mediation keys rotate`) takes effect at the next signature instead of leaving the server
signing with a retired key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recorder import evidence
from recorder.chain_writer import write_atomic
from recorder.segmenter import RecorderError

__all__ = [
    "KeyRing",
    "KeyRingError",
    "PublicKeyInfo",
    "TrustedKey",
    "TrustedKeys",
    "key_id_of",
    "public_pem",
]

logger = logging.getLogger(__name__)

REGISTRY = "keys.json"
LOCK_FILE = ".keys.lock"
DIR_MODE = 0o700
KEY_MODE = 0o600


class KeyRingError(RecorderError):
    """The key directory is unusable (a bad registry, a missing or wrong private key)."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of the SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM text (what `openssl pkeyutl -pubin` reads)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_pem(data: bytes | str, source: str = "PEM") -> Ed25519PublicKey:
    """An Ed25519 public key from SubjectPublicKeyInfo PEM; anything else is KeyRingError."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as err:
        raise KeyRingError(f"{source}: not a PEM public key ({err})") from err
    if not isinstance(key, Ed25519PublicKey):
        raise KeyRingError(f"{source}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class PublicKeyInfo:
    """One key as published: its id, public PEM, and when it was current."""

    key_id: str
    public_pem: str
    created_utc: str
    retired_utc: str | None = None

    def __post_init__(self) -> None:
        evidence.parse_utc(self.created_utc)
        if self.retired_utc is not None:
            evidence.parse_utc(self.retired_utc)
        if key_id_of(self.public_key()) != self.key_id:
            raise KeyRingError(f"key {self.key_id}: its public key has another id")

    def public_key(self) -> Ed25519PublicKey:
        return load_public_pem(self.public_pem, f"key {self.key_id}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_pem": self.public_pem,
            "created_utc": self.created_utc,
            "retired_utc": self.retired_utc,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublicKeyInfo:
        try:
            return cls(
                key_id=str(data["key_id"]),
                public_pem=str(data["public_pem"]),
                created_utc=str(data["created_utc"]),
                retired_utc=None if data.get("retired_utc") is None else str(data["retired_utc"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise KeyRingError(f"bad key registry entry: {err}") from err


class TrustedKey(NamedTuple):
    """A trusted public key and the span (inclusive, None = unbounded) it may sign in."""

    public_key: Ed25519PublicKey
    valid_from: datetime | None
    valid_until: datetime | None


class TrustedKeys(Mapping[str, TrustedKey]):
    """The keys a checker accepts signatures from, by key id.

    Only what the caller chooses to trust: the server's own registry, or PEM files given on
    the command line. A key that merely travels inside an export bundle is not in here.
    """

    def __init__(self, keys: Mapping[str, TrustedKey] | None = None) -> None:
        self._keys = dict(keys or {})

    def __getitem__(self, key_id: str) -> TrustedKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({sorted(self._keys)})"

    @classmethod
    def from_registry(cls, infos: Iterable[PublicKeyInfo]) -> TrustedKeys:
        """Each key valid from its creation until its retirement (if retired)."""
        return cls(
            {
                info.key_id: TrustedKey(
                    info.public_key(),
                    evidence.parse_utc(info.created_utc),
                    None if info.retired_utc is None else evidence.parse_utc(info.retired_utc),
                )
                for info in infos
            }
        )

    @classmethod
    def from_pem_files(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedKeys:
        """Keys from public PEM files, ids derived from the keys themselves, never expiring."""
        keys = {}
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise KeyRingError(f"cannot read trusted key {path}: {err}") from err
            key = load_public_pem(data, str(path))
            keys[key_id_of(key)] = TrustedKey(key, None, None)
        return cls(keys)

    @classmethod
    def from_registry_file(cls, path: str | os.PathLike[str]) -> TrustedKeys:
        """Keys with their validity from a JSON list like `keys.json` or `GET /api/keys`."""
        try:
            raw = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as err:
            raise KeyRingError(f"cannot read trusted keys {path}: {err}") from err
        if isinstance(raw, dict) and isinstance(raw.get("keys"), list):
            raw = raw["keys"]
        if not isinstance(raw, list):
            raise KeyRingError(f"{path}: not a list of keys")
        return cls.from_registry(PublicKeyInfo.from_dict(entry) for entry in raw)

    def merged(self, other: Mapping[str, TrustedKey]) -> TrustedKeys:
        """Both sets; for a key in both, `other`'s validity wins."""
        return TrustedKeys({**self._keys, **other})

    def check(self, key_id: Any, data: bytes, signature: bytes, utc: Any) -> str | None:
        """Why the signature over `data`, dated `utc`, is not acceptable; None if it is."""
        trusted = self._keys.get(key_id) if isinstance(key_id, str) else None
        if trusted is None:
            return f"signed by key {key_id!r}, which is not trusted"
        try:
            trusted.public_key.verify(signature, data)
        except InvalidSignature:
            return f"signature does not verify with key {key_id}"
        try:
            when = evidence.parse_utc(utc)
        except ValueError:
            return f"signature time {utc!r} is not a UTC time"
        if trusted.valid_from is not None and when < trusted.valid_from:
            return f"signed at {utc}, before key {key_id} was created ({_iso(trusted.valid_from)})"
        if trusted.valid_until is not None and when > trusted.valid_until:
            return f"signed at {utc}, after key {key_id} was retired ({_iso(trusted.valid_until)})"
        return None


def _iso(when: datetime) -> str:
    return evidence.utc_iso(when)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Current(NamedTuple):
    key_id: str
    private_key: Ed25519PrivateKey


class KeyRing:
    """The server's signing keys in `directory`, generated on first use."""

    def __init__(self, directory: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._lock = threading.Lock()
        self._registry: list[PublicKeyInfo] = []
        self._current: _Current | None = None
        self._stamp: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"KeyRing({str(self.directory)!r})"

    @property
    def current_key_id(self) -> str:
        with self._lock:
            return self._fresh().key_id

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """(key id, 64-byte Ed25519 signature over exactly `data`) with the current key."""
        with self._lock:
            current = self._fresh()
            return current.key_id, current.private_key.sign(data)

    def public_keys(self) -> list[PublicKeyInfo]:
        """Every key, current and retired, oldest first."""
        with self._lock:
            self._fresh()
            return list(self._registry)

    def trusted(self) -> TrustedKeys:
        """This ring's keys as a trusted set, each within its validity."""
        return TrustedKeys.from_registry(self.public_keys())

    def rotate(self) -> str:
        """Make a new key current and retire the old one now; returns the new key id."""
        with self._lock, self._file_lock():
            self._stamp = None
            old = self._fresh_locked()
            now = evidence.utc_iso(self._clock())
            new = self._generate(now)
            registry = [
                PublicKeyInfo(i.key_id, i.public_pem, i.created_utc, now)
                if i.key_id == old.key_id
                else i
                for i in self._registry
            ]
            self._write_registry([*registry, new[0]])
            self._load()
            logger.info("signing key rotated: %s -> %s", old.key_id, new[0].key_id)
            return new[0].key_id

    # -- loading and generating ----------------------------------------------------------

    def _registry_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.directory / REGISTRY).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _fresh(self) -> _Current:
        """The current key, re-reading the registry if it changed on disk (lock held)."""
        if self._current is not None and self._registry_stamp() == self._stamp:
            return self._current
        with self._file_lock():
            return self._fresh_locked()

    def _fresh_locked(self) -> _Current:
        if self._registry_stamp() is None:
            now = evidence.utc_iso(self._clock())
            info, _ = self._generate(now)
            self._write_registry([info])
            logger.info("signing key generated: %s in %s", info.key_id, self.directory)
        if self._current is None or self._registry_stamp() != self._stamp:
            self._load()
        assert self._current is not None
        return self._current

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialize generation and rotation with other processes sharing the directory."""
        self._ensure_directory()
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, KEY_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_directory(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode != DIR_MODE:
            logger.warning("key directory %s had mode %o: set to 700", self.directory, mode)
            os.chmod(self.directory, DIR_MODE)

    def _generate(self, now: str) -> tuple[PublicKeyInfo, Ed25519PrivateKey]:
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        info = PublicKeyInfo(key_id_of(public), public_pem(public), now, None)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self._key_path(info.key_id), pem, mode=KEY_MODE)
        return info, private

    def _key_path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.key"

    def _write_registry(self, infos: list[PublicKeyInfo]) -> None:
        data = json.dumps([i.to_dict() for i in infos], indent=2).encode("utf-8") + b"\n"
        write_atomic(self.directory / REGISTRY, data, mode=KEY_MODE)

    def _load(self) -> None:
        path = self.directory / REGISTRY
        stamp = self._registry_stamp()
        try:
            raw = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as err:
            raise KeyRingError(f"cannot read key registry {path}: {err}") from err
        if not isinstance(raw, list):
            raise KeyRingError(f"key registry {path} is not a list")
        registry = [PublicKeyInfo.from_dict(entry) for entry in raw]
        current = [i for i in registry if i.retired_utc is None]
        if len(current) != 1:
            raise KeyRingError(f"key registry {path} has {len(current)} current keys, not 1")
        self._registry, self._stamp = registry, stamp
        self._current = _Current(current[0].key_id, self._load_private(current[0]))

    def _load_private(self, info: PublicKeyInfo) -> Ed25519PrivateKey:
        path = self._key_path(info.key_id)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                logger.warning("key file %s had mode %o: set to 600", path, mode)
                os.chmod(path, KEY_MODE)
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as err:
            raise KeyRingError(f"cannot load private key {path}: {err}") from err
        if not isinstance(key, Ed25519PrivateKey) or key_id_of(key.public_key()) != info.key_id:
            raise KeyRingError(f"private key {path} is not the key {info.key_id}")
        return key
