"""The station's mediation room in real Chromium: the station device plus an officer's login,
a case, the parties present and their consent, an expert invited into the call, the outcome
stored on the call and its case; set-up by the admin's link and an existing case in Chinese."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.conftest import PASSWORD, Service
from tests.web.conftest import BLUE, CATALOGUES, GREEN, YELLOW, Pages
from tests.web.journeys import (
    accept_ring,
    enrolment_code,
    expert_on_duty,
    screen,
    sees,
    sees_among_tiles,
    tile,
    url,
)
from tests.web.test_admin import admin_signed_in

pytestmark = pytest.mark.asyncio(loop_scope="session")

STATION_BROWSER = "kiosk-yellow"  # the station's fake camera is yellow


async def officer_signs_in(page: Page, shots: Any, username: str = "officer") -> None:
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await screen(page, "welcome")
    await page.wait_for_selector("#selftest[data-reported=yes]")
    await shots(page, "station-welcome")


async def open_station(
    pages: Pages, service: Service, token: str, shots: Any, *, english: bool = False
) -> Page:
    """The station page with its device token, the officer signed in."""
    page = await pages.open(
        STATION_BROWSER, url(service, "station.html", fragment=f"token={token}"), label="station"
    )
    await screen(page, "login")
    if english:
        await page.click("#lang-toggle")
        await page.wait_for_selector("html[lang=en]", state="attached")
    await shots(page, "station-officer-login")
    await officer_signs_in(page, shots)
    return page


async def to_consent(station: Page, dispute_type: str, shots: Any | None = None) -> None:
    """Welcome → case (as chosen on the case screen) → dispute type → anyone → consent."""
    await screen(station, "dispute")
    if shots:
        await shots(station, "station-dispute-types")
    await station.click(f"[data-code={dispute_type}]")
    await station.wait_for_selector("body[data-screen=expert], body[data-screen=consent]")
    if await station.evaluate("document.body.dataset.screen") == "expert":
        if shots:
            await shots(station, "station-experts")
        await station.click('#experts [data-expert=""]')
    await screen(station, "consent")
    await station.wait_for_selector("#notice-text[data-version]:not([data-version=''])")


async def case_number_shown(station: Page) -> str:
    badge = await station.wait_for_selector(
        "#case-badge[data-case-number]:not([data-case-number=''])"
    )
    assert badge is not None
    return str(await badge.get_attribute("data-case-number"))


async def test_a_station_call_with_a_new_case_two_parties_and_an_invited_expert(
    service, pages, checked_shots
):
    """The officer signs in at the station, opens a new case, records that both parties present
    consent, and calls; the expert accepts and each sees the other's camera; the admin's live
    list shows the call; the station invites a second expert by specialty and all three see each
    other; after the station hangs up the expert's outcome is stored on the call and on the
    case, and the station's rating on the call."""
    shots = checked_shots
    service.add_person("officer", "station_officer")
    service.add_person("amy", "expert", specialties=["neighbours"])
    service.add_person("bob", "expert", specialties=["neighbours", "family"])
    _, token = service.add_device("station", "Station Room 1")
    amy = await expert_on_duty(pages, service, "amy", english=True)
    station = await open_station(pages, service, token, shots, english=True)

    await station.click("#start")
    await screen(station, "case")
    await shots(station, "station-case-new")
    await station.click("#case-next")
    await to_consent(station, "neighbours", shots)
    assert await station.get_attribute("#parties", "data-parties") == "2"
    assert await station.is_disabled("#consent-call")
    assert await station.is_disabled("#training-consent")
    await station.check("#evidence-consent")
    await shots(station, "station-two-parties-consent")
    await station.click("#consent-call")

    await accept_ring(amy)
    await screen(station, "call")
    await sees(station, tile("expert"), GREEN, "station sees the expert")
    await sees(amy, tile("caller"), YELLOW, "expert sees the station")
    await station.wait_for_selector("#recording", state="visible")
    await amy.wait_for_selector("#recording", state="visible")
    number = await case_number_shown(station)
    call_id = await station.evaluate("window.stationMedia.callId")
    case_id = await station.get_attribute("#case-badge", "data-case-id")
    await shots(station, "station-in-call")
    await shots(amy, "amy-in-call-with-station")

    admin = await admin_signed_in(pages, service, shots, english=True, device="kiosk-red")
    live = f'#calls-table tr[data-call="{call_id}"][data-state=active]'
    await admin.wait_for_selector(f"{live} td[data-field=case]:has-text('{number}')")
    await shots(admin, "admin-live-call-active")

    bob = await expert_on_duty(pages, service, "bob", device="expert-blue", english=True)
    await station.click("#invite")
    await station.wait_for_selector("#invite-panel", state="visible")
    assert await station.input_value("#invite-specialty") == "neighbours"
    await shots(station, "station-invite-panel")
    await station.click("#invite-specialty-send")
    await station.wait_for_selector("#invite-status[data-key='expert.invite.sent']")
    await bob.wait_for_selector("#rings .ring")
    await shots(bob, "bob-invited-by-the-station")
    await accept_ring(bob)
    await station.click("#invite-close")
    for page, who, colours in (
        (station, "station", (GREEN, BLUE)),
        (amy, "amy", (YELLOW, BLUE)),
        (bob, "bob", (YELLOW, GREEN)),
    ):
        for colour in colours:
            await sees_among_tiles(page, colour, f"{who} sees {colour}")
    await shots(station, "station-three-party-call")
    await shots(bob, "bob-in-call-with-station")

    await station.click("#hangup")
    await screen(station, "rating")
    await station.wait_for_selector("#recording", state="hidden")
    await amy.wait_for_selector("#outcome-form", state="visible")
    await amy.check("#outcome-form input[value=partly_settled]")
    await amy.fill("#outcome-summary", "The hedge is cut back by May; the fence is still open.")
    await shots(amy, "amy-outcome-form")
    await amy.click("#outcome-submit")
    await amy.wait_for_selector("#outcome-form", state="hidden")
    await station.click("#stars [data-stars='5']")
    await station.click("#phrases [data-phrase=fair]")
    await shots(station, "station-rating")
    await station.click("#rating-submit")
    await station.wait_for_selector("#message-text[data-key='kiosk.rating.thanks']")
    await shots(station, "station-rating-sent")

    officer = await service.login("officer")
    status, body = await service.http("GET", f"/api/calls/{call_id}", token=officer)
    assert status == 200, body
    stored = body["call"]
    assert stored["case_id"] == case_id and stored["case_number"] == number
    assert stored["caller_kind"] == "station"
    assert (stored["outcome"]["outcome"], stored["outcome"]["summary"]) == (
        "partly_settled",
        "The hedge is cut back by May; the fence is still open.",
    )
    assert (stored["rating"]["stars"], stored["rating"]["comment"]) == (5, "Fair")
    experts = {p["principal_id"] for p in stored["participants"] if p["role"] == "expert"}
    assert len(experts) == 2
    status, body = await service.http("GET", f"/api/cases/{case_id}", token=officer)
    assert status == 200, body
    case = body["case"]
    assert case["case_number"] == number
    assert (case["outcome"]["outcome"], case["outcome"]["call_id"]) == ("partly_settled", call_id)
    consent = service.store.get_consent(call_id)
    assert consent is not None
    assert (consent.evidence, consent.training, consent.parties) == (True, False, 2)


