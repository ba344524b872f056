"""A recorded call end to end: aiortc peers through the real service, segments, the signed
chain, upload, replay files and verification."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime

import av

from media import clips
from recorder.verify import SEGMENT_TIME_SLACK, verify
from signaling.peer import MediaPeer
from tests.media.util import until

RED, GREEN = (255, 0, 0), (0, 255, 0)
FPS = 15


def _utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def recorded_call(service, **launch):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    launched = await kiosk.request(
        "call.launch", consent_evidence=True, dispute_type="family", **launch
    )
    call_id = launched["call"]["id"]
    ring = await expert.next_event("call.ring")
    accepted = await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    assert accepted["call"]["recording"] == "on"  # the answer already shows the indicator
    ids = {p["role"]: p["id"] for p in accepted["call"]["participants"]}
    return call_id, kiosk, expert, ids


def segment_links(service, call_id):
    """Segment links committed so far, by participant (from the recordings index)."""
    out: dict[str, list[str]] = {}
    for obj in service.store.list_recording_objects(call_id):
        if obj.kind == "segment":
            out.setdefault(obj.participant_id, []).append(obj.key)
    return out


async def wait_segments(service, call_id, participants, count, timeout=60):
    recordings = service.hub.recordings

    def enough():
        links = segment_links(service, call_id)
        return all(len(links.get(p, [])) >= count for p in participants)

    await until(enough, recordings.changed, timeout)


async def wait_closed(service, call_id, timeout=30):
    recordings = service.hub.recordings
    await until(
        lambda: service.store.get_recording(call_id).status != "recording",
        recordings.changed,
        timeout,
    )
    await recordings.uploader.wait_idle(timeout)


def verified_recording(service, call_id):
    """A closed recording checked by `verify` against the database's chain head: its record,
    the object store, its manifest and its chain links (in order)."""
    recordings = service.hub.recordings
    rec = service.store.get_recording(call_id)
    store = recordings.object_store
    report = verify(
        store,
        rec.prefix,
        recordings.keyring.trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
    )
    assert report.ok, report.format_report()
    manifest = json.loads(store.get(rec.manifest_key))
    links = [
        json.loads(store.get(key))
        for key in sorted(store.list(f"{rec.prefix}chain/"))
        if key.endswith(".json")
    ]
    return rec, store, manifest, links


def chain_gaps(store, prefix):
    """Every gap record in a call's chain (in segment links and gap events)."""
    gaps = []
    for key in store.list(f"{prefix}chain/"):
        if key.endswith(".json"):
            link = json.loads(store.get(key))
            gaps += link.get("gaps", [])
            if link["kind"] == "event" and link["event"]["type"] == "gap":
                gaps.append(link["event"])
    return gaps


def decode_video(data: bytes):
    """(pts ms, painted counter) of every frame of a replay file."""
    frames = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append((int(frame.pts * stream.time_base * 1000), clips.read_counter(frame)))
    return frames


