"""Verify and export on a recorded call: intact it passes, every tampering is named.

The call is written by the real chain writer with a real key ring into a spool, "uploaded"
into a real LocalObjectStore, and tampered with either inside the store or inside an export
folder. Segment contents are arbitrary bytes: only their hashes matter here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder import evidence
from recorder.chain_writer import ChainWriter
from recorder.export import ExportError, export_call
from recorder.keyring import KeyRing, TrustedKeys, key_id_of, public_pem
from recorder.verify import FolderSource, VerifyReport, verify
from storage.objects import LocalObjectStore

ROOT = Path(__file__).resolve().parents[2]
CALL_ID = "0190f3b2-7c1a-7000-8000-0000000000aa"
P1 = "0190f3b2-7c1a-7000-8000-0000000000b1"
P2 = "0190f3b2-7c1a-7000-8000-0000000000b2"
LAUNCHED = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)
PREFIX = evidence.call_prefix(CALL_ID, LAUNCHED)
ROUNDS = 3
LINKS = 14  # 4 events, 6 segments, 1 gap event, 3 events
SEGMENTS = [evidence.segment_key(PREFIX, p, n, "webm") for n in (1, 2, 3) for p in (P1, P2)]
REPLAY = [evidence.replay_key(PREFIX, P1, "webm"), evidence.replay_key(PREFIX, P2, "webm")]
MANIFEST = evidence.manifest_key(PREFIX)
POSITIONS = {"first": 0, "middle": 3, "last": 5}


def link(index: int) -> str:
    return evidence.link_key(PREFIX, index)


def sig(index: int) -> str:
    return evidence.signature_key(link(index))


# -- a recorded call --------------------------------------------------------------------------


@dataclass
class Call:
    tmp: Path
    spool: Path
    store: LocalObjectStore
    keyring: KeyRing
    writer: ChainWriter


def consent_record() -> dict[str, Any]:
    return {
        "purposes": {"evidence": True, "training": False},
        "notice_version": 3,
        "language": "zh-CN",
        "device_id": "kiosk-7",
        "captured_by": "mediator-2",
        "parties_agreed": 2,
        "utc": evidence.utc_iso(LAUNCHED),
    }


def write_spool_file(writer: ChainWriter, key: str, data: bytes) -> None:
    path = writer.path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def record(
    tmp: Path,
    *,
    manifest: bool = True,
    between_rounds: Callable[[KeyRing], None] | None = None,
    segment_shift: timedelta = timedelta(0),
) -> Call:
    keyring = KeyRing(tmp / "keys")
    spool = tmp / "spool"
    writer = ChainWriter(spool, CALL_ID, PREFIX, keyring)
    writer.append_event({"type": "recording_started"})
    writer.append_event({"type": "consent", **consent_record()})
    for pid in (P1, P2):
        writer.append_event({"type": "participant_joined", "participant": pid})
    for n in range(1, ROUNDS + 1):
        for pid in (P1, P2):
            key = evidence.segment_key(PREFIX, pid, n, "webm")
            write_spool_file(writer, key, f"{pid} segment {n} ".encode() * (200 + n))
            start = LAUNCHED + timedelta(seconds=10 * (n - 1)) + segment_shift
            gaps = []
            if (pid, n) == (P1, 2):
                gaps.append(
                    evidence.gap_record(
                        track="video",
                        seq_from=65530,
                        seq_to=12,
                        packets=18,
                        utc=start,
                        reason="tap_overflow",
                    )
                )
            writer.append_segment(
                pid,
                key,
                start_utc=start,
                end_utc=start + timedelta(seconds=10),
                first_pts_ms=10_000 * (n - 1),
                last_pts_ms=10_000 * n - 34,
                gaps=gaps,
            )
        if n == 1 and between_rounds is not None:
            between_rounds(keyring)
    writer.append_event(
        {
            "type": "gap",
            "participant": P2,
            "track": "audio",
            "seq_from": None,
            "seq_to": None,
            "packets": 0,
            "utc": evidence.utc_iso(LAUNCHED + timedelta(seconds=30)),
            "reason": "participant_dropped",
        }
    )
    for pid in (P1, P2):
        writer.append_event({"type": "participant_left", "participant": pid})
    writer.append_event({"type": "recording_stopped"})
    assert writer.head.links == LINKS
    if manifest:  # replay files are made after the call, just before the manifest
        replay = []
        for pid, key in zip((P1, P2), REPLAY, strict=True):
            write_spool_file(writer, key, f"replay of {pid} ".encode() * 500)
            size, sha256 = writer.digest(key)
            replay.append({"participant": pid, "object": key, "size": size, "sha256": sha256})
        writer.write_manifest(manifest_fields(replay))
    store = LocalObjectStore(tmp / "store")
    upload(spool, store)
    return Call(tmp, spool, store, keyring, writer)


def manifest_fields(replay: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "case_id": "case-0001",
        "case_number": "(2026)京0105民调123号",
        "dispute_type": "neighbour",
        "status": "complete",
        "launched_utc": LAUNCHED,
        "answered_utc": LAUNCHED + timedelta(seconds=4),
        "ended_utc": LAUNCHED + timedelta(seconds=35),
        "participants": [
            {
                "id": pid,
                "role": role,
                "principal_kind": "kiosk" if role == "party" else "user",
                "principal_id": f"principal-{role}",
                "joined_utc": evidence.utc_iso(LAUNCHED),
                "left_utc": evidence.utc_iso(LAUNCHED + timedelta(seconds=35)),
            }
            for pid, role in ((P1, "party"), (P2, "mediator"))
        ],
        "devices": ["kiosk-7"],
        "consent": consent_record(),
        "tracks": [
            {
                "participant": pid,
                "video_codec": "vp8",
                "audio_codec": "opus",
                "start_offset_ms": offset,
                "offset_source": source,
            }
            for pid, offset, source in ((P1, 0, "rtcp_sr"), (P2, 412, "arrival"))
        ],
        "replay": replay,
        "software": {"name": "mediation", "version": "0.1.0"},
        "clock": {"source": "chrony", "synchronized": True},
    }


def upload(spool: Path, store: LocalObjectStore) -> None:
    """What the uploader does: every committed spool file under its own key."""
    for path in sorted(spool.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and ".torn" not in path.name:
            store.put(path.relative_to(spool).as_posix(), path.read_bytes())


# -- where the tampering happens --------------------------------------------------------------


class Target:
    """A recorded call in one place (the store, or an export folder), to tamper and verify."""

    name = ""

    def __init__(self, call: Call) -> None:
        self.call = call

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def verify(self, **kwargs: Any) -> VerifyReport:
        raise NotImplementedError

    def flip(self, key: str) -> None:
        data = bytearray(self.read(key))
        data[len(data) // 2] ^= 0x01
        self.write(key, bytes(data))

    def swap(self, a: str, b: str) -> None:
        data_a, data_b = self.read(a), self.read(b)
        self.write(a, data_b)
        self.write(b, data_a)


class StoreTarget(Target):
    name = "store"

    def read(self, key: str) -> bytes:
        return self.call.store.get(key)

    def write(self, key: str, data: bytes) -> None:
        self.call.store.put(key, data)

    def delete(self, key: str) -> None:
        self.call.store.delete(key)

    def verify(self, **kwargs: Any) -> VerifyReport:
        return verify(self.call.store, PREFIX, self.call.keyring.trusted(), **kwargs)


class ExportTarget(Target):
    """Trust comes from the operator's registry, never from the bundle's own keys/."""

    name = "export"

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.folder = call.tmp / "export"
        export_call(call.store, PREFIX, self.folder, call.keyring.public_keys())

    def path(self, key: str) -> Path:
        assert key.startswith(PREFIX)
        return self.folder / key[len(PREFIX) :]

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        self.path(key).parent.mkdir(parents=True, exist_ok=True)
        self.path(key).write_bytes(data)

    def delete(self, key: str) -> None:
        self.path(key).unlink()

    def verify(self, **kwargs: Any) -> VerifyReport:
        source = FolderSource(self.folder)
        assert source.prefix == PREFIX
        return verify(source, PREFIX, self.call.keyring.trusted(), **kwargs)


@pytest.fixture
def call(tmp_path: Path) -> Call:
    return record(tmp_path)


@pytest.fixture(params=[StoreTarget, ExportTarget], ids=["store", "export"])
def target(request: pytest.FixtureRequest, call: Call) -> Target:
    factory: Callable[[Call], Target] = request.param
    return factory(call)


def failed_keys(report: VerifyReport) -> set[str]:
    assert not report.ok
    assert report.format_report().startswith("FAILED")
    return {p.object_key for p in report.problems}


def reasons(report: VerifyReport, key: str) -> str:
    return " | ".join(report.failed(key))


# -- intact -----------------------------------------------------------------------------------


def test_an_intact_recording_verifies(target: Target) -> None:
    report = target.verify()
    assert report.ok, report.format_report()
    assert report.format_report().startswith("OK ")
    assert (report.links, report.segments, report.replay) == (LINKS, 6, 2)
    assert report.bytes == sum(len(target.read(k)) for k in SEGMENTS + REPLAY)
    assert report.head == (target.call.writer.head.links, target.call.writer.head.hash)
    assert report.manifest_status == "complete"


@pytest.mark.parametrize(
    "shift", [timedelta(days=365 * 70), timedelta(seconds=-35)], ids=["70 years", "before launch"]
)
def test_segments_whose_times_lie_outside_the_call_are_named(tmp_path: Path, shift) -> None:
    """A clock error is caught even when every hash and signature holds: media times once
    counted from 1900 put a recording's segments in 2096."""
    report = StoreTarget(record(tmp_path, segment_shift=shift)).verify()
    segment_links = [link(n) for n in range(5, 11)]  # after 4 events: 6 segment links
    assert failed_keys(report) == set(segment_links)
    assert "lies outside the call" in reasons(report, segment_links[0])


