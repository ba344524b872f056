"""The media relay end to end: aiortc peers on loopback, through the real service."""

from __future__ import annotations

import gc

from signaling.peer import MediaPeer

RED, GREEN = (255, 0, 0), (0, 255, 0)


def near(colour, expected, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


async def active_call(service, expert_name="amy"):
    expert = await service.expert(expert_name, specialties=["family"])
    kiosk = await service.kiosk()
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    accepted = await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    participants = {p["role"]: p["id"] for p in accepted["call"]["participants"]}
    return call_id, kiosk, expert, participants


async def test_two_parties_see_and_hear_each_other(service):
    call_id, kiosk, expert, ids = await active_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    await kiosk_peer.start()
    await expert_peer.start()
    try:
        seen_by_expert = await expert_peer.wait_checked(ids["caller"])
        seen_by_kiosk = await kiosk_peer.wait_checked(ids["expert"])
        assert near(seen_by_expert["video"].colours[-1], RED)
        assert near(seen_by_kiosk["video"].colours[-1], GREEN)
        counters = seen_by_expert["video"].counters
        assert counters == sorted(counters) and len(set(counters)) == len(counters)
        assert seen_by_expert["audio"].tone == 440
        assert seen_by_kiosk["audio"].tone == 880
        # Once each publisher's SSRCs are known, packets bypass aiortc (the fast path).
        media = service.hub.media.calls[call_id]
        for participant_id in ids.values():
            fast_path = media.peers[participant_id].fast_path
            assert fast_path is not None and fast_path.installed and fast_path.packets > 0
    finally:
        await kiosk_peer.close()
        await expert_peer.close()


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
TONES = [440, 660, 880, 1100, 1320, 1540]


async def six_party_call(service):
    """A kiosk and five experts in one active call; returns (call_id, clients, participant ids)."""
    kiosk = await service.kiosk()
    experts = [
        await service.expert(f"e{n}", specialties=["family"], last_busy_at=n) for n in range(5)
    ]
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await experts[0].next_event("call.ring")
    await experts[0].request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    for n, expert in enumerate(experts[1:], start=1):
        expert_id = service.store.find_account_by_username(f"e{n}").id
        invite = await experts[0].request("call.invite", call_id=call_id, expert_id=expert_id)
        await expert.request("call.accept", invitation_id=invite["invitation_id"])
    call = service.hub.dispatcher.calls[call_id]
    by_principal = {p.principal_id: p.id for p in call.participants.values()}
    clients = [kiosk, *experts]
    ids = [by_principal[c.auth["principal"]["id"]] for c in clients]
    return call_id, clients, ids


async def test_six_parties_each_receive_the_five_others_by_colour_and_tone(service):
    call_id, clients, ids = await six_party_call(service)
    peers = [
        MediaPeer(client, call_id, colour=COLOURS[n], tone=TONES[n], frames_to_check=3)
        for n, client in enumerate(clients)
    ]
    try:
        for peer in peers:
            await peer.start()
        for n, peer in enumerate(peers):
            for m, other_id in enumerate(ids):
                if m == n:
                    continue
                seen = await peer.wait_checked(other_id, timeout=60)
                assert near(seen["video"].colours[-1], COLOURS[m]), (n, m)
                assert seen["audio"].tone == TONES[m], (n, m)
    finally:
        for peer in peers:
            await peer.close()


async def test_publishers_are_capped_in_sdp_and_the_cap_shrinks_as_the_call_grows(make_service):
    from media.sdp import video_bandwidth

    service = await make_service(max_video_kbps=1500)
    call_id, clients, ids = await six_party_call(service)
    first = MediaPeer(clients[0], call_id, colour=COLOURS[0], tone=TONES[0], frames_to_check=1)
    others: list[MediaPeer] = []
    try:
        await first.start()
        assert video_bandwidth(first.last_remote_sdp) == [1500]
        others = [
            MediaPeer(c, call_id, colour=COLOURS[n], tone=TONES[n], frames_to_check=1)
            for n, c in enumerate(clients[1:], start=1)
        ]
        for peer in others:
            await peer.start()
        for peer in (first, *others):
            await peer.wait_checked(ids[1] if peer is first else ids[0], kinds=("video",))
        media = service.hub.media.calls[call_id]
        from tests.media.util import until

        # Six publishers: each may send 1500 / 5 kbit/s so no receiver gets more than 1500.
        await until(lambda: video_bandwidth(first.last_remote_sdp) == [300], first.changed)
        assert media.video_cap_kbps() == 300
    finally:
        await first.close()
        for peer in others:
            await peer.close()


async def test_call_details_and_metrics_carry_media_stats_and_a_tap_sees_key_frames(service):
    call_id, kiosk, expert, ids = await active_call(service)
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    try:
        await kiosk_peer.start()
        await expert_peer.start()
        await expert_peer.wait_checked(ids["caller"])
        media = service.hub.media.calls[call_id]
        tap = media.tap(ids["caller"], "video", bound=64)
        tap.request_key_frame()
        async with __import__("asyncio").timeout(10):
            while True:
                payload, _, _, _, keyframe, _ = packet = await tap.get()
                if keyframe:
                    break
        assert tap.codec == "vp8" and tap.kind == "video" and payload
        # A tap holds packets until the recorder's next round: once the garbage collector
        # has looked at one, it no longer tracks it, so held packets are never promoted to
        # the oldest generation (whose full collections stalled forwarding for ~50 ms).
        gc.collect(0)
        assert not gc.is_tracked(packet)
        service.add_person("root", "admin")
        token = await service.login("root")
        status, body = await service.http("GET", f"/api/calls/{call_id}", token=token)
        assert status == 200
        stats = {p["id"]: p["media"] for p in body["call"]["participants"]}
        kiosk_stats = stats[ids["caller"]]
        assert kiosk_stats["published"]["video"]["packets_in"] > 0
        assert kiosk_stats["published"]["audio"]["kbps_in"] > 0
        assert [s["from"] for s in stats[ids["expert"]]["received"]] == [ids["caller"]] * 2
        status, text = await service.http("GET", "/metrics")
        assert "mediation_media_participants 2.0" in text
        await kiosk.request("call.leave", call_id=call_id)  # the figures stay with the call
        from media.router import TapClosed

        async with __import__("asyncio").timeout(10):
            try:
                while True:
                    await tap.get()  # what was queued, then the end
            except TapClosed:
                pass
        status, body = await service.http("GET", f"/api/calls/{call_id}", token=token)
        kept = {p["id"]: p["media"] for p in body["call"]["participants"]}
        assert kept[ids["caller"]]["published"]["video"]["packets_in"] > 0
        forwarded = next(
            line
            for line in text.splitlines()
            if line.startswith("mediation_media_packets_forwarded ")
        )
        assert float(forwarded.split()[1]) > 0
        tap.close()
    finally:
        await kiosk_peer.close()
        await expert_peer.close()
