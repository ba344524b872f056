"""Signing in on the expert, station and admin pages in real Chromium: a wrong password, too
many failures (the server's throttle) and a service that cannot be reached each say what
happened, in Chinese by default."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.conftest import PASSWORD
from tests.web.conftest import CATALOGUES, Pages
from tests.web.journeys import screen, url

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROLES = {"expert": "expert", "station": "station_officer", "admin": "admin"}
BROWSERS = {"expert": "expert-blue", "station": "kiosk-yellow", "admin": "expert-blue"}


async def submit(page: Page, password: str) -> str:
    """Sign in as amy with `password`; the error line the page then shows."""
    await page.evaluate("document.getElementById('login-error').hidden = true")
    await page.fill("#username", "amy")
    await page.fill("#password", password)
    await page.click("#login-submit")
    error = await page.wait_for_selector("#login-error:not([hidden])")
    assert error is not None
    return await error.inner_text()


@pytest.mark.parametrize("page_name", ["expert", "station", "admin"])
async def test_a_refused_sign_in_says_why(make_service, pages: Pages, shots: Any, page_name):
    service = await make_service(login_failures_per_min=2)
    service.add_person("amy", ROLES[page_name])
    fragment = ""
    if page_name == "station":
        _, token = service.add_device("station", "Room 1")
        fragment = f"token={token}"
    page = await pages.open(
        BROWSERS[page_name], url(service, f"{page_name}.html", fragment=fragment), label=page_name
    )
    await screen(page, "login")
    zh = CATALOGUES["zh-CN"]
    for _ in range(2):
        assert await submit(page, "wrong password") == zh[f"{page_name}.login.failed"]
    # The third attempt, even with the right password, is throttled: the page says to wait.
    assert await submit(page, PASSWORD) == zh["common.login_throttled"]
    await shots(page, f"{page_name}-login-throttled")
    await service.server.close()
    assert await submit(page, "any") == zh["common.login_unavailable"]
    await shots(page, f"{page_name}-login-unreachable")
    await screen(page, "login")
