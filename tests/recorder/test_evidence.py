"""The evidence format (pure) and the chain writer on real files with a real key ring."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder import evidence
from recorder.chain_writer import Appended, ChainClosed, ChainWriter, ChainWriterError, file_digest
from recorder.keyring import KeyRing
from recorder.verify import FolderSource, verify

CALL_ID = "0190f3b2-7c1a-7000-8000-0000000000aa"
PID = "0190f3b2-7c1a-7000-8000-0000000000b1"
LAUNCHED = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)
PREFIX = f"calls/2026/11/{CALL_ID}/"


# -- canonical bytes, hashes, times -----------------------------------------------------------


def test_canonical_sorts_keys_drops_spaces_and_keeps_utf8() -> None:
    data = evidence.canonical({"b": [1, 2], "a": "调解", "c": {"z": None, "y": True}})
    assert data == '{"a":"调解","b":[1,2],"c":{"y":true,"z":null}}'.encode()


def test_canonical_refuses_nan() -> None:
    with pytest.raises(ValueError):
        evidence.canonical({"x": float("nan")})


def test_link_hash_is_sha256_of_the_exact_bytes() -> None:
    assert evidence.link_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert evidence.GENESIS == "0" * 64


def test_utc_iso_from_milliseconds_and_datetimes() -> None:
    ms = int(LAUNCHED.timestamp() * 1000) + 123
    assert evidence.utc_iso(ms) == "2026-11-25T21:30:00.123Z"
    assert evidence.utc_iso(LAUNCHED + timedelta(microseconds=999_999)) == (
        "2026-11-25T21:30:00.999Z"  # floored, never rounded into the next second
    )
    cst = LAUNCHED.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert evidence.utc_iso(cst) == "2026-11-25T21:30:00.000Z"
    assert evidence.parse_utc("2026-11-25T21:30:00.123Z") == LAUNCHED + timedelta(milliseconds=123)


def test_utc_iso_refuses_naive_times_and_parse_refuses_other_formats() -> None:
    with pytest.raises(ValueError):
        evidence.utc_iso(datetime(2026, 11, 25))
    with pytest.raises(TypeError):
        evidence.utc_iso(1.5)  # type: ignore[arg-type]
    for text in ("2026-11-25T21:30:00Z", "2026-11-25T21:30:00.123+00:00", "", "now"):
        with pytest.raises(ValueError):
            evidence.parse_utc(text)


# -- object keys ------------------------------------------------------------------------------


def test_keys_follow_the_layout() -> None:
    assert evidence.call_prefix(CALL_ID, LAUNCHED) == PREFIX
    launched_ms = int(datetime(2026, 1, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)
    assert evidence.call_prefix(CALL_ID, launched_ms) == f"calls/2026/01/{CALL_ID}/"
    assert evidence.link_key(PREFIX, 1) == PREFIX + "chain/000001.json"
    assert evidence.signature_key(PREFIX + "chain/000001.json") == PREFIX + "chain/000001.sig"
    assert evidence.segment_key(PREFIX, PID, 12, "mkv") == f"{PREFIX}{PID}/000012.mkv"
    assert evidence.replay_key(PREFIX, PID, "mp4") == f"{PREFIX}replay/{PID}.mp4"
    assert evidence.manifest_key(PREFIX) == PREFIX + "manifest.json"
    assert evidence.call_id_of(PREFIX) == CALL_ID
    assert evidence.link_index(PREFIX, PREFIX + "chain/000042.json") == 42
    assert evidence.link_index(PREFIX, PREFIX + "chain/42.json") is None
    assert evidence.parse_segment_key(PREFIX, f"{PREFIX}{PID}/000003.webm") == (PID, 3)
    assert evidence.parse_segment_key(PREFIX, f"{PREFIX}replay/000003.webm") is None


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "chain", "replay", "keys", ".hidden"])
def test_ids_that_would_break_the_layout_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        evidence.segment_key(PREFIX, bad, 1, "webm")
    with pytest.raises(ValueError):
        evidence.call_prefix(bad, LAUNCHED)


def test_key_builders_refuse_bad_numbers_and_extensions() -> None:
    with pytest.raises(ValueError):
        evidence.link_key(PREFIX, 0)
    with pytest.raises(ValueError):
        evidence.segment_key(PREFIX, PID, 1, "mp4")
    with pytest.raises(ValueError):
        evidence.signature_key(PREFIX + "chain/000001.sig")
    with pytest.raises(ValueError):
        evidence.link_key("calls/2026/11/x", 1)  # no trailing slash


# -- builders ---------------------------------------------------------------------------------


def segment(number: int, previous: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "call_id": CALL_ID,
        "index": number,
        "prev": previous,
        "key_id": "0123456789abcdef",
        "utc": LAUNCHED,
        "participant": PID,
        "object_key": evidence.segment_key(PREFIX, PID, number, "webm"),
        "size": 10,
        "sha256": "ab" * 32,
        "start_utc": LAUNCHED,
        "end_utc": LAUNCHED + timedelta(seconds=10),
        "first_pts_ms": 0,
        "last_pts_ms": 9_966,
        "gaps": [],
    }
    fields.update(changes)
    return evidence.segment_link(**fields)


def test_segment_link_has_exactly_the_spec_fields() -> None:
    gap = evidence.gap_record(
        track="video", seq_from=65530, seq_to=3, packets=10, utc=LAUNCHED, reason="tap_overflow"
    )
    link = segment(1, evidence.GENESIS, gaps=[gap])
    assert set(link) == {
        "v",
        "call_id",
        "index",
        "prev",
        "kind",
        "key_id",
        "utc",
        "participant",
        "object",
        "size",
        "sha256",
        "start_utc",
        "end_utc",
        "first_pts_ms",
        "last_pts_ms",
        "gaps",
    }
    assert link["kind"] == "segment" and link["v"] == 1
    assert link["utc"] == "2026-11-25T21:30:00.000Z"
    assert link["gaps"] == [
        {
            "track": "video",
            "seq_from": 65530,
            "seq_to": 3,
            "packets": 10,
            "utc": "2026-11-25T21:30:00.000Z",
            "reason": "tap_overflow",
        }
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"prev": "xyz"},
        {"index": 0},
        {"size": -1},
        {"sha256": "AB" * 32},
        {"key_id": "short"},
        {"start_utc": "yesterday"},
        {"gaps": [{"track": "video"}]},
    ],
)
def test_segment_link_refuses_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        segment(1, evidence.GENESIS, **changes)


def test_gap_record_refuses_an_unknown_reason_or_track() -> None:
    with pytest.raises(ValueError, match="reason"):
        evidence.gap_record(
            track="video", seq_from=None, seq_to=None, packets=0, utc=LAUNCHED, reason="cosmic"
        )
    with pytest.raises(ValueError, match="track"):
        evidence.gap_record(
            track="data", seq_from=1, seq_to=2, packets=1, utc=LAUNCHED, reason="packet_loss"
        )


def test_event_link_checks_the_event_type_and_gap_events() -> None:
    link = evidence.event_link(
        call_id=CALL_ID,
        index=1,
        prev=evidence.GENESIS,
        key_id="0123456789abcdef",
        utc=LAUNCHED,
        event={"type": "participant_joined", "participant": PID},
    )
    assert link["kind"] == "event" and link["event"]["participant"] == PID
    base: dict[str, Any] = {
        "call_id": CALL_ID,
        "index": 2,
        "prev": "0" * 64,
        "key_id": "0123456789abcdef",
    }
    with pytest.raises(ValueError, match="event type"):
        evidence.event_link(**base, utc=LAUNCHED, event={"type": "party"})
    gap = evidence.gap_record(
        track="audio", seq_from=1, seq_to=9, packets=9, utc=LAUNCHED, reason="packet_loss"
    )
    evidence.event_link(**base, utc=LAUNCHED, event={"type": "gap", "participant": PID, **gap})
    with pytest.raises(ValueError, match="participant"):
        evidence.event_link(**base, utc=LAUNCHED, event={"type": "gap", **gap})


def manifest_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "case_id": "case-1",
        "case_number": "(2026)京0105民调123号",
        "dispute_type": "neighbour",
        "status": "complete",
        "launched_utc": LAUNCHED,
        "answered_utc": LAUNCHED + timedelta(seconds=5),
        "ended_utc": LAUNCHED + timedelta(minutes=10),
        "participants": [
            {
                "id": PID,
                "role": "party",
                "principal_kind": "kiosk",
                "principal_id": "k1",
                "joined_utc": evidence.utc_iso(LAUNCHED),
                "left_utc": None,
            }
        ],
        "devices": ["k1"],
        "consent": None,
        "tracks": [
            {
                "participant": PID,
                "video_codec": "vp8",
                "audio_codec": "opus",
                "start_offset_ms": 0,
                "offset_source": "rtcp_sr",
            }
        ],
        "segments": 0,
        "replay": [],
        "software": {"name": "mediation", "version": "0.1.0"},
        "clock": {"source": "ntp", "synchronized": True},
    }
    fields.update(changes)
    return fields


def test_manifest_builder_fills_version_kind_and_timestamp_slot() -> None:
    doc = evidence.manifest(
        call_id=CALL_ID,
        chain={"count": 0, "head": evidence.GENESIS, "last_object": None},
        key_id="0123456789abcdef",
        utc=LAUNCHED,
        **manifest_fields(),
    )
    assert doc["kind"] == "manifest" and doc["v"] == 1 and doc["timestamp_token"] is None
    assert doc["launched_utc"] == "2026-11-25T21:30:00.000Z"
    assert evidence.manifest_problems(doc) == []
    with pytest.raises(ValueError, match="status"):
        evidence.manifest(
            call_id=CALL_ID,
            chain={"count": 0, "head": evidence.GENESIS, "last_object": None},
            key_id="0123456789abcdef",
            utc=LAUNCHED,
            **manifest_fields(status="paused"),
        )


# -- the pure chain check ---------------------------------------------------------------------


def good_chain(n: int = 4) -> list[tuple[int, bytes]]:
    links, prev = [], evidence.GENESIS
    for index in range(1, n + 1):
        data = evidence.canonical(segment(index, prev))
        links.append((index, data))
        prev = evidence.link_hash(data)
    return links


def reasons(check: evidence.ChainCheck, index: int) -> str:
    key = evidence.link_key(PREFIX, index)
    return " | ".join(p.reason for p in check.problems if p.object_key == key)


def test_a_good_chain_checks_and_reports_its_head() -> None:
    links = good_chain()
    check = evidence.check_chain(PREFIX, CALL_ID, list(reversed(links)))
    assert check.ok, check.problems
    assert check.count == 4 and check.head == evidence.link_hash(links[-1][1])


def test_bad_json_is_named() -> None:
    links = good_chain()
    links[1] = (2, links[1][1][:-1])
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert "not valid JSON" in reasons(check, 2)
    assert reasons(check, 3).startswith("prev")  # its hash changed as well


def test_non_canonical_bytes_are_named() -> None:
    links = good_chain()
    links[0] = (1, json.dumps(json.loads(links[0][1]), indent=1).encode())
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert "not in canonical JSON form" in reasons(check, 1)


def test_an_index_gap_names_the_missing_link() -> None:
    links = good_chain()
    del links[1]
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert reasons(check, 2).startswith("missing")
    assert reasons(check, 3) == ""  # its prev cannot be checked against an absent link
    assert check.count == 4


def test_a_wrong_prev_is_named() -> None:
    links = good_chain()
    obj = json.loads(links[2][1])
    obj["prev"] = "1" * 64
    links[2] = (3, evidence.canonical(obj))
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert reasons(check, 3).startswith("prev")


def test_a_wrong_first_prev_is_named() -> None:
    links = good_chain()
    obj = json.loads(links[0][1])
    obj["prev"] = "1" * 64
    links[0] = (1, evidence.canonical(obj))
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert "genesis" in reasons(check, 1)


def test_a_wrong_call_id_is_named() -> None:
    links = good_chain()
    obj = json.loads(links[3][1])
    obj["call_id"] = "other"
    links[3] = (4, evidence.canonical(obj))
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert "call_id" in reasons(check, 4)


def test_reordered_links_are_named() -> None:
    links = good_chain()
    links[1], links[2] = (2, links[2][1]), (3, links[1][1])
    check = evidence.check_chain(PREFIX, CALL_ID, links)
    assert "reordered" in reasons(check, 2) and "reordered" in reasons(check, 3)


def test_a_segment_named_twice_or_outside_the_call_is_named() -> None:
    first = evidence.canonical(segment(1, evidence.GENESIS))
    twice = evidence.canonical(
        segment(
            2,
            evidence.link_hash(first),
            object_key=evidence.segment_key(PREFIX, PID, 1, "webm"),
        )
    )
    outside = evidence.canonical(
        segment(3, evidence.link_hash(twice), object_key=f"calls/2026/11/other/{PID}/000003.webm")
    )
    check = evidence.check_chain(PREFIX, CALL_ID, [(1, first), (2, twice), (3, outside)])
    assert "already named by link 1" in reasons(check, 2)
    assert "not a segment of this call" in reasons(check, 3)


# -- the chain writer -------------------------------------------------------------------------


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys")


def spool_segment(writer: ChainWriter, n: int, data: bytes | None = None) -> str:
    key = evidence.segment_key(PREFIX, PID, n, "webm")
    path = writer.path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else f"segment {n}".encode() * 100)
    return key


def add_segment(writer: ChainWriter, n: int) -> Appended:
    key = spool_segment(writer, n)
    start = LAUNCHED + timedelta(seconds=10 * (n - 1))
    return writer.append_segment(
        PID,
        key,
        start_utc=start,
        end_utc=start + timedelta(seconds=10),
        first_pts_ms=10_000 * (n - 1),
        last_pts_ms=10_000 * n - 34,
    )


def test_writer_commits_signed_canonical_links_in_order(tmp_path: Path, keyring: KeyRing) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    assert tuple(writer.head) == (0, evidence.GENESIS, None)
    first = writer.append_event({"type": "recording_started"})
    index, link_hash, keys = add_segment(writer, 1)
    assert first.link_index == 1 and index == 2
    assert keys == [PREFIX + "chain/000002.json", PREFIX + "chain/000002.sig"]
    data = writer.path(keys[0]).read_bytes()
    link = json.loads(data)
    assert evidence.canonical(link) == data and evidence.link_hash(data) == link_hash
    assert link["prev"] == first.hash and link["key_id"] == keyring.current_key_id
    size, sha256 = file_digest(writer.path(link["object"]))
    assert (link["size"], link["sha256"]) == (size, sha256)
    assert len(writer.path(keys[1]).read_bytes()) == 64
    assert tuple(writer.head) == (2, link_hash, keys[0])
    assert not list((tmp_path / "spool").rglob(".*"))  # no temp file left behind


def test_writer_refuses_a_segment_not_in_the_spool_or_of_another_participant(
    tmp_path: Path, keyring: KeyRing
) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    with pytest.raises(ChainWriterError, match="not in the spool"):
        writer.append_segment(
            PID,
            evidence.segment_key(PREFIX, PID, 1, "webm"),
            start_utc=LAUNCHED,
            end_utc=LAUNCHED,
            first_pts_ms=0,
            last_pts_ms=0,
        )
    key = spool_segment(writer, 1)
    with pytest.raises(ValueError):
        writer.append_segment(
            "someone-else", key, start_utc=LAUNCHED, end_utc=LAUNCHED, first_pts_ms=0, last_pts_ms=0
        )
    assert writer.head.links == 0


def test_a_reopened_writer_continues_the_chain(tmp_path: Path, keyring: KeyRing) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    add_segment(writer, 1)
    head = writer.head
    again = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    assert again.head == head and again.segments == 1 and again.torn == []
    index, _, keys = add_segment(again, 2)
    assert index == 3
    assert json.loads(again.path(keys[0]).read_bytes())["prev"] == head.hash


@pytest.mark.parametrize("tail", ["json without sig", "unparsable json", "short sig", "sig only"])
def test_a_torn_tail_is_moved_aside_on_reopen(
    tmp_path: Path, keyring: KeyRing, tail: str, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    add_segment(writer, 1)
    head = writer.head
    third = add_segment(writer, 2)
    doc, sig = (writer.path(k) for k in third.keys)
    if tail == "json without sig":
        sig.unlink()
    elif tail == "unparsable json":
        doc.write_bytes(doc.read_bytes()[:-7])
    elif tail == "short sig":
        sig.write_bytes(sig.read_bytes()[:10])
    else:
        doc.unlink()
    chain_dir = doc.parent
    (chain_dir / ".000003.json.x1y2.tmp").write_bytes(b"{")  # a crash's leftover temp file

    reopened = ChainWriter(spool, CALL_ID, PREFIX, keyring)

    assert reopened.head == head
    assert reopened.torn and all(p.name.startswith("000003.") for p in reopened.torn)
    assert all(p.name.endswith(".torn") for p in reopened.torn)
    for path in reopened.torn:  # the work folder goes once the recording closes: logged
        size, digest = file_digest(path)
        assert f"{path.name}, {size} bytes, sha256 {digest}" in caplog.text
    assert sorted(p.name for p in chain_dir.iterdir() if not p.name.endswith(".torn")) == [
        "000001.json",
        "000001.sig",
        "000002.json",
        "000002.sig",
    ]
    index, _, keys = add_segment(reopened, 2)
    assert index == 3
    assert json.loads(reopened.path(keys[0]).read_bytes())["prev"] == head.hash


def test_a_second_torn_file_at_the_same_index_keeps_the_first(
    tmp_path: Path, keyring: KeyRing
) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    for _ in range(2):
        appended = writer.append_event({"type": "recording_started"})
        writer.path(appended.keys[1]).unlink()
        writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    names = sorted(p.name for p in writer.torn[0].parent.iterdir())
    assert names == ["000001.json.torn", "000001.json.torn2"]


def test_an_incomplete_link_before_the_tail_is_refused(tmp_path: Path, keyring: KeyRing) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    for _ in range(3):
        writer.append_event({"type": "recording_started"})
    writer.path(PREFIX + "chain/000002.sig").unlink()
    with pytest.raises(ChainWriterError, match="link 2 is incomplete"):
        ChainWriter(spool, CALL_ID, PREFIX, keyring)


def test_a_link_edited_in_the_spool_is_refused_on_reopen(tmp_path: Path, keyring: KeyRing) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    for _ in range(3):
        writer.append_event({"type": "recording_started"})
    path = writer.path(PREFIX + "chain/000002.json")
    obj = json.loads(path.read_bytes())
    obj["event"]["type"] = "recording_stopped"
    path.write_bytes(evidence.canonical(obj))
    with pytest.raises(ChainWriterError, match="000003.json: prev"):
        ChainWriter(spool, CALL_ID, PREFIX, keyring)


def test_a_writer_resumes_from_the_database_head_when_the_spool_was_emptied(
    tmp_path: Path, keyring: KeyRing
) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    add_segment(writer, 1)
    head = writer.head
    for key in (PREFIX + "chain/000001.json", PREFIX + "chain/000001.sig"):
        writer.path(key).unlink()  # uploaded, then removed from the spool
    partial = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    assert partial.head == head and partial.segments is None
    for key in (PREFIX + "chain/000002.json", PREFIX + "chain/000002.sig"):
        writer.path(key).unlink()
    empty = ChainWriter(spool, CALL_ID, PREFIX, keyring, resume_from=(head.links, head.hash))
    assert empty.head == head
    assert empty.append_event({"type": "recording_stopped"}).link_index == 3
    with pytest.raises(ChainWriterError, match="not the head"):
        ChainWriter(spool, CALL_ID, PREFIX, keyring, resume_from=(3, "1" * 64))


def test_the_manifest_closes_the_chain(tmp_path: Path, keyring: KeyRing) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    add_segment(writer, 1)
    keys = writer.write_manifest(manifest_fields(segments=1) | {"segments": 1})
    assert keys == [PREFIX + "manifest.json", PREFIX + "manifest.sig"]
    doc = json.loads(writer.path(keys[0]).read_bytes())
    assert doc["chain"] == {
        "count": 2,
        "head": writer.head.hash,
        "last_object": PREFIX + "chain/000002.json",
    }
    assert doc["segments"] == 1 and doc["call_id"] == CALL_ID
    with pytest.raises(ChainClosed):
        writer.append_event({"type": "recording_stopped"})
    assert ChainWriter(spool, CALL_ID, PREFIX, keyring).closed
    report = verify(FolderSource(spool / PREFIX, PREFIX), PREFIX, keyring.trusted())
    assert report.ok, report.format_report()


def test_the_writer_counts_segments_for_the_manifest(tmp_path: Path, keyring: KeyRing) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    add_segment(writer, 1)
    add_segment(writer, 2)
    fields = manifest_fields()
    del fields["segments"]
    writer.write_manifest(fields)
    doc = json.loads(writer.path(PREFIX + "manifest.json").read_bytes())
    assert doc["segments"] == 2


def test_the_writer_refuses_manifest_fields_it_owns(tmp_path: Path, keyring: KeyRing) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    with pytest.raises(ValueError, match="chain"):
        writer.write_manifest(manifest_fields(chain={"count": 9}))
    assert not writer.closed


def test_a_torn_manifest_is_moved_aside_and_can_be_written_again(
    tmp_path: Path, keyring: KeyRing
) -> None:
    spool = tmp_path / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    keys = writer.write_manifest(manifest_fields(status="interrupted"))
    writer.path(keys[1]).unlink()
    reopened = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    assert not reopened.closed
    assert [p.name for p in reopened.torn] == ["manifest.json.torn"]
    reopened.write_manifest(manifest_fields(status="interrupted"))
    assert reopened.closed


class RotatingSigner:
    """A real key ring that rotates once, right after the writer read the key id."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.rotated = False

    @property
    def current_key_id(self) -> str:
        return self.ring.current_key_id

    def sign(self, data: bytes) -> tuple[str, bytes]:
        if not self.rotated:
            self.rotated = True
            self.ring.rotate()
        return self.ring.sign(data)


