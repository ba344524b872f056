"""What the admin page reads: the experts with their profile and live presence, every dispute
type (inactive ones too), and storage warnings as codes with parameters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from signaling.client import ClientError


async def admin_token(service) -> str:
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    return await service.login("root")


def by_username(experts: list[dict]) -> dict[str, dict]:
    return {e["username"]: e for e in experts}


async def test_the_admin_lists_every_expert_with_profile_duty_flag_and_live_presence(service):
    """Connected and available, away, offline, ringing, disabled: each expert is listed with
    specialties and the duty flag, `availability` as callers see it and the hub's presence."""
    token = await admin_token(service)
    amy = await service.expert("amy", specialties=["family", "traffic"], on_duty=True)
    bob = await service.expert("bob", specialties=["labour"], available=False)
    service.add_person("cai", "expert", specialties=["consumer"])  # never connected
    dan_id = service.add_person("dan", "expert", specialties=["family"])
    service.store.set_account_disabled(dan_id, True)
    try:
        status, body = await service.http("GET", "/api/admin/experts", token=token)
        assert status == 200, body
        experts = by_username(body["experts"])
        assert set(experts) == {"amy", "bob", "cai", "dan"}
        assert experts["amy"] == {
            "id": service.store.find_account_by_username("amy").id,
            "username": "amy",
            "display_name": "Amy",
            "specialties": ["family", "traffic"],
            "on_duty": True,
            "disabled": False,
            "availability": "available",
            "presence": {"online": True, "availability": "available", "activity": "idle"},
        }
        assert (experts["bob"]["availability"], experts["bob"]["presence"]) == (
            "away",
            {"online": True, "availability": "away", "activity": "idle"},
        )
        assert experts["bob"]["on_duty"] is False
        assert experts["cai"]["availability"] == "offline"
        assert experts["cai"]["presence"]["online"] is False
        assert experts["dan"]["disabled"] is True and experts["dan"]["availability"] == "offline"

        # A ring makes amy busy; the duty flag set with PUT shows in the list.
        kiosk = await service.kiosk()
        await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
        await amy.next_event("call.ring")
        status, _ = await service.http(
            "PUT",
            f"/api/admin/experts/{experts['bob']['id']}",
            token=token,
            json={"on_duty": True},
        )
        assert status == 200
        status, body = await service.http("GET", "/api/admin/experts", token=token)
        experts = by_username(body["experts"])
        assert experts["amy"]["availability"] == "busy"
        assert experts["amy"]["presence"]["activity"] == "ringing"
        assert experts["bob"]["on_duty"] is True
        await kiosk.close()
    finally:
        await amy.close()
        await bob.close()


async def test_only_admins_list_inactive_dispute_types_with_all_1(service):
    token = await admin_token(service)
    status, body = await service.http(
        "PUT",
        "/api/admin/dispute-types/pets",
        token=token,
        json={"name_zh": "宠物纠纷", "name_en": "Pets", "active": False, "sort": 70},
    )
    assert status == 200 and body["dispute_type"]["active"] is False
    status, body = await service.http("GET", "/api/dispute-types", token=token)
    assert "pets" not in [t["code"] for t in body["dispute_types"]]
    status, body = await service.http("GET", "/api/dispute-types?all=1", token=token)
    assert status == 200
    pets = [t for t in body["dispute_types"] if t["code"] == "pets"]
    assert pets == [
        {"code": "pets", "name_zh": "宠物纠纷", "name_en": "Pets", "active": False, "sort": 70}
    ]
    assert any(t["active"] for t in body["dispute_types"])
    status, body = await service.http("GET", "/api/dispute-types?all=0", token=token)
    assert status == 200 and "pets" not in [t["code"] for t in body["dispute_types"]]
    status, body = await service.http("GET", "/api/dispute-types?all=yes", token=token)
    assert status == 400 and body["error"]["code"] == "invalid_message"

    _, kiosk_token = service.add_device("kiosk")
    status, body = await service.http("GET", "/api/dispute-types?all=1", token=kiosk_token)
    assert status == 403 and body["error"]["code"] == "forbidden"

    # Switched back on, it is offered again.
    status, _ = await service.http(
        "PUT",
        "/api/admin/dispute-types/pets",
        token=token,
        json={"name_zh": "宠物纠纷", "name_en": "Pets", "active": True, "sort": 70},
    )
    status, body = await service.http("GET", "/api/dispute-types", token=kiosk_token)
    assert "pets" in [t["code"] for t in body["dispute_types"]]


