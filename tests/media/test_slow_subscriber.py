"""A subscriber that cannot keep up loses video until a key frame; nobody else notices."""

from __future__ import annotations

from signaling.peer import MediaPeer
from tests.media.test_relay import COLOURS, TONES, six_party_call
from tests.media.util import until

BOUND = 20


async def test_a_stalled_subscriber_is_bounded_and_resumes_on_a_key_frame(make_service, caplog):
    service = await make_service(media_queue_packets=BOUND)
    call_id, clients, ids = await six_party_call(service)
    publisher = MediaPeer(clients[0], call_id, colour=COLOURS[0], tone=TONES[0])
    slow = MediaPeer(clients[1], call_id, colour=COLOURS[1], tone=TONES[1], keep_decoding=True)
    normal = MediaPeer(clients[2], call_id, colour=COLOURS[2], tone=TONES[2])
    peers = (publisher, slow, normal)
    try:
        for peer in peers:
            await peer.start()
        await slow.wait_checked(ids[0])
        await normal.wait_checked(ids[0])
        media = service.hub.media.calls[call_id]
        source = media.peers[ids[0]]
        outlet = media.peers[ids[1]].outlet
        normal_stream = next(
            s for s in media.peers[ids[2]].streams() if s.source is source.published["video"]
        )
        assert publisher.video is not None
        keyframes_before = len(publisher.video.keyframes_sent)
        video_in = source.published["video"].stats
        audio_in = source.published["audio"].stats
        start_video, start_normal = video_in.packets_in, normal_stream.forwarded
        start_total = video_in.packets_in + audio_in.packets_in

        outlet.set_stalled(True)  # its network stops draining
        await until(
            lambda: video_in.packets_in + audio_in.packets_in - start_total >= 10 * BOUND,
            media.changed,
            timeout=20,
        )
        assert len(outlet.queue) == BOUND
        assert outlet.stats.dropped_video > 0 and outlet.stats.dropped_audio > 0
        forwarded_to_normal = normal_stream.forwarded - start_normal
        assert forwarded_to_normal == video_in.packets_in - start_video  # unaffected

        slow_video = slow.tracks_from(ids[0])["video"]
        decoded_before = len(slow_video.counters)
        publisher.video.keyframe_requested.clear()
        outlet.set_stalled(False)
        await until(lambda: len(slow_video.counters) > decoded_before + 3, slow_video.progress)
        requested = publisher.video.keyframes_sent[keyframes_before:]
        after = slow_video.counters[decoded_before:]
        # aiortc's jitter buffer releases a frame when the next one starts, so the last
        # frame sent before the stall may come out first; the first new one is a key frame.
        if after[0] == (slow_video.counters[decoded_before - 1] + 1) % 30:
            after = after[1:]
        assert after[0] in requested
        assert publisher.video.keyframe_requests > 0
        assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]
    finally:
        for peer in peers:
            await peer.close()


async def test_a_congested_socket_queues_in_the_bounded_outlet_and_drains_after(make_service):
    """When asyncio starts buffering a subscriber's socket, packets wait in the bounded queue."""
    service = await make_service(media_queue_packets=BOUND)
    call_id, clients, ids = await six_party_call(service)
    publisher = MediaPeer(clients[0], call_id, colour=COLOURS[0], tone=TONES[0])
    subscriber = MediaPeer(clients[1], call_id, colour=COLOURS[1], tone=TONES[1])
    try:
        for peer in (publisher, subscriber):
            await peer.start()
        await subscriber.wait_checked(ids[0])
        media = service.hub.media.calls[call_id]
        outlet = media.peers[ids[1]].outlet
        assert outlet.output is not None
        congested = True
        outlet.output.congested = lambda: congested  # type: ignore[method-assign]
        sent_before = outlet.stats.sent
        await until(lambda: len(outlet.queue) == BOUND, media.changed)
        assert outlet.stats.sent == sent_before  # nothing went to the full socket
        congested = False
        track = subscriber.tracks_from(ids[0])["video"]
        before = track.packets_after_check
        await until(lambda: track.packets_after_check > before + 20, track.progress)
        assert len(outlet.queue) == 0
    finally:
        for peer in (publisher, subscriber):
            await peer.close()
