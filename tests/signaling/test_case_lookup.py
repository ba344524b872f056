"""`GET /api/cases?number=`: an existing case by its number, for officers at stations and
admins; a case is shown as `GET /api/cases/{case_id}` shows it, to whoever may read one of its
calls."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Service

UNKNOWN = "000000-1999-99999"


async def station_call(
    service: Service, device_token: str, officer: str, **launch: Any
) -> dict[str, Any]:
    """A call placed at the station under the officer's login (queued: nobody is on duty),
    then cancelled; returns the call view."""
    if service.store.find_account_by_username(officer) is None:
        service.add_person(officer, "station_officer")
    station = await service.connect(
        device_token=device_token, session_token=await service.login(officer)
    )
    try:
        reply = await station.request(
            "call.launch", consent_evidence=True, dispute_type="family", parties=2, **launch
        )
        call: dict[str, Any] = reply["call"]
        await station.request("call.cancel", call_id=call["id"])
    finally:
        await station.close()
    return call


async def find(service: Service, token: str, number: str | None) -> tuple[int, Any]:
    params = {} if number is None else {"number": number}
    return await service.http("GET", "/api/cases", token=token, params=params)


async def case_by_id(service: Service, token: str, case_id: str) -> dict[str, Any]:
    status, body = await service.http("GET", f"/api/cases/{case_id}", token=token)
    assert status == 200, body
    return dict(body["case"])


async def test_an_officer_finds_their_case_by_its_number_shaped_as_the_case_itself(service):
    """The officer's, the station's and an admin's look-up each return the one case, exactly as
    `GET /api/cases/{case_id}` shows it to them; spaces and letter case in the typed number do
    not matter."""
    _, station_token = service.add_device("station", "Room 1")
    call = await station_call(service, station_token, "olga")
    olga = await service.login("olga")
    service.add_person("root", "admin")
    admin = await service.login("root")
    expected = await case_by_id(service, olga, call["case_id"])
    number = expected["case_number"]
    assert number.startswith("000000-")

    for token in (olga, station_token, admin):
        status, body = await find(service, token, number)
        assert status == 200, body
        assert body == {"cases": [await case_by_id(service, token, call["case_id"])]}
    status, body = await find(service, olga, f"  {number.lower()} ")
    assert status == 200 and body == {"cases": [expected]}
    assert [c["id"] for c in expected["calls"]] == [call["id"]]
    assert set(expected) == {"id", "case_number", "district", "created_at", "outcome", "calls"}


async def test_a_case_is_found_only_by_those_who_may_read_one_of_its_calls(service):
    """Another officer and another station see no such case, until that officer files a call
    under it there: then each look-up shows the case with the calls it may read only."""
    _, room1 = service.add_device("station", "Room 1")
    _, room2 = service.add_device("station", "Room 2")
    first = await station_call(service, room1, "olga")
    service.add_person("pete", "station_officer")
    pete = await service.login("pete")
    number = (await case_by_id(service, room1, first["case_id"]))["case_number"]

    for token in (pete, room2):
        status, body = await find(service, token, number)
        assert status == 200 and body == {"cases": []}, body

    second = await station_call(service, room2, "pete", case_id=first["case_id"])
    for token in (await service.login("pete"), room2):
        status, body = await find(service, token, number)
        assert status == 200, body
        (case,) = body["cases"]
        assert case["id"] == first["case_id"]
        assert [c["id"] for c in case["calls"]] == [second["id"]]
    status, body = await find(service, room1, number)
    assert [c["id"] for c in body["cases"][0]["calls"]] == [first["id"]]


async def test_an_unknown_number_finds_an_empty_list(service):
    _, station_token = service.add_device("station")
    status, body = await find(service, station_token, UNKNOWN)
    assert status == 200 and body == {"cases": []}


@pytest.mark.parametrize(
    "number",
    [
        None,
        "",
        "   ",
        "abc",
        "000000-2025",
        "000000-25-00001",
        "000000-2025-0001",
        "000000-2025-00001-2",
        "000000 2025 00001",
        "0" * 17 + "-2025-00001",
        "000000-2025-00001' OR 1=1 --",
        "０００-2025-00001",
    ],
)
async def test_a_missing_or_malformed_number_is_refused_as_invalid_case_number(service, number):
    _, station_token = service.add_device("station")
    status, body = await find(service, station_token, number)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_case_number"
    assert "number" in body["error"]["message"]


async def test_roles_that_may_not_look_up_cases_are_forbidden_before_the_number_is_read(service):
    """Kiosks, experts, trainers and evidence officers get 403 even for a malformed number."""
    _, kiosk_token = service.add_device("kiosk")
    tokens = [kiosk_token]
    for username, role in (("amy", "expert"), ("tina", "trainer"), ("eve", "evidence_officer")):
        service.add_person(username, role)
        tokens.append(await service.login(username))
    for token in tokens:
        for number in (None, UNKNOWN):
            status, body = await find(service, token, number)
            assert status == 403 and body["error"]["code"] == "forbidden", body
