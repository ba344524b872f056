"""Checking a call's evidence: every object re-read, every hash and signature re-checked.

Works on anything that lists and reads objects: an ObjectStore (tampering inside the store is
caught, not only in exports) or an export folder through `FolderSource`. Trust is always
given by the caller; keys shipped inside a bundle count for nothing by themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from recorder import evidence
from recorder.evidence import Problem
from recorder.keyring import TrustedKeys
from storage.errors import ObjectNotFound, ObjectStoreError
from storage.objects import CHUNK_SIZE, validate_key

__all__ = [
    "BUNDLE_EXTRAS",
    "FolderSource",
    "Problem",
    "Source",
    "VerifyReport",
    "bundle_prefix",
    "verify",
]

BUNDLE_EXTRAS = ("README.md", "keys/")
"""Entries of an export folder that are not objects of the call."""

SEGMENT_TIME_SLACK = timedelta(seconds=10)
"""How far a segment's times may stray outside the call's launch and end, plus
SEGMENT_TIME_DRIFT of the call's length. Media times run on the sender's RTP clock from the
first frame's arrival, so arrival delays and clock drift put a long call's last frames a
little after its recorded end; a clock error (media times once counted from 1900) puts them
years away."""
SEGMENT_TIME_DRIFT = 0.005  # 0.5%: a sender clock 5000 ppm off


class Source(Protocol):
    """Where a call's objects are read from (an ObjectStore is one)."""

    def list(self, prefix: str) -> Iterator[str]: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> Iterator[bytes]: ...


class FolderSource:
    """An export folder read as objects: key `prefix + p` is the file `folder / p`.

    The bundle's own `README.md` and `keys/` are not objects of the call and are not listed.
    Without a `prefix`, it is read from the bundle (`bundle_prefix`).
    """

    def __init__(self, folder: Path, prefix: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"not a folder: {self.folder}")
        self.prefix = bundle_prefix(self.folder) if prefix is None else prefix

    def __repr__(self) -> str:
        return f"FolderSource({str(self.folder)!r}, {self.prefix!r})"

    def _path(self, key: str) -> Path:
        if not key.startswith(self.prefix):
            raise ObjectNotFound(key)
        rel = validate_key(key[len(self.prefix) :])
        return self.folder.joinpath(*rel.split("/"))

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.folder).as_posix()
            base = "" if rel == "." else rel + "/"
            if base == "":
                dirnames[:] = [d for d in dirnames if d + "/" not in BUNDLE_EXTRAS]
            for name in filenames:
                if name.startswith(".") or (base == "" and name in BUNDLE_EXTRAS):
                    continue
                key = self.prefix + base + name
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as err:
            raise ObjectNotFound(key) from err

    def open(self, key: str) -> Iterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError as err:
            raise ObjectNotFound(key) from err
        return self._chunks(f)

    @staticmethod
    def _chunks(f: Any) -> Iterator[bytes]:
        with f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk


def bundle_prefix(folder: Path) -> str:
    """The call prefix of an export folder, from its links (else from its manifest).

    Only a hint for mapping files to keys: every link and the manifest are still checked
    against it, so a wrong hint shows up as failures, never as a pass.
    """
    for path in sorted((folder / "chain").glob("*.json")):
        obj = _json(path)
        target = obj.get("object") if obj else None
        if obj and obj.get("kind") == "segment" and isinstance(target, str):
            parts = target.split("/")
            if len(parts) >= 3 and parts[-3] == obj.get("call_id"):
                return "/".join(parts[:-2]) + "/"
    doc = _json(folder / evidence.MANIFEST_NAME)
    if doc and isinstance(doc.get("call_id"), str):
        try:
            return evidence.call_prefix(doc["call_id"], evidence.parse_utc(doc["launched_utc"]))
        except (KeyError, ValueError):
            pass
    raise ValueError(f"{folder}: no segment link or manifest tells which call this is")


def _json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


@dataclass
class VerifyReport:
    """The outcome: problems (empty when OK) and what was checked."""

    prefix: str
    problems: list[Problem] = field(default_factory=list)
    links: int = 0
    segments: int = 0
    replay: int = 0
    bytes: int = 0
    head: tuple[int, str] = (0, evidence.GENESIS)
    manifest_status: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def failed(self, key: str) -> list[str]:
        """The reasons given against object `key`."""
        return [p.reason for p in self.problems if p.object_key == key]

    def format_report(self) -> str:
        """`OK …` or `FAILED …` followed by one line per problem."""
        checked = (
            f"{self.links} links, {self.segments} segments, {self.replay} replay files, "
            f"{self.bytes} bytes hashed; chain head {self.head[0]} {self.head[1]}; "
            f"manifest {self.manifest_status or 'absent'}"
        )
        if self.ok:
            return f"OK {self.prefix}: {checked}\n"
        lines = [f"FAILED {self.prefix}: {len(self.problems)} problems ({checked})"]
        lines += [f"  {p.object_key}: {p.reason}" for p in self.problems]
        return "\n".join(lines) + "\n"


