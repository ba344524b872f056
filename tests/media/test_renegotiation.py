"""Re-offers keep the payload types and extension ids a browser chose for what it sends."""

from __future__ import annotations

import re

from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.peer import MediaPeer
from tests.media.test_relay import COLOURS, TONES, six_party_call


def chrome_like(sdp: str) -> str:
    """Renumber aiortc's offer the way Chrome numbers things (opus 111, VP8 96, mid id 4)."""
    sections = sdp.split("m=")
    out = [sections[0]]
    for section in sections[1:]:
        if section.startswith("audio"):
            section = re.sub(r"\b96\b", "111", section)
        else:
            section = re.sub(r"\b97\b", "96", re.sub(r"\b96\b", "95", section))
        section = section.replace(
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        )
        out.append(section)
    return "m=".join(out)


def section_codecs(sdp: str, kind: str) -> tuple[list[str], list[str]]:
    section = next(s for s in sdp.split("m=")[1:] if s.startswith(kind) and "a=recvonly" in s)
    rtpmap = re.findall(r"a=rtpmap:(\d+) (\S+)", section)
    extmap = re.findall(r"a=extmap:(\d+) (\S+)", section)
    return [f"{pt} {name}" for pt, name in rtpmap], [f"{i} {uri}" for i, uri in extmap]


async def test_a_re_offer_keeps_the_publishers_payload_types_and_extension_ids(service):
    call_id, clients, ids = await six_party_call(service)
    offers = []
    clients[0].on("media.offer", lambda frame: offers.append(frame["payload"]["sdp"]))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    other = MediaPeer(clients[1], call_id, colour=COLOURS[1], tone=TONES[1])
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        result = await clients[0].request(
            "media.join", call_id=call_id, sdp=chrome_like(pc.localDescription.sdp)
        )
        answered_audio, answered_extensions = section_codecs(result["sdp"], "audio")
        assert answered_audio == ["111 opus/48000/2"]
        assert "4 urn:ietf:params:rtp-hdrext:sdes:mid" in answered_extensions
        assert section_codecs(result["sdp"], "video")[0] == ["96 VP8/90000"]
        await other.start()  # the server now re-offers to the first participant
        await clients[0].next_event("media.offer", timeout=10)
        reoffer = offers[-1]
        assert section_codecs(reoffer, "audio") == (answered_audio, answered_extensions)
        assert section_codecs(reoffer, "video")[0] == ["96 VP8/90000"]
    finally:
        await pc.close()
        await other.close()


async def test_an_unanswered_offer_is_sent_again_and_answers_must_name_it(service):
    import dataclasses

    from aiortc import RTCSessionDescription

    from signaling.client import ClientError

    hub_media = service.hub.media
    hub_media.settings = dataclasses.replace(hub_media.settings, negotiation_timeout_s=0.3)
    call_id, clients, ids = await six_party_call(service)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    other = MediaPeer(clients[1], call_id, colour=COLOURS[1], tone=TONES[1])
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        result = await clients[0].request(
            "media.join", call_id=call_id, sdp=pc.localDescription.sdp
        )
        await pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        await other.start()
        first = await clients[0].next_event("media.offer", timeout=10)
        again = await clients[0].next_event("media.offer", timeout=10)  # not answered: resent
        assert again["payload"]["offer_id"] == first["payload"]["offer_id"]
        assert again["payload"]["sdp"] == first["payload"]["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(again["payload"]["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        try:
            await clients[0].request(
                "media.answer", call_id=call_id, sdp=pc.localDescription.sdp, offer_id=0
            )
        except ClientError as err:
            assert err.code == "media_error"
        else:
            raise AssertionError("an answer to an older offer was accepted")
        await clients[0].request(
            "media.answer",
            call_id=call_id,
            sdp=pc.localDescription.sdp,
            offer_id=again["payload"]["offer_id"],
        )
    finally:
        await pc.close()
        await other.close()