def test_a_chain_still_being_written_verifies_without_a_manifest(tmp_path: Path) -> None:
    call = record(tmp_path, manifest=False)
    head = call.writer.head
    report = verify(
        call.store,
        PREFIX,
        call.keyring.trusted(),
        require_manifest=False,
        expected_head=(head.links, head.hash),
    )
    assert report.ok, report.format_report()
    assert report.manifest_status is None
    required = verify(call.store, PREFIX, call.keyring.trusted())
    assert failed_keys(required) == {MANIFEST}


# -- tampering, each named --------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
def test_a_flipped_byte_in_a_segment_is_named(target: Target, position: str) -> None:
    segment = SEGMENTS[POSITIONS[position]]
    target.flip(segment)
    report = target.verify()
    assert failed_keys(report) == {segment}
    assert "sha256" in reasons(report, segment)


@pytest.mark.parametrize("index", [1, 7, LINKS])
def test_a_flipped_byte_in_a_link_is_named(target: Target, index: int) -> None:
    target.flip(link(index))
    report = target.verify()
    assert link(index) in failed_keys(report)
    assert re.search("signature does not verify|not valid JSON", reasons(report, link(index)))


@pytest.mark.parametrize("index", [1, 7, LINKS])
def test_a_flipped_byte_in_a_signature_is_named(target: Target, index: int) -> None:
    target.flip(sig(index))
    report = target.verify()
    assert failed_keys(report) == {link(index)}
    assert f"signature does not verify with key {target.call.keyring.current_key_id}" in (
        reasons(report, link(index))
    )


