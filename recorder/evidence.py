"""The evidence format of a recorded call: object keys, canonical links, manifest, chain check.

Pure, no I/O: the writer (`chain_writer`), the checker (`verify`) and the exporter build on
these, so the format is defined once. The shared spec (object layout, canonical JSON, link and
manifest fields) is in docs/evidence.md.

A link is a JSON object written as its exact canonical bytes; its hash (lowercase hex SHA-256
of those bytes) is the next link's `prev`, and a detached Ed25519 signature covers the same
bytes. Nothing is ever re-serialized before hashing or checking: the bytes on disk are the
evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "GAP_REASONS",
    "GENESIS",
    "LINK_VERSION",
    "MANIFEST_STATUSES",
    "ChainCheck",
    "Problem",
    "call_id_of",
    "call_prefix",
    "canonical",
    "check_chain",
    "event_link",
    "gap_problems",
    "gap_record",
    "is_participant_id",
    "link_hash",
    "link_index",
    "link_key",
    "link_problems",
    "manifest",
    "manifest_key",
    "manifest_problems",
    "parse_link",
    "parse_replay_key",
    "parse_segment_key",
    "parse_utc",
    "replay_key",
    "segment_key",
    "segment_link",
    "signature_key",
    "utc_iso",
]

GENESIS = "0" * 64
"""The `prev` of link 1."""

LINK_VERSION = 1
EVENT_TYPES = frozenset(
    {
        "recording_started",
        "consent",
        "participant_joined",
        "participant_dropped",
        "participant_rejoined",
        "participant_left",
        "gap",
        "recording_stopped",
        "track_started",  # first frame of a participant's track: codec and start offset
        "bookmark",  # an expert's time-stamped note (for training), stamped by the server
    }
)
GAP_REASONS = frozenset(
    {"tap_overflow", "packet_loss", "participant_dropped", "awaiting_key_frame"}
)
GAP_TRACKS = frozenset({"video", "audio"})
MANIFEST_STATUSES = frozenset({"complete", "interrupted"})
OFFSET_SOURCES = frozenset({"rtcp_sr", "arrival"})
SEGMENT_EXTENSIONS = frozenset({"webm", "mkv"})
REPLAY_EXTENSIONS = frozenset({"webm", "mp4"})
RESERVED_NAMES = frozenset({"chain", "replay", "keys", "manifest.json", "manifest.sig"})
"""Names a participant id can never take: they are the call prefix's own entries."""

CHAIN_DIR = "chain"
MANIFEST_NAME = "manifest.json"
INDEX_DIGITS = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_LINK_NAME_RE = re.compile(r"(\d{6,})\.json")

_LINK_COMMON = ("v", "call_id", "index", "prev", "kind", "key_id", "utc")
_SEGMENT_FIELDS = frozenset(
    _LINK_COMMON
    + (
        "participant",
        "object",
        "size",
        "sha256",
        "start_utc",
        "end_utc",
        "first_pts_ms",
        "last_pts_ms",
        "gaps",
    )
)
_EVENT_FIELDS = frozenset(_LINK_COMMON + ("event",))
_GAP_FIELDS = frozenset({"track", "seq_from", "seq_to", "packets", "utc", "reason"})
_MANIFEST_FIELDS = frozenset(
    {
        "v",
        "kind",
        "call_id",
        "case_id",
        "case_number",
        "dispute_type",
        "status",
        "launched_utc",
        "answered_utc",
        "ended_utc",
        "participants",
        "devices",
        "consent",
        "tracks",
        "chain",
        "segments",
        "replay",
        "software",
        "clock",
        "timestamp_token",
        "key_id",
        "utc",
    }
)
_PARTICIPANT_FIELDS = frozenset(
    {"id", "role", "principal_kind", "principal_id", "joined_utc", "left_utc"}
)
_TRACK_FIELDS = frozenset(
    {"participant", "video_codec", "audio_codec", "start_offset_ms", "offset_source"}
)


# --------------------------------------------------------------------------------------------
# Bytes, hashes, times


def canonical(obj: Any) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no spaces, UTF-8 kept, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def link_hash(data: bytes) -> str:
    """Lowercase hex SHA-256 of a link's exact bytes (what the next link's `prev` holds)."""
    return hashlib.sha256(data).hexdigest()


