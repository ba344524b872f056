"""The role x request matrix, written out by hand from ARCHITECTURE.md's role table.

Deliberately not derived from signaling.permissions: if the code's table drifts
from the architecture, these tests fail.
"""

from __future__ import annotations

import asyncio

import pytest

from signaling.client import ClientError

ROLES = ("kiosk", "station", "expert", "trainer", "evidence_officer", "admin")

# WebSocket requests. Y = the role may use it (ARCHITECTURE.md "Who uses it").
#   kiosk/station launch calls, choose wait-or-anyone, cancel, hang up;
#   station and expert invite further experts; experts set availability, accept, decline;
#   trainer, evidence officer and admin place no calls.
WS_MATRIX = {
    #                 kiosk station expert trainer evidence admin
    "presence.set": ("-", "-", "Y", "-", "-", "-"),
    "call.launch": ("Y", "Y", "-", "-", "-", "-"),
    "call.choose": ("Y", "Y", "-", "-", "-", "-"),
    "call.cancel": ("Y", "Y", "-", "-", "-", "-"),
    "call.accept": ("-", "-", "Y", "-", "-", "-"),
    "call.decline": ("-", "-", "Y", "-", "-", "-"),
    "call.invite": ("-", "Y", "Y", "-", "-", "-"),
    "call.leave": ("Y", "Y", "Y", "-", "-", "-"),
    # media: whoever is in the call (kiosk, station, experts) sends and receives media;
    # trainers will watch silently through another request (issue 6/7), not these.
    "media.join": ("Y", "Y", "Y", "-", "-", "-"),
    "media.answer": ("Y", "Y", "Y", "-", "-", "-"),
    "media.candidate": ("Y", "Y", "Y", "-", "-", "-"),
    "media.state": ("Y", "Y", "Y", "-", "-", "-"),
    # kiosk and station devices report their self-test (kiosk health) and rate their calls;
    # experts set bookmarks and record the outcome (issue 6).
    "device.health": ("Y", "Y", "-", "-", "-", "-"),
    "call.rate": ("Y", "Y", "-", "-", "-", "-"),
    "call.outcome": ("-", "-", "Y", "-", "-", "-"),
    "call.bookmark": ("-", "-", "Y", "-", "-", "-"),
}

# HTTP requests: (method, path, body).
#   the experts directory is for every authenticated principal;
#   admin manages accounts, devices, dispute types; the evidence officer reads the audit log.
HTTP_MATRIX = {
    ("GET", "/api/experts"): ("Y", "Y", "Y", "Y", "Y", "Y"),
    ("GET", "/api/dispute-types"): ("Y", "Y", "Y", "Y", "Y", "Y"),
    ("GET", "/api/calls"): ("Y", "Y", "Y", "Y", "Y", "Y"),
    ("GET", "/api/admin/accounts"): ("-", "-", "-", "-", "-", "Y"),
    # the admin page lists every expert with duty flag and presence, and every dispute type
    # (inactive ones too, to switch one back on).
    ("GET", "/api/admin/experts"): ("-", "-", "-", "-", "-", "Y"),
    ("GET", "/api/dispute-types?all=1"): ("-", "-", "-", "-", "-", "Y"),
    ("GET", "/api/admin/devices"): ("-", "-", "-", "-", "-", "Y"),
    ("PUT", "/api/admin/dispute-types/pets"): ("-", "-", "-", "-", "-", "Y"),
    ("GET", "/api/audit"): ("-", "-", "-", "-", "Y", "-"),
    ("GET", "/api/admin/warnings"): ("-", "-", "-", "-", "-", "Y"),
    # the recording notice is read on the consent screen (and by anyone who may see it);
    # the admin enrols devices.
    ("GET", "/api/notice?language=en"): ("Y", "Y", "Y", "Y", "Y", "Y"),
    ("POST", "/api/admin/devices/{kiosk_id}/enrolment"): ("-", "-", "-", "-", "-", "Y"),
    # a case by its number: officers at stations (the station device here; station officers'
    # logins in test_case_lookup.py) and admins; an unknown number is an empty list.
    ("GET", "/api/cases?number=000000-2025-00001"): ("-", "Y", "-", "-", "-", "Y"),
}


