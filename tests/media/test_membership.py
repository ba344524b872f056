"""Joining and leaving mid-call, mute and camera-off."""

from __future__ import annotations

from signaling.peer import MediaPeer
from tests.media.test_relay import COLOURS, TONES, six_party_call
from tests.media.util import until


async def test_join_and_leave_mid_call_do_not_interrupt_the_others(service):
    call_id, clients, ids = await six_party_call(service)
    stayers = [
        MediaPeer(clients[n], call_id, colour=COLOURS[n], tone=TONES[n], keep_decoding=(n == 0))
        for n in range(3)
    ]
    visitor = MediaPeer(clients[3], call_id, colour=COLOURS[3], tone=TONES[3])
    try:
        for peer in stayers:
            await peer.start()
        watcher = stayers[0]
        for other in ids[1:3]:
            await watcher.wait_checked(other)
        await visitor.start()
        await visitor.wait_checked(ids[0])
        await watcher.wait_checked(ids[3])
        answered = watcher.offers_answered
        await clients[3].request("call.leave", call_id=call_id)
        await until(lambda: watcher.offers_answered > answered, watcher.changed)  # renegotiated
        for other in ids[1:3]:
            track = watcher.tracks_from(other)["video"]
            seen = len(track.counters)
            await until(lambda t=track, n=seen: len(t.counters) >= n + 10, track.progress)
            tail = track.counters[-10:]
            assert all((b - a) % 30 == 1 for a, b in zip(tail, tail[1:], strict=False)), tail
        for peer in stayers:
            assert peer.connection_states[-1] == "connected"
            assert "disconnected" not in peer.connection_states
            assert "failed" not in peer.connection_states
        assert ids[3] not in service.hub.media.calls[call_id].peers
        for server_side in service.hub.media.calls[call_id].peers.values():
            for published in server_side.published.values():
                assert all(s.subscriber.participant_id != ids[3] for s in published.streams)
        # The departed visitor's sections are inactive and are reused by the next joiner.
        server_peer = service.hub.media.calls[call_id].peers[ids[0]]
        sections = len(server_peer.slots)
        answered = watcher.offers_answered
        newcomer = MediaPeer(clients[4], call_id, colour=COLOURS[4], tone=TONES[4])
        await newcomer.start()
        await watcher.wait_checked(ids[4])
        assert len(server_peer.slots) == sections
        await until(lambda: watcher.offers_answered > answered, watcher.changed)
        await newcomer.close()
    finally:
        for peer in (*stayers, visitor):
            await peer.close()


async def test_mute_and_camera_off_reach_the_others(service):
    call_id, clients, ids = await six_party_call(service)
    peers = [MediaPeer(clients[n], call_id, colour=COLOURS[n], tone=TONES[n]) for n in range(2)]
    try:
        for peer in peers:
            await peer.start()
        await clients[0].request("media.state", call_id=call_id, audio=False, video=True)
        event = await clients[1].next_event("media.state")
        assert event["payload"] == {
            "call_id": call_id,
            "participant_id": ids[0],
            "audio": False,
            "video": True,
        }
        await clients[0].request("media.state", call_id=call_id, audio=False, video=False)
        event = await clients[2].next_event("media.state", where=lambda p: p["video"] is False)
        assert event["payload"]["participant_id"] == ids[0]
    finally:
        for peer in peers:
            await peer.close()


async def test_a_joiner_that_cannot_receive_the_calls_codec_is_refused(service):
    """A VP8 call: an offer with only H.264 video gets codec_unsupported."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

    from signaling.client import ClientError

    call_id, clients, ids = await six_party_call(service)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        video = pc.addTransceiver("video", direction="sendonly")
        video.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        )
        await pc.setLocalDescription(await pc.createOffer())
        try:
            await clients[0].request("media.join", call_id=call_id, sdp=pc.localDescription.sdp)
        except ClientError as err:
            assert err.code == "codec_unsupported"
        else:
            raise AssertionError("an H.264-only offer was accepted into a VP8 call")
        assert ids[0] not in service.hub.media.calls[call_id].peers
    finally:
        await pc.close()


async def test_two_participants_joining_at_once_each_receive_the_other_once(service):
    import asyncio

    call_id, clients, ids = await six_party_call(service)
    peers = [MediaPeer(clients[n], call_id, colour=COLOURS[n], tone=TONES[n]) for n in range(2)]
    try:
        await asyncio.gather(*(peer.start() for peer in peers))
        await peers[0].wait_checked(ids[1])
        await peers[1].wait_checked(ids[0])
        media = service.hub.media.calls[call_id]
        for n in range(2):
            received = [
                (s.source.peer.participant_id, s.kind) for s in media.peers[ids[n]].streams()
            ]
            assert sorted(received) == sorted({(ids[1 - n], "audio"), (ids[1 - n], "video")})
    finally:
        for peer in peers:
            await peer.close()


async def test_a_participant_cut_off_then_back_is_dropped_then_connected_again(make_service):
    """No media for media_inactivity_s: dropped (media_timeout); media back: connected."""
    service = await make_service(media_inactivity_s=0.6)
    call_id, clients, ids = await six_party_call(service)
    peers = [MediaPeer(clients[n], call_id, colour=COLOURS[n], tone=TONES[n]) for n in range(2)]
    try:
        for peer in peers:
            await peer.start()
        await peers[1].wait_checked(ids[0])
        fast_path = service.hub.media.calls[call_id].peers[ids[0]].fast_path
        assert fast_path is not None
        fast_path.blocked = True  # the kiosk's network drops, at the server side

        def state_of(payload):
            return next(p for p in payload["call"]["participants"] if p["id"] == ids[0])

        dropped = await clients[1].next_event(
            "call.updated", where=lambda p: state_of(p)["state"] == "dropped", timeout=10
        )
        assert state_of(dropped["payload"])["reason"] == "media_timeout"
        fast_path.blocked = False
        back = await clients[1].next_event(
            "call.updated", where=lambda p: state_of(p)["state"] == "connected", timeout=10
        )
        assert back["payload"]["call"]["state"] == "active"
        track = peers[1].tracks_from(ids[0])["video"]
        before = track.packets_after_check
        await until(lambda: track.packets_after_check > before + 20, track.progress)
    finally:
        for peer in peers:
            await peer.close()
