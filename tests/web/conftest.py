"""Real Chromium against the real service (RECIPES.md, "Real Chromium in tests").

- One Playwright and one Chromium process per participant for the whole session (Chromium
  takes one fake camera file per process): `browsers.get("kiosk-red")` launches it once;
  each test opens its own contexts, closed at the end of the test.
- Fake cameras are 320x240 y4m files of one colour with the frame counter of
  `media.clips` painted in; fake microphones are WAV files of one tone. Tests sample the
  REMOTE tile of the other side (tests/web/probe.js, injected into every page).
- Every page state a test passes through is saved as a screenshot under
  `artifacts/screenshots/<test>/<nn>-<page>-<state>.png` (or `$WEB_SCREENSHOTS_DIR`), and
  its visible text is checked for the language: English shows no Chinese characters,
  Chinese shows no catalogue key.
- No sleeps: Playwright waits on selectors, and `page.wait_for_function` polls the
  synchronous probes.

The service runs in-process in the session's event loop (`make_service` here replaces the
one from tests/conftest.py so that it lives in the same loop as Playwright).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from media import clips
from signaling.app import create_app
from tests.conftest import CHEAP_HASHER, PASSWORD, Service, fast_settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PROBE = (Path(__file__).parent / "probe.js").read_text()
CATALOGUES = {
    lang: json.loads((ROOT / "web" / "i18n" / f"{lang}.json").read_text())
    for lang in ("zh-CN", "en")
}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
KEY_LIKE = re.compile(r"\b(?:common|index|kiosk|expert|call)\.[a-z_]+(?:\.[a-z_]+)*\b")

# Colours (RGB) and tones (Hz) of the fake devices, one per browser.
RED, GREEN, BLUE, YELLOW = (230, 30, 30), (30, 200, 40), (30, 60, 230), (230, 220, 30)
TONES = (440, 660, 880, 1100)
DEVICES = {
    "kiosk-red": (RED, 440),
    "expert-green": (GREEN, 660),
    "expert-blue": (BLUE, 880),
    "kiosk-yellow": (YELLOW, 1100),
}

BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
]
FAKE_UI = "--use-fake-ui-for-media-stream"
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"


# --- fake devices ---------------------------------------------------------------------------


def write_y4m(path: Path, colour: tuple[int, int, int], frames: int = 30, fps: int = 15) -> None:
    """A looping 320x240 camera clip: one colour, the frame counter painted along the top."""
    width, height = 320, 240
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            frame = clips.paint_frame(width, height, colour, n)
            out.write(b"FRAME\n")
            for plane in frame.planes:
                data = bytes(plane)
                for row in range(plane.height):
                    start = row * plane.line_size
                    out.write(data[start : start + plane.width])


def write_wav(path: Path, frequency: int, seconds: int = 1, rate: int = 48000) -> None:
    """A looping microphone: a pure tone, whole cycles per second."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (
            int(12000 * math.sin(2 * math.pi * frequency * n / rate)) for n in range(seconds * rate)
        )
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


# --- browsers -------------------------------------------------------------------------------


class Browsers:
    """Chromium processes for the session, launched on first use."""

    def __init__(self, playwright: Playwright, media_dir: Path) -> None:
        self.playwright = playwright
        self.media_dir = media_dir
        self.launched: dict[str, Browser] = {}

    async def get(self, name: str, *, fake_ui: bool = True, autoplay: bool = True) -> Browser:
        key = f"{name}{'' if fake_ui else '-nofakeui'}{'' if autoplay else '-noautoplay'}"
        if key not in self.launched:
            args = list(BASE_ARGS)
            if fake_ui:
                args.append(FAKE_UI)
            if autoplay:
                args.append(AUTOPLAY)
            if name in DEVICES:
                colour, tone = DEVICES[name]
                video = self.media_dir / f"{name}.y4m"
                audio = self.media_dir / f"{name}.wav"
                if not video.exists():
                    write_y4m(video, colour)
                    write_wav(audio, tone)
                args += [
                    f"--use-file-for-fake-video-capture={video}",
                    f"--use-file-for-fake-audio-capture={audio}",
                ]
            self.launched[key] = await self.playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=args
            )
        return self.launched[key]

    async def close(self) -> None:
        for browser in self.launched.values():
            await browser.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browsers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browsers]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)")
    media_dir = tmp_path_factory.mktemp("fake-devices")
    async with async_playwright() as playwright:
        pool = Browsers(playwright, media_dir)
        try:
            yield pool
        finally:
            await pool.close()


# --- screenshots and the language check ------------------------------------------------------