def utc_iso(when: int | datetime) -> str:
    """UTC ISO-8601 with milliseconds and `Z`, from epoch milliseconds or an aware datetime.

    Sub-millisecond parts are dropped (floored), never rounded up, so a time written later
    never reads as earlier than one written before it.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware one")
        dt = when.astimezone(UTC)
    elif isinstance(when, int) and not isinstance(when, bool):
        dt = _EPOCH + timedelta(milliseconds=when)
    else:
        raise TypeError(f"expected epoch milliseconds or a datetime, not {type(when).__name__}")
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def parse_utc(text: str) -> datetime:
    """The datetime of a time written by `utc_iso`; anything else is a ValueError."""
    if not isinstance(text, str) or not _UTC_RE.fullmatch(text):
        raise ValueError(f"not a UTC time like 2026-11-25T21:30:00.123Z: {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _is_utc(value: Any) -> bool:
    try:
        parse_utc(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Object keys


def _check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value) or value in RESERVED_NAMES:
        raise ValueError(f"bad {what}: {value!r}")
    return value


def is_participant_id(value: str) -> bool:
    """Whether `value` can name a participant in object keys."""
    return bool(_ID_RE.fullmatch(value)) and value not in RESERVED_NAMES


def _check_prefix(prefix: str) -> str:
    if not prefix.endswith("/") or prefix.startswith("/") or "//" in prefix:
        raise ValueError(f"a call prefix ends with one '/' and has no empty part: {prefix!r}")
    return prefix


def call_prefix(call_id: str, launched: int | datetime) -> str:
    """`calls/<YYYY>/<MM>/<call_id>/`, the month of the call's launch in UTC."""
    _check_id("call id", call_id)
    stamp = utc_iso(launched)
    return f"calls/{stamp[0:4]}/{stamp[5:7]}/{call_id}/"


def call_id_of(prefix: str) -> str:
    """The call id a call prefix ends with."""
    return _check_prefix(prefix).rstrip("/").rsplit("/", 1)[-1]


def link_key(prefix: str, index: int) -> str:
    """`<prefix>chain/000001.json`: link `index` (from 1, at least 6 digits)."""
    if not isinstance(index, int) or index < 1:
        raise ValueError(f"link index starts at 1: {index!r}")
    return f"{_check_prefix(prefix)}{CHAIN_DIR}/{index:0{INDEX_DIGITS}d}.json"


def link_index(prefix: str, key: str) -> int | None:
    """The index of a link key under `prefix`, or None if `key` is not a link's JSON."""
    head = f"{prefix}{CHAIN_DIR}/"
    if not key.startswith(head):
        return None
    match = _LINK_NAME_RE.fullmatch(key[len(head) :])
    if match is None or int(match.group(1)) < 1:
        return None
    index = int(match.group(1))
    return index if link_key(prefix, index) == key else None


def manifest_key(prefix: str) -> str:
    """`<prefix>manifest.json`."""
    return f"{_check_prefix(prefix)}{MANIFEST_NAME}"


def signature_key(json_key: str) -> str:
    """The detached signature beside a signed JSON object: `x.json` -> `x.sig`."""
    if not json_key.endswith(".json"):
        raise ValueError(f"only .json objects are signed: {json_key!r}")
    return json_key[: -len(".json")] + ".sig"


def segment_key(prefix: str, participant_id: str, n: int, ext: str) -> str:
    """`<prefix><participant_id>/000001.webm`: participant's segment `n` (from 1)."""
    _check_id("participant id", participant_id)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"segment numbers start at 1: {n!r}")
    if ext not in SEGMENT_EXTENSIONS:
        raise ValueError(f"segment extension must be one of {sorted(SEGMENT_EXTENSIONS)}: {ext}")
    return f"{_check_prefix(prefix)}{participant_id}/{n:0{INDEX_DIGITS}d}.{ext}"


def replay_key(prefix: str, participant_id: str, ext: str) -> str:
    """`<prefix>replay/<participant_id>.webm` (or `.mp4`): the derived replay file."""
    _check_id("participant id", participant_id)
    if ext not in REPLAY_EXTENSIONS:
        raise ValueError(f"replay extension must be one of {sorted(REPLAY_EXTENSIONS)}: {ext}")
    return f"{_check_prefix(prefix)}replay/{participant_id}.{ext}"


