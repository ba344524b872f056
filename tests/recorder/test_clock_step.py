"""The server's wall clock is stepped back two minutes while a call rings or in the middle of
its recording (NTP correcting a clock that ran ahead): the recording keeps one timeline from
the launch, verifies, and its manifest says how far the clock moved."""

from __future__ import annotations

import pytest

from signaling.peer import MediaPeer
from storage import ids as storage_ids

from .test_recorded_call import (
    GREEN,
    RED,
    _utc_ms,
    verified_recording,
    wait_closed,
    wait_segments,
)

STEP_MS = -120_000


def step_the_clock(monkeypatch) -> None:
    """The service's wall clock (`storage.ids.now_ms`, which the hub reads) jumps by STEP_MS."""
    real_now_ms = storage_ids.now_ms
    monkeypatch.setattr(storage_ids, "now_ms", lambda: real_now_ms() + STEP_MS)


async def ringing_call(service, monkeypatch, *, step_while_ringing: bool):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    launched = await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    ring = await expert.next_event("call.ring")
    if step_while_ringing:  # the recording starts at the answer, after the step
        step_the_clock(monkeypatch)
    accepted = await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    ids = {p["role"]: p["id"] for p in accepted["call"]["participants"]}
    return launched["call"]["id"], kiosk, expert, ids


@pytest.mark.parametrize("when", ["ringing", "mid-call"])
async def test_a_wall_clock_step_leaves_the_recording_whole(make_service, monkeypatch, when):
    service = await make_service(recording_segment_s=2)
    call_id, kiosk, expert, ids = await ringing_call(
        service, monkeypatch, step_while_ringing=when == "ringing"
    )
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    await kiosk_peer.start()
    await expert_peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), 2)
        if when == "mid-call":
            step_the_clock(monkeypatch)
        await wait_segments(service, call_id, ids.values(), 4)
        await expert.request("call.bookmark", call_id=call_id, note="after the step")
    finally:
        await expert.request("call.leave", call_id=call_id)
        await kiosk_peer.close()
        await expert_peer.close()
    await wait_closed(service, call_id)

    # Before, the call "ended" two minutes before its last segments, and verify failed it.
    rec, store, manifest, links = verified_recording(service, call_id)
    assert manifest["status"] == "complete"
    assert abs(manifest["clock"]["step_ms"] - STEP_MS) < 2_000, manifest["clock"]
    launched, ended = (_utc_ms(manifest[k]) for k in ("launched_utc", "ended_utc"))
    segments = [link for link in links if link["kind"] == "segment"]
    last_media = max(link["last_pts_ms"] for link in segments)
    assert 0 < last_media <= ended - launched + 1_000, (last_media, ended - launched)
    assert ended - launched < 60_000  # the call's length, not two minutes less
    for track in manifest["tracks"]:  # media counts from the launch, not two minutes off
        assert 0 <= track["start_offset_ms"] < 30_000, track
    # Links keep their signing times on the wall clock, the keys' clock (verify checked
    # them against the keys' validity; this test steps only the service's clock).
    (bookmark,) = [
        link["event"]
        for link in links
        if link["kind"] == "event" and link["event"]["type"] == "bookmark"
    ]
    assert bookmark["media_ms"] == _utc_ms(bookmark["utc"]) - launched
    assert 0 < bookmark["media_ms"] <= ended - launched