async def test_b_station_in_chinese_enrols_by_link_refuses_without_consent_and_reuses_a_case(
    service, pages, checked_shots
):
    """In Chinese: the station is set up by the admin's enrolment link (the same link opened on
    a kiosk, in English, is refused there as a station's code and not spent); a non-officer
    cannot sign in; three parties who refuse recording get no call; a call under a new case is
    queued and cancelled; a second call is filed under that case by typing its number, found
    by the server's look-up (something that is no case number, and an unknown number, are each said
    so); the officer signs out; signed in again, a disabled account is sent back to the
    sign-in."""
    shots = checked_shots
    service.add_person("officer", "station_officer")
    service.add_person("amy", "expert", specialties=["labour"])  # never on duty: calls queue
    device_id, _ = service.add_device("station", "Station Room 2")
    enrolment = await enrolment_code(service, device_id)
    link = enrolment["link"]
    assert link.startswith(f"{service.base_url}/web/station.html#enrol=")
    # A kiosk sends `kind: kiosk`: the station's code is refused before it is spent.
    kiosk_url = link.replace("station.html#", "kiosk.html?lang=en#")
    kiosk = await pages.open("kiosk-red", kiosk_url, label="kiosk")
    await kiosk.wait_for_selector("#enrol-error[data-key='kiosk.enrol.wrong_kind']")
    wrong_kind = CATALOGUES["en"]["kiosk.enrol.wrong_kind"]
    assert await kiosk.inner_text("#enrol-error") == wrong_kind
    await screen(kiosk, "enrol")
    await shots(kiosk, "kiosk-refuses-a-station-code-en")
    assert set(service.store.pending_enrolments()) == {device_id}
    page_url = link.replace("station.html#", "station.html?message_s=1#")
    station = await pages.open(STATION_BROWSER, page_url, label="station")
    await screen(station, "login")  # enrolled by the link: now the officer
    await shots(station, "station-enrolled-login")
    # The link opened again: its code is spent, and the station keeps its token.
    await station.goto(page_url)  # the page had dropped the fragment: a fragment change
    await station.reload()
    await screen(station, "login")
    assert await station.is_hidden("#enrol-error")

    await station.fill("#username", "amy")
    await station.fill("#password", PASSWORD)
    await station.click("#login-submit")
    await station.wait_for_selector("#login-error[data-key='station.login.not_officer']")
    await shots(station, "station-login-refused-not-officer")
    await officer_signs_in(station, shots)
    health = service.store.get_device_health(device_id)
    assert health is not None and health.app_build == "station-web-1"

    # Three parties refuse recording: no call.
    await station.click("#start")
    await screen(station, "case")
    await station.click("#case-next")
    await to_consent(station, "labour", shots)
    await station.click("#parties-more")
    await station.wait_for_selector("#parties[data-parties='3']")
    await shots(station, "station-three-parties")
    await station.click("#consent-refused")
    await station.wait_for_selector("#message-text[data-key='station.consent.required']")
    await shots(station, "station-consent-refused")
    await screen(station, "welcome")
    assert service.store.list_calls() == []

    # A new case: queued (nobody on duty), then cancelled.
    await station.click("#start")
    await station.click("#case-next")
    await to_consent(station, "labour")
    await station.click("#parties-more")
    await station.check("#evidence-consent")
    await station.check("#training-consent")
    await station.click("#consent-call")
    await screen(station, "calling")
    await station.wait_for_selector("#queue-position[data-position='1']")
    number = await case_number_shown(station)
    await shots(station, "station-queued")
    await station.click("#calling-cancel")
    await screen(station, "welcome")
    (first,) = service.store.list_calls()
    consent = service.store.get_consent(first.id)
    assert consent is not None
    assert (consent.evidence, consent.training, consent.parties) == (True, True, 3)

    # The same case again, by its number.
    await station.click("#start")
    await screen(station, "case")
    await station.check("#case-existing")
    await station.fill("#case-number", "12345")
    await station.click("#case-next")
    await station.wait_for_selector("#case-error[data-key='station.case.number_malformed']")
    await shots(station, "station-case-number-malformed")
    await station.fill("#case-number", "000000-1999-99999")
    await station.click("#case-next")
    await station.wait_for_selector("#case-error[data-key='station.case.not_found']")
    await shots(station, "station-case-number-unknown")
    await station.fill("#case-number", f" {number.lower()} ")
    async with station.expect_response(lambda r: "/api/cases?number=" in r.url) as lookup:
        await station.click("#case-next")
    found = await (await lookup.value).json()  # the server's look-up by number
    assert [c["case_number"] for c in found["cases"]] == [number]
    await screen(station, "dispute")
    assert await station.get_attribute("#case-badge", "data-case-number") == number
    await to_consent(station, "labour")
    await station.check("#evidence-consent")
    await station.click("#consent-call")
    await screen(station, "calling")
    assert await case_number_shown(station) == number
    await shots(station, "station-queued-existing-case")
    await station.click("#calling-cancel")
    await screen(station, "welcome")
    calls = service.store.list_calls()
    assert len(calls) == 2 and {c.case_id for c in calls} == {first.case_id}

    login = await station.evaluate("sessionStorage.getItem('station.session_token')")
    assert (await service.http("GET", "/api/me", token=login))[0] == 200
    await station.click("#logout")
    await screen(station, "login")
    await shots(station, "station-signed-out")
    assert (await service.http("GET", "/api/me", token=login))[0] == 401

    # Signed in again, the officer's account is disabled: the station asks for a sign-in.
    await officer_signs_in(station, shots)
    root = await service.login("root")
    officer_id = service.store.find_account_by_username("officer").id
    status, _ = await service.http("POST", f"/api/admin/accounts/{officer_id}/disable", token=root)
    assert status == 200
    await station.wait_for_selector("#login-error[data-key='station.login.expired']")
    await screen(station, "login")
    await shots(station, "station-officer-disabled")


