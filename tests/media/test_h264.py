"""H.264 is forwarded as is: the subscriber gets the publisher's NAL units, no server decoder."""

from __future__ import annotations

import re

import aiortc.rtcrtpreceiver

from media import clips
from signaling.peer import MediaPeer
from tests.media.test_relay import GREEN, RED, active_call, near


def nal_units(access_unit: bytes) -> tuple[bytes, ...]:
    """Split an Annex B access unit on 3- or 4-byte start codes."""
    parts = re.split(b"\x00\x00\x00\x01|\x00\x00\x01", access_unit)
    return tuple(p for p in parts if p)


async def test_h264_reaches_the_subscriber_unchanged_without_any_server_decoder(
    make_service, monkeypatch
):
    service = await make_service(video_codec="h264")
    received: list[bytes] = []
    created: list[str] = []
    real_get_decoder = aiortc.rtcrtpreceiver.get_decoder

    def recording_get_decoder(codec):
        decoder = real_get_decoder(codec)
        created.append(codec.mimeType)
        if codec.mimeType != "video/H264":
            return decoder
        real_decode = decoder.decode

        def decode(encoded_frame):
            received.append(bytes(encoded_frame.data))
            return real_decode(encoded_frame)

        decoder.decode = decode
        return decoder

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", recording_get_decoder)
    call_id, kiosk, expert, ids = await active_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440, codec="h264")
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880, codec="h264")
    try:
        await kiosk_peer.start()
        await expert_peer.start()
        seen = await expert_peer.wait_checked(ids["caller"], kinds=("video",))
        await kiosk_peer.wait_checked(ids["expert"], kinds=("video",))
        assert near(seen["video"].colours[-1], RED)
        clip_units = {
            nal_units(au)
            for colour in (RED, GREEN)
            for branch in clips.video_clip(colour, codec="h264").branches
            for au in branch
        }
        assert received, "the subscribers decoded no H.264 access unit"
        assert all(nal_units(au) in clip_units for au in received)
        # One H.264 decoder per subscribing client; a decoding server would add its own.
        assert created.count("video/H264") == 2
    finally:
        await kiosk_peer.close()
        await expert_peer.close()