async def test_storage_warnings_carry_a_code_parameters_and_the_english_message(make_service):
    """A spool disk below its limit and a recording gap (as the recorder reports it) each
    come with a stable code, parameters and the English message, and nothing else."""
    service = await make_service(spool_min_free_mb=10**9)
    token = await admin_token(service)
    recordings = service.hub.recordings
    recordings._on_batch(
        SimpleNamespace(call_id="call-1"),
        [],
        [
            {
                "participant": "p-1",
                "track": "video",
                "seq_from": 10,
                "seq_to": 40,
                "packets": 31,
                "utc": "2025-01-02T03:04:05.000Z",
                "reason": "tap_overflow",
            }
        ],
    )
    status, body = await service.http("GET", "/api/admin/warnings", token=token)
    assert status == 200, body
    assert set(body) == {"warnings", "recording_gaps"}
    codes = [item["code"] for item in body["warnings"]]
    assert codes == ["disk_low", "recording_gap"]
    disk, gap = body["warnings"]
    assert set(disk) == set(gap) == {"code", "params", "message"}
    assert disk["params"]["limit_mib"] == 10**9
    assert 0 <= disk["params"]["free_mib"] < 10**9
    assert disk["params"]["directory"] == str(service.settings.spool_dir)
    assert disk["message"].startswith("spool disk nearly full")
    assert gap["params"] == {
        "call_id": "call-1",
        "participant_id": "p-1",
        "track": "video",
        "reason": "tap_overflow",
        "packets": 31,
        "at": "2025-01-02T03:04:05.000Z",
    }
    assert "tap_overflow" in gap["message"]
    assert body["recording_gaps"] == 1


async def test_a_station_invite_rings_with_the_officer_and_station_named(service):
    """The ring of `call.invite` says who invited: the station's officer and the station's
    name, or the inviting expert; a ring from dispatch names nobody."""
    first = await service.expert("amy", specialties=["family"], last_busy_at=1)
    second = await service.expert("bob", specialties=["labour"])
    third = await service.expert("cai", specialties=["traffic"])
    station_id, station_token = service.add_device("station", "Station Room 1")
    olga_id = service.add_person("olga", "station_officer")
    station = await service.connect(
        device_token=station_token, session_token=await service.login("olga")
    )
    try:
        call_id = (
            await station.request("call.launch", consent_evidence=True, dispute_type="family")
        )["call"]["id"]
        ring = (await first.next_event("call.ring"))["payload"]
        assert (ring["invited_by"], ring["inviter"]) == (None, None)
        await first.request("call.accept", invitation_id=ring["invitation_id"])

        bob_id = service.store.find_account_by_username("bob").id
        await station.request("call.invite", call_id=call_id, expert_id=bob_id)
        ring = (await second.next_event("call.ring"))["payload"]
        assert ring["invited_by"] == olga_id
        assert ring["inviter"] == {
            "role": "station",
            "id": olga_id,
            "display_name": "Olga",
            "station_name": "Station Room 1",
        }
        await second.request("call.accept", invitation_id=ring["invitation_id"])

        amy_id = service.store.find_account_by_username("amy").id
        await first.request("call.invite", call_id=call_id, specialty="traffic")
        ring = (await third.next_event("call.ring"))["payload"]
        assert ring["inviter"] == {
            "role": "expert",
            "id": amy_id,
            "display_name": "Amy",
            "station_name": None,
        }
        # The snapshot of a tab opened now carries the same ring.
        later = await service.connect_person("cai")
        snapshot = (await later.next_event("snapshot"))["payload"]
        assert [r["inviter"] for r in snapshot["rings"]] == [ring["inviter"]]
        await later.close()
        detail = service.store.list_invitations(call_id)
        assert {i.inviter_id for i in detail} == {None, olga_id, amy_id}
        assert station_id not in {i.inviter_id for i in detail}
    finally:
        for client in (first, second, third, station):
            await client.close()


async def test_only_the_officer_who_placed_the_call_invites_from_the_station(service):
    """Another officer signed in at the same station is not the call's inviter."""
    amy = await service.expert("amy", specialties=["family"], last_busy_at=1)
    bob = await service.expert("bob", specialties=["labour"])
    _, station_token = service.add_device("station", "Station Room 1")
    service.add_person("olga", "station_officer")
    service.add_person("pete", "station_officer")
    station = await service.connect(
        device_token=station_token, session_token=await service.login("olga")
    )
    clients = [amy, bob, station]
    try:
        call_id = (
            await station.request("call.launch", consent_evidence=True, dispute_type="family")
        )["call"]["id"]
        ring = await amy.next_event("call.ring")
        await amy.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
        other = await service.connect(
            device_token=station_token, session_token=await service.login("pete")
        )
        clients.append(other)
        with pytest.raises(ClientError) as err:
            await other.request("call.invite", call_id=call_id, specialty="labour")
        assert err.value.code == "not_found"
    finally:
        for client in clients:
            await client.close()
