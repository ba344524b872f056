"""Device health: kiosks and stations report their camera/microphone self-test and build;
admins see it with when the device was last seen and whether it is online."""

from __future__ import annotations

import pytest

from signaling.client import ClientError


async def admin_devices(service) -> dict[str, dict]:
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    status, body = await service.http(
        "GET", "/api/admin/devices", token=await service.login("root")
    )
    assert status == 200, body
    return {d["id"]: d for d in body["devices"]}


async def test_a_kiosk_reports_its_self_test_and_the_admin_sees_it(service):
    kiosk_id, token = service.add_device("kiosk", "Hall A")
    idle_id, _ = service.add_device("kiosk", "Never connected")
    kiosk = await service.connect(device_token=token)
    result = await kiosk.request(
        "device.health", camera="denied", microphone="ok", app_build="web-2025.11.25"
    )
    health = result["health"]
    assert {k: health[k] for k in ("camera", "microphone", "app_build")} == {
        "camera": "denied",
        "microphone": "ok",
        "app_build": "web-2025.11.25",
    }
    assert abs(health["at"] - kiosk.auth["server_time"]) < 60_000
    devices = await admin_devices(service)
    row = devices[kiosk_id]
    assert row["health"] == health
    assert row["last_seen_at"] == health["at"]
    assert row["online"] is True
    assert devices[idle_id]["health"] is None
    assert devices[idle_id]["online"] is False and devices[idle_id]["last_seen_at"] is None
    assert {"id", "kind", "name", "disabled", "token_generation", "created_at"} <= set(row)
    await kiosk.close()


async def test_a_station_reports_health_too(service):
    station_id, token = service.add_device("station", "Room 1")
    service.add_person("officer", "station_officer")
    station = await service.connect(
        device_token=token, session_token=await service.login("officer")
    )
    await station.request("device.health", camera="ok", microphone="missing", app_build="s-1")
    assert (await admin_devices(service))[station_id]["health"]["microphone"] == "missing"
    await station.close()


async def test_a_new_report_replaces_the_last_and_only_changes_are_audited(service):
    kiosk_id, token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=token)
    for camera in ("ok", "ok", "error", "error"):
        await kiosk.request("device.health", camera=camera, microphone="ok", app_build="b1")
    await kiosk.request("device.health", camera="error", microphone="ok", app_build="b2")
    audited = [
        (e.actor, e.target, e.details)
        for e in service.store.list_audit(limit=1000)
        if e.action == "device.health"
    ]
    assert audited == [
        (kiosk_id, kiosk_id, {"camera": "ok", "microphone": "ok", "app_build": "b1"}),
        (kiosk_id, kiosk_id, {"camera": "error", "microphone": "ok", "app_build": "b1"}),
        (kiosk_id, kiosk_id, {"camera": "error", "microphone": "ok", "app_build": "b2"}),
    ]
    assert (await admin_devices(service))[kiosk_id]["health"]["app_build"] == "b2"
    await kiosk.close()


@pytest.mark.parametrize(
    "payload",
    [
        {"camera": "broken", "microphone": "ok", "app_build": "b"},
        {"camera": "ok", "microphone": "OK", "app_build": "b"},
        {"camera": "ok", "microphone": "ok", "app_build": "b" * 65},
        {"camera": "ok", "microphone": "ok"},
        {"camera": "ok", "microphone": "ok", "app_build": 7},
    ],
)
async def test_bad_reports_are_invalid_and_store_nothing(service, payload):
    kiosk_id, token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=token)
    with pytest.raises(ClientError) as err:
        await kiosk.request("device.health", **payload)
    assert err.value.code == "invalid_message"
    assert service.store.get_device_health(kiosk_id) is None
    await kiosk.close()
