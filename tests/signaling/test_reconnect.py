"""Reconnects: the rejoin token restores the session, its state and its event numbering."""

from __future__ import annotations

import pytest

from signaling.client import ClientError


async def test_after_a_dropped_connection_the_snapshot_restores_state_and_seq_continues(service):
    amy_id = service.add_person("amy", "expert", specialties=["family"])
    token = await service.login("amy")
    expert = await service.connect(session_token=token)
    await expert.request("presence.set", availability="available")
    kiosk = await service.kiosk()
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    await expert.next_event("call.updated", where=lambda p: p["call"]["state"] == "active")
    seq_before = expert.last_seq
    rejoin = expert.auth["rejoin_token"]
    session_id = expert.auth["session_id"]

    expert.ws.transport.abort()  # the network drops, no goodbye
    reconnecting = await kiosk.next_event(
        "call.updated",
        where=lambda p: any(
            x["principal_id"] == amy_id and x["state"] == "reconnecting"
            for x in p["call"]["participants"]
        ),
    )
    assert reconnecting["payload"]["call"]["state"] == "active"  # the call goes on

    back = await service.connect(session_token=token, rejoin_token=rejoin)
    assert back.auth["resumed"] is True and back.auth["session_id"] == session_id
    snapshot = await back.next_event("snapshot")
    # Numbering continues (events in flight when the link died may be skipped: the
    # snapshot that follows every reconnect covers them).
    assert seq_before >= 5 and snapshot["seq"] > seq_before
    (call,) = snapshot["payload"]["calls"]
    assert call["id"] == call_id and call["state"] == "active"
    mine = next(p for p in call["participants"] if p["principal_id"] == amy_id)
    assert mine["state"] == "connected"
    assert snapshot["payload"]["presence"] == {
        "availability": "available",
        "activity": "in_call",
        "on_duty": False,
    }
    await kiosk.next_event(
        "call.updated",
        where=lambda p: all(x["state"] == "connected" for x in p["call"]["participants"]),
    )
    await back.request("call.leave", call_id=call_id)
    ended = await back.next_event("call.updated", where=lambda p: p["call"]["state"] == "ended")
    assert ended["seq"] > snapshot["seq"]


async def test_a_rejoin_token_of_someone_else_starts_a_fresh_session(service):
    service.add_person("amy", "expert")
    service.add_person("bob", "expert")
    amy = await service.connect_person("amy")
    bob = await service.connect(
        session_token=await service.login("bob"), rejoin_token=amy.auth["rejoin_token"]
    )
    assert bob.auth["resumed"] is False
    assert bob.auth["session_id"] != amy.auth["session_id"]


async def test_a_ring_pending_during_a_reconnect_is_in_the_snapshot(make_service):
    service = await make_service(rejoin_grace_s=5)
    service.add_person("amy", "expert", specialties=["family"])
    token = await service.login("amy")
    tab1 = await service.connect(session_token=token)
    tab2 = await service.connect(session_token=token)
    await tab1.request("presence.set", availability="available")
    kiosk = await service.kiosk()
    await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    ring = await tab1.next_event("call.ring")
    await tab1.close()  # the other tab keeps the expert online: the ring stands
    back = await service.connect(session_token=token, rejoin_token=tab1.auth["rejoin_token"])
    snapshot = await back.next_event("snapshot")
    assert [r["invitation_id"] for r in snapshot["payload"]["rings"]] == [
        ring["payload"]["invitation_id"]
    ]
    await back.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    await tab2.close()


async def test_the_grace_window_ends_the_call_of_a_caller_who_never_comes_back(make_service):
    service = await make_service(rejoin_grace_s=0.3)
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    kiosk.ws.transport.abort()
    ended = await expert.next_event("call.updated", where=lambda p: p["call"]["state"] == "ended")
    assert ended["payload"]["call"]["end_reason"] == "dropped"
    caller = next(p for p in ended["payload"]["call"]["participants"] if p["role"] == "caller")
    assert caller["state"] == "dropped"
    assert service.store.get_call(call_id).end_reason == "dropped"
    with pytest.raises(ClientError):
        await expert.request("call.leave", call_id=call_id)


async def test_a_reloaded_kiosk_page_without_its_rejoin_token_still_follows_its_call(service):
    """A page reload opens a new session for the device (no rejoin token) while the old one
    is within its grace time: the new connection must get the call's events."""
    expert = await service.expert("amy", specialties=["family"])
    _, token = service.add_device("kiosk", "reloading kiosk")
    kiosk = await service.connect(device_token=token)
    launched = await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    call_id = launched["call"]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    kiosk.ws.transport.abort()  # the page goes away without a goodbye
    reloaded = await service.connect(device_token=token)  # a new page: no rejoin token
    snapshot = await reloaded.next_event("snapshot")
    assert [c["id"] for c in snapshot["payload"]["calls"]] == [call_id]
    await expert.request("call.leave", call_id=call_id)
    ended = await reloaded.next_event("call.updated", where=lambda p: p["call"]["id"] == call_id)
    assert ended["payload"]["call"]["state"] == "ended"