def seek_counter(data: bytes, t_ms: int) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        container.seek(int(t_ms / 1000 / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            pts = int(frame.pts * stream.time_base * 1000)
            if pts >= t_ms:
                return pts, clips.read_counter(frame)
    raise AssertionError(f"no frame at or after {t_ms} ms")


async def test_a_recorded_call_verifies_and_replays_frame_exactly(make_service):
    service = await make_service(recording_segment_s=2)
    call_id, kiosk, expert, ids = await recorded_call(service)
    assert service.hub.recordings.is_recording(call_id)
    view = await kiosk.next_event("call.updated", where=lambda p: p["call"]["recording"] == "on")
    assert view["payload"]["call"]["recorded"] is True
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    await kiosk_peer.start()
    await expert_peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), 3)
        await expert.request("call.bookmark", call_id=call_id, note="要点")
    finally:
        await expert.request("call.leave", call_id=call_id)
        await kiosk_peer.close()
        await expert_peer.close()
    off = await kiosk.next_event("call.updated", where=lambda p: p["call"]["recording"] == "off")
    assert off["payload"]["call"]["state"] == "ended"
    await wait_closed(service, call_id)

    recordings = service.hub.recordings
    rec, store, manifest, links = verified_recording(service, call_id)
    assert rec.status == "complete"
    assert manifest["status"] == "complete"
    assert manifest["consent"]["evidence"] is True
    assert {t["participant"] for t in manifest["tracks"]} == set(ids.values())
    # Media times count from the call's start and every segment lies inside the call (the
    # first packets, parsed by aiortc, once came with its 1900-based clock: 70 years late).
    # The last frames' times run on the sender's RTP clock from the first frame's arrival,
    # so they may pass the call's end a little: verify's slack.
    launched, ended = (_utc_ms(manifest[k]) for k in ("launched_utc", "ended_utc"))
    latest = ended - launched + SEGMENT_TIME_SLACK.total_seconds() * 1000
    for track in manifest["tracks"]:
        for field in ("start_offset_ms", "audio_start_offset_ms", "video_start_offset_ms"):
            assert 0 <= track[field] <= ended - launched, (field, track)
    for replay in manifest["replay"]:
        assert 0 <= replay["start_offset_ms"] <= ended - launched, replay
    segments = [link for link in links if link["kind"] == "segment"]
    assert segments
    events = [link["event"] for link in links if link["kind"] == "event"]
    (bookmark,) = [event for event in events if event["type"] == "bookmark"]
    assert bookmark["bookmark"]["note"] == "要点"
    assert bookmark["media_ms"] == _utc_ms(bookmark["utc"]) - launched
    assert 0 < bookmark["media_ms"] <= ended - launched
    for link in segments:
        assert 0 <= link["first_pts_ms"] <= link["last_pts_ms"] <= latest, (link, launched, ended)
        assert _utc_ms(link["start_utc"]) - launched == link["first_pts_ms"], link
        assert _utc_ms(link["end_utc"]) - launched == link["last_pts_ms"], link

    # The spool let go of everything only after verified uploads; the work dir is gone.
    assert recordings.spool.pending() == []
    assert not (service.settings.recording_dir / call_id).exists()

    # The replay of the kiosk: every frame the recorder took, in order, seekable by time.
    participant_recorder_frames = recordings.frames_recorded[(call_id, ids["caller"])]
    replay = next(r for r in manifest["replay"] if r["participant"] == ids["caller"])
    data = store.get(replay["object"])
    frames = decode_video(data)
    gaps = [
        gap
        for key in store.list(f"{rec.prefix}chain/")
        if key.endswith(".json")
        for link in [json.loads(store.get(key))]
        for gap in (
            link.get("gaps", [])
            if link["kind"] == "segment" and link["participant"] == ids["caller"]
            else []
        )
    ]
    lost = sum(g["packets"] for g in gaps if g["track"] == "video")
    assert len(frames) == participant_recorder_frames
    if not lost:  # loopback: nothing lost, so every painted counter follows the one before
        steps = {(b[1] - a[1]) % 30 for a, b in zip(frames, frames[1:], strict=False)}
        assert steps == {1}, steps
    first_pts, first_counter = frames[0]
    last_pts = frames[-1][0]
    for t in (first_pts + 100, (first_pts + last_pts) // 2, last_pts - 700, last_pts - 30):
        pts, counter = seek_counter(data, t)
        expected = (first_counter + round((pts - first_pts) * FPS / 1000)) % 30
        assert pts - t < 1000 / FPS + 1 and counter == expected, (t, pts, counter, expected)


async def test_consent_refused_kiosk_call_does_not_start_and_is_audited(make_service):
    service = await make_service()
    kiosk = await service.kiosk()
    from signaling.client import ClientError

    try:
        await kiosk.request("call.launch", dispute_type="family")
    except ClientError as err:
        assert err.code == "consent_required"
    else:  # pragma: no cover - the assertion below names the failure
        raise AssertionError("a kiosk call without consent started")
    assert service.store.list_calls() == []
    actions = [e.action for e in service.store.list_audit()]
    assert "call.consent_refused" in actions


async def test_unrecorded_kiosk_call_when_the_setting_allows_it(make_service):
    service = await make_service(kiosk_without_consent="unrecorded")
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call = (await kiosk.request("call.launch", dispute_type="family"))["call"]
    assert call["recorded"] is False and call["recording"] == "off"
    ring = await expert.next_event("call.ring")
    accepted = await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    assert accepted["call"]["state"] == "active" and accepted["call"]["recording"] == "off"
    assert not service.hub.recordings.is_recording(call["id"])
    assert service.store.list_recordings() == []
    assert service.store.get_consent(call["id"]) is None


async def test_station_calls_always_need_consent_and_a_refusal_takes_no_case_number(
    make_service,
):
    service = await make_service(kiosk_without_consent="unrecorded")
    _, token = service.add_device("station")
    service.add_person("olga", "station_officer")
    station = await service.connect(device_token=token, session_token=await service.login("olga"))
    from signaling.client import ClientError

    try:
        await station.request("call.launch", dispute_type="family")
    except ClientError as err:
        assert err.code == "consent_required"
    else:  # pragma: no cover
        raise AssertionError("a station call without consent started")
    launched = await station.request(
        "call.launch",
        consent_evidence=True,
        training_consent=True,
        notice_version="1",
        notice_language="en",
        parties=2,
        dispute_type="family",
    )
    consent = service.store.get_consent(launched["call"]["id"])
    assert consent is not None
    # The refused launch took no case number: the first call is case 1.
    case = service.store.get_case(launched["call"]["case_id"])
    assert case.case_number.endswith("-00001"), case
    assert (consent.evidence, consent.training, consent.parties) == (True, True, 2)
    assert (consent.notice_version, consent.language) == ("1", "en")
    assert launched["call"]["training_consent"] is True
    actions = [e.action for e in service.store.list_audit()]
    assert actions.count("call.consent_refused") == 1 and "consent.captured" in actions


async def test_a_recorder_that_falls_behind_records_the_gap_and_still_verifies(make_service):
    """The recorder's thread stalls: the bounded tap overflows (the call goes on), the loss
    becomes a tap_overflow gap record in the chain, a metric and an admin warning."""
    import threading

    service = await make_service(recording_segment_s=2, recorder_tap_packets=64)
    call_id, kiosk, expert, ids = await recorded_call(service)
    recordings = service.hub.recordings
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    await kiosk_peer.start()
    await expert_peer.start()
    release = threading.Event()
    try:
        await wait_segments(service, call_id, ids.values(), 1)
        recorder = recordings.recorders[call_id]
        recorder.submit(release.wait, 30)  # the recorder's thread is stuck elsewhere
        tap = recorder.participants[ids["caller"]].taps["video"]
        await asyncio.wait_for(tap.overflowed.wait(), 20)  # the call goes on meanwhile
        release.set()
        await until(lambda: recordings.gap_count > 0, recordings.changed, 20)
        await wait_segments(service, call_id, ids.values(), 3)
    finally:
        release.set()
        await expert.request("call.leave", call_id=call_id)
        await kiosk_peer.close()
        await expert_peer.close()
    await wait_closed(service, call_id)
    rec = service.store.get_recording(call_id)
    report = verify(
        recordings.object_store,
        rec.prefix,
        recordings.keyring.trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
    )
    assert report.ok, report.format_report()
    gaps = chain_gaps(recordings.object_store, rec.prefix)
    assert any(g["reason"] == "tap_overflow" for g in gaps), gaps
    status, body = await service.http("GET", "/metrics")
    assert 'mediation_recording_gaps_total{reason="tap_overflow"}' in body
    service.add_person("adam", "admin")
    status, body = await service.http(
        "GET", "/api/admin/warnings", token=await service.login("adam")
    )
    assert status == 200, body
    assert any(
        w["code"] == "recording_gap" and w["params"]["reason"] == "tap_overflow"
        for w in body["warnings"]
    ), body
