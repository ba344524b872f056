"""Key frames: late joiners start on one the server asked for; requests are throttled."""

from __future__ import annotations

import logging

from signaling.peer import MediaPeer
from tests.media.test_relay import COLOURS, TONES, six_party_call
from tests.media.util import until


async def test_a_late_joiner_starts_on_a_key_frame_the_server_requested(service, caplog):
    call_id, clients, ids = await six_party_call(service)
    kiosk, first, late = clients[0], clients[1], clients[2]
    kiosk_peer = MediaPeer(kiosk, call_id, colour=COLOURS[0], tone=TONES[0])
    first_peer = MediaPeer(first, call_id, colour=COLOURS[1], tone=TONES[1])
    late_peer = MediaPeer(late, call_id, colour=COLOURS[2], tone=TONES[2])
    try:
        await kiosk_peer.start()
        await first_peer.start()
        await first_peer.wait_checked(ids[0])
        assert kiosk_peer.video is not None
        before = kiosk_peer.video.keyframe_requests
        keyframes_before = len(kiosk_peer.video.keyframes_sent)
        caplog.set_level(logging.WARNING, logger="aiortc.rtcrtpreceiver")
        await late_peer.start()
        seen = await late_peer.wait_checked(ids[0])
        assert kiosk_peer.video.keyframe_requests == before + 1
        # The first picture it decoded is one the publisher sent as a key frame on request.
        requested = kiosk_peer.video.keyframes_sent[keyframes_before:]
        assert seen["video"].counters[0] in requested
        assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]
    finally:
        for peer in (kiosk_peer, first_peer, late_peer):
            await peer.close()


async def test_simultaneous_key_frame_requests_reach_the_publisher_once(service):
    call_id, clients, ids = await six_party_call(service)
    peers = [
        MediaPeer(client, call_id, colour=COLOURS[n], tone=TONES[n], frames_to_check=2)
        for n, client in enumerate(clients)
    ]
    try:
        for peer in peers:
            await peer.start()
        for peer in peers[1:]:
            await peer.wait_checked(ids[0], kinds=("video",))
        media = service.hub.media.calls[call_id]
        published = media.peers[ids[0]].published["video"]
        await until(lambda: published.pli_pending is None, media.changed)
        plis_before = published.stats.plis_sent
        requests_before = published.stats.keyframe_requests_in
        publisher = peers[0].video
        assert publisher is not None
        asked_before = publisher.keyframe_requests
        for peer in peers[1:]:  # five subscribers ask at the same moment
            track = peer.tracks_from(ids[0])["video"]
            transceiver = next(t for t in peer.pc.getTransceivers() if t.mid == track.mid)
            ssrc = transceiver.receiver.getSynchronizationSources()[0].source
            await transceiver.receiver._send_rtcp_pli(ssrc)
        await until(
            lambda: published.stats.keyframe_requests_in == requests_before + 5, media.changed
        )
        assert published.stats.plis_sent == plis_before + 1
        await until(lambda: published.pli_pending is None, media.changed, timeout=5)
        assert published.stats.plis_sent == plis_before + 1
        assert publisher.keyframe_requests == asked_before + 1
        stats = service.hub.media.calls[call_id].stats(ids[1])
        assert [
            s["keyframe_requests"]
            for s in stats["received"]
            if s["from"] == ids[0] and s["kind"] == "video"
        ] == [1]
    finally:
        for peer in peers:
            await peer.close()


async def test_one_subscribers_key_frame_requests_count_once_a_second(service, monkeypatch):
    """A client that keeps asking reaches its publisher at most once a second."""
    from media import router
    from media.hooks import Feedback

    call_id, clients, ids = await six_party_call(service)
    peers = [MediaPeer(clients[n], call_id, colour=COLOURS[n], tone=TONES[n]) for n in range(2)]
    try:
        for peer in peers:
            await peer.start()
        await peers[1].wait_checked(ids[0], kinds=("video",))
        call_media = service.hub.media.calls[call_id]
        stream = next(s for s in call_media.peers[ids[1]].streams() if s.kind == "video")
        forwarded: list[float] = []
        now = [1000.0]
        stream.last_keyframe_request = -1e9
        # A settable clock only while the requests are made (the event loop reads it too).
        with monkeypatch.context() as patch:
            patch.setattr(router.time, "monotonic", lambda: now[0])
            patch.setattr(stream.source, "request_key_frame", lambda: forwarded.append(now[0]))
            for at in (1000.0, 1000.3, 1000.6, 1001.1, 1001.5, 1002.2):
                now[0] = at
                stream.on_feedback(Feedback("keyframe"))
        assert forwarded == [1000.0, 1001.1, 1002.2]
        assert stream.keyframe_requests >= 6  # every request is counted in the stats
    finally:
        for peer in peers:
            await peer.close()
