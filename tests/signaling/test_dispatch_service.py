"""Dispatch end to end: real service, real WebSocket clients, short timers."""

from __future__ import annotations

import pytest

from signaling.client import ClientError


async def launch(client, dispute_type="family", **extra) -> str:
    return (
        await client.request(
            "call.launch", consent_evidence=True, dispute_type=dispute_type, **extra
        )
    )["call"]["id"]


async def ring_of(expert, call_id: str) -> str:
    ring = await expert.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    return ring["payload"]["invitation_id"]


async def test_specialty_routing_rings_the_matching_expert(service):
    traffic = await service.expert("tom", specialties=["traffic"])
    family = await service.expert("fay", specialties=["family"])
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, "traffic")
    await ring_of(traffic, call_id)
    assert "call.ring" not in [e["type"] for e in await family.pending_events()]
    ringing = await kiosk.wait_call_state(call_id, "ringing")
    assert [i["state"] for i in ringing["invitations"]] == ["ringing"]


async def test_named_expert_busy_offers_a_choice_and_anyone_is_rung_after_choosing(service):
    named = await service.expert("nina", specialties=["family"], last_busy_at=1)
    other = await service.expert("otto", specialties=["family"], last_busy_at=2)
    nina_id = service.store.find_account_by_username("nina").id
    first_kiosk = await service.kiosk("first")
    first = await launch(first_kiosk)
    await named.request("call.accept", invitation_id=await ring_of(named, first))
    kiosk = await service.kiosk("second")
    call_id = await launch(kiosk, expert_id=nina_id)
    offer = await kiosk.next_event("call.choice_offered")
    assert offer["payload"]["reason"] == "busy"
    assert offer["payload"]["choices"] == ["wait", "anyone"]
    await kiosk.request("call.choose", call_id=call_id, choice="anyone")
    await ring_of(other, call_id)


async def test_unanswered_choice_defaults_to_anyone_after_the_ring_timeout(make_service):
    service = await make_service(ring_timeout_s=0.3)
    named = await service.expert("nina", specialties=["family"], available=False)
    other = await service.expert("otto", specialties=["family"])
    nina_id = service.store.find_account_by_username("nina").id
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, expert_id=nina_id)
    offer = await kiosk.next_event("call.choice_offered")
    assert offer["payload"]["reason"] == "away"
    await ring_of(other, call_id)
    await named.close()


async def test_a_choice_left_unanswered_closes_on_the_callers_side_too(make_service):
    """Nobody else is free: at the deadline the call stays queued, now for anyone, and the
    caller is told (its page closes the choice; a late "wait" is refused)."""
    service = await make_service(ring_timeout_s=0.3)
    named = await service.expert("nina", specialties=["family"], available=False)
    nina_id = service.store.find_account_by_username("nina").id
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, expert_id=nina_id)
    await kiosk.next_event("call.choice_offered")
    updated = await kiosk.next_event(
        "call.updated", where=lambda p: p["call"]["preference"] == "anyone"
    )
    assert updated["payload"]["call"]["state"] == "queued"
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.choose", call_id=call_id, choice="wait")
    assert err.value.code == "invalid_state"
    await named.close()


async def test_ring_timeout_moves_to_the_next_expert(make_service):
    service = await make_service(ring_timeout_s=0.3)
    first = await service.expert("a_first", specialties=["family"], last_busy_at=1)
    second = await service.expert("b_second", specialties=["family"], last_busy_at=2)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    invitation = await ring_of(first, call_id)
    ended = await first.next_event("call.ring_ended")
    assert ended["payload"] == {
        "invitation_id": invitation,
        "call_id": call_id,
        "state": "timed_out",
    }
    presence = await first.next_event("presence.changed")
    assert presence["payload"]["presence"]["availability"] == "away"
    await ring_of(second, call_id)


async def test_decline_moves_to_the_next_expert(service):
    first = await service.expert("a_first", specialties=["family"], last_busy_at=1)
    second = await service.expert("b_second", specialties=["family"], last_busy_at=2)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    await first.request("call.decline", invitation_id=await ring_of(first, call_id))
    await second.request("call.accept", invitation_id=await ring_of(second, call_id))
    await kiosk.wait_call_state(call_id, "active")