def test_a_rotation_between_building_and_signing_rebuilds_the_link(
    tmp_path: Path, keyring: KeyRing
) -> None:
    old = keyring.current_key_id
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, RotatingSigner(keyring))
    _, _, keys = writer.append_event({"type": "recording_started"})
    link = json.loads(writer.path(keys[0]).read_bytes())
    assert link["key_id"] == keyring.current_key_id != old
    report = verify(
        FolderSource(tmp_path / "spool" / PREFIX, PREFIX),
        PREFIX,
        keyring.trusted(),
        require_manifest=False,
    )
    assert report.ok, report.format_report()


def test_spooled_chain_files_are_private(tmp_path: Path, keyring: KeyRing) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    _, _, keys = writer.append_event({"type": "recording_started"})
    for key in keys:
        assert stat.S_IMODE(writer.path(key).stat().st_mode) == 0o600


def test_a_segment_hashed_by_the_caller_need_not_be_in_the_spool_yet(
    tmp_path: Path, keyring: KeyRing
) -> None:
    writer = ChainWriter(tmp_path / "spool", CALL_ID, PREFIX, keyring)
    elsewhere = tmp_path / "recorder" / "000001.webm"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"closed and fsynced by the recorder")
    size, sha256 = file_digest(elsewhere)
    _, _, keys = writer.append_segment(
        participant=PID,
        object_key=evidence.segment_key(PREFIX, PID, 1, "webm"),
        size=size,
        sha256=sha256,
        start_utc=LAUNCHED,
        end_utc=LAUNCHED + timedelta(seconds=10),
        first_pts_ms=0,
        last_pts_ms=9_966,
    )
    link = json.loads(writer.path(keys[0]).read_bytes())
    assert (link["size"], link["sha256"]) == (size, sha256)
