"""Device enrolment: an admin's one-time code (with link and QR code) exchanged by the device
for a fresh token; one-time, expiring, throttled per client IP, Origin-checked, audited."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
import segno

from signaling.enrolment import FailureThrottle, enrolment_link, normalise_code, qr_svg
from storage import ids


async def admin_token(service) -> str:
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    return await service.login("root")


async def new_code(service, device_id: str, **kwargs) -> dict:
    status, body = await service.http(
        "POST",
        f"/api/admin/devices/{device_id}/enrolment",
        token=await admin_token(service),
        **kwargs,
    )
    assert status == 200, body
    return body


async def enrol(service, code: str, kind: str = "kiosk", **kwargs) -> tuple[int, dict]:
    """`POST /api/enrol` as a device of `kind` would send it."""
    return await service.http("POST", "/api/enrol", json={"code": code, "kind": kind}, **kwargs)


def svg_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules drawn by the SVG's path ("M x y.5 h n m dx dy ..." line runs)."""
    path = re.search(r'<path stroke="#000" d="([^"]+)"', svg)
    assert path is not None, svg[:200]
    dark = set()
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path[1]):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            for step in range(int(a)):
                dark.add((int(x) + step, int(y)))
            x += float(a)
    return dark


def test_the_qr_code_svg_draws_the_enrolment_link():
    link = "https://mediation.example.org/web/kiosk.html#enrol=01234567"
    svg = qr_svg(link)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox=')
    qr = segno.make(link, error="m", micro=False)
    border = 4
    expected = {
        (col + border, row + border)
        for row, line in enumerate(qr.matrix)
        for col, bit in enumerate(line)
        if bit
    }
    assert svg_modules(svg) == expected


def test_links_name_the_page_of_the_device_kind():
    assert enrolment_link("https://m.example.org", "kiosk", "12345678") == (
        "https://m.example.org/web/kiosk.html#enrol=12345678"
    )
    assert enrolment_link("http://10.0.0.5:8080", "station", "00000001") == (
        "http://10.0.0.5:8080/web/station.html#enrol=00000001"
    )


def test_codes_may_be_typed_with_spaces_or_a_hyphen():
    assert normalise_code("1234 5678") == "12345678"
    assert normalise_code("1234-5678") == "12345678"
    assert normalise_code("12345678") == "12345678"
    for bad in ("1234567", "123456789", "abcdefgh", "", "１２３４５６７８"):
        assert normalise_code(bad) is None, bad


