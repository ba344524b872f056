"""Port range and public address of the server's media sockets."""

from __future__ import annotations

import re

from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.peer import MediaPeer
from tests.media.test_relay import GREEN, RED, active_call, near


def candidates(sdp: str) -> list[tuple[str, int]]:
    return [
        (m[0], int(m[1]))
        for m in re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", sdp)
    ]


async def test_media_binds_on_the_chosen_address_in_the_port_range_and_flows(make_service):
    service = await make_service(media_udp_ports="41000-41019", media_interfaces=("127.0.0.1",))
    call_id, kiosk, expert, ids = await active_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    try:
        result = await kiosk_peer.start()
        await expert_peer.start()
        found = candidates(result["sdp"])
        assert found and all(41000 <= port <= 41019 for _, port in found)
        assert {host for host, _ in found} == {"127.0.0.1"}
        seen = await expert_peer.wait_checked(ids["caller"])
        assert near(seen["video"].colours[-1], RED)
    finally:
        await kiosk_peer.close()
        await expert_peer.close()


async def test_the_public_address_is_advertised_instead_of_the_interface(make_service):
    """Only the answer is inspected: nothing is sent to the documentation address."""
    service = await make_service(media_public_ip="198.51.100.7")
    call_id, kiosk, expert, ids = await active_call(service)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        result = await kiosk.request("media.join", call_id=call_id, sdp=pc.localDescription.sdp)
        assert {host for host, _ in candidates(result["sdp"])} == {"198.51.100.7"}
    finally:
        await pc.close()