class World:
    """One principal of each role, connected, plus spare experts to ring."""

    def __init__(self, service):
        self.service = service
        self.clients = {}
        self.tokens = {}
        self.ids = {}

    async def setup(self):
        s = self.service
        self.ids["kiosk_id"], kiosk_token = s.add_device("kiosk")
        _, station_token = s.add_device("station")
        s.add_person("officer", "station_officer")
        officer = await s.login("officer")
        self.tokens["kiosk"] = kiosk_token
        self.tokens["station"] = station_token
        self.clients["kiosk"] = await s.connect(device_token=kiosk_token)
        self.clients["station"] = await s.connect(device_token=station_token, session_token=officer)
        for role, username in (
            ("trainer", "tina"),
            ("evidence_officer", "eve"),
            ("admin", "adam"),
        ):
            s.add_person(username, role)
            self.tokens[role] = await s.login(username)
            self.clients[role] = await s.connect(session_token=self.tokens[role])
        s.add_person("amy", "expert", specialties=["family"], last_busy_at=1)
        self.tokens["expert"] = await s.login("amy")
        self.clients["expert"] = await s.connect(session_token=self.tokens["expert"])
        await self.clients["expert"].request("presence.set", availability="available")

    async def active_call(self, caller_role: str, expert: str = "expert") -> str:
        """A call from the caller answered by the role-`expert` client."""
        caller = self.clients[caller_role]
        call_id = (
            await caller.request("call.launch", consent_evidence=True, dispute_type="family")
        )["call"]["id"]
        ring = await self.clients[expert].next_event(
            "call.ring", where=lambda p: p["call_id"] == call_id
        )
        await self.clients[expert].request(
            "call.accept", invitation_id=ring["payload"]["invitation_id"]
        )
        return call_id

    async def close(self):
        for client in self.clients.values():
            await client.close()


@pytest.fixture
async def world(service):
    w = World(service)
    await w.setup()
    yield w
    await w.close()


async def allowed_case(world: World, role: str, request: str) -> dict:
    """Set up the situation in which the role's request must succeed, and send it."""
    s = world.service
    me = world.clients[role]
    if request == "presence.set":
        return await me.request("presence.set", availability="away")
    if request == "call.launch":
        return await me.request("call.launch", consent_evidence=True, dispute_type="family")
    if request == "call.cancel":
        call_id = (
            await me.request("call.launch", consent_evidence=True, dispute_type="neighbours")
        )["call"]["id"]
        return await me.request("call.cancel", call_id=call_id)
    if request == "call.choose":
        s.add_person("offline_oscar", "expert", specialties=["family"])
        oscar = s.store.find_account_by_username("offline_oscar").id
        call = (
            await me.request(
                "call.launch", consent_evidence=True, dispute_type="family", expert_id=oscar
            )
        )["call"]
        await me.next_event("call.choice_offered")
        return await me.request("call.choose", call_id=call["id"], choice="anyone")
    if request in ("call.accept", "call.decline"):
        kiosk = world.clients["kiosk"]
        await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
        ring = await me.next_event("call.ring")
        return await me.request(request, invitation_id=ring["payload"]["invitation_id"])
    if request == "call.invite":
        caller = "station" if role == "station" else "kiosk"
        call_id = await world.active_call(caller)
        await s.expert("ben", specialties=["labour"])
        return await me.request("call.invite", call_id=call_id, specialty="labour")
    if request == "call.leave":
        caller = role if role in ("kiosk", "station") else "kiosk"
        call_id = await world.active_call(caller)
        return await me.request("call.leave", call_id=call_id)
    if request == "device.health":
        return await me.request("device.health", camera="ok", microphone="ok", app_build="t")
    if request == "call.rate":
        call_id = await world.active_call(role)
        await me.request("call.leave", call_id=call_id)
        return await me.request("call.rate", call_id=call_id, stars=5)
    if request == "call.outcome":
        call_id = await world.active_call("kiosk")
        return await me.request("call.outcome", call_id=call_id, outcome="settled", summary="")
    if request == "call.bookmark":
        call_id = await world.active_call("kiosk")
        return await me.request("call.bookmark", call_id=call_id, note="here")
    if request.startswith("media."):
        return await media_case(world, role, request)
    raise AssertionError(request)


async def media_case(world: World, role: str, request: str) -> dict:
    """The role is in an active call and uses the media request for real."""
    from signaling.peer import MediaPeer

    caller = role if role in ("kiosk", "station") else "kiosk"
    call_id = await world.active_call(caller)
    me = world.clients[role]
    other = world.clients["expert" if role != "expert" else caller]
    mine = MediaPeer(me, call_id, colour=(255, 0, 0))
    theirs = MediaPeer(other, call_id, colour=(0, 0, 255))
    try:
        if request == "media.join":
            return await mine.start()
        await mine.start()
        if request == "media.candidate":
            return await me.request("media.candidate", call_id=call_id, candidate="")
        if request == "media.state":
            return await me.request("media.state", call_id=call_id, audio=False, video=True)
        await theirs.start()  # the server now offers `mine` the other's tracks
        async with asyncio.timeout(10):
            while mine.offers_answered == 0:
                mine.changed.clear()
                await mine.changed.wait()
        return {"answered": mine.offers_answered}
    finally:
        await mine.close()
        await theirs.close()


FORBIDDEN_PAYLOADS = {
    "presence.set": {"availability": "available"},
    "call.launch": {"dispute_type": "family"},
    "call.choose": {"call_id": "x", "choice": "anyone"},
    "call.cancel": {"call_id": "x"},
    "call.accept": {"invitation_id": "x"},
    "call.decline": {"invitation_id": "x"},
    "call.invite": {"call_id": "x", "specialty": "family"},
    "call.leave": {"call_id": "x"},
    "media.join": {"call_id": "x", "sdp": "v=0"},
    "media.answer": {"call_id": "x", "sdp": "v=0", "offer_id": 1},
    "media.candidate": {"call_id": "x", "candidate": ""},
    "media.state": {"call_id": "x", "audio": True, "video": True},
    "device.health": {"camera": "ok", "microphone": "ok", "app_build": "t"},
    "call.rate": {"call_id": "x", "stars": 5},
    "call.outcome": {"call_id": "x", "outcome": "settled", "summary": ""},
    "call.bookmark": {"call_id": "x"},
}