def test_the_throttle_counts_failures_in_a_sliding_window_per_client():
    throttle = FailureThrottle(limit=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert throttle.retry_after_s("a", t) == 0
        throttle.record_failure("a", t)
    assert throttle.retry_after_s("a", 30.0) == pytest.approx(30.0)  # the first expires at 60
    assert throttle.retry_after_s("b", 30.0) == 0  # other clients are not affected
    assert throttle.retry_after_s("a", 60.0) == 0
    throttle.record_failure("a", 60.0)
    assert throttle.retry_after_s("a", 61.0) == pytest.approx(9.0)  # 10, 20, 60: 10 expires


def test_the_throttle_forgets_the_oldest_clients_beyond_its_bound():
    throttle = FailureThrottle(limit=1, window_s=60, max_clients=2)
    for client in ("a", "b", "c"):
        throttle.record_failure(client, 0.0)
    assert throttle.retry_after_s("a", 1.0) == 0  # forgotten
    assert throttle.retry_after_s("b", 1.0) > 0 and throttle.retry_after_s("c", 1.0) > 0


async def test_a_kiosk_enrols_with_the_code_and_its_old_token_stops_working(service):
    device_id, old_token = service.add_device("kiosk", "Hall A")
    old_client = await service.connect(device_token=old_token)
    body = await new_code(service, device_id)
    assert set(body) == {"code", "expires_at", "link", "qr_svg"}
    assert re.fullmatch(r"[0-9]{8}", body["code"])
    assert body["link"] == f"{service.base_url}/web/kiosk.html#enrol={body['code']}"
    assert body["qr_svg"].startswith("<svg") and "viewBox" in body["qr_svg"]
    now = ids.now_ms()
    assert now + 590_000 <= body["expires_at"] <= now + 600_000

    status, enrolled = await enrol(service, body["code"])
    assert status == 200, enrolled
    assert enrolled["device_id"] == device_id
    assert (enrolled["kind"], enrolled["name"]) == ("kiosk", "Hall A")
    assert enrolled["device_token"].startswith("dev_")
    assert await old_client.wait_closed() == 4004
    new_client = await service.connect(device_token=enrolled["device_token"])
    assert new_client.auth["principal"]["id"] == device_id
    status, me = await service.http("GET", "/api/me", token=old_token)
    assert status == 401 and me["error"]["code"] == "auth_required"
    await new_client.close()

    status, again = await enrol(service, body["code"])
    assert status == 401 and again["error"]["code"] == "enrolment_failed"


async def test_a_station_link_opens_the_station_page_at_the_public_origin(make_service):
    service = await make_service(public_origin="https://mediation.example.org")
    device_id, _ = service.add_device("station", "Room 1")
    body = await new_code(service, device_id)
    assert body["link"] == f"https://mediation.example.org/web/station.html#enrol={body['code']}"


async def test_a_new_code_replaces_the_unused_one(service):
    device_id, _ = service.add_device("kiosk")
    first = await new_code(service, device_id)
    second = await new_code(service, device_id)
    status, body = await enrol(service, first["code"])
    assert status == 401 and body["error"]["code"] == "enrolment_failed"
    status, body = await enrol(service, second["code"][:4] + " " + second["code"][4:])
    assert status == 200 and body["device_id"] == device_id


async def test_an_expired_code_is_refused(make_service):
    service = await make_service(enrolment_code_ttl_s=0.001)
    device_id, token = service.add_device("kiosk")
    body = await new_code(service, device_id)
    while ids.now_ms() <= body["expires_at"]:  # at most a millisecond
        await asyncio.sleep(0.001)
    status, reply = await enrol(service, body["code"])
    assert status == 401 and reply["error"]["code"] == "enrolment_failed"
    assert service.store.find_device_by_token(token) is not None  # nothing changed


async def test_unknown_and_malformed_codes_fail_alike_and_bad_bodies_are_invalid(service):
    for code in ("00000000", "1234", "abcdefgh", "9" * 40):
        status, body = await enrol(service, code)
        assert status == 401 and body["error"]["code"] == "enrolment_failed", code
    status, body = await service.http(
        "POST", "/api/enrol", json={"code": 12345678, "kind": "kiosk"}
    )
    assert status == 400 and body["error"]["code"] == "invalid_message"
    status, body = await service.http("POST", "/api/enrol", data="not json")
    assert status == 400 and body["error"]["code"] == "invalid_message"


async def test_too_many_failures_from_one_ip_are_throttled_even_with_the_right_code(
    make_service,
):
    service = await make_service(enrolment_failures_per_min=3)
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    wrong = "00000000" if body["code"] != "00000000" else "11111111"
    for _ in range(3):
        status, _reply = await enrol(service, wrong)
        assert status == 401
    async with aiohttp.ClientSession() as http:
        async with http.post(
            service.base_url + "/api/enrol", json={"code": body["code"], "kind": "kiosk"}
        ) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "rate_limited"
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert service.store.pending_enrolments() == {device_id: body["expires_at"]}  # not spent


async def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_alone(make_service):
    service = await make_service(enrolment_failures_per_min=2, trusted_proxies=("127.0.0.1",))
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    wrong = "00000000" if body["code"] != "00000000" else "11111111"
    guesser = {"X-Forwarded-For": "203.0.113.9, 10.0.0.66"}
    for _ in range(2):
        assert (await enrol(service, wrong, headers=guesser))[0] == 401
    assert (await enrol(service, wrong, headers=guesser))[0] == 429
    status, reply = await enrol(service, body["code"], headers={"X-Forwarded-For": "10.0.0.7"})
    assert status == 200, reply


async def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(make_service):
    service = await make_service(enrolment_failures_per_min=1)
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    wrong = "00000000" if body["code"] != "00000000" else "11111111"
    assert (await enrol(service, wrong, headers={"X-Forwarded-For": "10.0.0.1"}))[0] == 401
    status, _ = await enrol(service, body["code"], headers={"X-Forwarded-For": "10.0.0.2"})
    assert status == 429


async def test_enrolment_from_a_foreign_origin_is_forbidden(service):
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    status, reply = await enrol(service, body["code"], headers={"Origin": "https://evil.example"})
    assert status == 403 and reply["error"]["code"] == "forbidden"
    status, reply = await enrol(service, body["code"], headers={"Origin": service.base_url})
    assert status == 200, reply
    status, reply = await service.http(
        "POST",
        f"/api/admin/devices/{device_id}/enrolment",
        token=await admin_token(service),
        headers={"Origin": "https://evil.example"},
    )
    assert status == 403


async def test_codes_are_only_made_for_enabled_known_devices_by_admins(service):
    device_id, device_token = service.add_device("kiosk")
    admin = await admin_token(service)
    status, body = await service.http(
        "POST", "/api/admin/devices/no-such-device/enrolment", token=admin
    )
    assert status == 404 and body["error"]["code"] == "not_found"
    service.store.set_device_disabled(device_id, True)
    status, body = await service.http(
        "POST", f"/api/admin/devices/{device_id}/enrolment", token=admin
    )
    assert status == 409 and body["error"]["code"] == "invalid_state"
    service.store.set_device_disabled(device_id, False)
    status, body = await service.http(
        "POST", f"/api/admin/devices/{device_id}/enrolment", token=device_token
    )
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_a_code_of_a_device_disabled_meanwhile_is_refused(service):
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    service.store.set_device_disabled(device_id, True)
    status, reply = await enrol(service, body["code"])
    assert status == 401 and reply["error"]["code"] == "enrolment_failed"


async def test_creation_use_and_failure_are_audited_without_the_code(service):
    device_id, _ = service.add_device("kiosk")
    body = await new_code(service, device_id)
    await enrol(service, "00000000" if body["code"] != "00000000" else "11111111")
    await enrol(service, body["code"])
    entries = [
        e for e in service.store.list_audit(limit=1000) if e.action.startswith("device.enrol")
    ]
    admin_id = service.store.find_account_by_username("root").id
    assert [(e.action, e.actor, e.target) for e in entries] == [
        ("device.enrolment_created", admin_id, device_id),
        ("device.enrolment_failed", "anonymous", None),
        ("device.enrolment_used", device_id, device_id),
    ]
    assert entries[1].details == {"reason": "unknown", "client_ip": "127.0.0.1"}
    assert entries[2].details["token_generation"] == 2
    assert all(body["code"] not in str(e.details) for e in entries)
    assert service.store.verify_audit() is None


async def test_the_admin_device_list_shows_a_pending_code_until_it_is_used(service):
    device_id, _ = service.add_device("kiosk")
    admin = await admin_token(service)
    body = await new_code(service, device_id)
    _, listing = await service.http("GET", "/api/admin/devices", token=admin)
    (row,) = listing["devices"]
    assert row["enrolment_expires_at"] == body["expires_at"]
    await enrol(service, body["code"])
    _, listing = await service.http("GET", "/api/admin/devices", token=admin)
    assert listing["devices"][0]["enrolment_expires_at"] is None
    assert listing["devices"][0]["token_generation"] == 2


async def test_a_code_enrols_only_a_device_of_the_kind_it_was_made_for(service):
    """A station's code sent by a kiosk (`kind: kiosk`) is refused with wrong_device_kind and
    spends nothing: the device keeps its token and the code still enrols the station."""
    station_id, station_token = service.add_device("station", "Room 1")
    body = await new_code(service, station_id)
    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": body["code"], "kind": "kiosk"}
    )
    assert status == 409 and reply["error"]["code"] == "wrong_device_kind", reply
    assert service.store.pending_enrolments() == {station_id: body["expires_at"]}
    assert service.store.find_device_by_token(station_token) is not None
    failed = [e for e in service.store.list_audit(limit=1000) if e.action.endswith("_failed")]
    assert [e.details["reason"] for e in failed] == ["wrong_kind"]

    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": body["code"], "kind": "station"}
    )
    assert status == 200 and (reply["device_id"], reply["kind"]) == (station_id, "station")
    assert service.store.find_device_by_token(station_token) is None


