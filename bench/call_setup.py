#!/usr/bin/env python3
"""Call set-up as people see it, in real Chromium on loopback: tap "call" -> ring shown,
tap "accept" -> each side's first remote video frame.

    .venv/bin/python bench/call_setup.py              # 10 measured calls (+1 warm-up), ~20 s
    .venv/bin/python bench/call_setup.py --quick      # 3 measured calls (+1 warm-up), ~10 s
    .venv/bin/python bench/call_setup.py --reps 30 --server-setting media_inactivity_s=5

Targets (issue 6): **kiosk taps "call" -> the expert console shows the ring < 1 s, and
expert taps "accept" -> each side's first remote frame < 1 s.** The script prints the
figures and the target next to them; it never checks them (timings never change the exit
status).

What it does:
1. Provisions one kiosk device and one expert account ("family") straight into a fresh data
   folder's store, then starts the real service as a separate process (`python -m
   signaling.cli serve --host 127.0.0.1`, media sockets on 127.0.0.1 only,
   `MEDIATION_DEMO_ACCOUNTS=false`, `MEDIATION_LOG_LEVEL=WARNING`, other `MEDIATION_*`
   variables dropped, `--server-setting NAME=VALUE` added) and waits for its "serving on"
   line.
2. Launches Debian's Chromium (`/usr/bin/chromium`, headless, through Playwright) twice,
   with the flags of tests/web/conftest.py (fake devices and fake permission UI, autoplay,
   loopback ICE): the kiosk with a red 320x240 y4m camera (frame counter painted, 15 fps)
   and a 440 Hz microphone, the expert with green and 660 Hz. Both files are written into
   the temporary folder.
3. The expert signs in and clicks "start duty"; the kiosk opens with its device token.
4. Each repetition, the calls one after the other: the kiosk taps start -> "family" -> "any
   expert" -> agree (the "call" tap: it opens the camera and sends `call.launch`); the
   expert console rings; the expert taps accept; both pages show the other's video; the
   expert hangs up ("later" on the outcome form), the kiosk skips the rating, and both are
   back at welcome / available before the next one. A warm-up call (`--warmup`, default 1)
   runs first and is left out of the figures.

How it measures: a script injected into both pages (never shipped) stamps every moment with
`performance.timeOrigin + performance.now()`, i.e. wall-clock milliseconds on the machine's
one clock, which both browsers share, so differences across the two pages are meaningful
(to ~0.1 ms). Python only reads the stamps afterwards; its own delays never enter a figure.
- the taps: a capture-phase click listener on `window` (before the page's own handlers);
- ring shown: a MutationObserver on `#rings` sees the ring card inserted ("dom"); "shown" is
  the first task after the next animation frame, i.e. after the frame that paints it;
- first remote frame: `requestVideoFrameCallback` on each remote tile's `<video>` (tiles
  with `data-participant`; never the self-view), stamped in the callback; the frame's mean
  colour is sampled there too, to check it is the other side's camera;
- the breakdown: the WebSocket is wrapped to stamp the first `call.launch` / `call.accept` /
  `media.join` sent, the `call.ring` and `media.offer` received, and each request's result.

Printed: a `machine:` line (CPUs, load average, Chromium and Python versions), one line per
call (`call N:` ring, kiosk frame, expert frame, and the breakdown), then for each figure
p50/p95/max (nearest rank) over the measured calls, and the `target:` lines. Breakdown:
- ring = tap -> launch sent (the kiosk opens its camera first) -> ring received by the
  expert's page (server + WebSocket) -> ring shown (rendering);
- expert's frame = accept tap -> the expert's media.join sent (its camera opens on accept)
  -> media.join answered -> first frame of the kiosk's video;
- kiosk's frame = accept tap -> kiosk's media.join sent (on the call becoming active) ->
  answered -> the server's offer with the expert's tracks -> first frame of the expert's video.

Options: `--reps N` (10), `--warmup N` (1), `--quick` (3 reps), `--timeout S` (20: each
wait in a call), `--chromium PATH`, `--server-setting NAME=VALUE` (repeatable), `--keep`
(keep the temporary folder: data folder, fake devices, server log), `--verbose` (the pages'
console lines on failure are always printed).

Run it on an otherwise idle machine: the server, two Chromium processes (each encoding and
decoding 320x240 VP8) and the bench share the cores; the `machine:` line shows the load
average at the start. Exit status: 0 when every call rang, connected and showed the right
colours on both sides and the server logged no ERROR line; 1 otherwise; 2 on bad usage (no
Chromium). The server's log is always written to `server.log` in the temporary folder
(`--keep` keeps it); its WARNING lines are printed with `--verbose`, ERROR lines always.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatch import CHEAP_HASHER, READY_PREFIX, free_port, percentile
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout
from procs import ManagedProcess

from media import clips
from storage import MetadataStore

HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 1000.0
PASSWORD = "bench-call-setup"
EXPERT = "setup-expert"
DISPUTE = "family"
RED, GREEN = (230, 30, 30), (30, 200, 40)
COLOUR_TOLERANCE = 45
# The flags of tests/web/conftest.py (BASE_ARGS + fake UI + autoplay).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

# Injected into both pages before their own scripts. Stamps are wall-clock ms.
STAMPS_JS = r"""
(() => {
  const wall = () => performance.timeOrigin + performance.now();
  const bench = { marks: {}, frames: {}, requests: new Map() };
  window.__bench = bench;
  bench.reset = () => {
    bench.marks = {};
    bench.frames = {};
    bench.requests = new Map();
  };
  const mark = (name, t) => {
    if (!(name in bench.marks)) bench.marks[name] = t ?? wall();
  };

  window.addEventListener("click", (event) => {
    const t = wall();
    const el = event.target instanceof Element ? event.target : null;
    if (el?.closest("#consent-agree")) mark("tap_call", t);
    if (el?.closest("#rings [data-action=accept]")) mark("tap_accept", t);
  }, true);

  const SENT = new Set(["call.launch", "call.accept", "media.join"]);
  const RECEIVED = new Set(["call.ring", "media.offer"]);
  const Native = window.WebSocket;
  const send = Native.prototype.send;
  Native.prototype.send = function (data) {
    try {
      const frame = JSON.parse(data);
      if (SENT.has(frame.type)) {
        mark(`sent:${frame.type}`);
        bench.requests.set(frame.id, frame.type);
      }
    } catch {}
    return send.call(this, data);
  };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const t = wall();
        try {
          const frame = JSON.parse(event.data);
          if (RECEIVED.has(frame.type)) mark(`received:${frame.type}`, t);
          if (frame.type === "result" && bench.requests.has(frame.id)) {
            mark(`result:${bench.requests.get(frame.id)}`, t);
          }
        } catch {}
      });
    }
  };

  const canvas = document.createElement("canvas");
  function meanColour(video) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    canvas.width = w;
    canvas.height = h;
    const g = canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(video, 0, 0);
    const data = g.getImageData(0, Math.floor(h / 4), w, Math.floor(h / 2)).data;
    let r = 0, gr = 0, b = 0, n = 0;
    for (let i = 0; i < data.length; i += 16) {
      r += data[i]; gr += data[i + 1]; b += data[i + 2]; n += 1;
    }
    return [r / n, gr / n, b / n].map(Math.round);
  }

  const watched = new WeakSet();
  function watchVideos() {
    for (const video of document.querySelectorAll(".tile[data-participant] video")) {
      if (watched.has(video)) continue;
      watched.add(video);
      const onFrame = () => {
        const t = wall();
        const participant = video.closest(".tile")?.dataset.participant || "?";
        if (!(participant in bench.frames)) {
          bench.frames[participant] = { t, rgb: meanColour(video) };
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
  }

  function watchRings() {
    const rings = document.getElementById("rings");
    if (!rings) return;
    for (const card of rings.querySelectorAll(".ring")) {
      const key = `ring:${card.dataset.call}`;
      if (key in bench.marks) continue;
      const t = wall();
      bench.marks[key] = t;
      mark("ring_dom", t);
      requestAnimationFrame(() => setTimeout(() => mark("ring_shown"), 0));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    new MutationObserver(() => {
      watchRings();
      watchVideos();
    }).observe(document.body, { childList: true, subtree: true });
  });
})();
"""


def out(line: str = "") -> None:
    print(line, flush=True)


# --- fake devices (as tests/web/conftest.py makes them) ------------------------------------------


def write_y4m(path: Path, colour: tuple[int, int, int], frames: int = 30, fps: int = 15) -> None:
    """A looping 320x240 camera clip: one colour, the frame counter painted along the top."""
    width, height = 320, 240
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            frame = clips.paint_frame(width, height, colour, n)
            f.write(b"FRAME\n")
            for plane in frame.planes:
                data = bytes(plane)
                for row in range(plane.height):
                    start = row * plane.line_size
                    f.write(data[start : start + plane.width])


def write_wav(path: Path, frequency: int, seconds: int = 1, rate: int = 48000) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        samples = (
            int(12000 * math.sin(2 * math.pi * frequency * n / rate)) for n in range(seconds * rate)
        )
        f.writeframes(b"".join(struct.pack("<h", s) for s in samples))


# --- the service ---------------------------------------------------------------------------------


def provision(db_path: Path) -> str:
    """One kiosk and one "family" expert; returns the kiosk's device token."""
    with MetadataStore.open(db_path, password_hasher=CHEAP_HASHER) as store:
        codes = [d.code for d in store.list_dispute_types()]
        if DISPUTE not in codes:
            raise RuntimeError(f"no {DISPUTE!r} dispute type in the seeded store ({codes})")
        with store.transaction():
            _, token = store.create_device("kiosk", "Set-up bench kiosk")
            account = store.create_account(EXPERT, "Bench Expert", "expert", PASSWORD)
            store.set_expert_profile(account.id, [DISPUTE], on_duty=False)
    return str(token)


def server_process(data_dir: Path, port: int, settings: list[str]) -> ManagedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
    env.update(
        MEDIATION_DATA_DIR=str(data_dir),
        MEDIATION_MEDIA_INTERFACES=HOST,
        MEDIATION_DEMO_ACCOUNTS="false",
        MEDIATION_LOG_LEVEL="WARNING",
    )
    for item in settings:
        name, _, value = item.partition("=")
        env[f"MEDIATION_{name.strip().upper()}"] = value
    command = [sys.executable, "-m", "signaling.cli", "serve", "--host", HOST, "--port", str(port)]
    return ManagedProcess("server", command, env, READY_PREFIX)


# --- one call -----------------------------------------------------------------------------------


@dataclass
class Call:
    index: int
    warmup: bool
    kiosk: dict[str, Any] = field(default_factory=dict)
    expert: dict[str, Any] = field(default_factory=dict)
    kiosk_participant: str = ""
    expert_participant: str = ""
    problems: list[str] = field(default_factory=list)

    def span(self, page: str, start: str, end: str, end_page: str | None = None) -> float:
        """ms between two stamps (`start` on `page`, `end` on `end_page` or the same page)."""
        a = getattr(self, page)["marks"].get(start)
        b = getattr(self, end_page or page)["marks"].get(end)
        return math.nan if a is None or b is None else b - a

    def first_frame(self, page: str, of: str) -> float:
        frame = getattr(self, page)["frames"].get(of)
        return math.nan if frame is None else float(frame["t"])

    @property
    def ring_ms(self) -> float:
        return self.span("kiosk", "tap_call", "ring_shown", "expert")

    @property
    def expert_frame_ms(self) -> float:
        """accept tap -> the kiosk's video on the expert's page."""
        return self.first_frame("expert", self.kiosk_participant) - self.tap_accept

    @property
    def kiosk_frame_ms(self) -> float:
        """accept tap -> the expert's video on the kiosk's page."""
        return self.first_frame("kiosk", self.expert_participant) - self.tap_accept

    @property
    def tap_accept(self) -> float:
        return float(self.expert["marks"].get("tap_accept", math.nan))

    def breakdown(self) -> str:
        k, e = self.kiosk["marks"], self.expert["marks"]
        nan = math.nan

        def gap(a: float | None, b: float | None) -> str:
            return f"{(b if b is not None else nan) - (a if a is not None else nan):.0f}"

        ring = "+".join(
            [
                gap(k.get("tap_call"), k.get("sent:call.launch")),
                gap(k.get("sent:call.launch"), e.get("received:call.ring")),
                gap(e.get("received:call.ring"), e.get("ring_shown")),
            ]
        )
        accept = self.tap_accept
        expert = "+".join(
            [
                gap(accept, e.get("sent:media.join")),
                gap(e.get("sent:media.join"), e.get("result:media.join")),
                gap(e.get("result:media.join"), self.first_frame("expert", self.kiosk_participant)),
            ]
        )
        kiosk = "+".join(
            [
                gap(accept, k.get("sent:media.join")),
                gap(k.get("sent:media.join"), k.get("result:media.join")),
                gap(k.get("result:media.join"), k.get("received:media.offer")),
                gap(
                    k.get("received:media.offer"),
                    self.first_frame("kiosk", self.expert_participant),
                ),
            ]
        )
        return (
            f"ring = {ring} (camera+send, server+ws, render); "
            f"expert = {expert} (camera+offer, join, media); "
            f"kiosk = {kiosk} (until join, join, server offer, media)"
        )


def near(rgb: list[int] | None, colour: tuple[int, int, int]) -> bool:
    return rgb is not None and all(
        abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(rgb, colour, strict=False)
    )


async def screen(page: Page, name: str, timeout_ms: float) -> None:
    await page.wait_for_selector(f"body[data-screen={name}]", timeout=timeout_ms)


async def one_call(index: int, warmup: bool, kiosk: Page, expert: Page, timeout: float) -> Call:
    call = Call(index, warmup)
    ms = timeout * 1000
    await kiosk.evaluate("window.__bench.reset()")
    await expert.evaluate("window.__bench.reset()")

    # The kiosk: start -> dispute type -> any expert -> agree (the "call" tap).
    await kiosk.click("#start")
    await screen(kiosk, "dispute", ms)
    await kiosk.click(f"[data-code={DISPUTE}]")
    await kiosk.wait_for_selector("body[data-screen=expert], body[data-screen=consent]", timeout=ms)
    if await kiosk.evaluate("document.body.dataset.screen") == "expert":
        await kiosk.click('#experts [data-expert=""]')
    await screen(kiosk, "consent", ms)
    await kiosk.wait_for_selector("#notice-text[data-version]", timeout=ms)
    await kiosk.click("#consent-agree")

    # The expert: the ring, then accept.
    await expert.wait_for_function("() => 'ring_shown' in window.__bench.marks", timeout=ms)
    await expert.click("#rings .ring [data-action=accept]")
    await screen(kiosk, "call", ms)
    await expert.wait_for_selector("body[data-in-call='1']", timeout=ms)

    # Each side's first remote frame (stamped in the page).
    await kiosk.wait_for_function(
        "() => window.kioskMedia && window.kioskMedia.participantId", timeout=ms
    )
    call.kiosk_participant = await kiosk.evaluate("window.kioskMedia.participantId")
    await expert.wait_for_function(
        "() => window.expertMedia && window.expertMedia.participantId", timeout=ms
    )
    call.expert_participant = await expert.evaluate("window.expertMedia.participantId")
    await expert.wait_for_function(
        "(id) => id in window.__bench.frames", arg=call.kiosk_participant, timeout=ms
    )
    await kiosk.wait_for_function(
        "(id) => id in window.__bench.frames", arg=call.expert_participant, timeout=ms
    )
    state = "({marks: window.__bench.marks, frames: window.__bench.frames})"
    call.kiosk = await kiosk.evaluate(state)
    call.expert = await expert.evaluate(state)
    seen_by_expert = call.expert["frames"][call.kiosk_participant]["rgb"]
    seen_by_kiosk = call.kiosk["frames"][call.expert_participant]["rgb"]
    if not near(seen_by_expert, RED):
        call.problems.append(f"the expert's first frame of the kiosk is {seen_by_expert}, not red")
    if not near(seen_by_kiosk, GREEN):
        call.problems.append(f"the kiosk's first frame of the expert is {seen_by_kiosk}, not green")

    # Hang up; both back where the next call starts.
    await expert.click("#hangup")
    await expert.wait_for_selector("#outcome-form", state="visible", timeout=ms)
    await expert.click("#outcome-later")
    await screen(kiosk, "rating", ms)
    await kiosk.click("#rating-skip")
    await screen(kiosk, "welcome", ms)
    await expert.wait_for_selector("body[data-in-call='']", state="attached", timeout=ms)
    await expert.wait_for_selector("body[data-availability=available]", timeout=ms)
    return call


# --- the run ------------------------------------------------------------------------------------


def stats_line(name: str, values: list[float]) -> str:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return f"{name}: no figures"
    p50, p95 = percentile(ordered, 50), percentile(ordered, 95)
    return (
        f"{name}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms"
        f" (min {ordered[0]:.0f}, n={len(ordered)})"
    )


def target_line(name: str, values: list[float]) -> str:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return f"target: {name} < {TARGET_MS:.0f} ms: no figures"
    p95 = percentile(ordered, 95)
    over = sum(1 for v in ordered if v >= TARGET_MS)
    verdict = "met" if ordered[-1] < TARGET_MS else "NOT met"
    return (
        f"target: {name} < {TARGET_MS:.0f} ms: {verdict} (p95 {p95:.0f} ms, max"
        f" {ordered[-1]:.0f} ms, {over} of {len(ordered)} calls at or over; information only)"
    )


async def run(args: argparse.Namespace, tmp: Path) -> int:
    data_dir = tmp / "data"
    data_dir.mkdir()
    token = provision(data_dir / "metadata.sqlite3")
    media_dir = tmp / "devices"
    media_dir.mkdir()
    devices = {}
    for name, colour, tone in (("kiosk", RED, 440), ("expert", GREEN, 660)):
        write_y4m(media_dir / f"{name}.y4m", colour)
        write_wav(media_dir / f"{name}.wav", tone)
        devices[name] = [
            f"--use-file-for-fake-video-capture={media_dir / f'{name}.y4m'}",
            f"--use-file-for-fake-audio-capture={media_dir / f'{name}.wav'}",
        ]

    port = free_port()
    server = server_process(data_dir, port, args.server_setting)
    started = time.monotonic()
    await server.start(timeout=30)
    took = time.monotonic() - started
    out(f"server: {server.ready_line.strip()} (pid {server.pid}, {took:.1f} s)")
    base = f"http://{HOST}:{port}"
    calls: list[Call] = []
    logs: dict[str, list[str]] = {"kiosk": [], "expert": []}
    failed = False
    try:
        async with async_playwright() as playwright:
            browsers: dict[str, Browser] = {}
            for name in ("kiosk", "expert"):
                browsers[name] = await playwright.chromium.launch(
                    executable_path=args.chromium,
                    headless=True,
                    args=CHROMIUM_ARGS + devices[name],
                )
            version = browsers["kiosk"].version
            load = os.getloadavg()[0]
            out(
                f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at start, Chromium"
                f" {version}, Python {platform.python_version()}, {platform.machine()}"
            )
            pages: dict[str, Page] = {}
            for name in ("kiosk", "expert"):
                context = await browsers[name].new_context(viewport={"width": 1280, "height": 800})
                context.set_default_timeout(args.timeout * 1000)
                await context.add_init_script(STAMPS_JS)
                page = await context.new_page()
                page.on("console", lambda msg, n=name: logs[n].append(f"{msg.type}: {msg.text}"))
                page.on("pageerror", lambda err, n=name: logs[n].append(f"pageerror: {err}"))
                pages[name] = page
            kiosk, expert = pages["kiosk"], pages["expert"]

            await expert.goto(f"{base}/web/expert.html")
            await screen(expert, "login", args.timeout * 1000)
            await expert.fill("#username", EXPERT)
            await expert.fill("#password", PASSWORD)
            await expert.click("#login-submit")
            await expert.wait_for_selector("#start-duty", state="visible")
            await expert.click("#start-duty")
            await expert.wait_for_selector("body[data-availability=available]")
            await kiosk.goto(f"{base}/web/kiosk.html#token={token}")
            await screen(kiosk, "welcome", args.timeout * 1000)
            out(f"pages: expert on duty, kiosk at welcome ({time.monotonic() - started:.1f} s)")

            total = args.warmup + args.reps
            for n in range(total):
                warmup = n < args.warmup
                try:
                    call = await one_call(n + 1, warmup, kiosk, expert, args.timeout)
                except (PlaywrightTimeout, KeyError, TypeError) as err:
                    failed = True
                    out(f"call {n + 1}: FAILED: {type(err).__name__}: {str(err).splitlines()[0]}")
                    break
                calls.append(call)
                label = "warm-up" if warmup else f"call {n + 1 - args.warmup}"
                out(
                    f"{label}: ring {call.ring_ms:.0f} ms, accept -> expert's first frame"
                    f" {call.expert_frame_ms:.0f} ms, accept -> kiosk's first frame"
                    f" {call.kiosk_frame_ms:.0f} ms"
                )
                if args.verbose or warmup:
                    out(f"    {call.breakdown()}")
                for problem in call.problems:
                    failed = True
                    out(f"    problem: {problem}")
            for browser in browsers.values():
                await browser.close()
    finally:
        code, how = await server.stop(timeout=30)
        out(f"shutdown: server {how}, exit status {code}")
        if code not in (0, None):
            failed = True
        warnings = [line for line in server.stderr if line.strip()]
        (tmp / "server.log").write_text("\n".join(server.stdout + server.stderr) + "\n")
        if warnings:
            shown = [line for line in warnings if " WARNING " not in line or args.verbose]
            out(
                f"server log: {len(warnings)} lines at WARNING and above"
                f" ({len(warnings) - len(shown)} WARNING lines not shown without --verbose,"
                f" e.g. `media failed` as each side closes its peer connection at hang-up)"
            )
            for line in shown[:60]:
                out(f"    {line}")
        errors = [line for line in warnings if " ERROR " in line or " CRITICAL " in line]
        if errors:
            failed = True
            out(f"errors: the server logged {len(errors)} ERROR lines (above)")

    measured = [c for c in calls if not c.warmup]
    out()
    out(f"=== call set-up: {len(measured)} calls (+{len(calls) - len(measured)} warm-up) ===")
    figures = {
        'kiosk taps "call" -> expert console shows the ring': [c.ring_ms for c in measured],
        'expert taps "accept" -> expert\'s first frame of the kiosk': [
            c.expert_frame_ms for c in measured
        ],
        'expert taps "accept" -> kiosk\'s first frame of the expert': [
            c.kiosk_frame_ms for c in measured
        ],
    }
    for name, values in figures.items():
        out(stats_line(name, values))
    parts = {
        "ring: tap -> launch sent (kiosk opens its camera)": [
            c.span("kiosk", "tap_call", "sent:call.launch") for c in measured
        ],
        "ring: launch sent -> ring received by the expert's page": [
            c.span("kiosk", "sent:call.launch", "received:call.ring", "expert") for c in measured
        ],
        "ring: received -> shown": [
            c.span("expert", "received:call.ring", "ring_shown") for c in measured
        ],
        "expert: accept -> media.join sent (camera, offer)": [
            c.span("expert", "tap_accept", "sent:media.join") for c in measured
        ],
        "expert: media.join sent -> answered": [
            c.span("expert", "sent:media.join", "result:media.join") for c in measured
        ],
        "kiosk: accept -> media.join sent": [
            c.span("expert", "tap_accept", "sent:media.join", "kiosk") for c in measured
        ],
        "kiosk: server offer with the expert's tracks -> first frame": [
            c.first_frame("kiosk", c.expert_participant)
            - c.kiosk["marks"].get("received:media.offer", math.nan)
            for c in measured
        ],
    }
    for name, values in parts.items():
        out("  " + stats_line(name, values))
    for name, values in figures.items():
        out(target_line(name, values))
    if failed:
        for name, lines in logs.items():
            out(f"--- console of the {name} page (last 40 lines) ---")
            for line in lines[-40:]:
                out(f"    {line}")
    ok = not failed and len(measured) == args.reps
    out(f"result: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Call set-up latency in real Chromium on loopback (see the module docstring)."
    )
    parser.add_argument("--reps", type=int, default=10, help="measured calls (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="calls left out first (default 1)")
    parser.add_argument("--quick", action="store_true", help="3 measured calls")
    parser.add_argument("--timeout", type=float, default=20.0, help="limit of each wait (s)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser binary ({CHROMIUM})")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra server setting, passed as MEDIATION_NAME (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--verbose", action="store_true", help="the breakdown of every call")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 3
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be at least 1 and --warmup not negative")
    if any("=" not in s for s in args.server_setting):
        parser.error("--server-setting takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(args.chromium, os.X_OK):
        print(f"{args.chromium} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    out(f"command: {' '.join([sys.executable, *sys.argv])}")
    tmp = Path(tempfile.mkdtemp(prefix="call-setup-"))
    try:
        return asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            out(f"kept: {tmp}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