@pytest.mark.parametrize("position", POSITIONS)
def test_a_missing_segment_is_named(target: Target, position: str) -> None:
    segment = SEGMENTS[POSITIONS[position]]
    target.delete(segment)
    report = target.verify()
    assert failed_keys(report) == {segment}
    assert reasons(report, segment).startswith("missing: named by link")


@pytest.mark.parametrize("index", [1, 7, LINKS])
def test_a_missing_signature_is_named(target: Target, index: int) -> None:
    target.delete(sig(index))
    report = target.verify()
    assert failed_keys(report) == {sig(index)}
    assert report.format_report().splitlines()[1] == f"  {sig(index)}: " + reasons(
        report, sig(index)
    )


@pytest.mark.parametrize("index", [1, 7, LINKS - 1])
def test_a_removed_link_is_named_and_its_segment_becomes_extra(target: Target, index: int) -> None:
    obj = json.loads(target.read(link(index)))
    target.delete(link(index))
    target.delete(sig(index))
    report = target.verify()
    if obj["kind"] == "segment":  # now unnamed, and one fewer than the manifest counts
        assert failed_keys(report) == {link(index), obj["object"], MANIFEST}
        assert "the chain links 5" in reasons(report, MANIFEST)
    else:
        assert failed_keys(report) == {link(index)}
    assert "missing" in reasons(report, link(index))


