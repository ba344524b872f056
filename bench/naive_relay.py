#!/usr/bin/env python3
"""The naive relay for bench/relay.py: aiortc decode -> MediaRelay -> encode, 2-party calls.

    python bench/naive_relay.py --host 10.99.0.1 --port 8089

A bench-only reference, not product code. API: each side of call C POSTs its offer
(sendrecv audio + video) as JSON to /offer:
    {"call": "C", "side": "a" | "b", "sdp": "..."}  ->  {"sdp": "<answer>"}
The first request waits (up to --pair-timeout s) for the other side. When both sides of a
call have offered, the server sets both remote descriptions, sends each side's incoming
tracks to the other through `aiortc.contrib.media.MediaRelay` (so every frame is decoded by
aiortc's receiver and encoded again by the other side's sender) and answers both.
`iceServers=[]`: aioice gathers the host addresses of the namespace it runs in (the veth
address), nothing else.

Two bench choices, neither changes the work done per frame:
- the VP8 encoder starts at --video-bitrate (default 1 Mbit/s, the load clip's rate)
  instead of aiortc's 500 kbit/s (the load peers send no REMB that would raise it);
- aiortc's Opus encoder stamps its output with its own sample counter, so the RTP
  timestamp of a relayed audio packet would no longer tell which input packet it came
  from. Here the encoder returns the decoded frame's pts (= the input RTP timestamp),
  as aiortc's VP8 path already does. The bench matches packets by RTP timestamp up to a
  constant per-stream offset (see bench/README.md).

Prints `naive-relay: serving on http://HOST:PORT` when ready; SIGTERM closes every peer
connection and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import aiortc.codecs.opus
import aiortc.codecs.vpx
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

READY_PREFIX = "naive-relay: serving on"
log = logging.getLogger("naive_relay")


def _carry_audio_pts() -> None:
    original = aiortc.codecs.opus.OpusEncoder.encode

    def encode(self: Any, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], Any]:
        payloads, timestamp = original(self, frame, force_keyframe)
        if payloads and frame.pts is not None:
            timestamp = int(frame.pts)  # 1/48000 time base, as the RTP clock
        return payloads, timestamp

    aiortc.codecs.opus.OpusEncoder.encode = encode  # type: ignore[method-assign]


@dataclass
class Side:
    pc: RTCPeerConnection
    offer: str
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)
    answer: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class NaiveRelay:
    def __init__(self, pair_timeout: float) -> None:
        self.pair_timeout = pair_timeout
        self.relay = MediaRelay()
        self.calls: dict[str, dict[str, Side]] = {}
        self.pcs: set[RTCPeerConnection] = set()

    async def offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        call, side_name, sdp = str(body["call"]), str(body["side"]), str(body["sdp"])
        sides = self.calls.setdefault(call, {})
        if side_name in sides or side_name not in ("a", "b"):
            return web.json_response({"error": f"side {side_name!r} of {call} taken"}, status=409)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)
        side = sides[side_name] = Side(pc, sdp)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            side.tracks[track.kind] = track

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                log.warning("call %s side %s: connection %s", call, side_name, pc.connectionState)

        if len(sides) == 2:
            try:
                await self._connect(sides["a"], sides["b"])
            except Exception as err:  # noqa: BLE001 - both waiting sides get the error
                for s in sides.values():
                    if not s.answer.done():
                        s.answer.set_exception(err)
        try:
            answer = await asyncio.wait_for(asyncio.shield(side.answer), self.pair_timeout)
        except Exception as err:  # noqa: BLE001 - reported to the client
            return web.json_response({"error": repr(err)}, status=500)
        return web.json_response({"sdp": answer})

    async def _connect(self, a: Side, b: Side) -> None:
        for side in (a, b):
            await side.pc.setRemoteDescription(RTCSessionDescription(side.offer, "offer"))
        for src, dst in ((a, b), (b, a)):
            for kind in ("audio", "video"):
                track = src.tracks.get(kind)
                if track is None:
                    raise RuntimeError(f"an offer without {kind}")
                # Reuses dst's transceiver of that kind (created by its offer): sendrecv.
                dst.pc.addTrack(self.relay.subscribe(track))
        for side in (a, b):
            await side.pc.setLocalDescription(await side.pc.createAnswer())
            side.answer.set_result(side.pc.localDescription.sdp)

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        self.pcs.clear()


async def serve(args: argparse.Namespace) -> None:
    relay = NaiveRelay(args.pair_timeout)
    app = web.Application()
    app.router.add_post("/offer", relay.offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_PREFIX} http://{args.host}:{args.port}", flush=True)
    await stop.wait()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await relay.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Naive aiortc relay (bench only).")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--video-bitrate", type=int, default=1_000_000)
    parser.add_argument("--pair-timeout", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="naive-relay: %(levelname)s %(message)s"
    )
    aiortc.codecs.vpx.DEFAULT_BITRATE = args.video_bitrate
    _carry_audio_pts()
    if uvloop is not None:
        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