_SEGMENT_NAME_RE = re.compile(r"(\d{6,})\.(webm|mkv)")


def parse_segment_key(prefix: str, key: str) -> tuple[str, int] | None:
    """(participant id, number) of a segment key under `prefix`, or None if it is not one."""
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split("/")
    if len(parts) != 2 or not _ID_RE.fullmatch(parts[0]) or parts[0] in RESERVED_NAMES:
        return None
    match = _SEGMENT_NAME_RE.fullmatch(parts[1])
    if match is None or int(match.group(1)) < 1:
        return None
    n = int(match.group(1))
    return (parts[0], n) if segment_key(prefix, parts[0], n, match.group(2)) == key else None


def parse_replay_key(prefix: str, key: str) -> str | None:
    """The participant id of a replay key under `prefix`, or None if it is not one."""
    head = f"{_check_prefix(prefix)}replay/"
    if not key.startswith(head):
        return None
    participant_id, _, ext = key[len(head) :].rpartition(".")
    if not _ID_RE.fullmatch(participant_id) or ext not in REPLAY_EXTENSIONS:
        return None
    return participant_id


# --------------------------------------------------------------------------------------------
# Validation, shared by the builders (which raise) and the checker (which reports)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(
    obj: Mapping[str, Any], required: frozenset[str], what: str, *, exact: bool = True
) -> list[str]:
    """Missing fields, and (when `exact`) unknown ones."""
    problems = []
    missing = required - obj.keys()
    extra = obj.keys() - required if exact else set()
    if missing:
        problems.append(f"{what} lacks {', '.join(sorted(missing))}")
    if extra:
        problems.append(f"{what} has unknown fields {', '.join(sorted(extra))}")
    return problems


def gap_problems(gap: Any, *, with_participant: bool = False) -> list[str]:
    """What is wrong with a gap record (empty if nothing)."""
    if not isinstance(gap, Mapping):
        return ["gap record is not an object"]
    required = _GAP_FIELDS | {"participant"} if with_participant else _GAP_FIELDS
    problems = _fields(gap, required, "gap record")
    if problems:
        return problems
    if gap["track"] not in GAP_TRACKS:
        problems.append(f"gap track {gap['track']!r}")
    if gap["reason"] not in GAP_REASONS:
        problems.append(f"gap reason {gap['reason']!r}")
    for name in ("seq_from", "seq_to"):
        if gap[name] is not None and not (_is_int(gap[name]) and 0 <= gap[name] <= 0xFFFF):
            problems.append(f"gap {name} {gap[name]!r}")
    if not _is_int(gap["packets"]) or gap["packets"] < 0:
        problems.append(f"gap packets {gap['packets']!r}")
    if not _is_utc(gap["utc"]):
        problems.append(f"gap utc {gap['utc']!r}")
    if with_participant and not isinstance(gap["participant"], str):
        problems.append("gap participant is not a string")
    return problems


def link_problems(link: Any) -> list[str]:
    """What is wrong with the fields of a parsed link (empty if nothing)."""
    if not isinstance(link, dict):
        return ["link is not a JSON object"]
    kind = link.get("kind")
    if kind == "segment":
        problems = _fields(link, _SEGMENT_FIELDS, "segment link")
    elif kind == "event":
        problems = _fields(link, _EVENT_FIELDS, "event link")
    else:
        return [f"link kind {kind!r} is neither 'segment' nor 'event'"]
    if problems:
        return problems
    if link["v"] != LINK_VERSION:
        problems.append(f"link version {link['v']!r}")
    if not isinstance(link["call_id"], str):
        problems.append("call_id is not a string")
    if not _is_int(link["index"]) or link["index"] < 1:
        problems.append(f"index {link['index']!r}")
    if not isinstance(link["prev"], str) or not _HEX64_RE.fullmatch(link["prev"]):
        problems.append(f"prev {link['prev']!r} is not a sha256 hex digest")
    if not isinstance(link["key_id"], str) or not _KEY_ID_RE.fullmatch(link["key_id"]):
        problems.append(f"key_id {link['key_id']!r}")
    if not _is_utc(link["utc"]):
        problems.append(f"utc {link['utc']!r}")
    if kind == "segment":
        problems += _segment_field_problems(link)
    else:
        problems += _event_problems(link["event"])
    return problems


