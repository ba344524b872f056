"""A kiosk's call reaches an expert and is answered, over real sockets."""

from __future__ import annotations


async def test_kiosk_call_is_rung_at_an_expert_and_answered(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    launched = await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    call_id = launched["call"]["id"]
    ring = await expert.next_event("call.ring")
    assert ring["payload"]["call_id"] == call_id
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    active = await kiosk.wait_call_state(call_id, "active")
    assert {p["role"] for p in active["participants"]} == {"caller", "expert"}
    await kiosk.close()
    await expert.close()