@pytest.mark.parametrize(
    "extra",
    [
        f"{PREFIX}{P1}/000000.webm",
        f"{PREFIX}{P1}/000004.webm",
        f"{PREFIX}0190f3b2-7c1a-7000-8000-0000000000b9/000001.webm",
        f"{PREFIX}replay/0190f3b2-7c1a-7000-8000-0000000000b9.webm",
        f"{PREFIX}chain/000015.sig",
        f"{PREFIX}notes.txt",
    ],
)
def test_an_extra_object_is_named(target: Target, extra: str) -> None:
    target.write(extra, target.read(SEGMENTS[0]))
    report = target.verify()
    assert failed_keys(report) == {extra}
    assert reasons(report, extra).startswith("extra object")


@pytest.mark.parametrize("first", [1, 7, LINKS - 1])
def test_reordered_links_are_named(target: Target, first: int) -> None:
    target.swap(link(first), link(first + 1))
    target.swap(sig(first), sig(first + 1))
    report = target.verify()
    keys = failed_keys(report)
    assert {link(first), link(first + 1)} <= keys
    assert "reordered" in reasons(report, link(first))
    assert "reordered" in reasons(report, link(first + 1))


@pytest.mark.parametrize("cut", [1, 3])
def test_a_truncated_tail_is_named_by_the_manifest(target: Target, cut: int) -> None:
    for index in range(LINKS - cut + 1, LINKS + 1):
        target.delete(link(index))
        target.delete(sig(index))
    report = target.verify()
    first_cut = link(LINKS - cut + 1)
    assert failed_keys(report) == {first_cut}
    assert "tail truncated" in reasons(report, first_cut)


def test_a_truncated_tail_with_its_manifest_removed_is_named(target: Target) -> None:
    for key in (link(LINKS), sig(LINKS), MANIFEST, evidence.signature_key(MANIFEST)):
        target.delete(key)
    # The replay files are named by the manifest only: gone with it, they are extras too.
    report = target.verify()
    assert failed_keys(report) == {MANIFEST, *REPLAY}
    assert reasons(report, MANIFEST).startswith("missing")
    head = target.call.writer.head
    report = target.verify(expected_head=(head.links, head.hash), require_manifest=False)
    assert failed_keys(report) == {link(LINKS), *REPLAY}
    assert "the database records 14 links, found 13" in reasons(report, link(LINKS))


def test_a_truncated_tail_of_a_chain_in_progress_is_named_by_the_database(tmp_path: Path) -> None:
    call = record(tmp_path, manifest=False)
    head = call.writer.head
    call.store.delete(link(LINKS))
    call.store.delete(sig(LINKS))
    report = verify(
        call.store,
        PREFIX,
        call.keyring.trusted(),
        require_manifest=False,
        expected_head=(head.links, head.hash),
    )
    assert failed_keys(report) == {link(LINKS)}
    assert "tail truncated" in reasons(report, link(LINKS))