def _segment_field_problems(link: Mapping[str, Any]) -> list[str]:
    problems = []
    if not isinstance(link["participant"], str) or not isinstance(link["object"], str):
        problems.append("participant and object must be strings")
    if not _is_int(link["size"]) or link["size"] < 0:
        problems.append(f"size {link['size']!r}")
    if not isinstance(link["sha256"], str) or not _HEX64_RE.fullmatch(link["sha256"]):
        problems.append(f"sha256 {link['sha256']!r}")
    for name in ("start_utc", "end_utc"):
        if not _is_utc(link[name]):
            problems.append(f"{name} {link[name]!r}")
    for name in ("first_pts_ms", "last_pts_ms"):
        if not _is_int(link[name]):
            problems.append(f"{name} {link[name]!r}")
    if not isinstance(link["gaps"], list):
        problems.append("gaps is not a list")
    else:
        for gap in link["gaps"]:
            problems += gap_problems(gap)
    return problems


def _event_problems(event: Any) -> list[str]:
    if not isinstance(event, Mapping):
        return ["event is not an object"]
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        return [f"event type {kind!r}"]
    if kind == "gap":
        rest = {k: v for k, v in event.items() if k != "type"}
        return gap_problems(rest, with_participant=True)
    return []


def manifest_problems(doc: Any) -> list[str]:
    """What is wrong with the fields of a parsed manifest (empty if nothing)."""
    if not isinstance(doc, dict):
        return ["manifest is not a JSON object"]
    problems = _fields(doc, _MANIFEST_FIELDS, "manifest")
    if problems:
        return problems
    if doc["v"] != LINK_VERSION or doc["kind"] != "manifest":
        problems.append(f"manifest version/kind {doc['v']!r}/{doc['kind']!r}")
    if doc["status"] not in MANIFEST_STATUSES:
        problems.append(f"status {doc['status']!r}")
    if not _is_utc(doc["launched_utc"]) or not _is_utc(doc["utc"]):
        problems.append("launched_utc and utc must be UTC times")
    for name in ("answered_utc", "ended_utc"):
        if doc[name] is not None and not _is_utc(doc[name]):
            problems.append(f"{name} {doc[name]!r}")
    if not isinstance(doc["key_id"], str) or not _KEY_ID_RE.fullmatch(doc["key_id"]):
        problems.append(f"key_id {doc['key_id']!r}")
    chain = doc["chain"]
    if not isinstance(chain, dict) or chain.keys() != {"count", "head", "last_object"}:
        problems.append("chain must be {count, head, last_object}")
    elif not _is_int(chain["count"]) or chain["count"] < 0:
        problems.append(f"chain count {chain['count']!r}")
    elif not isinstance(chain["head"], str) or not _HEX64_RE.fullmatch(chain["head"]):
        problems.append(f"chain head {chain['head']!r}")
    elif chain["last_object"] is not None and not isinstance(chain["last_object"], str):
        problems.append(f"chain last_object {chain['last_object']!r}")
    if not _is_int(doc["segments"]) or doc["segments"] < 0:
        problems.append(f"segments {doc['segments']!r}")
    problems += _list_of(doc["participants"], _PARTICIPANT_FIELDS, "participant")
    problems += _list_of(doc["tracks"], _TRACK_FIELDS, "track")
    problems += _list_of(
        doc["replay"], frozenset({"participant", "object", "size", "sha256"}), "replay"
    )
    if isinstance(doc["tracks"], list):
        for track in doc["tracks"]:
            if isinstance(track, dict) and track.get("offset_source") not in OFFSET_SOURCES:
                problems.append(f"track offset_source {track.get('offset_source')!r}")
    if isinstance(doc["replay"], list):
        for entry in doc["replay"]:
            if isinstance(entry, dict) and not (
                _is_int(entry.get("size"))
                and isinstance(entry.get("sha256"), str)
                and _HEX64_RE.fullmatch(entry["sha256"])
            ):
                problems.append(f"replay entry {entry.get('object')!r} has a bad size or sha256")
    if not isinstance(doc["devices"], list):
        problems.append("devices is not a list")
    if doc["consent"] is not None and not isinstance(doc["consent"], dict):
        problems.append("consent is neither an object nor null")
    software, clock = doc["software"], doc["clock"]
    if not isinstance(software, dict) or not {"name", "version"} <= software.keys():
        problems.append("software must name name and version")
    if not isinstance(clock, dict) or not isinstance(clock.get("synchronized"), bool):
        problems.append("clock must have source and synchronized (bool)")
    return problems