WS_CELLS = [
    (request, role, cells[i] == "Y")
    for request, cells in WS_MATRIX.items()
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("request_type", "role", "allowed"), WS_CELLS)
async def test_websocket_role_matrix(world, request_type, role, allowed):
    if allowed:
        result = await allowed_case(world, role, request_type)
        assert isinstance(result, dict)
    else:
        with pytest.raises(ClientError) as err:
            await world.clients[role].request(request_type, **FORBIDDEN_PAYLOADS[request_type])
        assert err.value.code == "forbidden"


HTTP_CELLS = [
    (method, path, role, cells[i] == "Y")
    for (method, path), cells in HTTP_MATRIX.items()
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("method", "path", "role", "allowed"), HTTP_CELLS)
async def test_http_role_matrix(world, method, path, role, allowed):
    body = {"name_zh": "宠物纠纷", "name_en": "Pets"} if method == "PUT" else None
    status, reply = await world.service.http(
        method, path.format(**world.ids), token=world.tokens[role], json=body
    )
    if allowed:
        assert status == 200, reply
    else:
        assert status == 403 and reply["error"]["code"] == "forbidden"


async def test_http_without_credentials_answers_auth_required(service):
    status, reply = await service.http("GET", "/api/experts")
    assert status == 401 and reply["error"]["code"] == "auth_required"


async def test_an_expert_acting_on_a_call_they_are_not_in_gets_not_found(world):
    s = world.service
    call_id = await world.active_call("kiosk")
    outsider = await s.expert("zed", specialties=["traffic"])
    for request, payload in (
        ("call.leave", {"call_id": call_id}),
        ("call.invite", {"call_id": call_id, "specialty": "traffic"}),
    ):
        with pytest.raises(ClientError) as err:
            await outsider.request(request, **payload)
        assert err.value.code == "not_found"
    token = await s.login("zed")
    status, reply = await s.http("GET", f"/api/calls/{call_id}", token=token)
    assert status == 404 and reply["error"]["code"] == "not_found"
    await outsider.close()


async def test_a_kiosk_cannot_read_or_cancel_another_kiosks_call(world):
    s = world.service
    call_id = (
        await world.clients["kiosk"].request(
            "call.launch", consent_evidence=True, dispute_type="traffic"
        )
    )["call"]["id"]
    _, other_token = s.add_device("kiosk", "other kiosk")
    other = await s.connect(device_token=other_token)
    with pytest.raises(ClientError) as err:
        await other.request("call.cancel", call_id=call_id)
    assert err.value.code == "not_found"
    status, reply = await s.http("GET", f"/api/calls/{call_id}", token=other_token)
    assert status == 404 and reply["error"]["code"] == "not_found"
    status, reply = await s.http("GET", "/api/calls/no-such-call", token=other_token)
    assert status == 404 and reply["error"]["code"] == "not_found"
    status, reply = await s.http("GET", f"/api/calls/{call_id}", token=world.tokens["kiosk"])
    assert status == 200 and reply["call"]["id"] == call_id
    await other.close()


async def test_an_expert_cannot_accept_another_experts_ring(world):
    s = world.service
    await world.clients["kiosk"].request(
        "call.launch", consent_evidence=True, dispute_type="family"
    )
    ring = await world.clients["expert"].next_event("call.ring")
    other = await s.expert("zed", specialties=["traffic"])
    with pytest.raises(ClientError) as err:
        await other.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    assert err.value.code == "not_found"
    await other.close()


async def test_calls_listing_is_filtered_by_role(world):
    """Kiosk: its own; expert: the ones it took part in; trainer: training consent only."""
    s = world.service
    answered = await world.active_call("kiosk")
    await world.clients["kiosk"].request("call.leave", call_id=answered)
    _, other_token = s.add_device("kiosk", "other kiosk")
    other = await s.connect(device_token=other_token)
    consented = (
        await other.request(
            "call.launch", consent_evidence=True, dispute_type="traffic", training_consent=True
        )
    )["call"]["id"]

    async def ids(role_token):
        status, reply = await s.http("GET", "/api/calls", token=role_token)
        assert status == 200
        return {c["id"] for c in reply["calls"]}

    assert await ids(world.tokens["kiosk"]) == {answered}
    assert await ids(other_token) == {consented}
    assert await ids(world.tokens["expert"]) == {answered}
    assert await ids(world.tokens["trainer"]) == {consented}
    assert await ids(world.tokens["admin"]) == {answered, consented}
    assert await ids(world.tokens["evidence_officer"]) == {answered, consented}
    await other.close()
