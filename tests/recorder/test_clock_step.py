"""The server's wall clock is stepped back two minutes in the middle of a recorded call (NTP
correcting a clock that ran ahead): the recording keeps one timeline, verifies, and its
manifest says how far the clock moved."""

from __future__ import annotations

from signaling.peer import MediaPeer
from storage import ids as storage_ids

from .test_recorded_call import (
    GREEN,
    RED,
    _utc_ms,
    recorded_call,
    verified_recording,
    wait_closed,
    wait_segments,
)

STEP_MS = -120_000


async def test_a_wall_clock_step_mid_call_leaves_the_recording_whole(make_service, monkeypatch):
    service = await make_service(recording_segment_s=2)
    call_id, kiosk, expert, ids = await recorded_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    await kiosk_peer.start()
    await expert_peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), 2)
        real_now_ms = storage_ids.now_ms
        monkeypatch.setattr(storage_ids, "now_ms", lambda: real_now_ms() + STEP_MS)
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
    # Every link, event and gap is stamped on the same timeline, in order.
    stamps = [_utc_ms(link["utc"]) for link in links]
    assert stamps == sorted(stamps) and launched <= stamps[0] and stamps[-1] <= ended + 5_000
    (bookmark,) = [
        link["event"]
        for link in links
        if link["kind"] == "event" and link["event"]["type"] == "bookmark"
    ]
    assert bookmark["media_ms"] == _utc_ms(bookmark["utc"]) - launched
    assert 0 < bookmark["media_ms"] <= ended - launched