def _list_of(value: Any, required: frozenset[str], what: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{what}s is not a list"]
    problems: list[str] = []
    for item in value:
        if not isinstance(item, dict):
            problems.append(f"a {what} entry is not an object")
        else:
            problems += _fields(item, required, f"{what} entry", exact=False)
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ValueError(f"bad {what}: {'; '.join(problems)}")


# --------------------------------------------------------------------------------------------
# Builders


def gap_record(
    *,
    track: str,
    seq_from: int | None,
    seq_to: int | None,
    packets: int,
    utc: int | datetime | str,
    reason: str,
) -> dict[str, Any]:
    """A gap record: packets of `track` lost (RTP sequence range if known) and why."""
    record = {
        "track": track,
        "seq_from": seq_from,
        "seq_to": seq_to,
        "packets": packets,
        "utc": utc if isinstance(utc, str) else utc_iso(utc),
        "reason": reason,
    }
    _raise_if(gap_problems(record), "gap record")
    return record


def _utc_text(value: int | datetime | str) -> str:
    return value if isinstance(value, str) else utc_iso(value)


def segment_link(
    *,
    call_id: str,
    index: int,
    prev: str,
    key_id: str,
    utc: int | datetime | str,
    participant: str,
    object_key: str,
    size: int,
    sha256: str,
    start_utc: int | datetime | str,
    end_utc: int | datetime | str,
    first_pts_ms: int,
    last_pts_ms: int,
    gaps: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The link naming one closed segment file (`object_key`) with its size and hash."""
    link = {
        "v": LINK_VERSION,
        "call_id": call_id,
        "index": index,
        "prev": prev,
        "kind": "segment",
        "key_id": key_id,
        "utc": _utc_text(utc),
        "participant": participant,
        "object": object_key,
        "size": size,
        "sha256": sha256,
        "start_utc": _utc_text(start_utc),
        "end_utc": _utc_text(end_utc),
        "first_pts_ms": first_pts_ms,
        "last_pts_ms": last_pts_ms,
        "gaps": [dict(g) for g in gaps],
    }
    _raise_if(link_problems(link), "segment link")
    canonical(link)
    return link


def event_link(
    *,
    call_id: str,
    index: int,
    prev: str,
    key_id: str,
    utc: int | datetime | str,
    event: Mapping[str, Any],
) -> dict[str, Any]:
    """The link recording one event of the call (`event["type"]` in EVENT_TYPES)."""
    link = {
        "v": LINK_VERSION,
        "call_id": call_id,
        "index": index,
        "prev": prev,
        "kind": "event",
        "key_id": key_id,
        "utc": _utc_text(utc),
        "event": dict(event),
    }
    _raise_if(link_problems(link), "event link")
    canonical(link)  # refuses what JSON cannot carry (NaN, non-string keys…) here, not later
    return link


def manifest(
    *,
    call_id: str,
    case_id: str | None,
    case_number: str | None,
    dispute_type: str | None,
    status: str,
    launched_utc: int | datetime | str,
    answered_utc: int | datetime | str | None,
    ended_utc: int | datetime | str | None,
    participants: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
    consent: Mapping[str, Any] | None,
    tracks: Sequence[Mapping[str, Any]],
    chain: Mapping[str, Any],
    segments: int,
    replay: Sequence[Mapping[str, Any]],
    software: Mapping[str, Any],
    clock: Mapping[str, Any],
    key_id: str,
    utc: int | datetime | str,
    timestamp_token: str | None = None,
) -> dict[str, Any]:
    """The manifest closing a call's chain (`chain` = {count, head, last_object})."""
    doc = {
        "v": LINK_VERSION,
        "kind": "manifest",
        "call_id": call_id,
        "case_id": case_id,
        "case_number": case_number,
        "dispute_type": dispute_type,
        "status": status,
        "launched_utc": _utc_text(launched_utc),
        "answered_utc": None if answered_utc is None else _utc_text(answered_utc),
        "ended_utc": None if ended_utc is None else _utc_text(ended_utc),
        "participants": [dict(p) for p in participants],
        "devices": list(devices),
        "consent": None if consent is None else dict(consent),
        "tracks": [dict(t) for t in tracks],
        "chain": dict(chain),
        "segments": segments,
        "replay": [dict(r) for r in replay],
        "software": dict(software),
        "clock": dict(clock),
        "timestamp_token": timestamp_token,
        "key_id": key_id,
        "utc": _utc_text(utc),
    }
    _raise_if(manifest_problems(doc), "manifest")
    canonical(doc)
    return doc


# --------------------------------------------------------------------------------------------
# Chain check


@dataclass(frozen=True)
class Problem:
    """One failed check: which object, and why."""

    object_key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.object_key}: {self.reason}"


@dataclass
class ChainCheck:
    """What `check_chain` found: problems, the links it could parse, and the chain's head."""

    problems: list[Problem] = field(default_factory=list)
    links: dict[int, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)
    count: int = 0
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_link(data: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse a link's bytes: (the object, or None if unusable; problems)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        return None, [f"not valid JSON ({err})"]
    if not isinstance(obj, dict):
        return None, ["not a JSON object"]
    problems = []
    try:
        if canonical(obj) != data:
            problems.append("not in canonical JSON form")
    except ValueError:
        problems.append("not in canonical JSON form")
    return obj, problems


def check_chain(prefix: str, call_id: str, links: Sequence[tuple[int, bytes]]) -> ChainCheck:
    """Check a call's links, given as (index from the object key, exact bytes) in any order.

    Finds: unparsable or non-canonical links, bad fields, an `index` field differing from
    the key's, missing indices (the chain runs 1..N without gaps), `prev` not the hash of the
    link before, a different `call_id`, and a segment object outside the call's prefix or
    named twice. Signatures are not checked here (see `verify`).
    """
    result = ChainCheck()
    add = result.problems.append
    ordered = sorted(links, key=lambda item: item[0])
    seen: set[int] = set()
    for index, data in ordered:
        key = link_key(prefix, index)
        if index in seen:
            add(Problem(key, "given twice"))
            continue
        seen.add(index)
        result.hashes[index] = link_hash(data)
        obj, problems = parse_link(data)
        for reason in problems:
            add(Problem(key, reason))
        if obj is None:
            continue
        for reason in link_problems(obj):
            add(Problem(key, f"bad link: {reason}"))
        result.links[index] = obj
        if obj.get("index") != index:
            add(Problem(key, f"index field {obj.get('index')!r} is not {index}: links reordered"))
        if obj.get("call_id") != call_id:
            add(Problem(key, f"call_id {obj.get('call_id')!r} is not {call_id!r}"))
    if ordered:
        last = ordered[-1][0]
        for index in range(1, last + 1):
            if index not in seen:
                add(Problem(link_key(prefix, index), "missing: the chain has a gap here"))
        result.count = last
        result.head = result.hashes[last]
    for index, obj in sorted(result.links.items()):
        key = link_key(prefix, index)
        expected = GENESIS if index == 1 else result.hashes.get(index - 1)
        if expected is not None and obj.get("prev") != expected:
            what = "the genesis value" if index == 1 else f"the hash of link {index - 1}"
            add(Problem(key, f"prev {str(obj.get('prev'))[:16]}… is not {what}"))
    _check_segment_objects(prefix, result)
    return result


def _check_segment_objects(prefix: str, result: ChainCheck) -> None:
    named: dict[str, int] = {}
    for index, obj in sorted(result.links.items()):
        if obj.get("kind") != "segment" or not isinstance(obj.get("object"), str):
            continue
        key, target = link_key(prefix, index), obj["object"]
        parsed = parse_segment_key(prefix, target)
        if parsed is None:
            result.problems.append(Problem(key, f"names {target!r}, not a segment of this call"))
        elif parsed[0] != obj.get("participant"):
            result.problems.append(
                Problem(key, f"names {target!r} for participant {obj.get('participant')!r}")
            )
        if target in named:
            result.problems.append(
                Problem(key, f"names {target!r}, already named by link {named[target]}")
            )
        named.setdefault(target, index)
