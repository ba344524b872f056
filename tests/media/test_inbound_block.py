"""The test/operations hook `CallMedia.set_inbound_blocked`: a participant's network cut at
the server, for longer than media_inactivity_s, then restored.

While blocked, nothing the participant sends is read: the fast path's SRTP, aiortc's RTP,
RTCP and DTLS, aioice's STUN. Counted here by spies on the ICE connection (what aioice hands
to aiortc, the STUN requests it answers) and on the fast path; that STUN gets through again
once unblocked shows in the rejoin test (its new connection's ICE completes only then).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from media import hooks
from signaling.peer import MediaPeer
from tests.media.test_relay import GREEN, RED, near
from tests.media.util import until

INACTIVITY_S = 0.8


async def two_party_call(service: Any) -> tuple[str, Any, Any, str, str]:
    """A kiosk and an expert in an active call: (call id, kiosk, expert, their participant ids)."""
    kiosk = await service.kiosk()
    expert = await service.expert("amy", specialties=["family"])
    launched = await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    call_id = launched["call"]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    call = service.hub.dispatcher.calls[call_id]
    by_principal = {p.principal_id: p.id for p in call.participants.values()}
    ids = [by_principal[c.auth["principal"]["id"]] for c in (kiosk, expert)]
    return call_id, kiosk, expert, ids[0], ids[1]


def state_of(payload: dict[str, Any], participant_id: str) -> dict[str, Any]:
    return next(p for p in payload["call"]["participants"] if p["id"] == participant_id)


class Spy:
    """Counts what a server peer's ICE connection passes on: non-STUN datagrams (DTLS, RTCP,
    RTP off the fast path) to aiortc, and STUN requests (checks, consent)."""

    def __init__(self, server_peer: Any) -> None:
        self.to_aiortc = 0
        self.stun_requests = 0
        connection = hooks.ice_connection(server_peer._dtls())
        data_received, request_received = connection.data_received, connection.request_received

        def on_data(data: bytes, component: int) -> None:
            self.to_aiortc += 1
            data_received(data, component)

        def on_request(*args: Any) -> None:
            self.stun_requests += 1
            request_received(*args)

        connection.data_received = on_data
        connection.request_received = on_request


async def until_true(condition: Any, timeout: float = 10) -> None:
    """Poll a condition that no event announces (counters in aiortc's loop), with a limit."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiortc-path"])
async def test_a_blocked_participant_is_dropped_for_media_timeout_and_comes_back_unblocked(
    make_service, fast_path
):
    service = await make_service(media_inactivity_s=INACTIVITY_S)
    media_hub = service.hub.media
    media_hub.settings = dataclasses.replace(media_hub.settings, fast_path=fast_path)
    call_id, kiosk, expert, kiosk_id, expert_id = await two_party_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN)
    try:
        await kiosk_peer.start()
        await expert_peer.start()
        seen = await expert_peer.wait_checked(kiosk_id)
        assert near(seen["video"].colours[-1], RED)
        media = media_hub.calls[call_id]
        server_peer = media.peers[kiosk_id]
        connection = hooks.ice_connection(server_peer._dtls())
        # Unused, the hook leaves nothing behind: the sockets run aioice's handler, or the
        # fast path's wrapper on the nominated pair.
        nominated = connection._nominated[1].protocol
        for protocol in connection._protocols:
            own = protocol.__dict__.get("datagram_received")
            if fast_path and protocol is nominated:
                assert own is not None and own.__qualname__.startswith("FastPath")
            else:
                assert own is None
        assert not hooks.inbound_blocked(server_peer._dtls())
        fast = server_peer.fast_path
        assert (fast is not None) is fast_path
        spy = Spy(server_peer)
        video = expert_peer.tracks_from(kiosk_id)["video"]
        await until(lambda: video.packets_after_check > 10, video.progress)
        # RTCP at least reaches aiortc (all of the RTP too without the fast path).
        await until_true(lambda: spy.to_aiortc > 0)

        media.set_inbound_blocked(kiosk_id, True)
        assert hooks.inbound_blocked(server_peer._dtls())
        blocked_at = time.monotonic()
        counts = (spy.to_aiortc, spy.stun_requests, fast.packets if fast else 0)
        received = video.packets_after_check
        forwarded = sum(p.stats.packets_in for p in server_peer.published.values())
        dropped = await expert.next_event(
            "call.updated",
            where=lambda p: state_of(p, kiosk_id)["state"] == "dropped",
            timeout=10,
        )
        # Nothing at all was heard from the kiosk since the block (RTP and RTCP touch this).
        assert server_peer.last_media_at <= blocked_at
        assert state_of(dropped["payload"], kiosk_id)["reason"] == "media_timeout"
        assert dropped["payload"]["call"]["state"] == "active"
        # Nothing the kiosk sent was read, by any path, while it kept sending.
        assert (spy.to_aiortc, spy.stun_requests, fast.packets if fast else 0) == counts
        assert sum(p.stats.packets_in for p in server_peer.published.values()) == forwarded
        assert server_peer.inbound_dropped() > 50
        # The relay kept forwarding what it had (nothing): at most what was in flight.
        assert video.packets_after_check - received < 30
        # The other direction still flows: the server only stopped listening.
        from_expert = kiosk_peer.tracks_from(expert_id)["video"]
        before = from_expert.packets_after_check
        await until(lambda: from_expert.packets_after_check > before + 10, from_expert.progress)

        media.set_inbound_blocked(kiosk_id, False)
        assert not hooks.inbound_blocked(server_peer._dtls())
        back = await expert.next_event(
            "call.updated",
            where=lambda p: state_of(p, kiosk_id)["state"] == "connected",
            timeout=10,
        )
        assert back["payload"]["call"]["state"] == "active"
        assert media.peers[kiosk_id] is server_peer  # the same connection carried on
        resumed = video.packets_after_check
        await until(lambda: video.packets_after_check > resumed + 5, video.progress)
        await until_true(lambda: spy.to_aiortc > counts[0])  # RTCP (and DTLS) read again
        if fast is not None:
            assert fast.packets > counts[2]
            assert nominated.__dict__.get("datagram_received").__qualname__.startswith("FastPath")
        for protocol in connection._protocols:
            if protocol is not nominated or not fast_path:
                assert "datagram_received" not in protocol.__dict__
    finally:
        await kiosk_peer.close()
        await expert_peer.close()


