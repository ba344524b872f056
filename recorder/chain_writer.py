"""The single writer of one call's signed hash chain, into the local spool.

Each link is committed (temp file, fsync, rename, directory fsync) as `.json` and then its
`.sig`, before anything is uploaded: a crash leaves whole links plus at most one torn tail
(a `.json` without its `.sig`), which re-opening moves aside. On disk the path of the file
for object key K is `directory / K`, so the uploader sends files under their own paths.

Synchronous on purpose: the recorder calls it in an executor, one call at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from recorder import evidence
from recorder.files import file_digest, fsync_path, write_atomic
from recorder.segmenter import RecorderError

__all__ = [
    "Appended",
    "ChainClosed",
    "ChainHead",
    "ChainWriter",
    "ChainWriterError",
    "Signer",
    "file_digest",
    "write_atomic",
]

logger = logging.getLogger(__name__)

SIGNATURE_SIZE = 64
TORN_SUFFIX = ".torn"
SIGN_ATTEMPTS = 3


class ChainWriterError(RecorderError):
    """The chain cannot be written or resumed (a damaged spool, a failed write)."""


class ChainClosed(ChainWriterError):
    """The chain already has its manifest: nothing more can be appended."""


class Signer(Protocol):
    """What the writer needs of a key ring (`recorder.keyring.KeyRing` is one)."""

    @property
    def current_key_id(self) -> str: ...

    def sign(self, data: bytes) -> tuple[str, bytes]: ...


class Appended(NamedTuple):
    """A committed link: `(index, hash, keys written)` (the .json key, then the .sig key)."""

    link_index: int
    hash: str
    keys: list[str]


class ChainHead(NamedTuple):
    """The chain so far: `(count, hash of the last link, key of the last link)`.

    An empty chain is `(0, GENESIS, None)`.
    """

    links: int
    hash: str
    last_key: str | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _mkdirs(path: Path) -> None:
    """Create `path` and its missing parents, each new entry made durable in its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new.mkdir()
        fsync_path(new.parent)


def _move_aside(path: Path) -> Path:
    """Rename a torn file to `<name>.torn` (or `.torn2`…, never over an older one)."""
    n = 1
    while True:
        target = path.with_name(path.name + TORN_SUFFIX + (str(n) if n > 1 else ""))
        if not target.exists():
            break
        n += 1
    os.replace(path, target)
    fsync_path(path.parent)
    return target


