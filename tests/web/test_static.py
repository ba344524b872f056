"""The app serves web/ with the right types, and nothing outside it."""

from __future__ import annotations

import aiohttp
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def get(service, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http:
        # A raw path: aiohttp would otherwise normalise "/web/../x" before sending it.
        url = aiohttp.client.URL(service.base_url + path, encoded=True)
        async with http.get(url) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_pages_and_modules_come_with_their_types(service):
    status, kind, body = await get(service, "/")
    assert status == 200 and kind.startswith("text/html") and "/web/kiosk.html" in body
    for path, expected in (
        ("/web/kiosk.html", "text/html"),
        ("/web/expert.html", "text/html"),
        ("/web/js/client.js", "text/javascript"),
        ("/web/css/app.css", "text/css"),
        ("/web/i18n/zh-CN.json", "application/json"),
        ("/web/icons/family.svg", "image/svg+xml"),
    ):
        status, kind, _ = await get(service, path)
        assert (status, kind.split(";")[0]) == (200, expected), path


async def test_nothing_outside_web_or_of_an_unknown_type_is_served(service):
    for path in (
        "/web/../signaling/app.py",
        "/web/%2e%2e/signaling/app.py",
        "/web/missing.js",
        "/web/js/",
    ):
        status, _, _ = await get(service, path)
        assert status == 404, path
