"""Bad input gets an error reply with a stable code; nobody else is disturbed."""

from __future__ import annotations

import asyncio
import json

import pytest

from signaling import messages as m

BAD_FRAMES = [
    ("{not json", "invalid_json"),
    ("[1, 2, 3]", "invalid_message"),
    ('"just a string"', "invalid_message"),
    ('{"id": 1}', "invalid_message"),
    ('{"type": 5, "id": 1}', "invalid_message"),
    ('{"type": "call.launch", "id": {"x": 1}, "payload": {}}', "invalid_message"),
    ('{"type": "no.such.thing", "id": 1, "payload": {}}', "unknown_type"),
    ('{"type": "call.launch", "id": 1, "payload": []}', "invalid_message"),
    ('{"type": "call.launch", "id": 1, "payload": {}}', "invalid_message"),
    ('{"type": "call.launch", "id": 1, "payload": {"dispute_type": 7}}', "invalid_message"),
    ('{"type": "call.launch", "id": 1, "payload": {"dispute_type": true}}', "invalid_message"),
    (
        '{"type": "call.launch", "id": 1, "payload": {"dispute_type": "x", "evil": 1}}',
        "invalid_message",
    ),
    (
        '{"type": "call.launch", "id": 1, "payload": {"dispute_type": "no_such_type"}}',
        "unknown_dispute_type",
    ),
    ('{"type": "call.cancel", "id": 1, "payload": {"call_id": "0000-not-a-call"}}', "not_found"),
    (
        '{"type": "call.choose", "id": 1, "payload": {"call_id": "x", "choice": "maybe"}}',
        "invalid_message",
    ),
    (
        '{"type": "auth", "id": 1, "payload": {"protocol_version": 1, "client_build": "x"}}',
        "already_authenticated",
    ),
    (
        json.dumps({"type": "ping", "id": 1, "payload": {}, "pad": "x" * 70_000}),
        "message_too_large",
    ),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_each_bad_frame_gets_an_error_code_and_the_connection_lives_on(service, frame, code):
    kiosk = await service.kiosk()
    await kiosk.send_raw(frame)
    error = await kiosk.next_event("error")
    assert error["payload"]["code"] == code
    assert (await kiosk.request("ping"))["server_time"] > 0
    await kiosk.close()


async def test_a_binary_frame_is_answered_with_invalid_message(service):
    kiosk = await service.kiosk()
    await kiosk.send_raw(b"\x00\x01")
    assert (await kiosk.next_event("error"))["payload"]["code"] == "invalid_message"
    await kiosk.close()


async def test_another_users_call_id_answers_not_found(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk("one")
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    other = await service.kiosk("two")
    for request, payload in (
        ("call.cancel", {"call_id": call_id}),
        ("call.leave", {"call_id": call_id}),
        ("call.choose", {"call_id": call_id, "choice": "anyone"}),
    ):
        await other.send_raw(m.encode_request(request, 9, payload))
        reply = await other.next_event("error")
        assert reply["id"] == 9 and reply["payload"]["code"] == "not_found"
    other_expert = await service.expert("zed", specialties=["traffic"])
    await other_expert.send_raw(
        m.encode_request("call.accept", 3, {"invitation_id": ring["payload"]["invitation_id"]})
    )
    assert (await other_expert.next_event("error"))["payload"]["code"] == "not_found"


async def test_a_flooder_is_rate_limited_then_closed_while_a_call_completes(make_service):
    service = await make_service(
        rate_limit_per_s=20, rate_limit_burst=40, rate_limit_close_after=50
    )
    flooder = await service.kiosk("flooder")
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk("honest")

    async def flood() -> None:
        frame = m.encode_request("ping", None)
        try:
            for _ in range(2000):
                await flooder.send_raw(frame)
        except Exception:
            pass  # the server closed us, as it should

    flooding = asyncio.create_task(flood())
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    active = await kiosk.wait_call_state(call_id, "active")
    assert active["state"] == "active"
    await flooding
    assert await flooder.wait_closed() == m.CLOSE_RATE_LIMITED
    codes = []
    while not flooder.events.empty():
        frame = flooder.events.get_nowait()
        if frame["type"] == "error":
            codes.append(frame["payload"]["code"])
    assert "rate_limited" in codes


async def test_a_client_that_cannot_keep_up_is_cut_off_when_its_send_queue_fills(make_service):
    """One slow kiosk never stalls the server: its bounded queue overflows, it is closed."""
    service = await make_service(send_queue_max=8, rate_limit_per_s=1000, rate_limit_burst=1000)
    slow = await service.kiosk("slow")
    (session,) = service.hub._by_principal[slow.auth["principal"]["id"]]  # noqa: SLF001
    session.connection.writes_allowed.clear()  # its network stops draining
    for n in range(20):
        await slow.send_raw(m.encode_request("ping", n))
    honest = await service.kiosk("honest")
    assert (await honest.request("ping"))["server_time"] > 0
    assert await slow.wait_closed() == m.CLOSE_SLOW_CONSUMER