class ChainWriter:
    """Appends signed links to one call's chain in `directory`, and finally its manifest.

    `resume_from` (count, hash), e.g. the head kept in the database, lets a re-opened writer
    continue when the uploader has already removed the spooled links: the later of it and
    the spool's last complete link wins.
    """

    def __init__(
        self,
        directory: Path,
        call_id: str,
        prefix: str,
        keyring: Signer,
        *,
        clock: Callable[[], datetime] = _utcnow,
        resume_from: tuple[int, str] | None = None,
    ) -> None:
        if evidence.call_id_of(prefix) != call_id:
            raise ValueError(f"prefix {prefix!r} is not the prefix of call {call_id!r}")
        self.directory = Path(directory)
        self.call_id = call_id
        self.prefix = prefix
        self._signer = keyring
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._hash = evidence.GENESIS
        self._segments: int | None = 0
        self._closed = False
        self._broken: BaseException | None = None
        self.torn: list[Path] = []
        """Files moved aside when this writer opened (a crash's torn tail)."""
        self._chain_dir = self.path(evidence.link_key(prefix, 1)).parent
        self._open(resume_from)

    def __repr__(self) -> str:
        return f"ChainWriter({self.call_id!r}, count={self._count}, closed={self._closed})"

    def path(self, key: str) -> Path:
        """The spool file of object key `key`."""
        if not key.startswith(self.prefix):
            raise ValueError(f"{key!r} is not under {self.prefix!r}")
        return self.directory.joinpath(*key.split("/"))

    @property
    def head(self) -> ChainHead:
        with self._lock:
            return self._head()

    def _head(self) -> ChainHead:
        last = evidence.link_key(self.prefix, self._count) if self._count else None
        return ChainHead(self._count, self._hash, last)

    @property
    def closed(self) -> bool:
        """True once the manifest is written."""
        return self._closed

    @property
    def segments(self) -> int | None:
        """Segment links in the chain, or None when the spool no longer holds them all."""
        return self._segments

    # -- re-opening ----------------------------------------------------------------------

    def _open(self, resume_from: tuple[int, str] | None) -> None:
        _mkdirs(self._chain_dir)
        jsons: dict[int, Path] = {}
        sigs: dict[int, Path] = {}
        for entry in self._chain_dir.iterdir():
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp"):
                entry.unlink()  # our own temp file, left by a crash before its rename
                continue
            stem, _, ext = name.partition(".")
            if not stem.isdigit() or len(stem) < evidence.INDEX_DIGITS or int(stem) < 1:
                continue
            if ext == "json":
                jsons[int(stem)] = entry
            elif ext == "sig":
                sigs[int(stem)] = entry
        links = self._tail_links(jsons, sigs)
        if links:
            self._adopt(links)
        if resume_from is not None:
            self._resume(resume_from)
        self._open_manifest()
        if self._count or self.torn:
            logger.info("chain %s re-opened at link %d", self.call_id, self._count)
        for path in self.torn:
            # Never part of the chain (its write was cut short), and deleted with the work
            # folder once the recording is closed: the log keeps what it was.
            size, digest = file_digest(path)
            logger.warning(
                "chain %s: torn file moved aside: %s, %d bytes, sha256 %s",
                self.call_id,
                path.name,
                size,
                digest,
            )

    def _tail_links(self, jsons: dict[int, Path], sigs: dict[int, Path]) -> dict[int, bytes]:
        """The complete links present, after moving a torn tail aside."""
        last = max(jsons, default=0)
        for index in sorted(set(sigs) - set(jsons)):
            if index <= last:
                raise ChainWriterError(f"spool {self._chain_dir}: link {index} has only a .sig")
            self.torn.append(_move_aside(sigs.pop(index)))
        links: dict[int, bytes] = {}
        for index in sorted(jsons):
            data = jsons[index].read_bytes()
            sig = sigs.get(index)
            complete = (
                sig is not None
                and sig.stat().st_size == SIGNATURE_SIZE
                and self._whole_link(data, index)
            )
            if complete:
                links[index] = data
            elif index == last:
                self.torn.append(_move_aside(jsons[index]))
                if sig is not None:
                    self.torn.append(_move_aside(sig))
            else:
                raise ChainWriterError(
                    f"spool {self._chain_dir}: link {index} is incomplete but not the last"
                )
        return links

    def _whole_link(self, data: bytes, index: int) -> bool:
        obj, problems = evidence.parse_link(data)
        return obj is not None and not problems and not evidence.link_problems(obj)

    def _adopt(self, links: dict[int, bytes]) -> None:
        first, last = min(links), max(links)
        if len(links) != last - first + 1:
            missing = sorted(set(range(first, last + 1)) - set(links))
            raise ChainWriterError(f"spool {self._chain_dir}: links {missing} missing")
        check = evidence.check_chain(self.prefix, self.call_id, sorted(links.items()))
        problems = [p for p in check.problems if not self._uploaded_before(p, first)]
        if problems:
            raise ChainWriterError(f"spool chain does not check: {problems[0]}")
        self._count, self._hash = check.count, check.head
        kinds = [check.links[i].get("kind") for i in sorted(check.links)]
        self._segments = kinds.count("segment") if first == 1 else None

    def _uploaded_before(self, problem: evidence.Problem, first: int) -> bool:
        """Whether a problem only says links below `first` are absent (uploaded, removed)."""
        index = evidence.link_index(self.prefix, problem.object_key)
        return index is not None and index < first and problem.reason.startswith("missing")

    def _resume(self, resume_from: tuple[int, str]) -> None:
        count, head = resume_from
        if count < self._count:
            return
        if count == self._count:
            if head != self._hash:
                raise ChainWriterError(
                    f"chain {self.call_id}: link {count} in the spool is not the head given"
                )
            return
        logger.warning(
            "chain %s: spool ends at link %d, resuming after link %d",
            self.call_id,
            self._count,
            count,
        )
        self._count, self._hash, self._segments = count, head, None

    def _open_manifest(self) -> None:
        doc = self.path(evidence.manifest_key(self.prefix))
        sig = self.path(evidence.signature_key(evidence.manifest_key(self.prefix)))
        if not doc.exists():
            if sig.exists():
                self.torn.append(_move_aside(sig))
            return
        obj, problems = evidence.parse_link(doc.read_bytes())
        whole = obj is not None and not problems and not evidence.manifest_problems(obj)
        if whole and sig.exists() and sig.stat().st_size == SIGNATURE_SIZE:
            self._closed = True
            return
        self.torn.append(_move_aside(doc))
        if sig.exists():
            self.torn.append(_move_aside(sig))

    # -- appending -----------------------------------------------------------------------

    def digest(self, key: str) -> tuple[int, str]:
        """(size, SHA-256) of the spooled file of object `key`."""
        return file_digest(self.path(key))

    def append_segment(
        self,
        participant: str,
        object_key: str,
        *,
        start_utc: int | datetime | str,
        end_utc: int | datetime | str,
        first_pts_ms: int,
        last_pts_ms: int,
        gaps: Sequence[Mapping[str, Any]] = (),
        size: int | None = None,
        sha256: str | None = None,
    ) -> Appended:
        """Link a closed, fsynced segment file.

        Give `size` and `sha256` when the caller hashed the file after closing it; without
        them the spooled file (`directory / object_key`) is read and hashed here.
        """
        parsed = evidence.parse_segment_key(self.prefix, object_key)
        if parsed is None or parsed[0] != participant:
            raise ValueError(f"{object_key!r} is not a segment key of {participant!r}")
        if size is None or sha256 is None:
            try:
                size, sha256 = self.digest(object_key)
            except FileNotFoundError as err:
                raise ChainWriterError(f"segment {object_key} is not in the spool") from err
        linked_size, linked_sha256 = size, sha256

        def build(index: int, prev: str, key_id: str, utc: str) -> dict[str, Any]:
            return evidence.segment_link(
                call_id=self.call_id,
                index=index,
                prev=prev,
                key_id=key_id,
                utc=utc,
                participant=participant,
                object_key=object_key,
                size=linked_size,
                sha256=linked_sha256,
                start_utc=start_utc,
                end_utc=end_utc,
                first_pts_ms=first_pts_ms,
                last_pts_ms=last_pts_ms,
                gaps=gaps,
            )

        appended = self._append(build)
        with self._lock:
            if self._segments is not None:
                self._segments += 1
        return appended

    def append_event(self, event: Mapping[str, Any]) -> Appended:
        """Link an event of the call (`event["type"]` one of evidence.EVENT_TYPES)."""

        def build(index: int, prev: str, key_id: str, utc: str) -> dict[str, Any]:
            return evidence.event_link(
                call_id=self.call_id, index=index, prev=prev, key_id=key_id, utc=utc, event=event
            )

        return self._append(build)

    def _append(self, build: Callable[[int, str, str, str], dict[str, Any]]) -> Appended:
        with self._lock:
            self._check_open()
            index = self._count + 1
            data, signature = self._signed(
                lambda key_id, utc: build(index, self._hash, key_id, utc)
            )
            key = evidence.link_key(self.prefix, index)
            self._commit(key, data, signature)
            self._count, self._hash = index, evidence.link_hash(data)
            return Appended(index, self._hash, [key, evidence.signature_key(key)])

    def _check_open(self) -> None:
        if self._broken is not None:
            raise ChainWriterError(f"chain {self.call_id} failed earlier: {self._broken}")
        if self._closed:
            raise ChainClosed(f"chain {self.call_id} is closed by its manifest")

    def _signed(self, build: Callable[[str, str], dict[str, Any]]) -> tuple[bytes, bytes]:
        """Build with the current key id and sign; rebuild if the key rotated in between."""
        for _ in range(SIGN_ATTEMPTS):
            key_id = self._signer.current_key_id
            data = evidence.canonical(build(key_id, evidence.utc_iso(self._clock())))
            signed_by, signature = self._signer.sign(data)
            if signed_by == key_id:
                if len(signature) != SIGNATURE_SIZE:
                    raise ChainWriterError(f"signature of {len(signature)} bytes, not 64")
                return data, signature
        raise ChainWriterError("the signing key changed during every attempt")

    def _commit(self, key: str, data: bytes, signature: bytes) -> None:
        """Write `key` then its `.sig`; on failure leave no half link behind."""
        doc = self.path(key)
        try:
            # One directory fsync, after the .sig, makes both names durable: a crash may
            # leave either alone, and opening the chain moves such a torn tail aside.
            write_atomic(doc, data, sync_dir=False)
        except OSError as err:
            raise ChainWriterError(f"cannot write {key}: {err}") from err
        try:
            write_atomic(self.path(evidence.signature_key(key)), signature)
        except OSError as err:
            try:
                _move_aside(doc)
            except OSError as again:
                self._broken = again
            raise ChainWriterError(f"cannot write the signature of {key}: {err}") from err

    def write_manifest(self, fields: Mapping[str, Any]) -> list[str]:
        """Sign and write manifest.json, closing the chain; returns the keys written.

        `fields` are the manifest's own fields (see `evidence.manifest`); `call_id`, `chain`,
        `key_id`, `utc` and, when the spool still holds every link, `segments` are filled in.
        """
        with self._lock:
            self._check_open()
            given = dict(fields)
            for name in ("v", "kind", "chain", "key_id", "utc"):
                if name in given:
                    raise ValueError(f"manifest field {name!r} is filled in by the writer")
            if given.pop("call_id", self.call_id) != self.call_id:
                raise ValueError("manifest call_id is not this chain's")
            if "segments" not in given:
                if self._segments is None:
                    raise ValueError("segment count unknown (spool cleaned): pass `segments`")
                given["segments"] = self._segments
            head = self._head()
            chain = {"count": head.links, "head": head.hash, "last_object": head.last_key}

            def build(key_id: str, utc: str) -> dict[str, Any]:
                return evidence.manifest(
                    call_id=self.call_id, chain=chain, key_id=key_id, utc=utc, **given
                )

            data, signature = self._signed(build)
            key = evidence.manifest_key(self.prefix)
            self._commit(key, data, signature)
            self._closed = True
            logger.info(
                "chain %s closed: manifest %s after %d links",
                self.call_id,
                given.get("status"),
                head.links,
            )
            return [key, evidence.signature_key(key)]
