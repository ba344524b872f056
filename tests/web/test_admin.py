"""The admin page in real Chromium: a device enrolled with the code the page shows, its token
rotated and the device disabled as a kiosk sees it; accounts, experts, dispute types and
storage warnings managed in both languages; the experts' live availability and duty flag,
and storage warnings worded from their codes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.async_api import Page

from tests.conftest import PASSWORD, Service
from tests.web.conftest import CATALOGUES, Pages
from tests.web.journeys import screen, url

pytestmark = pytest.mark.asyncio(loop_scope="session")

TABS = ("calls", "devices", "accounts", "experts", "dispute-types", "warnings")


async def admin_signed_in(
    pages: Pages,
    service: Service,
    shots: Any,
    *,
    english: bool = False,
    device: str = "expert-blue",
) -> Page:
    """The admin page, signed in as an admin account (created on first use)."""
    if service.store.find_account_by_username("root") is None:
        service.add_person("root", "admin")
    page = await pages.open(device, url(service, "admin.html"), label="admin")
    await screen(page, "login")
    if english:
        await page.click("#lang-toggle")
        await page.wait_for_selector("html[lang=en]", state="attached")
    await shots(page, "admin-login")
    await page.fill("#username", "root")
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await screen(page, "calls")
    await page.wait_for_selector("#calls-status:not(:empty)")
    return page


async def tab(page: Page, name: str) -> None:
    await page.click(f"#nav [data-tab={name}]")
    await screen(page, name)


def device_row(device_id: str) -> str:
    return f'#devices-table tr[data-device="{device_id}"]'


async def type_code(kiosk: Page, code: str) -> None:
    for digit in code:
        await kiosk.click(f"#keypad [data-digit='{digit}']")


async def shown_code(admin: Page, device_id: str) -> str:
    """The code as the admin page shows it (what a person would read off the screen)."""
    await admin.wait_for_selector(f'#enrol-code[data-device="{device_id}"]')
    await admin.wait_for_selector("#enrol-qr svg")
    code = (await admin.inner_text("#enrol-code")).replace(" ", "")
    assert re.fullmatch(r"[0-9]{8}", code), code
    return code


async def test_a_admin_enrols_a_kiosk_and_revoking_it_refuses_the_kiosk(
    service, pages, checked_shots
):
    """The admin creates a kiosk device and an enrolment code: the code shown on the admin page,
    typed on a station's set-up screen, is refused as a kiosk's code and not spent; typed on a
    new kiosk's keypad, it brings the kiosk to welcome, and its self-test shows in the device
    list. Rotating the token, and later disabling the device, each make the kiosk say it was
    disabled; reloaded, it is back at its set-up screen."""
    shots = checked_shots
    admin = await admin_signed_in(pages, service, shots)
    await shots(admin, "admin-live-calls")
    await tab(admin, "devices")
    await admin.select_option("#device-kind", "kiosk")
    await admin.fill("#device-name", "Kiosk Hall B")
    await admin.click("#device-create")
    await admin.wait_for_selector("#token-panel", state="visible")
    await shots(admin, "admin-device-created-token-once")
    token = await admin.inner_text("#device-token")
    assert token.startswith("dev_")
    row = admin.locator("#devices-table tr", has_text="Kiosk Hall B")
    device_id = await row.get_attribute("data-device")
    assert service.store.get_device(device_id).kind == "kiosk"

    await row.locator("[data-action=enrol]").click()
    code = await shown_code(admin, device_id)
    await admin.wait_for_selector(f'{device_row(device_id)}[data-pending="1"]')
    await shots(admin, "admin-enrolment-code-and-qr")

    # A station's page sends `kind: station`: the kiosk's code is refused before it is spent.
    station = await pages.open("kiosk-yellow", url(service, "station.html"), label="station")
    await screen(station, "enrol")
    await station.fill("#enrol-code", code)
    await station.click("#enrol-submit")
    await station.wait_for_selector("#enrol-error[data-key='station.enrol.wrong_kind']")
    wrong_kind = CATALOGUES["zh-CN"]["station.enrol.wrong_kind"]
    assert await station.inner_text("#enrol-error") == wrong_kind
    await shots(station, "station-refuses-a-kiosk-code")
    await screen(station, "enrol")
    assert await station.evaluate("localStorage.getItem('station.device_token')") is None
    assert set(service.store.pending_enrolments()) == {device_id}  # the code still works

    kiosk = await pages.open("kiosk-red", url(service, "kiosk.html"))
    await screen(kiosk, "enrol")
    await type_code(kiosk, code)
    await shots(kiosk, "kiosk-code-from-admin-typed")
    await kiosk.click("#enrol-submit")
    await screen(kiosk, "welcome")
    await kiosk.wait_for_selector("#selftest[data-reported=yes]")
    await shots(kiosk, "kiosk-welcome")

    await admin.click("#devices-refresh")
    healthy = (
        f'{device_row(device_id)}[data-online="1"] td[data-field=camera][data-value=ok]'
        f" ~ td[data-field=microphone][data-value=ok]"
    )
    await admin.wait_for_selector(healthy)
    await admin.wait_for_selector("#enrolment-panel", state="hidden")  # the code is used up
    assert await row.locator("td[data-field=app-build]").inner_text() == "kiosk-web-1"
    assert await row.locator("td[data-field=last-seen]").inner_text() not in ("", "—", "从未")
    await shots(admin, "admin-device-online-with-self-test")

    # Rotating the token ends the kiosk's connection: it is refused and forgets the old token.
    rotate = row.locator("[data-action=rotate-token]")
    await rotate.click()
    await admin.wait_for_selector(
        f"{device_row(device_id)} [data-action=rotate-token][data-armed='1']"
    )
    await shots(admin, "admin-rotate-asks-to-confirm")
    await rotate.click()
    await admin.wait_for_selector("#token-panel", state="visible")
    assert (await admin.inner_text("#device-token")) not in ("", token)
    await kiosk.wait_for_selector("#message-text[data-key='kiosk.error.revoked']")
    await shots(kiosk, "kiosk-refused-after-token-rotation")
    await kiosk.reload()
    await screen(kiosk, "enrol")

    # A new code sets it up again; then the admin disables the device.
    await row.locator("[data-action=enrol]").click()
    code = await shown_code(admin, device_id)
    await type_code(kiosk, code)
    await kiosk.click("#enrol-submit")
    await screen(kiosk, "welcome")
    disable = row.locator("[data-action=disable]")
    await disable.click()
    await admin.wait_for_selector(f"{device_row(device_id)} [data-action=disable][data-armed='1']")
    await disable.click()
    await admin.wait_for_selector(f'{device_row(device_id)}[data-disabled="1"]')
    assert await row.locator("[data-action=enrol]").is_disabled()
    await kiosk.wait_for_selector("#message-text[data-key='kiosk.error.revoked']")
    await screen(kiosk, "message")
    await shots(kiosk, "kiosk-refused-after-disable")
    await shots(admin, "admin-device-disabled")
    assert service.store.get_device(device_id).disabled
    await kiosk.reload()
    await screen(kiosk, "enrol")
    await shots(kiosk, "kiosk-back-at-set-up")


async def visit_every_tab(admin: Page, shots: Any, suffix: str) -> None:
    for name in TABS:
        await tab(admin, name)
        await admin.wait_for_load_state("networkidle")
        await shots(admin, f"admin-{name}-{suffix}")


async def test_b_admin_manages_accounts_experts_and_dispute_types_in_both_languages(
    service, pages, checked_shots
):
    """In English the admin creates an expert (specialty, on duty) and a station officer,
    disables the officer, changes the expert's specialties and takes them off duty, adds a
    dispute type and switches it off, finds it still listed after a reload and switches it on
    again, and reads the storage warnings; every tab passes the language checks in Chinese and
    in English."""
    shots = checked_shots
    service.add_device("station", "Station Room 1")
    admin = await admin_signed_in(pages, service, shots)
    await visit_every_tab(admin, shots, "zh")

    await admin.click("#lang-toggle")
    await admin.wait_for_selector("html[lang=en]", state="attached")
    await tab(admin, "accounts")
    await admin.fill("#account-username", "carol")
    await admin.fill("#account-display-name", "Carol Chen")
    await admin.select_option("#account-role", "expert")
    await admin.fill("#account-password", PASSWORD)
    await admin.check("#account-specialties input[value=family]")
    await admin.check("#account-on-duty")
    await shots(admin, "admin-new-expert-form-en")
    await admin.click("#account-create")
    await admin.wait_for_selector('#accounts-table tr[data-username="carol"]')
    carol = service.store.find_account_by_username("carol")
    assert carol is not None and carol.role == "expert"
    profile = service.store.get_expert(carol.id)
    assert (list(profile.specialties), profile.on_duty) == (["family"], True)

    await admin.select_option("#account-role", "station_officer")
    await admin.wait_for_selector("#account-expert-fields", state="hidden")
    await admin.fill("#account-username", "olga")
    await admin.fill("#account-display-name", "Olga Officer")
    await admin.fill("#account-password", PASSWORD)
    await admin.click("#account-create")
    olga_row = '#accounts-table tr[data-username="olga"]'
    await admin.wait_for_selector(olga_row)
    await admin.click(f"{olga_row} [data-action=disable]")
    await admin.click(f"{olga_row} [data-action=disable][data-armed='1']")
    await admin.wait_for_selector(f'{olga_row}[data-disabled="1"]')
    assert service.store.find_account_by_username("olga").disabled
    await shots(admin, "admin-accounts-en")

    await tab(admin, "experts")
    carol_row = f'#experts-table tr[data-expert="{carol.id}"]'
    # The duty flag comes from the server (GET /api/admin/experts).
    await admin.wait_for_selector(f'{carol_row}[data-on-duty="1"][data-availability=offline]')
    assert await admin.inner_text(f"{carol_row} td[data-field=duty] .duty") == "On duty"
    await admin.check(f"{carol_row} input[value=traffic]")
    await admin.click(f"{carol_row} [data-action=save]")
    await admin.wait_for_selector(f"{carol_row} input[value=traffic]:checked")
    profile = service.store.get_expert(carol.id)
    assert (sorted(profile.specialties), profile.on_duty) == (["family", "traffic"], True)
    await admin.click(f"{carol_row} [data-action=duty]")
    await admin.wait_for_selector(f'{carol_row}[data-on-duty="0"]')
    assert service.store.get_expert(carol.id).on_duty is False
    await shots(admin, "admin-experts-en")

    await tab(admin, "dispute-types")
    await admin.fill("#dispute-code", "pets")
    await admin.fill("#dispute-name-zh", "宠物纠纷")
    await admin.fill("#dispute-name-en", "Pets")
    await admin.fill("#dispute-sort", "70")
    await admin.click("#dispute-type-add")
    pets = '#dispute-types-table tr[data-code="pets"]'
    await admin.wait_for_selector(f'{pets}[data-active="1"]')
    await shots(admin, "admin-dispute-type-added-en")
    await admin.fill(f"{pets} input[data-field=name-en]", "Pets and animals")
    await admin.uncheck(f"{pets} input[data-field=active]")
    await admin.click(f"{pets} [data-action=save]")
    await admin.wait_for_selector(f'{pets}[data-active=""]')
    status, body = await service.http(
        "GET", "/api/dispute-types", token=await service.login("root")
    )
    assert status == 200 and "pets" not in [t["code"] for t in body["dispute_types"]]
    saved = [t for t in service.store.list_dispute_types(include_inactive=True) if t.code == "pets"]
    assert [(t.name_zh, t.name_en, t.active, t.sort) for t in saved] == [
        ("宠物纠纷", "Pets and animals", False, 70)
    ]
    await shots(admin, "admin-dispute-type-switched-off-en")

    # Reloaded, the page still lists it (GET /api/dispute-types?all=1) and switches it on.
    await admin.reload()
    await screen(admin, "calls")
    await tab(admin, "dispute-types")
    await admin.wait_for_selector(f'{pets}[data-active=""] [data-action=activate]')
    await shots(admin, "admin-inactive-dispute-type-after-reload-en")
    await admin.click(f"{pets} [data-action=activate]")
    await admin.wait_for_selector(f'{pets}[data-active="1"]')
    assert await admin.locator(f"{pets} [data-action=activate]").count() == 0
    status, body = await service.http(
        "GET", "/api/dispute-types", token=await service.login("root")
    )
    assert "pets" in [t["code"] for t in body["dispute_types"]]

    await visit_every_tab(admin, shots, "en")
    assert await admin.inner_text("#warnings-gaps") == "Recording gaps since the service started: 0"


async def test_d_admin_sees_live_availability_and_warnings_worded_in_each_language(
    make_service, pages, checked_shots
):
    """The experts tab shows an expert connected and available as such; storage warnings (a
    spool disk under its limit, a recording gap as the recorder reports it) are worded from
    their codes in Chinese and in English, the server's technical detail marked English."""
    shots = checked_shots
    service = await make_service(spool_min_free_mb=10**9)
    amy = await service.expert("amy", specialties=["family"])
    try:
        service.hub.recordings._on_batch(
            SimpleNamespace(call_id="call-7"),
            [],
            [
                {
                    "participant": "part-3",
                    "track": "audio",
                    "seq_from": 1,
                    "seq_to": 9,
                    "packets": 9,
                    "utc": "2025-01-02T03:04:05.000Z",
                    "reason": "packet_loss",
                }
            ],
        )
        admin = await admin_signed_in(pages, service, shots)
        await tab(admin, "experts")
        amy_id = service.store.find_account_by_username("amy").id
        amy_row = f'#experts-table tr[data-expert="{amy_id}"]'
        await admin.wait_for_selector(f'{amy_row}[data-availability=available][data-on-duty="0"]')
        assert await admin.inner_text(f"{amy_row} td[data-field=availability]") == "可接听"
        await shots(admin, "admin-experts-live-zh")

        await tab(admin, "warnings")
        disk = "#warnings-list li[data-code=disk_low]"
        gap = "#warnings-list li[data-code=recording_gap]"
        await admin.wait_for_selector(gap)
        assert "缓存磁盘空间将满" in await admin.inner_text(disk)
        directory = str(service.settings.spool_dir)
        assert await admin.get_attribute(f"{disk} code", "lang") == "en"
        assert await admin.inner_text(f"{disk} code") == directory
        gap_text = await admin.inner_text(gap)
        assert "call-7" in gap_text and "音频" in gap_text and "网络丢包" in gap_text
        assert await admin.get_attribute("#warnings-list", "lang") is None
        await shots(admin, "admin-warnings-zh")

        await admin.click("#lang-toggle")
        await admin.wait_for_selector("html[lang=en]", state="attached")
        assert (await admin.inner_text(disk)).startswith("The spool disk is nearly full")
        gap_text = await admin.inner_text(gap)
        assert "audio of participant part-3, packets lost on the network, 9 packets" in gap_text
        await shots(admin, "admin-warnings-en")
        await tab(admin, "experts")
        await admin.wait_for_selector(f"{amy_row}[data-availability=available]")
        assert await admin.inner_text(f"{amy_row} td[data-field=availability]") == "Available"
        await shots(admin, "admin-experts-live-en")
    finally:
        await amy.close()