async def test_a_rejoin_during_the_block_is_blocked_too_until_the_block_is_lifted(make_service):
    """The block follows the participant, not the connection: a new peer connection it joins
    with meanwhile gets nothing through (it is dropped again for media_timeout), and connects
    once the block is lifted, as the same participant."""
    service = await make_service(media_inactivity_s=INACTIVITY_S)
    call_id, kiosk, expert, kiosk_id, _ = await two_party_call(service)
    first = MediaPeer(kiosk, call_id, colour=RED)
    second = None
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, keep_decoding=True)
    try:
        await first.start()
        await expert_peer.start()
        video = (await expert_peer.wait_checked(kiosk_id, kinds=("video",)))["video"]
        media = service.hub.media.calls[call_id]
        media.set_inbound_blocked(kiosk_id, True)
        await expert.next_event(
            "call.updated",
            where=lambda p: state_of(p, kiosk_id)["state"] == "dropped",
            timeout=10,
        )
        await first.close()  # the kiosk gives up on its connection and rejoins
        second = MediaPeer(kiosk, call_id, colour=RED)
        assert (await second.start())["participant_id"] == kiosk_id
        rejoined = media.peers[kiosk_id]
        assert hooks.inbound_blocked(rejoined._dtls())
        # media.join counts as "back" at once; with nothing getting through, the new
        # connection is dropped for media_timeout again.
        dropped = await expert.next_event(
            "call.updated",
            where=lambda p: state_of(p, kiosk_id)["state"] == "dropped",
            timeout=10,
        )
        assert state_of(dropped["payload"], kiosk_id)["reason"] == "media_timeout"
        assert rejoined.pc.connectionState != "connected"
        await until_true(lambda: rejoined.inbound_dropped() > 0)  # its ICE checks, discarded
        assert rejoined.pc.connectionState != "connected"
        frames = len(video.counters)

        media.set_inbound_blocked(kiosk_id, False)
        await expert.next_event(
            "call.updated",
            where=lambda p: state_of(p, kiosk_id)["state"] == "connected",
            timeout=15,
        )
        assert media.peers[kiosk_id] is rejoined
        await until(lambda: len(video.counters) >= frames + 5, video.progress, timeout=15)
        assert near(video.colours[-1], RED)
        assert rejoined.pc.connectionState == "connected"
    finally:
        for peer in (first, second, expert_peer):
            if peer is not None:
                await peer.close()