def _digest(source: Source, key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in source.open(key):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class _Run:
    """One verification: the listing, what is named, and the problems found."""

    def __init__(self, source: Source, prefix: str, trusted: TrustedKeys) -> None:
        self.source = source
        self.prefix = prefix
        self.trusted = trusted
        self.call_id = evidence.call_id_of(prefix)
        self.keys = set(source.list(prefix))
        self.named: set[str] = set()
        self.report = VerifyReport(prefix)
        self.digests: dict[str, tuple[int, str] | None] = {}

    def problem(self, key: str, reason: str) -> None:
        self.report.problems.append(Problem(key, reason))

    def read(self, key: str) -> bytes | None:
        try:
            return self.source.get(key)
        except ObjectNotFound:
            self.problem(key, "missing")
        except ObjectStoreError as err:
            self.problem(key, f"cannot be read: {err}")
        return None

    def digest(self, key: str) -> tuple[int, str] | None:
        if key not in self.digests:
            try:
                self.digests[key] = _digest(self.source, key)
            except ObjectStoreError as err:
                self.problem(key, f"cannot be read: {err}")
                self.digests[key] = None
        return self.digests[key]

    def signature(self, json_key: str, data: bytes, obj: dict[str, Any]) -> None:
        sig_key = evidence.signature_key(json_key)
        self.named.add(sig_key)
        if sig_key not in self.keys:
            self.problem(sig_key, f"missing: the signature of {json_key}")
            return
        signature = self.read(sig_key)
        if signature is None:
            return
        reason = self.trusted.check(obj.get("key_id"), data, signature, obj.get("utc"))
        if reason:
            self.problem(json_key, f"{reason} ({sig_key.rsplit('/', 1)[-1]})")

    def chain(self) -> evidence.ChainCheck:
        links: list[tuple[int, bytes]] = []
        data_of: dict[int, bytes] = {}
        for key in sorted(self.keys):
            index = evidence.link_index(self.prefix, key)
            if index is None:
                continue
            self.named.add(key)
            data = self.read(key)
            if data is not None:
                links.append((index, data))
                data_of[index] = data
        check = evidence.check_chain(self.prefix, self.call_id, links)
        self.report.problems += check.problems
        self.report.links = len(links)
        self.report.head = (check.count, check.head)
        for index, obj in sorted(check.links.items()):
            self.signature(evidence.link_key(self.prefix, index), data_of[index], obj)
        for index in sorted(set(data_of) - set(check.links)):  # unparsable: its .sig is named
            self.named.add(evidence.signature_key(evidence.link_key(self.prefix, index)))
        return check

    def segments(self, check: evidence.ChainCheck) -> None:
        for index, obj in sorted(check.links.items()):
            target = obj.get("object")
            if obj.get("kind") != "segment" or not isinstance(target, str):
                continue
            if evidence.parse_segment_key(self.prefix, target) is None or target in self.named:
                continue  # reported by check_chain
            self.named.add(target)
            self.report.segments += 1
            self.object_matches(target, obj.get("size"), obj.get("sha256"), f"link {index}")

    def object_matches(self, key: str, size: Any, sha256: Any, named_by: str) -> None:
        if key not in self.keys:
            self.problem(key, f"missing: named by {named_by}")
            return
        found = self.digest(key)
        if found is None:
            return
        self.report.bytes += found[0]
        if found[0] != size:
            self.problem(key, f"size {found[0]} is not {size} as {named_by} says")
        if found[1] != sha256:
            self.problem(key, f"sha256 {found[1]} is not {sha256} as {named_by} says")

    def manifest(self, check: evidence.ChainCheck, require: bool) -> None:
        key = evidence.manifest_key(self.prefix)
        self.named.add(key)
        if key not in self.keys:
            self.named.add(evidence.signature_key(key))
            if require:
                self.problem(key, "missing: the recording is unfinished or its tail was cut")
            return
        data = self.read(key)
        if data is None:
            return
        doc, problems = evidence.parse_link(data)
        for reason in problems:
            self.problem(key, reason)
        if doc is None:
            self.named.add(evidence.signature_key(key))
            return
        for reason in evidence.manifest_problems(doc):
            self.problem(key, f"bad manifest: {reason}")
        self.signature(key, data, doc)
        self.report.manifest_status = str(doc.get("status"))
        if doc.get("call_id") != self.call_id:
            self.problem(key, f"call_id {doc.get('call_id')!r} is not {self.call_id!r}")
        self.manifest_chain(key, doc, check)
        self.manifest_times(doc, check)
        self.manifest_replay(key, doc)

    def manifest_chain(self, key: str, doc: dict[str, Any], check: evidence.ChainCheck) -> None:
        chain = doc.get("chain") if isinstance(doc.get("chain"), dict) else {}
        assert isinstance(chain, dict)
        count, head = chain.get("count"), chain.get("head")
        last = evidence.link_key(self.prefix, check.count) if check.count else None
        if count != check.count:
            if isinstance(count, int) and count > check.count:
                self.problem(
                    evidence.link_key(self.prefix, check.count + 1),
                    f"missing: the manifest says the chain has {count} links, found "
                    f"{check.count} (tail truncated)",
                )
            else:
                self.problem(
                    last or key,
                    f"extra link: the manifest closes the chain at {count} links, "
                    f"found {check.count}",
                )
        elif head != check.head:
            self.problem(last or key, f"hash is not the manifest's chain head {str(head)[:16]}…")
        if chain.get("last_object") != last and count == check.count:
            self.problem(key, f"last_object {chain.get('last_object')!r} is not {last!r}")
        segment_links = sum(1 for o in check.links.values() if o.get("kind") == "segment")
        if doc.get("segments") != segment_links:
            self.problem(
                key, f"says {doc.get('segments')!r} segments, the chain links {segment_links}"
            )
        launched = doc.get("launched_utc")
        try:
            if evidence.call_prefix(self.call_id, evidence.parse_utc(str(launched))) != self.prefix:
                self.problem(key, f"launched_utc {launched} does not fit the prefix")
        except (ValueError, TypeError):
            pass  # reported as a bad manifest field

    def manifest_times(self, doc: dict[str, Any], check: evidence.ChainCheck) -> None:
        """Every segment lies inside the call, from launch to end (give or take the slack)."""
        try:
            launched = evidence.parse_utc(str(doc.get("launched_utc")))
            ended = evidence.parse_utc(str(doc.get("ended_utc")))
        except (ValueError, TypeError):
            return  # reported as a bad manifest field
        slack = SEGMENT_TIME_SLACK + abs(ended - launched) * SEGMENT_TIME_DRIFT
        for index, obj in sorted(check.links.items()):
            if obj.get("kind") != "segment":
                continue
            try:
                start = evidence.parse_utc(str(obj.get("start_utc")))
                end = evidence.parse_utc(str(obj.get("end_utc")))
            except (ValueError, TypeError):
                continue  # reported by check_chain
            if start > end:
                reason = "starts after it ends"
            elif start < launched - slack or end > ended + slack:
                reason = f"lies outside the call ({doc['launched_utc']} to {doc['ended_utc']})"
            else:
                continue
            self.problem(
                evidence.link_key(self.prefix, index),
                f"segment time {obj['start_utc']} to {obj['end_utc']} {reason}",
            )

    def manifest_replay(self, key: str, doc: dict[str, Any]) -> None:
        replay = doc.get("replay")
        if not isinstance(replay, list):
            return
        for entry in replay:
            if not isinstance(entry, dict):
                continue
            target = entry.get("object")
            participant = entry.get("participant")
            allowed = {
                evidence.replay_key(self.prefix, participant, ext)
                for ext in evidence.REPLAY_EXTENSIONS
                if isinstance(participant, str) and evidence.is_participant_id(participant)
            }
            if target not in allowed:
                self.problem(
                    key, f"replay object {target!r} is not a replay file of {participant!r}"
                )
                continue
            assert isinstance(target, str)
            if target in self.named:
                self.problem(key, f"replay object {target} listed twice")
                continue
            self.named.add(target)
            self.report.replay += 1
            self.object_matches(target, entry.get("size"), entry.get("sha256"), "the manifest")

    def expected_head(self, expected: tuple[int, str], check: evidence.ChainCheck) -> None:
        count, head = expected
        if count > check.count:
            self.problem(
                evidence.link_key(self.prefix, check.count + 1),
                f"missing: the database records {count} links, found {check.count} "
                "(tail truncated)",
            )
        elif count < check.count:
            self.problem(
                evidence.link_key(self.prefix, count + 1),
                f"extra link: the database records only {count} links, found {check.count}",
            )
        elif head != check.head:
            where = evidence.link_key(self.prefix, count) if count else self.prefix
            self.problem(where, f"hash is not the database's chain head {head[:16]}…")

    def extras(self) -> None:
        for key in sorted(self.keys - self.named):
            self.problem(key, "extra object: no link or manifest names it")


def verify(
    source: Source,
    prefix: str,
    trusted: TrustedKeys,
    *,
    expected_head: tuple[int, str] | None = None,
    require_manifest: bool = True,
) -> VerifyReport:
    """Re-read and check every object of the call under `prefix`.

    `expected_head` is (count, hash) of the chain as the database recorded it, when there is
    one; `require_manifest=False` checks a chain still being written.
    """
    run = _Run(source, prefix, trusted)
    check = run.chain()
    run.segments(check)
    run.manifest(check, require_manifest)
    if expected_head is not None:
        run.expected_head(expected_head, check)
    run.extras()
    run.report.problems.sort(key=lambda p: p.object_key)
    return run.report