async def test_queue_order_and_positions_and_a_freed_expert_takes_the_oldest(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosks = [await service.kiosk(f"k{n}") for n in range(4)]
    active = await launch(kiosks[0])
    await expert.request("call.accept", invitation_id=await ring_of(expert, active))
    waiting = [await launch(k) for k in kiosks[1:]]
    positions = []
    for kiosk, call_id in zip(kiosks[1:], waiting, strict=True):
        event = await kiosk.next_event(
            "call.queue_position", where=lambda p, c=call_id: p["call_id"] == c
        )
        positions.append(event["payload"]["position"])
    assert positions == [1, 2, 3]
    await kiosks[0].request("call.leave", call_id=active)
    await ring_of(expert, waiting[0])
    moved = await kiosks[2].next_event("call.queue_position", where=lambda p: p["position"] == 1)
    assert moved["payload"]["call_id"] == waiting[1]
    # A newer launch queues behind: the third caller is now second, not pushed back.
    late = await service.kiosk("late")
    late_call = await launch(late)
    late_position = await late.next_event(
        "call.queue_position", where=lambda p: p["call_id"] == late_call
    )
    assert late_position["payload"]["position"] == 3


async def test_overflow_offers_the_call_to_the_duty_pool(make_service):
    service = await make_service(overflow_timeout_s=0.3)
    duty = await service.expert("dora", specialties=["family"], on_duty=True)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, "labour")
    queued = await kiosk.wait_call_state(call_id, "queued")
    assert queued["queue_position"] == 1
    await ring_of(duty, call_id)


async def test_max_wait_ends_the_call_as_no_answer(make_service):
    service = await make_service(max_wait_s=0.3)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, "labour")
    ended = await kiosk.wait_call_state(call_id, "ended")
    assert ended["end_reason"] == "no_answer"
    assert service.store.get_call(call_id).end_reason == "no_answer"