async def test_c_station_reloaded_mid_call_comes_back_and_follows_the_call(
    service, pages, checked_shots
):
    """A station page reloaded in the middle of a call comes back into it as the same
    participant with the officer still signed in (the tab keeps the login), sees the expert
    again, and still follows the call: when the expert hangs up it shows the rating."""
    shots = checked_shots
    service.add_person("officer", "station_officer")
    service.add_person("amy", "expert", specialties=["family"])
    _, token = service.add_device("station", "Station Room 3")
    amy = await expert_on_duty(pages, service, "amy")
    station = await open_station(pages, service, token, shots)
    await station.click("#start")
    await station.click("#case-next")
    await to_consent(station, "family")
    await station.check("#evidence-consent")
    await station.click("#consent-call")
    await accept_ring(amy)
    await sees(amy, tile("caller"), YELLOW, "expert sees the station")
    participant = await station.evaluate("window.stationMedia.participantId")

    await station.reload()
    await screen(station, "call")
    await station.wait_for_function("window.stationMedia && window.stationMedia.participantId")
    assert await station.evaluate("window.stationMedia.participantId") == participant
    await sees(station, tile("expert"), GREEN, "station sees the expert after its reload")
    await sees(amy, tile("caller"), YELLOW, "expert sees the station", since="after the reload")
    await shots(station, "station-after-reload")
    await amy.click("#hangup")
    await screen(station, "rating", timeout=3000)
    await shots(station, "station-rating-after-reload")