# Keys the station and admin scripts build at run time, with every value they can take.
DYNAMIC_KEYS = {
    "station.error.camera_": ["denied", "missing", "failed"],
    "admin.health.": ["ok", "denied", "missing", "error", "none"],
    "admin.kind.": ["kiosk", "station"],
    "admin.role.": ["admin", "evidence_officer", "trainer", "expert", "station_officer"],
    "admin.warnings.track.": ["audio", "video"],
    "admin.warnings.gap_reason.": [
        "tap_overflow",
        "packet_loss",
        "participant_dropped",
        "awaiting_key_frame",
    ],
}


async def test_c_every_key_the_station_and_admin_pages_use_is_in_both_catalogues():
    """test_catalogues.py reads the first pages' prefixes in scripts; this covers the station
    and admin scripts (station.*, admin.* and the shared keys they reuse)."""
    web = Path(__file__).resolve().parents[2] / "web"
    pattern = re.compile(
        r"""["'`]((?:common|kiosk|expert|call|station|admin)\.[a-z_]+(?:\.[a-z_]+)*)["'`]"""
    )
    used: set[str] = set()
    for name in ("station.js", "admin.js", "selftest.js"):
        used |= set(pattern.findall((web / "js" / name).read_text()))
    for prefix, values in DYNAMIC_KEYS.items():
        used |= {prefix + value for value in values}
    not_texts = {
        "call.launch",
        "call.cancel",
        "call.choose",
        "call.invite",
        "call.leave",
        "call.rate",
        "call.updated",
        "call.queue_position",
        "call.choice_offered",
        "station.device_token",
        "station.session_token",
    }
    used -= not_texts
    for lang, catalogue in CATALOGUES.items():
        assert sorted(used - set(catalogue)) == [], lang
