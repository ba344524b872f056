"""A kiosk's network drops mid-call, cut at the server, for longer than media_inactivity_s.

Playwright's `set_offline` touches neither open WebSockets nor WebRTC's UDP (RECIPES.md,
"Traps found while planning"), so the drop is made at the server:

- signaling: the kiosk's WebSocket is aborted (no close frame, as a lost network), and while
  the cut lasts every new signaling connection of that device is aborted too, before it is
  bound to a session (`Cut`, wrapping the hub's `attach`), so the kiosk keeps reconnecting;
- media: `CallMedia.set_inbound_blocked` makes the server ignore every datagram from the
  kiosk's participant (STUN, DTLS, RTP, RTCP; fast path and aiortc path).

Then both are restored. The kiosk must have shown "reconnecting", the server must have marked
the participant dropped (media_timeout), the same participant must be back in the call, and
new frames in the kiosk's colour must reach the expert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.web.conftest import GREEN, RED
from tests.web.journeys import accept_ring, expert_on_duty, kiosk_calls, open_kiosk, sees, tile

pytestmark = pytest.mark.asyncio(loop_scope="session")

MEDIA_INACTIVITY_S = 2.0
TIMEOUT_S = 20.0


class Cut:
    """The device's signaling cut off at the server: its live connection is aborted, and
    while `on`, every new one is aborted as soon as it authenticates (before it is bound to
    a session, so the call sees no flapping)."""

    def __init__(self, service: Any, device_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.service = service
        self.device_id = device_id
        self.on = False
        self.refused = 0
        attach = service.hub.attach

        def cut_attach(conn: Any, principal: Any, *args: Any, **kwargs: Any) -> Any:
            if self.on and principal.device_id == device_id:
                self.refused += 1
                conn.ws._req.transport.abort()
                raise ConnectionResetError("network cut (test)")
            return attach(conn, principal, *args, **kwargs)

        monkeypatch.setattr(service.hub, "attach", cut_attach)

    def start(self) -> None:
        self.on = True
        for session in self.service.hub.sessions_of(self.device_id):
            if session.connection is not None:
                session.connection.ws._req.transport.abort()  # no goodbye

    def stop(self) -> None:
        self.on = False


async def server_state(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
    """Poll the service's state (its store) until `condition()` is truthy, with a limit."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never showed: {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("order", ["media-first", "signaling-first"])
