"""What a call leaves behind, over real sockets: the caller's rating, the expert's outcome
(on the call and its case), bookmarks; plus the notice text, live-call listing and cases."""

from __future__ import annotations

import pytest

from signaling.client import ClientError


async def launch(client, dispute_type="family", **extra) -> str:
    return (
        await client.request(
            "call.launch", consent_evidence=True, dispute_type=dispute_type, **extra
        )
    )["call"]["id"]


async def answered_call(service, kiosk, expert) -> dict:
    """A call from the kiosk, accepted by the expert; returns the active call view."""
    call_id = await launch(kiosk)
    ring = await expert.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    return await kiosk.wait_call_state(call_id, "active")


async def token_of(service, username: str, role: str) -> str:
    if service.store.find_account_by_username(username) is None:
        service.add_person(username, role)
    return await service.login(username)


async def call_json(service, token: str, call_id: str) -> dict:
    status, body = await service.http("GET", f"/api/calls/{call_id}", token=token)
    assert status == 200, body
    return body["call"]


async def listed(service, token: str, query: str = "") -> dict[str, dict]:
    status, body = await service.http("GET", f"/api/calls{query}", token=token)
    assert status == 200, body
    return {c["id"]: c for c in body["calls"]}


# --- rating ------------------------------------------------------------------------------


async def test_the_caller_rates_an_ended_call_once_and_the_expert_sees_it(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk_id, kiosk_token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=kiosk_token)
    call = await answered_call(service, kiosk, expert)
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.rate", call_id=call["id"], stars=5)
    assert err.value.code == "invalid_state"  # still active
    await kiosk.request("call.leave", call_id=call["id"])
    result = await kiosk.request("call.rate", call_id=call["id"], stars=4, comment="很有帮助")
    rating = result["rating"]
    assert (rating["stars"], rating["comment"]) == (4, "很有帮助")
    assert isinstance(rating["at"], int)
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.rate", call_id=call["id"], stars=1)
    assert err.value.code == "already_rated"  # the first stands; the client may say "saved"

    amy = await service.login("amy")
    assert (await listed(service, amy))[call["id"]]["rating"] == rating
    assert (await call_json(service, amy, call["id"]))["rating"] == rating
    assert (await call_json(service, kiosk_token, call["id"]))["rating"] == rating
    (audit,) = [e for e in service.store.list_audit(limit=1000) if e.action == "call.rated"]
    assert (audit.actor, audit.target) == (kiosk_id, call["id"])
    assert audit.details == {"stars": 4, "has_comment": True, "device_id": kiosk_id}


