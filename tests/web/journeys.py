"""Steps the Chromium journeys share: sign in, walk the kiosk to a call, check remote media."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.conftest import PASSWORD, Service
from tests.web.conftest import TONES, Pages, Shots

MEDIA_TIMEOUT_MS = 15000
COLOUR_TOLERANCE = 45
MIN_TONE_DB = -70


def url(service: Service, page: str, query: str = "", fragment: str = "") -> str:
    out = f"{service.base_url}/web/{page}"
    if query:
        out += f"?{query}"
    if fragment:
        out += f"#{fragment}"
    return out


async def screen(page: Page, name: str, timeout: float = 10000) -> None:
    await page.wait_for_selector(f"body[data-screen={name}]", timeout=timeout)


async def enrolment_code(service: Service, device_id: str) -> dict[str, Any]:
    """What the admin page shows to enrol a device: code, link and QR code."""
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    token = await service.login("root")
    status, body = await service.http(
        "POST", f"/api/admin/devices/{device_id}/enrolment", token=token
    )
    assert status == 200, body
    return dict(body)


async def open_kiosk(
    pages: Pages,
    service: Service,
    token: str,
    device: str = "kiosk-red",
    query: str = "",
    **kw: Any,
) -> Page:
    page = await pages.open(device, url(service, "kiosk.html", query, f"token={token}"), **kw)
    await screen(page, "welcome")
    return page


async def expert_on_duty(
    pages: Pages,
    service: Service,
    username: str,
    shots: Shots | None = None,
    device: str = "expert-green",
    boot_audio_probe: bool = False,
    english: bool = False,
    **kw: Any,
) -> Page:
    """An expert signed in to the console, on duty and available.

    `boot_audio_probe`: the page notes (in `__bootAudioState`) the state of an AudioContext
    made at load time, without a user gesture.
    """
    init = "window.__bootAudioState = new AudioContext().state;" if boot_audio_probe else None
    page = await pages.open(
        device, url(service, "expert.html"), label=username, init_script=init, **kw
    )
    await screen(page, "login")
    if english:
        await page.click("[data-screen=login] [data-lang-toggle]")
        await page.wait_for_selector("html[lang=en]", state="attached")
    if shots:
        await shots(page, f"{username}-login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#start-duty", state="visible")
    if shots:
        await shots(page, f"{username}-signed-in")
    await page.click("#start-duty")
    await page.wait_for_selector("body[data-availability=available]")
    if shots:
        await shots(page, f"{username}-on-duty")
    return page


async def kiosk_calls(
    kiosk: Page,
    dispute_type: str,
    shots: Shots | None = None,
    *,
    expert_id: str | None = None,
    name: str = "kiosk",
    training: bool = False,
    consent: bool = True,
) -> None:
    """Welcome → dispute type → expert (if offered) → consent → the call is placed."""
    await kiosk.click("#start")
    await screen(kiosk, "dispute")
    if shots:
        await shots(kiosk, f"{name}-dispute-types")
    await kiosk.click(f"[data-code={dispute_type}]")
    await kiosk.wait_for_selector(
        "body[data-screen=expert], body[data-screen=consent]", timeout=10000
    )
    if await kiosk.evaluate("document.body.dataset.screen") == "expert":
        if shots:
            await shots(kiosk, f"{name}-experts")
        await kiosk.click(f'#experts [data-expert="{expert_id or ""}"]')
    await screen(kiosk, "consent")
    await kiosk.wait_for_selector("#notice-text[data-version]")
    if shots:
        await shots(kiosk, f"{name}-consent")
    if training:
        await kiosk.check("#training-consent")
    await kiosk.click("#consent-agree" if consent else "#consent-decline")


async def accept_ring(expert: Page, shots: Shots | None = None, name: str = "expert") -> None:
    ring = await expert.wait_for_selector("#rings .ring", timeout=10000)
    assert ring is not None
    if shots:
        await shots(expert, f"{name}-ringing")
    await expert.click("#rings .ring [data-action=accept]")
    await expert.wait_for_selector("body[data-in-call='1']")


def tile(role: str, participant_id: str | None = None) -> str:
    if participant_id:
        return f'.tile[data-participant="{participant_id}"] video'
    return f".tile[data-role={role}] video"


async def sees(
    page: Page, selector: str, colour: tuple[int, int, int], what: str, since: str = ""
) -> None:
    """The remote tile shows live video (the counter moves) in the expected colour.

    `since` names a moment: the counter must move after the first sample taken under it.
    """
    try:
        await page.wait_for_function(
            "([sel, rgb, tol]) => window.__probe.colourNear(sel, rgb, tol)",
            arg=[selector, list(colour), COLOUR_TOLERANCE],
            timeout=MEDIA_TIMEOUT_MS,
            polling=100,
        )
        await page.wait_for_function(
            "([sel, key]) => window.__probe.counterAdvanced(sel, key)",
            arg=[selector, since or what],
            timeout=MEDIA_TIMEOUT_MS,
            polling=100,
        )
    except PlaywrightTimeout as err:
        sample = await page.evaluate("(sel) => window.__probe.sample(sel)", selector)
        raise AssertionError(f"{what}: {selector} shows {sample}, wanted {colour}") from err


async def hears(page: Page, selector: str, tone: int, what: str) -> None:
    """The remote tile's audio has `tone` as its strongest test tone."""
    try:
        await page.wait_for_function(
            "([sel, tones, tone, db]) => window.__probe.toneIs(sel, tones, tone, db)",
            arg=[selector, list(TONES), tone, MIN_TONE_DB],
            timeout=MEDIA_TIMEOUT_MS,
            polling=100,
        )
    except PlaywrightTimeout as err:
        heard = await page.evaluate(
            "([sel, tones]) => window.__probe.tone(sel, tones)", [selector, list(TONES)]
        )
        raise AssertionError(f"{what}: {selector} sounds like {heard}, wanted {tone}") from err


async def sees_among_tiles(page: Page, colour: tuple[int, int, int], what: str) -> str:
    """Some remote tile shows live video of this colour; returns that participant's id."""
    try:
        handle = await page.wait_for_function(
            "([rgb, tol]) => window.__probe.tileNear(rgb, tol)",
            arg=[list(colour), COLOUR_TOLERANCE],
            timeout=MEDIA_TIMEOUT_MS,
            polling=100,
        )
    except PlaywrightTimeout as err:
        samples = await page.evaluate("window.__probe.tileSamples()")
        raise AssertionError(f"{what}: no tile in {colour}; tiles show {samples}") from err
    participant = await handle.json_value()
    await sees(page, tile("", participant), colour, what)
    return str(participant)