def test_a_chain_longer_or_different_than_the_database_says_is_named(target: Target) -> None:
    head = target.call.writer.head
    report = target.verify(expected_head=(head.links - 2, head.hash))
    assert failed_keys(report) == {link(LINKS - 1)}
    assert "extra link" in reasons(report, link(LINKS - 1))
    report = target.verify(expected_head=(head.links, "1" * 64))
    assert failed_keys(report) == {link(LINKS)}


class Forger:
    """Someone who rewrites the chain from link `index` on and signs it with their own key."""

    def __init__(self, target: Target, private: Ed25519PrivateKey, *, key_id: str) -> None:
        self.target = target
        self.private = private
        self.key_id = key_id

    def sign(self, key: str, obj: dict[str, Any]) -> str:
        obj["key_id"] = self.key_id
        data = evidence.canonical(obj)
        self.target.write(key, data)
        self.target.write(evidence.signature_key(key), self.private.sign(data))
        return evidence.link_hash(data)

    def rewrite_from(self, index: int, change: Callable[[dict[str, Any]], None]) -> None:
        prev = evidence.link_hash(self.target.read(link(index - 1))) if index > 1 else None
        for i in range(index, LINKS + 1):
            obj = json.loads(self.target.read(link(i)))
            if i == index:
                change(obj)
            if prev is not None:
                obj["prev"] = prev
            prev = self.sign(link(i), obj)
        doc = json.loads(self.target.read(MANIFEST))
        doc["chain"]["head"] = prev
        self.sign(MANIFEST, doc)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("claims", ["own key id", "server key id"])
def test_a_replaced_segment_with_the_chain_re_signed_by_another_key_is_named(
    target: Target, position: str, claims: str
) -> None:
    segment = SEGMENTS[POSITIONS[position]]
    index = 5 + POSITIONS[position]
    assert json.loads(target.read(link(index)))["object"] == segment
    forged = b"forged video " * 300
    target.write(segment, forged)
    private = Ed25519PrivateKey.generate()
    own = key_id_of(private.public_key())
    key_id = own if claims == "own key id" else target.call.keyring.current_key_id
    if isinstance(target, ExportTarget):  # the forger also ships their key in the bundle
        (target.folder / "keys" / f"{own}.pem").write_text(public_pem(private.public_key()))

    def replace(obj: dict[str, Any]) -> None:
        obj["size"] = len(forged)
        obj["sha256"] = evidence.link_hash(forged)

    Forger(target, private, key_id=key_id).rewrite_from(index, replace)
    report = target.verify()
    assert segment not in failed_keys(report)  # it matches its forged link…
    expected = "not trusted" if claims == "own key id" else "signature does not verify"
    for i in range(index, LINKS + 1):  # …but no forged link is accepted
        assert expected in reasons(report, link(i))
    assert expected in reasons(report, MANIFEST)
    assert all(link(i) not in failed_keys(report) for i in range(1, index))


def test_swapped_replay_files_are_named(target: Target) -> None:
    target.swap(*REPLAY)
    report = target.verify()
    assert failed_keys(report) == set(REPLAY)
    for key in REPLAY:
        assert "as the manifest says" in reasons(report, key)


@pytest.mark.parametrize(
    "edit",
    ["status", "chain count", "replay hash", "whitespace"],
)
def test_an_edited_manifest_is_named(target: Target, edit: str) -> None:
    doc = json.loads(target.read(MANIFEST))
    if edit == "status":
        doc["status"] = "interrupted"
    elif edit == "chain count":
        doc["chain"]["count"] = LINKS - 1
    elif edit == "replay hash":
        doc["replay"][0]["sha256"] = "0" * 64
    data = evidence.canonical(doc)
    if edit == "whitespace":
        data = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()
    target.write(MANIFEST, data)
    report = target.verify()
    assert MANIFEST in failed_keys(report)
    assert re.search("signature does not verify|canonical", reasons(report, MANIFEST))