async def test_kiosk_network_drop_cut_at_the_server_then_back_as_the_same_participant(
    make_service, pages, shots, monkeypatch, order
):
    """WebSocket aborted and UDP ignored at the server for longer than media_inactivity_s:
    the kiosk shows "reconnecting", the server marks it dropped (media_timeout); once the
    network is back the same participant rejoins and the expert sees new frames of the
    kiosk's camera.

    media-first: UDP comes back first; the kiosk's peer connection carries on.
    signaling-first: the WebSocket comes back first; the kiosk learns it was dropped and
    rejoins with a new peer connection (media.join, same participant), which the server
    ignores too until UDP is back.
    """
    service = await make_service(media_inactivity_s=MEDIA_INACTIVITY_S)
    service.add_person("amy", "expert", specialties=["family"])
    device_id, token = service.add_device("kiosk", "Kiosk A")
    cut = Cut(service, device_id, monkeypatch)
    expert = await expert_on_duty(pages, service, "amy")
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "family")
    await accept_ring(expert)
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert")
    call_id = await kiosk.evaluate("window.kioskMedia.callId")
    participant = await kiosk.evaluate("window.kioskMedia.participantId")
    participants_before = {
        p.id for p in service.hub.dispatcher.calls[call_id].participants.values()
    }
    # Marks the kiosk's peer connection, to tell afterwards whether it made a new one.
    await kiosk.evaluate("window.kioskMedia.pc.__beforeDrop = true")
    await shots(kiosk, "kiosk-in-call")

    def kiosk_events() -> list[Any]:
        return [
            e
            for e in service.store.list_call_events(call_id)
            if e.kind == "participant" and e.subject_id == participant
        ]

    seen_before = len(kiosk_events())
    media = service.hub.media.calls[call_id]

    # --- the network drops ---------------------------------------------------------------------
    cut.start()
    media.set_inbound_blocked(participant, True)
    blocked_at = time.monotonic()
    await kiosk.wait_for_selector("#reconnecting", state="visible", timeout=TIMEOUT_S * 1000)
    assert await kiosk.evaluate("document.body.dataset.screen") == "call"
    await shots(kiosk, "kiosk-reconnecting")

    dropped = await server_state(
        lambda: next(
            (e for e in kiosk_events()[seen_before:] if e.new == "dropped"),
            None,
        ),
        "the kiosk's participant dropped",
    )
    assert dropped.detail.get("reason") == "media_timeout", dropped
    # Nothing at all was heard from the kiosk since the block (RTP and RTCP touch this).
    assert media.peers[participant].last_media_at <= blocked_at
    call = service.hub.call_view(service.hub.dispatcher.calls[call_id])
    assert call["state"] == "active"
    (kiosk_view,) = [p for p in call["participants"] if p["id"] == participant]
    assert (kiosk_view["state"], kiosk_view["reason"]) == ("dropped", "media_timeout")
    # Nothing reaches the expert meanwhile: its tile holds the last frame (the probe notes it,
    # so "advanced" below means a frame painted after the network came back).
    frozen = await expert.evaluate("(s) => window.__probe.sample(s)", tile("caller"))
    assert frozen is not None
    await expert.evaluate(
        "(s) => window.__probe.counterAdvanced(s, 'after the restore')", tile("caller")
    )
    # The expert is told why the picture stands still.
    state = ".tile[data-role=caller] .tile-state"
    await expert.wait_for_selector(f"{state}:not([hidden])", timeout=10_000)
    note = await expert.text_content(state)
    assert note and ("等待对方重新接入" in note or "waiting for them" in note), note
    await shots(expert, "expert-kiosk-dropped")
    # The kiosk has kept trying all along, and is still showing the call with the banner.
    await kiosk.wait_for_selector("#reconnecting", state="visible")
    assert await kiosk.evaluate("window.kioskSignaling.state") == "reconnecting"
    await server_state(lambda: cut.refused > 0, "a refused reconnection attempt")
    still = await expert.evaluate("(s) => window.__probe.sample(s)", tile("caller"))
    assert still["counter"] == frozen["counter"], (frozen, still)
    await shots(kiosk, "kiosk-still-reconnecting")

    # --- the network is back ---------------------------------------------------------------------
    old_peer = media.peers[participant]
    if order == "signaling-first":
        cut.stop()
        await kiosk.wait_for_function(
            "() => window.kioskSignaling.state === 'open'", timeout=TIMEOUT_S * 1000
        )
        await kiosk.wait_for_selector("#reconnecting", state="hidden")
        # The snapshot says "dropped": the kiosk joins again with a new peer connection.
        await kiosk.wait_for_function(
            "() => window.kioskMedia && window.kioskMedia.pc && !window.kioskMedia.pc.__beforeDrop",
            timeout=TIMEOUT_S * 1000,
        )
        rejoined = await server_state(
            lambda: (
                media.peers.get(participant) not in (None, old_peer) and media.peers[participant]
            ),
            "the kiosk's media.join with a new peer connection",
        )
        await server_state(
            lambda: rejoined.inbound_dropped() > 0, "the new connection's packets ignored"
        )
        assert rejoined.pc.connectionState != "connected"
        await shots(kiosk, "kiosk-signaling-back-udp-still-cut")
        media.set_inbound_blocked(participant, False)
    else:
        media.set_inbound_blocked(participant, False)
        cut.stop()
    restored_at = time.monotonic()
    await kiosk.wait_for_function(
        "() => window.kioskSignaling.state === 'open'", timeout=TIMEOUT_S * 1000
    )
    await kiosk.wait_for_selector("#reconnecting", state="hidden")
    back = await server_state(
        lambda: next(
            (
                e
                for e in kiosk_events()
                if e.seq > dropped.seq and e.old == "dropped" and e.new == "connected"
            ),
            None,
        ),
        "the kiosk's participant connected again",
    )
    assert back.subject_id == participant
    await sees(expert, tile("caller"), RED, "expert sees the kiosk", since="after the restore")
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert", since="after the restore")
    back_after_s = time.monotonic() - restored_at

    # The same participant, in the same call, with nobody added.
    assert await kiosk.evaluate("window.kioskMedia.participantId") == participant
    assert await kiosk.evaluate("window.kioskMedia.callId") == call_id
    call = service.hub.call_view(service.hub.dispatcher.calls[call_id])
    assert call["state"] == "active"
    assert {p["id"] for p in call["participants"]} == participants_before
    (kiosk_view,) = [p for p in call["participants"] if p["id"] == participant]
    assert kiosk_view["state"] == "connected"
    assert await expert.evaluate(
        '(id) => !!document.querySelector(`.tile[data-participant="${id}"]`)', participant
    )
    await shots(kiosk, "kiosk-back-in-call")
    await shots(expert, "expert-sees-kiosk-again")

    same_pc = await kiosk.evaluate("!!window.kioskMedia.pc.__beforeDrop")
    assert same_pc is (order == "media-first")
    if same_pc:
        assert media.peers[participant] is old_peer
    else:
        assert media.peers[participant].pc.connectionState == "connected"
    history = [(e.old, e.new, e.detail.get("reason")) for e in kiosk_events()[seen_before:]]
    print(
        f"network drop ({order}): refused reconnections {cut.refused}, kiosk peer connection"
        f" {'kept' if same_pc else 'new (rejoined with media.join)'}, back {back_after_s:.1f} s"
        f" after the restore; participant history {history}"
    )