async def test_cancel_while_ringing_stops_the_ring(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    invitation = await ring_of(expert, call_id)
    await kiosk.request("call.cancel", call_id=call_id)
    ended = await expert.next_event("call.ring_ended")
    assert ended["payload"]["invitation_id"] == invitation
    assert ended["payload"]["state"] == "cancelled"
    with pytest.raises(ClientError) as err:
        await expert.request("call.accept", invitation_id=invitation)
    assert err.value.code == "not_found"


async def test_cancel_while_queued_ends_the_call_as_cancelled(service):
    kiosk = await service.kiosk()
    call_id = await launch(kiosk, "labour")
    await kiosk.wait_call_state(call_id, "queued")
    result = await kiosk.request("call.cancel", call_id=call_id)
    assert result["call"]["state"] == "ended"
    assert result["call"]["end_reason"] == "cancelled"


async def test_expert_disconnect_while_ringing_skips_to_the_next(service):
    first = await service.expert("a_first", specialties=["family"], last_busy_at=1)
    second = await service.expert("b_second", specialties=["family"], last_busy_at=2)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    await ring_of(first, call_id)
    await first.close()
    await ring_of(second, call_id)


async def test_caller_disconnect_while_queued_then_rejoin_keeps_its_place(service):
    _, token_a = service.add_device("kiosk", "a")
    kiosk_a = await service.connect(device_token=token_a)
    kiosk_b = await service.kiosk("b")
    call_a = await launch(kiosk_a, "labour")
    call_b = await launch(kiosk_b, "labour")
    rejoin = kiosk_a.auth["rejoin_token"]
    await kiosk_a.close()
    back = await service.connect(device_token=token_a, rejoin_token=rejoin)
    snapshot = await back.next_event("snapshot")
    (call,) = snapshot["payload"]["calls"]
    assert call["id"] == call_a and call["state"] == "queued" and call["queue_position"] == 1
    caller = next(p for p in call["participants"] if p["role"] == "caller")
    assert caller["state"] == "connected"
    assert service.hub.dispatcher.calls[call_b].queue_position == 2  # still behind
    expert = await service.expert("lara", specialties=["labour"])
    await ring_of(expert, call_a)


async def test_a_ring_reaches_every_tab_and_accepting_on_one_ends_it_on_the_others(service):
    service.add_person("amy", "expert", specialties=["family"])
    tab1 = await service.connect_person("amy")
    tab2 = await service.connect_person("amy")
    await tab1.request("presence.set", availability="available")
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    invitation = await ring_of(tab1, call_id)
    assert await ring_of(tab2, call_id) == invitation
    await tab2.request("call.accept", invitation_id=invitation)
    ended = await tab1.next_event("call.ring_ended")
    assert ended["payload"]["state"] == "accepted"
    await kiosk.wait_call_state(call_id, "active")


async def test_an_expert_and_the_station_invite_more_experts_into_the_call(service):
    first = await service.expert("amy", specialties=["family"], last_busy_at=1)
    lawyer = await service.expert("larry", specialties=["property"])
    senior = await service.expert("sam", specialties=["traffic"])
    _, station_token = service.add_device("station")
    service.add_person("olga", "station_officer")
    station = await service.connect(
        device_token=station_token, session_token=await service.login("olga")
    )
    call_id = await launch(station)
    await first.request("call.accept", invitation_id=await ring_of(first, call_id))
    by_expert = await first.request("call.invite", call_id=call_id, specialty="property")
    await lawyer.request("call.accept", invitation_id=await ring_of(lawyer, call_id))
    sam_id = service.store.find_account_by_username("sam").id
    by_station = await station.request("call.invite", call_id=call_id, expert_id=sam_id)
    assert by_station["expert_id"] == sam_id
    await senior.request("call.accept", invitation_id=by_station["invitation_id"])
    call = await station.next_event(
        "call.updated",
        where=lambda p: len([x for x in p["call"]["participants"] if x["role"] == "expert"]) == 3,
    )
    assert call["payload"]["call"]["state"] == "active"
    invitations = {i["id"]: i for i in call["payload"]["call"]["invitations"]}
    assert invitations[by_expert["invitation_id"]]["inviter_id"] is not None


async def test_six_participants_share_one_call(service):
    kiosk = await service.kiosk()
    experts = [
        await service.expert(f"e{n}", specialties=["family"], last_busy_at=n) for n in range(5)
    ]
    call_id = await launch(kiosk)
    await experts[0].request("call.accept", invitation_id=await ring_of(experts[0], call_id))
    for n, expert in enumerate(experts[1:], start=1):
        expert_id = service.store.find_account_by_username(f"e{n}").id
        invite = await experts[0].request("call.invite", call_id=call_id, expert_id=expert_id)
        await expert.request("call.accept", invitation_id=invite["invitation_id"])
    full = await kiosk.next_event(
        "call.updated", where=lambda p: len(p["call"]["participants"]) == 6
    )
    assert {p["state"] for p in full["payload"]["call"]["participants"]} == {"connected"}


async def test_restart_ends_open_calls_as_interrupted(make_service):
    first = await make_service()
    kiosk = await first.kiosk()
    call_id = await launch(kiosk, "labour")
    await kiosk.wait_call_state(call_id, "queued")
    await kiosk.close()
    await first.server.close()
    second = await make_service()
    record = second.store.get_call(call_id)
    assert record.state == "ended" and record.end_reason == "interrupted"
    events = [(e.old, e.new) for e in second.store.list_call_events(call_id)]
    assert events[-1] == ("queued", "ended")
    assert second.store.verify_audit() is None


async def test_every_transition_is_stored_and_audited_in_a_hash_chain(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    await expert.request("call.accept", invitation_id=await ring_of(expert, call_id))
    await kiosk.request("call.leave", call_id=call_id)
    call_events = [
        (e.kind, e.old, e.new) for e in service.store.list_call_events(call_id) if e.kind == "call"
    ]
    assert call_events == [
        ("call", None, "launching"),
        ("call", "launching", "ringing"),
        ("call", "ringing", "active"),
        ("call", "active", "ended"),
    ]
    audited = [
        (e.details["old"], e.details["new"])
        for e in service.store.list_audit(limit=1000)
        if e.action == "call.state" and e.target == call_id
    ]
    assert audited == [(old, new) for _, old, new in call_events]
    assert service.store.verify_audit() is None