def test_a_link_signed_by_a_retired_key_after_its_retirement_is_named(target: Target) -> None:
    keyring = target.call.keyring
    old = keyring.current_key_id
    keyring.rotate()
    report = target.verify()
    assert report.ok, report.format_report()  # rotation keeps old signatures valid
    retired = evidence.parse_utc(keyring.public_keys()[0].retired_utc or "")
    stolen = serialization.load_pem_private_key(
        (target.call.tmp / "keys" / f"{old}.key").read_bytes(), password=None
    )
    assert isinstance(stolen, Ed25519PrivateKey)
    forger = Forger(target, stolen, key_id=old)
    late = evidence.utc_iso(retired + timedelta(seconds=1))

    def late_event(obj: dict[str, Any]) -> None:
        obj["utc"] = late
        obj["event"] = {"type": "participant_left", "participant": P1}

    forger.rewrite_from(LINKS - 1, late_event)
    report = target.verify()
    assert failed_keys(report) == {link(LINKS - 1)}
    assert f"after key {old} was retired" in reasons(report, link(LINKS - 1))


def test_rotation_during_a_call_keeps_every_signature_valid(tmp_path: Path) -> None:
    def rotate(ring: KeyRing) -> None:
        ring.rotate()

    call = record(tmp_path, between_rounds=rotate)
    ids = {json.loads(call.store.get(link(i)))["key_id"] for i in range(1, LINKS + 1)}
    assert len(ids) == 2
    report = verify(call.store, PREFIX, call.keyring.trusted())
    assert report.ok, report.format_report()
    summary = export_call(call.store, PREFIX, tmp_path / "export", call.keyring.public_keys())
    assert sorted(summary.key_ids) == sorted(ids)
    pems = sorted((tmp_path / "export" / "keys").glob("*.pem"))
    offline = verify(FolderSource(tmp_path / "export"), PREFIX, TrustedKeys.from_pem_files(pems))
    assert offline.ok, offline.format_report()


# -- export -----------------------------------------------------------------------------------


def test_an_export_verifies_offline_only_with_explicit_trust(call: Call, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    summary = export_call(call.store, PREFIX, folder, call.keyring.public_keys())
    assert summary.objects == len(list(call.store.list(PREFIX)))
    assert summary.key_ids == [call.keyring.current_key_id] and summary.missing_keys == []
    assert (folder / "chain" / "000001.json").read_bytes() == call.store.get(link(1))
    pem = folder / "keys" / f"{call.keyring.current_key_id}.pem"
    assert pem.read_text() == call.keyring.public_keys()[0].public_pem

    trusted = verify(FolderSource(folder), PREFIX, TrustedKeys.from_pem_files([pem]))
    assert trusted.ok, trusted.format_report()

    untrusted = verify(FolderSource(folder), PREFIX, TrustedKeys())
    assert failed_keys(untrusted) == {link(i) for i in range(1, LINKS + 1)} | {MANIFEST}
    assert "not trusted" in reasons(untrusted, link(1))

    registry = tmp_path / "published.json"  # what GET /api/keys returns, with validity
    registry.write_text(json.dumps([k.to_dict() for k in call.keyring.public_keys()]))
    assert verify(FolderSource(folder), PREFIX, TrustedKeys.from_registry_file(registry)).ok


def test_export_refuses_a_non_empty_folder(call: Call, tmp_path: Path) -> None:
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "x").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_call(call.store, PREFIX, folder, call.keyring.public_keys())
    assert [p.name for p in folder.iterdir()] == ["x"]
    (tmp_path / "empty").mkdir()
    export_call(call.store, PREFIX, tmp_path / "empty", call.keyring.public_keys())


def test_the_export_readme_explains_both_ways_in_both_languages(call: Call, tmp_path: Path) -> None:
    export_call(call.store, PREFIX, tmp_path / "b", call.keyring.public_keys())
    text = (tmp_path / "b" / "README.md").read_text("utf-8")
    key_id = call.keyring.current_key_id
    assert f"mediation verify <this folder> --trust keys/{key_id}.pem" in text
    assert f"mediation verify <本文件夹> --trust keys/{key_id}.pem" in text
    assert openssl_verify(key_id, 1) in text
    assert "sha256sum" in text and "不可信" in text and "not trusted by themselves" in text


