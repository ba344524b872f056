"""Authentication of people and devices, over HTTP and the WebSocket, on real sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import websockets

from signaling import messages as m
from signaling.client import ClientError, SignalingClient
from tests.conftest import PASSWORD


async def change_password(service, token: str, old: str, new: str = "a new long password"):
    return await service.http(
        "POST", "/api/password", token=token, json={"old_password": old, "new_password": new}
    )


async def test_login_sets_a_strict_http_only_cookie_and_returns_a_token(service):
    service.add_person("olga", "station_officer")
    status, body = await service.http(
        "POST", "/api/login", json={"username": "olga", "password": PASSWORD}
    )
    assert status == 200
    assert body["account"]["role"] == "station_officer"
    assert body["token"].startswith("ses_")
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            service.base_url + "/api/login", json={"username": "olga", "password": PASSWORD}
        ) as resp:
            cookie = resp.headers["Set-Cookie"]
    assert "mediation_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback; Secure is set under TLS


async def test_login_under_a_trusted_https_proxy_sets_a_secure_cookie(make_service):
    service = await make_service(trusted_proxies=("127.0.0.1",))
    service.add_person("olga", "station_officer")
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            service.base_url + "/api/login",
            json={"username": "olga", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},
        ) as resp:
            assert resp.status == 200
            assert "Secure" in resp.headers["Set-Cookie"]


async def test_wrong_password_is_refused_with_auth_failed(service):
    service.add_person("olga", "station_officer")
    status, body = await service.http(
        "POST", "/api/login", json={"username": "olga", "password": "wrong password"}
    )
    assert status == 401 and body["error"]["code"] == "auth_failed"
    status, body = await service.http(
        "POST", "/api/login", json={"username": "nobody", "password": PASSWORD}
    )
    assert status == 401 and body["error"]["code"] == "auth_failed"


async def test_logout_ends_the_session(service):
    service.add_person("olga", "station_officer")
    token = await service.login("olga")
    assert (await service.http("GET", "/api/me", token=token))[0] == 200
    assert (await service.http("POST", "/api/logout", token=token))[0] == 200
    status, body = await service.http("GET", "/api/me", token=token)
    assert status == 401 and body["error"]["code"] == "auth_required"


async def test_password_change_needs_the_old_password_and_takes_effect(service):
    service.add_person("olga", "station_officer")
    token = await service.login("olga")
    status, body = await change_password(service, token, "wrong")
    assert status == 401 and body["error"]["code"] == "auth_failed"
    status, _ = await change_password(service, token, PASSWORD)
    assert status == 200
    status, _ = await service.http(
        "POST", "/api/login", json={"username": "olga", "password": "a new long password"}
    )
    assert status == 200


async def test_a_password_change_logs_out_the_accounts_other_logins(service):
    """A stolen or forgotten login (HTTP and its live connection) ends when the person changes
    their password; the login that changed it goes on."""
    service.add_person("amy", "expert")
    mine, other = await service.login("amy"), await service.login("amy")
    mine_ws = await service.connect(session_token=mine)
    other_ws = await service.connect(session_token=other)
    status, _ = await change_password(service, mine, PASSWORD)
    assert status == 200
    assert await other_ws.wait_closed() == 4004
    assert (await service.http("GET", "/api/me", token=other))[0] == 401
    assert (await service.http("GET", "/api/me", token=mine))[0] == 200
    assert (await mine_ws.request("ping")) is not None
    await mine_ws.close()


async def test_guesses_at_the_old_password_count_with_failed_logins(make_service):
    service = await make_service(login_failures_per_account=2)
    service.add_person("amy", "expert")
    token = await service.login("amy")
    for _ in range(2):
        status, body = await change_password(service, token, "guess")
        assert status == 401, body
    status, body = await change_password(service, token, PASSWORD)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert (await log_in(service, "amy"))[0] == 429  # the account is locked for logins too


async def test_device_token_authenticates_a_kiosk_and_the_reply_carries_server_time(service):
    device_id, token = service.add_device("kiosk")
    client = await service.connect(device_token=token)
    assert client.auth["principal"] == {
        "role": "kiosk",
        "id": device_id,
        "display_name": "kiosk device",
        "device_id": device_id,
        "account_id": None,
    }
    assert abs(client.auth["server_time"] - __import__("time").time() * 1000) < 60_000
    snapshot = await client.next_event("snapshot")
    assert snapshot["seq"] == 1 and snapshot["payload"]["calls"] == []
    await client.close()


async def test_unknown_device_token_is_refused(service):
    with pytest.raises(ClientError) as err:
        await service.connect(device_token="dev_nonsense")
    assert err.value.code == "auth_failed"


async def test_a_station_needs_an_officer_login_beside_its_device_token(service):
    device_id, token = service.add_device("station")
    with pytest.raises(ClientError) as err:
        await service.connect(device_token=token)
    assert err.value.code == "station_login_required"
    officer_id = service.add_person("olga", "station_officer")
    client = await service.connect(device_token=token, session_token=await service.login("olga"))
    assert client.auth["principal"]["role"] == "station"
    assert client.auth["principal"]["device_id"] == device_id
    assert client.auth["principal"]["account_id"] == officer_id
    await client.close()


async def test_the_session_cookie_on_the_upgrade_authenticates_an_empty_auth(service):
    service.add_person("amy", "expert")
    token = await service.login("amy")
    client = await service.connect(cookie=token)
    assert client.auth["principal"]["role"] == "expert"
    await client.close()


async def test_disabling_a_device_cuts_off_its_live_connection(service):
    device_id, token = service.add_device("kiosk")
    admin_token = await _admin(service)
    client = await service.connect(device_token=token)
    status, _ = await service.http(
        "POST", f"/api/admin/devices/{device_id}/disable", token=admin_token
    )
    assert status == 200
    assert await client.wait_closed() == m.CLOSE_REVOKED
    with pytest.raises(ClientError) as err:
        await service.connect(device_token=token)
    assert err.value.code == "auth_failed"


async def test_disabling_an_account_from_the_cli_store_is_noticed_by_the_recheck(make_service):
    service = await make_service(principal_recheck_s=0.05)
    amy = service.add_person("amy", "expert")
    client = await service.connect_person("amy")
    service.store.set_account_disabled(amy, True)  # what `mediation users disable` does
    assert await client.wait_closed() == m.CLOSE_REVOKED


async def test_disabling_an_account_over_the_api_ends_its_connections(service):
    amy = service.add_person("amy", "expert")
    admin_token = await _admin(service)
    tab1 = await service.connect_person("amy")
    tab2 = await service.connect_person("amy")
    status, _ = await service.http("POST", f"/api/admin/accounts/{amy}/disable", token=admin_token)
    assert status == 200
    assert await tab1.wait_closed() == m.CLOSE_REVOKED
    assert await tab2.wait_closed() == m.CLOSE_REVOKED


async def test_a_rotated_token_is_refused_and_the_new_one_works(service):
    device_id, old_token = service.add_device("kiosk")
    admin_token = await _admin(service)
    client = await service.connect(device_token=old_token)
    status, body = await service.http(
        "POST", f"/api/admin/devices/{device_id}/rotate-token", token=admin_token
    )
    assert status == 200
    assert await client.wait_closed() == m.CLOSE_REVOKED
    with pytest.raises(ClientError) as err:
        await service.connect(device_token=old_token)
    assert err.value.code == "auth_failed"
    fresh = await service.connect(device_token=body["token"])
    assert fresh.auth["principal"]["id"] == device_id
    await fresh.close()


async def test_a_websocket_that_does_not_authenticate_is_closed_after_the_timeout(make_service):
    service = await make_service(auth_timeout_s=0.2)
    client = await service.connect(authenticate=False)
    error = await client.next_event("error")
    assert error["payload"]["code"] == "auth_required"
    assert await client.wait_closed() == m.CLOSE_AUTH_TIMEOUT


async def test_a_first_message_other_than_auth_is_refused(service):
    client = await service.connect(authenticate=False)
    await client.send_raw(m.encode_request("call.launch", 1, {"dispute_type": "family"}))
    error = await client.next_event("error")
    assert error["payload"]["code"] == "auth_required"
    assert await client.wait_closed() == m.CLOSE_AUTH_FAILED


async def test_a_foreign_origin_is_refused_on_the_upgrade_and_on_state_changing_requests(service):
    _, token = service.add_device("kiosk")
    with pytest.raises(websockets.InvalidStatus) as err:
        await SignalingClient.connect(
            service.ws_url, device_token=token, origin="https://evil.example"
        )
    assert err.value.response.status_code == 403
    ok = await SignalingClient.connect(service.ws_url, device_token=token, origin=service.base_url)
    await ok.close()
    service.add_person("olga", "station_officer")
    status, body = await service.http(
        "POST",
        "/api/login",
        json={"username": "olga", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_an_allowed_extra_origin_is_accepted(make_service):
    service = await make_service(allowed_origins=("https://kiosk.example",))
    _, token = service.add_device("kiosk")
    client = await SignalingClient.connect(
        service.ws_url, device_token=token, origin="https://kiosk.example"
    )
    await client.close()


@pytest.mark.parametrize("version", [0, m.PROTOCOL_VERSION + 1, 99])
async def test_an_unsupported_protocol_version_is_refused(service, version):
    _, token = service.add_device("kiosk")
    client = await service.connect(authenticate=False)
    await client.send_raw(
        m.encode_request(
            "auth", 1, {"protocol_version": version, "client_build": "t", "device_token": token}
        )
    )
    error = await client.next_event("error")
    assert error["payload"]["code"] == "protocol_version_unsupported"
    assert await client.wait_closed() == m.CLOSE_PROTOCOL_VERSION


async def test_a_newer_connection_of_a_device_replaces_the_older(service):
    _, token = service.add_device("kiosk")
    first = await service.connect(device_token=token)
    second = await service.connect(device_token=token)
    assert await first.wait_closed() == m.CLOSE_REPLACED
    assert (await second.request("ping"))["server_time"] > 0
    await second.close()


async def test_a_silent_connection_is_dropped_by_the_heartbeat(make_service):
    """A client that stops answering pings is treated as gone (1.5 x heartbeat_s)."""
    service = await make_service(heartbeat_s=0.2)
    amy = service.add_person("amy", "expert")
    client = await service.connect_person("amy")
    assert service.hub.dispatcher.experts[amy].online
    client.ws.transport.pause_reading()  # no more pongs from here on
    gone = asyncio.Event()
    original = service.hub.dispatcher.principal_offline

    def spy(principal_id: str) -> None:
        original(principal_id)
        gone.set()

    service.hub.dispatcher.principal_offline = spy  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await gone.wait()
    assert not service.hub.dispatcher.experts[amy].online
    client.ws.transport.resume_reading()
    await client.close()


async def _admin(service) -> str:
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    return await service.login("root")


async def test_logging_out_ends_the_websocket_sessions_that_login_opened(service):
    service.add_person("amy", "expert")
    token = await service.login("amy")
    other_login = await service.login("amy")
    client = await service.connect(session_token=token)
    elsewhere = await service.connect(session_token=other_login)
    assert (await service.http("POST", "/api/logout", token=token))[0] == 200
    assert await client.wait_closed() == m.CLOSE_REVOKED
    assert (await elsewhere.request("ping"))["server_time"] > 0  # another login stays
    await elsewhere.close()


async def test_no_event_precedes_the_auth_result_and_the_snapshot_is_event_one(service):
    """An expert coming online changes its presence; that shows in the snapshot, not before."""
    service.add_person("amy", "expert")
    client = await service.connect_person("amy")
    first = await client.next_event()
    assert first["type"] == "snapshot" and first["seq"] == 1
    await client.close()


async def test_a_replaced_device_connection_leaves_the_connection_gauge_right(service):
    _, token = service.add_device("kiosk")
    first = await service.connect(device_token=token)
    second = await service.connect(device_token=token)
    await first.wait_closed()
    status, text = await service.http("GET", "/metrics")
    assert "mediation_connections 1.0" in text
    await second.close()


async def log_in(service, username: str, password: str = PASSWORD, ip: str | None = None):
    headers = {"X-Forwarded-For": ip} if ip else {}
    return await service.http(
        "POST", "/api/login", json={"username": username, "password": password}, headers=headers
    )


async def test_a_password_guesser_is_throttled_per_ip_and_every_failure_is_audited(make_service):
    service = await make_service(login_failures_per_min=3)
    olga = service.add_person("olga", "station_officer")
    for username in ("olga", "Olga", "nobody"):
        status, body = await log_in(service, username, "wrong password")
        assert status == 401 and body["error"]["code"] == "auth_failed"
    # Over the limit even the right password is refused, with the wait to show the user.
    async with aiohttp.ClientSession() as http:
        async with http.post(
            service.base_url + "/api/login", json={"username": "olga", "password": PASSWORD}
        ) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "rate_limited"
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
    failed = [e for e in service.store.list_audit() if e.action == "account.login_failed"]
    assert [(e.target, e.details["known_account"]) for e in failed] == [
        (olga, True),
        (olga, True),
        (None, False),  # the typed name is not kept: it may be a password
    ]
    assert all(e.details["client_ip"] == "127.0.0.1" for e in failed)
    assert "nobody" not in str([e.details for e in failed])
    assert not [e for e in service.store.list_audit() if e.action == "account.login"]
    status, metrics = await service.http("GET", "/metrics")
    assert status == 200
    assert 'mediation_login_failures_total{outcome="wrong_password"} 3.0' in metrics
    assert 'mediation_login_failures_total{outcome="throttled"} 1.0' in metrics


async def test_guesses_at_one_account_from_many_ips_lock_that_username_only(make_service):
    service = await make_service(
        login_failures_per_account=3, login_failures_per_min=100, trusted_proxies=("127.0.0.1",)
    )
    service.add_person("olga", "station_officer")
    service.add_person("ivan", "station_officer")
    for n in range(3):
        assert (await log_in(service, "olga", "guess", ip=f"203.0.113.{n}"))[0] == 401
    status, body = await log_in(service, "OLGA ", ip="198.51.100.7")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    status, body = await log_in(service, "ivan", ip="198.51.100.7")
    assert status == 200, body


async def test_successful_logins_do_not_count_towards_the_throttle(make_service):
    service = await make_service(login_failures_per_min=2)
    service.add_person("olga", "station_officer")
    assert (await log_in(service, "olga", "typo"))[0] == 401
    for _ in range(5):
        assert (await log_in(service, "olga"))[0] == 200
    assert (await log_in(service, "olga", "typo"))[0] == 401
    assert (await log_in(service, "olga"))[0] == 429
