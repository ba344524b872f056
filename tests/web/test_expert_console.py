"""The expert console in real Chromium: a reload while on duty keeps the expert on duty (a
call still rings, one tap brings the sound back), and a ring says who invited: the station's
officer and the station, or the expert."""

from __future__ import annotations

import pytest

from tests.web.journeys import (
    accept_ring,
    expert_on_duty,
    kiosk_calls,
    open_kiosk,
    screen,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

RING = "#rings .ring"


async def test_a_expert_reloaded_on_duty_is_rung_without_start_duty_and_one_tap_sounds_it(
    service, pages, checked_shots
):
    """In a browser that blocks sound until a gesture: the expert starts duty, reloads the
    console, and is back on duty by itself (connected, available) with a banner asking for
    one tap for the sound. A kiosk's call rings the console (the ring card flashes, silently);
    the tap makes the ring audible, and the expert answers the call."""
    shots = checked_shots
    amy_id = service.add_person("amy", "expert", specialties=["consumer"])
    _, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy", shots, autoplay=False)
    await expert.wait_for_selector("#sound-banner", state="hidden")

    await expert.reload()
    await screen(expert, "console")
    await expert.wait_for_selector("body[data-availability=available][data-sound=off]")
    await expert.wait_for_selector("#sound-banner", state="visible")
    await expert.wait_for_selector("#duty-panel", state="hidden")
    assert service.hub.dispatcher.is_free(amy_id)
    await shots(expert, "amy-reloaded-on-duty-sound-off")

    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "consumer")
    await expert.wait_for_selector(RING)
    await expert.wait_for_selector("body[data-ringing='1']")
    assert await expert.evaluate("window.expertRinger.running") is False
    await shots(expert, "amy-ringing-silently-after-reload")

    await expert.click("#sound-on")
    await expert.wait_for_selector("body[data-sound=on]")
    await expert.wait_for_selector("#sound-banner", state="hidden")
    await expert.wait_for_function(
        "() => window.expertRinger.context.state === 'running' && "
        "window.__probe.strongest(window.expertRinger.analyser, [440, 480, 1000]).level > -40",
        polling=50,
    )
    await shots(expert, "amy-ringing-audibly-after-the-tap")
    await accept_ring(expert)
    await screen(kiosk, "call")

    # Signed out, the tab forgets its duty: a reload shows the sign-in, not the console.
    await expert.click("#hangup")
    await expert.wait_for_selector("body[data-in-call='']")
    await expert.click("#logout")
    await screen(expert, "login")
    await expert.reload()
    await screen(expert, "login")
    assert await expert.evaluate("sessionStorage.getItem('expert.duty')") is None


async def test_b_a_ring_names_the_station_officer_or_the_expert_who_invited(
    service, pages, checked_shots
):
    """A station (officer Olga at Station Room 1) and then an expert (Amy) invite Bob into a
    call: Bob's ring names each inviter, in Chinese and in English."""
    shots = checked_shots
    amy = await service.expert("amy", specialties=["family"], last_busy_at=1)
    service.add_person("bob", "expert", specialties=["labour"])
    bob_id = service.store.find_account_by_username("bob").id
    _, station_token = service.add_device("station", "Station Room 1")
    service.add_person("olga", "station_officer")
    station = await service.connect(
        device_token=station_token, session_token=await service.login("olga")
    )
    try:
        bob = await expert_on_duty(pages, service, "bob", device="expert-blue")
        call_id = (
            await station.request("call.launch", consent_evidence=True, dispute_type="family")
        )["call"]["id"]
        ring = await amy.next_event("call.ring")
        await amy.request("call.accept", invitation_id=ring["payload"]["invitation_id"])

        await station.request("call.invite", call_id=call_id, expert_id=bob_id)
        card = f"{RING}[data-invited-by=station]"
        await bob.wait_for_selector(card)
        assert await bob.inner_text(f"{card} .ring-invited-by") == (
            "邀请人：Station Room 1 驻所民警 Olga"
        )
        await shots(bob, "bob-invited-by-the-station-zh")
        await bob.click("[data-lang-toggle] >> visible=true")
        await bob.wait_for_selector("html[lang=en]", state="attached")
        assert await bob.inner_text(f"{card} .ring-invited-by") == (
            "Invited by station officer Olga, Station Room 1"
        )
        await shots(bob, "bob-invited-by-the-station-en")
        await bob.click(f"{card} [data-action=decline]")
        await bob.wait_for_selector(RING, state="detached")

        await amy.request("call.invite", call_id=call_id, expert_id=bob_id)
        card = f"{RING}[data-invited-by=expert]"
        await bob.wait_for_selector(card)
        assert await bob.inner_text(f"{card} .ring-invited-by") == "Invited by expert Amy"
        await shots(bob, "bob-invited-by-an-expert-en")
        await bob.click(f"{card} [data-action=decline]")
        await bob.wait_for_selector(RING, state="detached")
    finally:
        await station.close()
        await amy.close()