def screenshots_root() -> Path:
    return Path(os.environ.get("WEB_SCREENSHOTS_DIR", ROOT / "artifacts" / "screenshots"))


class Shots:
    """Numbered screenshots of one test; each one also checks the page's language."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.taken: list[Path] = []

    async def __call__(self, page: Page, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(path))
        self.taken.append(path)
        await check_language(page, name)
        return path


async def check_language(page: Page, state: str) -> None:
    lang = await page.evaluate("document.documentElement.lang")
    texts: list[str] = await page.evaluate("window.__probe.visibleText()")
    keys = set(CATALOGUES["en"])
    if lang == "en":
        chinese = [t for t in texts if CJK.search(t)]
        assert not chinese, f"{state}: Chinese text on an English page: {chinese}"
    for text in texts:
        assert text not in keys and not KEY_LIKE.search(text), (
            f"{state}: a catalogue key is shown instead of its text: {text!r}"
        )


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    folder = screenshots_root() / name
    if folder.exists():
        for old in folder.glob("*.png"):
            old.unlink()
    return Shots(folder)


# --- pages ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Pages:
    """Contexts and pages of one test; console lines are kept for failure reports."""

    browsers: Browsers
    contexts: list[BrowserContext] = dataclasses.field(default_factory=list)
    logs: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    async def open(
        self,
        device: str,
        url: str,
        *,
        fake_ui: bool = True,
        autoplay: bool = True,
        label: str | None = None,
        viewport: dict[str, int] | None = None,
        init_script: str | None = None,
    ) -> Page:
        browser = await self.browsers.get(device, fake_ui=fake_ui, autoplay=autoplay)
        context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        context.set_default_timeout(10000)
        await context.add_init_script(PROBE)
        if init_script:
            await context.add_init_script(init_script)
        self.contexts.append(context)
        page = await context.new_page()
        lines = self.logs.setdefault(label or device, [])
        page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: lines.append(f"pageerror: {err}"))
        await page.goto(url)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pages(browsers: Browsers, request: pytest.FixtureRequest) -> AsyncIterator[Pages]:
    opened = Pages(browsers)
    try:
        yield opened
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for name, lines in opened.logs.items():
                print(f"--- console of {name} ---")
                print("\n".join(lines[-80:]))
        await opened.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- the service, in the session's event loop -------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def make_service(tmp_path: Path) -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(**changes: Any) -> Service:
        settings = fast_settings(tmp_path, **changes)
        server = TestServer(create_app(settings, password_hasher=CHEAP_HASHER), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Service(server, settings)

    yield start
    for server in servers:
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def service(make_service: Any) -> Service:
    return await make_service()


__all__ = ["PASSWORD", "TONES", "RED", "GREEN", "BLUE", "YELLOW"]


# --- more checks on every screenshot (station and admin tests) ---------------------------------

# KEY_LIKE above knows the first pages' prefixes; the station and admin pages add two.
ANY_KEY_LIKE = re.compile(
    r"\b(?:common|index|kiosk|expert|call|station|admin)\.[a-z_]+(?:\.[a-z_]+)*\b"
)

# Every visible control has a name a screen reader can read: its text, a <label>, aria-label or
# aria-labelledby. Returns the controls without one.
UNLABELLED_CONTROLS = """() => {
  const out = [];
  for (const el of document.querySelectorAll("button, input, select, textarea, a[href]")) {
    if (el.type === "hidden" || !el.checkVisibility({visibilityProperty: true})) continue;
    let name = el.getAttribute("aria-label") || "";
    const by = el.getAttribute("aria-labelledby");
    if (!name && by) {
      name = by.split(/\\s+/).map((id) => document.getElementById(id)?.textContent || "").join(" ");
    }
    if (!name && el.labels) name = [...el.labels].map((l) => l.textContent).join(" ");
    if (!name && (el.tagName === "BUTTON" || el.tagName === "A")) name = el.textContent;
    if (!name.trim()) out.push(el.outerHTML.slice(0, 160));
  }
  return out;
}"""


@pytest.fixture
def checked_shots(shots: Shots) -> Any:
    """`shots`, plus: no text looks like a station/admin catalogue key, every control is
    labelled."""

    async def take(page: Page, name: str) -> Path:
        path = await shots(page, name)
        texts: list[str] = await page.evaluate("window.__probe.visibleText()")
        keys = [t for t in texts if ANY_KEY_LIKE.search(t)]
        assert not keys, f"{name}: catalogue keys shown instead of their text: {keys}"
        unlabelled = await page.evaluate(UNLABELLED_CONTROLS)
        assert not unlabelled, f"{name}: controls without a label: {unlabelled}"
        return path

    return take