def test_a_key_the_chain_names_but_the_ring_lacks_is_reported(call: Call, tmp_path: Path) -> None:
    summary = export_call(call.store, PREFIX, tmp_path / "b", [])
    assert summary.key_ids == [] and summary.missing_keys == [call.keyring.current_key_id]
    assert not (tmp_path / "b" / "keys").exists()


# -- by hand, with standard tools, exactly as docs/evidence.md says ---------------------------

OPENSSL_VERIFY = (
    "openssl pkeyutl -verify -pubin -inkey keys/{key_id}.pem -rawin"
    " -in chain/{n:06d}.json -sigfile chain/{n:06d}.sig"
)
KEY_ID_COMMAND = (
    "openssl pkey -pubin -in keys/{key_id}.pem -outform DER | tail -c 32 | sha256sum | cut -c1-16"
)


def openssl_verify(key_id: str, n: int) -> str:
    return OPENSSL_VERIFY.format(key_id=key_id, n=n)


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def test_docs_show_the_commands_this_test_runs() -> None:
    docs = (ROOT / "docs" / "evidence.md").read_text("utf-8")
    assert openssl_verify("<key_id>", 1) in docs
    assert KEY_ID_COMMAND.format(key_id="<key_id>") in docs
    assert "sha256sum chain/000001.json" in docs
    assert "sha256sum <participant_id>/000001.webm" in docs


def test_a_third_party_checks_a_link_with_openssl_and_sha256sum(call: Call, tmp_path: Path) -> None:
    for tool in ("openssl", "sha256sum", "bash"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: the manual check in docs/evidence.md needs it")
    folder = tmp_path / "bundle"
    export_call(call.store, PREFIX, folder, call.keyring.public_keys())
    key_id = call.keyring.current_key_id

    derived = run(KEY_ID_COMMAND.format(key_id=key_id), folder)
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.strip() == key_id

    segment_link = 5
    for n in (1, segment_link):
        ok = run(openssl_verify(key_id, n), folder)
        assert ok.returncode == 0, ok.stderr
        assert "Signature Verified Successfully" in ok.stdout

    first = run("sha256sum chain/000001.json", folder)
    assert (
        first.stdout.split()[0] == json.loads((folder / "chain/000002.json").read_bytes())["prev"]
    )
    obj = json.loads((folder / f"chain/{segment_link:06d}.json").read_bytes())
    relative = obj["object"][len(PREFIX) :]
    assert relative == f"{P1}/000001.webm"
    summed = run(f"sha256sum {relative}", folder)
    assert summed.returncode == 0 and summed.stdout.split()[0] == obj["sha256"]
    last = run(f"sha256sum chain/{LINKS:06d}.json", folder)
    assert (
        last.stdout.split()[0]
        == json.loads((folder / "manifest.json").read_bytes())["chain"]["head"]
    )
    manifest_ok = run(
        f"openssl pkeyutl -verify -pubin -inkey keys/{key_id}.pem -rawin"
        " -in manifest.json -sigfile manifest.sig",
        folder,
    )
    assert manifest_ok.returncode == 0, manifest_ok.stderr

    path = folder / "chain" / "000001.json"
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    bad = run(openssl_verify(key_id, 1), folder)
    assert bad.returncode != 0
    assert "Signature Verification Failure" in bad.stdout + bad.stderr


def test_folder_source_lists_only_call_objects(call: Call, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    export_call(call.store, PREFIX, folder, call.keyring.public_keys())
    (folder / ".DS_Store").write_text("hidden")
    source = FolderSource(folder)
    keys = list(source.list(PREFIX))
    assert keys == sorted(call.store.list(PREFIX))
    assert not any(k.endswith("README.md") or "/keys/" in k for k in keys)
    assert os.path.exists(folder / "README.md")
