"""The media relay end to end: aiortc peers on loopback, through the real service."""

from __future__ import annotations

from signaling.peer import MediaPeer

RED, GREEN = (255, 0, 0), (0, 255, 0)


def near(colour, expected, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


async def active_call(service, expert_name="amy"):
    expert = await service.expert(expert_name, specialties=["family"])
    kiosk = await service.kiosk()
    call_id = (await kiosk.request("call.launch", dispute_type="family"))["call"]["id"]
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
    finally:
        await kiosk_peer.close()
        await expert_peer.close()
