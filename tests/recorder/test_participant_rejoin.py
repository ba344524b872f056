"""A participant whose process dies mid-call (no goodbye) and rejoins a few seconds later as
the same participant: the call keeps one recording, the chain tells the drop, the gap and the
rejoin, it verifies, and the participant's replay file plays across the hole."""

from __future__ import annotations

from signaling.peer import MediaPeer
from tests.media.test_liveness import read_line, spawn_kiosk

from .test_recorded_call import (
    GREEN,
    _utc_ms,
    decode_video,
    segment_links,
    verified_recording,
    wait_closed,
    wait_segments,
)


def participant_state(participant_id: str, state: str):
    def where(payload) -> bool:
        return any(
            p["id"] == participant_id and p["state"] == state
            for p in payload["call"]["participants"]
        )

    return where


async def test_a_participant_drops_and_rejoins_into_the_same_recording(make_service) -> None:
    """Killed kiosk process, dropped for media inactivity, rejoins ~3 s later: one recording;
    participant_dropped and participant_rejoined event links around a participant_dropped gap
    record; verify passes; the kiosk's replay decodes with a time gap, not an error."""
    service = await make_service(recording_segment_s=2, media_inactivity_s=2.0)
    expert = await service.expert("amy", specialties=["family"])
    _, token = service.add_device("kiosk")
    first = await spawn_kiosk(service, token)
    second = None
    expert_peer = None
    call_id = None
    try:
        ring = await expert.next_event("call.ring", timeout=30)
        call_id = ring["payload"]["call_id"]
        accepted = await expert.request(
            "call.accept", invitation_id=ring["payload"]["invitation_id"]
        )
        ids = {p["role"]: p["id"] for p in accepted["call"]["participants"]}
        kiosk_id = await read_line(first, "MEDIA_JOINED")
        assert kiosk_id == ids["caller"]
        expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
        await expert_peer.start()
        await wait_segments(service, call_id, ids.values(), 2)

        first.kill()  # SIGKILL: no RTCP BYE, no DTLS close, no WebSocket close
        await first.wait()
        await expert.next_event(
            "call.updated", where=participant_state(kiosk_id, "dropped"), timeout=15
        )
        before = len(segment_links(service, call_id)[kiosk_id])
        second = await spawn_kiosk(service, token)
        assert await read_line(second, "MEDIA_JOINED") == kiosk_id  # the same participant
        back = await expert.next_event(
            "call.updated", where=participant_state(kiosk_id, "connected"), timeout=15
        )
        assert back["payload"]["call"]["state"] == "active"
        assert back["payload"]["call"]["recording"] == "on"
        # Recorded after the rejoin: two more closed segments of the kiosk.
        await wait_segments(service, call_id, [kiosk_id], before + 2, 30)
    finally:
        if call_id is not None:
            await expert.request("call.leave", call_id=call_id)
        if expert_peer is not None:
            await expert_peer.close()
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert call_id is not None
    await wait_closed(service, call_id)

    recordings = service.hub.recordings
    assert [r.call_id for r in service.store.list_recordings()] == [call_id]
    rec, store, manifest, links = verified_recording(service, call_id)
    assert rec.status == "complete"
    events = [
        (link["index"], link["event"]["type"])
        for link in links
        if link["kind"] == "event" and link["event"].get("participant") == kiosk_id
    ]
    (dropped,) = [i for i, kind in events if kind == "participant_dropped"]
    (rejoined,) = [i for i, kind in events if kind == "participant_rejoined"]
    assert dropped < rejoined
    gaps = [
        (link["index"], gap)
        for link in links
        if link["kind"] == "segment" and link["participant"] == kiosk_id
        for gap in link["gaps"]
    ] + [
        (link["index"], link["event"])
        for link in links
        if link["kind"] == "event"
        and link["event"]["type"] == "gap"
        and link["event"]["participant"] == kiosk_id
    ]
    drop_gaps = [(i, g) for i, g in gaps if g["reason"] == "participant_dropped"]
    assert sorted(g["track"] for _, g in drop_gaps) == ["audio", "video"], gaps  # one per track
    assert all(index > dropped for index, _ in drop_gaps)

    # The kiosk's replay: decodes from start to end, with the hole where it was away.
    replay = next(r for r in manifest["replay"] if r["participant"] == kiosk_id)
    frames = decode_video(store.get(replay["object"]))
    assert len(frames) == recordings.frames_recorded[(call_id, kiosk_id)]
    pts = [p for p, _ in frames]
    assert pts == sorted(pts)
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    hole = max(steps)
    assert hole >= 2000, steps  # away for media_inactivity_s and a process start at least
    assert sorted(steps)[-2] < 500  # one hole only; elsewhere frames follow at 15 fps
    # The drop is dated when the media stopped (the last frame before the hole), not when
    # it was noticed, media_inactivity_s (2 s) later.
    stopped = _utc_ms(manifest["launched_utc"]) + pts[steps.index(hole)]
    for _, gap in drop_gaps:
        assert abs(_utc_ms(gap["utc"]) - stopped) < 1000, (gap, stopped)