async def test_a_rating_without_comment_shows_null(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call = await answered_call(service, kiosk, expert)
    await expert.request("call.leave", call_id=call["id"])  # the last expert leaving ends it
    await kiosk.wait_call_state(call["id"], "ended")
    rating = (await kiosk.request("call.rate", call_id=call["id"], stars=3))["rating"]
    assert rating["comment"] is None and rating["stars"] == 3


async def test_a_call_nobody_answered_cannot_be_rated(service):
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    await kiosk.request("call.cancel", call_id=call_id)
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.rate", call_id=call_id, stars=5)
    assert err.value.code == "invalid_state"


async def test_only_the_calls_own_device_may_rate_it(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk("mine")
    call = await answered_call(service, kiosk, expert)
    await kiosk.request("call.leave", call_id=call["id"])
    other = await service.kiosk("other")
    for call_id in (call["id"], "no-such-call"):
        with pytest.raises(ClientError) as err:
            await other.request("call.rate", call_id=call_id, stars=5)
        assert err.value.code == "not_found"


@pytest.mark.parametrize(
    "payload",
    [{"stars": 0}, {"stars": 6}, {"stars": "5"}, {"stars": 4.5}, {"stars": True}, {}]
    + [{"stars": 5, "comment": "x" * 501}],
)
async def test_bad_ratings_are_invalid(service, payload):
    kiosk = await service.kiosk()
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.rate", call_id="any", **payload)
    assert err.value.code == "invalid_message"


# --- outcome -----------------------------------------------------------------------------


async def test_an_expert_records_the_outcome_during_and_after_the_call_latest_wins(service):
    expert = await service.expert("amy", specialties=["family"])
    _, kiosk_token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=kiosk_token)
    call = await answered_call(service, kiosk, expert)
    amy_id = service.store.find_account_by_username("amy").id
    first = (
        await expert.request(
            "call.outcome", call_id=call["id"], outcome="partly_settled", summary="部分达成"
        )
    )["outcome"]
    assert (first["outcome"], first["summary"], first["by"]) == (
        "partly_settled",
        "部分达成",
        amy_id,
    )
    await kiosk.request("call.leave", call_id=call["id"])
    second = (
        await expert.request(
            "call.outcome", call_id=call["id"], outcome="settled", summary="双方达成协议。"
        )
    )["outcome"]
    assert second["at"] >= first["at"]

    amy = await service.login("amy")
    detail = await call_json(service, amy, call["id"])
    assert detail["outcome"] == second
    assert detail["case_number"].startswith("000000-")
    history = [
        (e["old"], e["new"], e["detail"]["summary"])
        for e in detail["events"]
        if e["kind"] == "outcome"
    ]
    assert history == [
        (None, "partly_settled", "部分达成"),
        ("partly_settled", "settled", "双方达成协议。"),
    ]
    status, body = await service.http("GET", f"/api/cases/{call['case_id']}", token=amy)
    assert status == 200, body
    case = body["case"]
    assert case["id"] == call["case_id"] and case["case_number"] == detail["case_number"]
    assert case["outcome"] == second
    assert [c["id"] for c in case["calls"]] == [call["id"]]
    audited = [
        e.details for e in service.store.list_audit(limit=1000) if e.action == "call.outcome"
    ]
    assert [(d["old"], d["new"]) for d in audited] == [
        (None, "partly_settled"),
        ("partly_settled", "settled"),
    ]
    assert all("summary" not in d for d in audited)
    assert (await listed(service, kiosk_token))[call["id"]]["outcome"] == second


async def test_only_experts_who_took_part_record_outcomes(service):
    amy = await service.expert("amy", specialties=["family"], last_busy_at=1)
    ben = await service.expert("ben", specialties=["family"], last_busy_at=2)
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    ring = await amy.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    await amy.request("call.decline", invitation_id=ring["payload"]["invitation_id"])
    ring = await ben.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    await ben.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    for call in (call_id, "no-such-call"):
        with pytest.raises(ClientError) as err:  # amy was rung, but never took part
            await amy.request("call.outcome", call_id=call, outcome="settled", summary="")
        assert err.value.code == "not_found"
    result = await ben.request("call.outcome", call_id=call_id, outcome="referred", summary="")
    assert result["outcome"]["summary"] == ""


@pytest.mark.parametrize(
    "payload",
    [
        {"outcome": "won", "summary": ""},
        {"outcome": "settled"},
        {"outcome": "settled", "summary": "x" * 4001},
    ],
)
async def test_bad_outcomes_are_invalid(service, payload):
    expert = await service.expert("amy", specialties=["family"])
    with pytest.raises(ClientError) as err:
        await expert.request("call.outcome", call_id="any", **payload)
    assert err.value.code == "invalid_message"


async def test_a_case_is_visible_only_through_a_call_one_may_read(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call = await answered_call(service, kiosk, expert)
    outsider = await token_of(service, "zed", "expert")
    status, body = await service.http("GET", f"/api/cases/{call['case_id']}", token=outsider)
    assert status == 404 and body["error"]["code"] == "not_found"
    admin = await token_of(service, "root", "admin")
    status, body = await service.http("GET", f"/api/cases/{call['case_id']}", token=admin)
    assert status == 200 and body["case"]["outcome"] is None
    status, body = await service.http("GET", "/api/cases/no-such-case", token=admin)
    assert status == 404


# --- bookmarks ---------------------------------------------------------------------------


async def test_an_expert_bookmarks_an_active_call_stamped_by_the_server(service):
    expert = await service.expert("amy", specialties=["family"])
    _, kiosk_token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=kiosk_token)
    call = await answered_call(service, kiosk, expert)
    hooked: list[tuple[str, dict]] = []
    service.hub.recordings.on_bookmark = lambda call_id, b: hooked.append((call_id, b))
    try:
        first = (await expert.request("call.bookmark", call_id=call["id"], note="协议要点"))[
            "bookmark"
        ]
        second = (await expert.request("call.bookmark", call_id=call["id"]))["bookmark"]
    finally:
        del service.hub.recordings.on_bookmark
    amy_id = service.store.find_account_by_username("amy").id
    assert (first["note"], first["by"]) == ("协议要点", amy_id)
    assert second["note"] == ""
    for bookmark in (first, second):
        assert bookmark["offset_ms"] == bookmark["at"] - call["answered_at"] >= 0
    assert hooked == [(call["id"], first), (call["id"], second)]

    amy = await service.login("amy")
    assert (await call_json(service, amy, call["id"]))["bookmarks"] == [first, second]
    admin = await token_of(service, "root", "admin")
    assert (await call_json(service, admin, call["id"]))["bookmarks"] == [first, second]
    assert (await call_json(service, kiosk_token, call["id"]))["bookmarks"] == []
    audited = [e for e in service.store.list_audit(limit=1000) if e.action == "call.bookmark"]
    assert [e.details["bookmark_id"] for e in audited] == [first["id"], second["id"]]
    assert all("note" not in e.details for e in audited)

    await kiosk.request("call.leave", call_id=call["id"])
    with pytest.raises(ClientError) as err:
        await expert.request("call.bookmark", call_id=call["id"])
    assert err.value.code == "invalid_state"


async def test_bookmarks_need_the_expert_in_the_active_call(service):
    amy = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    call_id = await launch(kiosk)
    await amy.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    with pytest.raises(ClientError) as err:  # ringing: not in the call yet
        await amy.request("call.bookmark", call_id=call_id)
    assert err.value.code == "not_found"
    zed = await service.expert("zed", specialties=["traffic"])
    for call in (call_id, "no-such-call"):
        with pytest.raises(ClientError) as err:
            await zed.request("call.bookmark", call_id=call)
        assert err.value.code == "not_found"
    with pytest.raises(ClientError) as err:
        await amy.request("call.bookmark", call_id=call_id, note="x" * 501)
    assert err.value.code == "invalid_message"


# --- notice, live calls ------------------------------------------------------------------


async def test_the_recording_notice_is_served_in_both_languages(service):
    kiosk_token = service.add_device("kiosk")[1]
    status, body = await service.http("GET", "/api/notice", token=kiosk_token)
    assert status == 200 and body["language"] == "zh-CN" and body["version"] == "1"
    assert "录像" in body["body"]
    status, body = await service.http("GET", "/api/notice?language=en", token=kiosk_token)
    assert status == 200 and body["language"] == "en" and "recorded" in body["body"]
    service.store.add_notice("2", "en", "Version two.")
    status, body = await service.http("GET", "/api/notice?language=en", token=kiosk_token)
    assert (body["version"], body["body"]) == ("2", "Version two.")
    status, body = await service.http("GET", "/api/notice?language=fr", token=kiosk_token)
    assert status == 400 and body["error"]["code"] == "invalid_message"
    status, body = await service.http("GET", "/api/notice")
    assert status == 401


async def test_the_admin_lists_live_calls_with_their_state(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosks = [await service.kiosk(f"k{n}") for n in range(3)]
    active = await answered_call(service, kiosks[0], expert)
    queued = await launch(kiosks[1])
    ended = await launch(kiosks[2], "traffic")
    await kiosks[2].request("call.cancel", call_id=ended)
    admin = await token_of(service, "root", "admin")
    live = await listed(service, admin, "?state=live")
    assert {i: c["state"] for i, c in live.items()} == {active["id"]: "active", queued: "queued"}
    assert live[queued]["queue_position"] == 1
    assert set(await listed(service, admin, "?state=ended")) == {ended}
    assert set(await listed(service, admin, "?state=queued")) == {queued}
    assert set(await listed(service, admin)) == {active["id"], queued, ended}
    status, body = await service.http("GET", "/api/calls?state=lost", token=admin)
    assert status == 400 and body["error"]["code"] == "invalid_message"
    amy = await service.login("amy")
    assert set(await listed(service, amy, "?state=live")) == {active["id"]}