async def test_the_kind_check_does_not_tell_a_wrong_or_spent_code_apart(service):
    """An unknown code, or a spent one, is still just enrolment_failed whatever the kind."""
    kiosk_id, _ = service.add_device("kiosk")
    body = await new_code(service, kiosk_id)
    wrong = "00000000" if body["code"] != "00000000" else "11111111"
    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": wrong, "kind": "station"}
    )
    assert status == 401 and reply["error"]["code"] == "enrolment_failed"
    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": body["code"], "kind": "kiosk"}
    )
    assert status == 200, reply
    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": body["code"], "kind": "station"}
    )
    assert status == 401 and reply["error"]["code"] == "enrolment_failed"


async def test_kind_mismatches_are_throttled_like_wrong_codes(make_service):
    service = await make_service(enrolment_failures_per_min=2)
    station_id, _ = service.add_device("station")
    body = await new_code(service, station_id)
    for _ in range(2):
        status, _reply = await service.http(
            "POST", "/api/enrol", json={"code": body["code"], "kind": "kiosk"}
        )
        assert status == 409
    status, reply = await service.http(
        "POST", "/api/enrol", json={"code": body["code"], "kind": "station"}
    )
    assert status == 429 and reply["error"]["code"] == "rate_limited"
    assert service.store.pending_enrolments() == {station_id: body["expires_at"]}


async def test_a_device_must_say_its_kind_and_nothing_is_spent_until_it_does(service):
    """Without a `kind`, or with one that is no device kind, the request is invalid
    (invalid_device_kind): the code is not looked at, spent or counted as a failure."""
    kiosk_id, kiosk_token = service.add_device("kiosk")
    body = await new_code(service, kiosk_id)
    for bad in ({}, {"kind": None}, {"kind": "expert"}, {"kind": ""}, {"kind": 1}):
        status, reply = await service.http("POST", "/api/enrol", json={"code": body["code"], **bad})
        assert status == 400 and reply["error"]["code"] == "invalid_device_kind", (bad, reply)
        assert "kiosk or station" in reply["error"]["message"]
    assert service.store.pending_enrolments() == {kiosk_id: body["expires_at"]}
    assert service.store.find_device_by_token(kiosk_token) is not None
    assert not [e for e in service.store.list_audit(limit=1000) if e.action.endswith("_failed")]
    status, reply = await enrol(service, body["code"], "kiosk")
    assert status == 200 and reply["device_id"] == kiosk_id
