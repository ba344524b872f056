"""The REST API's directory, health and metrics on a real server."""

from __future__ import annotations


async def test_the_expert_directory_shows_names_specialties_and_availability(service):
    amy = await service.expert("amy", specialties=["family", "neighbours"])
    await service.expert("bob", specialties=["traffic"], available=False)
    service.add_person("cid", "expert", specialties=["labour"])  # never connected
    kiosk = await service.kiosk()
    token = service.add_device("kiosk", "reader")[1]
    status, body = await service.http("GET", "/api/experts", token=token)
    assert status == 200
    directory = {e["display_name"]: e for e in body["experts"]}
    assert directory["Amy"]["specialties"] == ["family", "neighbours"]
    assert {name: e["availability"] for name, e in directory.items()} == {
        "Amy": "available",
        "Bob": "away",
        "Cid": "offline",
    }
    assert set(directory["Amy"]) == {"id", "display_name", "specialties", "availability"}
    await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    await amy.next_event("call.ring")
    status, body = await service.http("GET", "/api/experts", token=token)
    assert {e["display_name"]: e["availability"] for e in body["experts"]}["Amy"] == "busy"


async def test_healthz_answers_ok(service):
    status, body = await service.http("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}


async def test_metrics_show_aggregates_without_personal_labels(service):
    expert = await service.expert("amy", specialties=["family"])
    kiosk = await service.kiosk()
    await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    await expert.next_event("call.ring")
    status, text = await service.http("GET", "/metrics")
    assert status == 200
    assert "mediation_connections 2.0" in text
    assert 'mediation_calls{state="ringing"} 1.0' in text
    assert "mediation_queue_length 0.0" in text
    assert "mediation_dispatch_latency_seconds_count 1.0" in text
    # Full collections stop the event loop: operators (and bench/recording.py) count them.
    assert 'python_gc_collections_total{generation="2"}' in text
    assert "amy" not in text.lower()
    assert service.hub.dispatcher.experts  # sanity: the expert exists, yet is not named


async def test_an_admin_creates_an_expert_who_can_then_be_rung(service):
    service.add_person("root", "admin")
    admin = await service.login("root")
    status, body = await service.http(
        "POST",
        "/api/admin/accounts",
        token=admin,
        json={
            "username": "newbie",
            "display_name": "Newbie",
            "role": "expert",
            "password": "a long password",
            "specialties": ["consumer"],
        },
    )
    assert status == 201, body
    newbie = await service.connect(
        session_token=(
            await service.http(
                "POST", "/api/login", json={"username": "newbie", "password": "a long password"}
            )
        )[1]["token"]
    )
    await newbie.request("presence.set", availability="available")
    kiosk = await service.kiosk()
    await kiosk.request("call.launch", consent_evidence=True, dispute_type="consumer")
    assert (await newbie.next_event("call.ring"))["payload"]["dispute_type"] == "consumer"


async def test_admin_input_errors_are_clear_and_change_nothing(service):
    service.add_person("root", "admin")
    admin = await service.login("root")
    for body, code in (
        (
            {"username": "x", "display_name": "X", "role": "wizard", "password": "long enough"},
            "invalid_message",
        ),
        (
            {"username": "x", "display_name": "X", "role": "expert", "password": "short"},
            "invalid_message",
        ),
        (
            {"username": "root", "display_name": "X", "role": "admin", "password": "long enough"},
            "conflict",
        ),
        (
            {"username": "", "display_name": "X", "role": "admin", "password": "long enough"},
            "invalid_message",
        ),
    ):
        status, reply = await service.http("POST", "/api/admin/accounts", token=admin, json=body)
        assert reply["error"]["code"] == code and status in (400, 409)
    status, reply = await service.http(
        "POST",
        "/api/admin/accounts",
        token=admin,
        data=b"not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and reply["error"]["code"] == "invalid_message"
    assert [a.username for a in service.store.list_accounts()] == ["root"]


async def test_the_audit_log_reads_as_an_intact_chain(service):
    service.add_person("eve", "evidence_officer")
    token = await service.login("eve")
    status, body = await service.http("GET", "/api/audit", token=token)
    assert status == 200 and body["intact"] is True
    assert any(e["action"] == "account.login" for e in body["entries"])
