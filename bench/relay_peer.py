#!/usr/bin/env python3
"""Load peers for bench/relay.py: whole 2-party calls in one process, counting RTP, never decoding.

    python bench/relay_peer.py --url ws://127.0.0.1:PORT/ws --clips FILE --worker 0

Started by `bench/relay.py` (not meant to be run by hand). The process hosts one or more
complete calls, both sides of each: a kiosk (device token) and an expert (session token).
Both sides publish a pre-encoded 640x480 VP8 clip and an Opus tone (no encoding here) and
receive the other side's media through the server, counting packets without decoding.
Both sides of a call live in this process, so send and arrival times come from one clock
(`time.monotonic()`, CLOCK_MONOTONIC, which is also the same for every process on Linux).

Protocol: one JSON object per line. The parent writes commands on stdin:
    {"cmd": "setup", "call": i, "device_token": ..., "expert_token": ...}
    {"cmd": "report", "t0": monotonic, "t1": monotonic}
    {"cmd": "stop"}
and the worker answers each on stdout (`hello` first, then `ready`, `report`, `stopped`).
Diagnostics go to stderr.

Measuring points:
- publisher: the client DTLS transport's `_send_rtp(data)` is wrapped; the plaintext RTP
  header (sequence, timestamp, marker, SSRC) is read before it is protected and sent.
- subscriber: each receiver's RTP goes to `media.hooks.intercept_rtp` (set on the `track`
  event, before any packet), which bypasses aiortc's jitter buffer and decoder. The arrival
  time is taken there, after the client's own unprotect and parse.
The relay passes RTP timestamps through unchanged for a fresh subscriber stream, so a
subscriber's packet is matched to the publisher's frame by its RTP timestamp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pickle
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from media import clips, hooks
from signaling.client import SignalingClient
from signaling.peer import ClipAudioTrack, ClipVideoTrack, loopback_only

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger("relay_peer")

KIOSK_TONE = 440
EXPERT_TONE = 880
LAG_PROBE_S = 0.02


# --- the load clip ----------------------------------------------------------------------------


def _noise_pictures(
    width: int, height: int, frames: int, amplitude: int, seed: int
) -> list[av.VideoFrame]:
    """Mid-grey pictures with fresh low-amplitude noise each frame (a fixed seed).

    A solid-colour clip (media.clips.video_clip) compresses to ~25 kbit/s whatever the
    bitrate asked; fresh noise keeps libvpx's rate control at its target.
    """
    rnd = random.Random(seed)
    luma_table = bytes(128 - amplitude // 2 + (b * amplitude) // 256 for b in range(256))
    chroma_table = bytes(128 - amplitude // 4 + (b * (amplitude // 2)) // 256 for b in range(256))
    pictures = []
    for _ in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        planes = (
            rnd.randbytes(width * height).translate(luma_table),
            rnd.randbytes(width * height // 4).translate(chroma_table),
            rnd.randbytes(width * height // 4).translate(chroma_table),
        )
        for plane, data in zip(frame.planes, planes, strict=True):
            if plane.line_size != plane.width:
                raise RuntimeError("padded video planes are not supported by the load clip")
            plane.update(data)
        pictures.append(frame)
    return pictures


def _encoder(width: int, height: int, fps: int, bitrate: int) -> Any:
    ctx = clips._encoder("vp8", width, height, fps, bitrate)  # one thread, deadline good
    options = dict(ctx.options)
    # Without a cap the first (key) frame of a noisy clip takes ~170 KB and rate control
    # then starves the next second; capped, key frames stay at a few times an inter frame.
    options["max-intra-rate"] = "300"
    ctx.options = options
    return ctx


def make_video_clip(
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    frames: int = 30,
    bitrate: int = 1_000_000,
    amplitude: int = 32,
    seed: int = 20261,
) -> clips.VideoClip:
    """A looping VP8 clip with a key-frame branch per frame, like media.clips.video_clip."""
    pictures = _noise_pictures(width, height, frames, amplitude, seed)
    branches = []
    for start in range(frames):
        ctx = _encoder(width, height, fps, bitrate)
        encoded = clips._encode_all(ctx, pictures[start:])
        if len(encoded) != frames - start:
            raise RuntimeError(f"vp8 encoder gave {len(encoded)} packets for {frames - start}")
        branches.append(tuple(encoded))
    return clips.VideoClip("vp8", width, height, fps, (128, 128, 128), tuple(branches))


def write_clips(path: Path, *, fps: int, frames: int) -> dict[str, Any]:
    """Encode the load clips once (in the parent) and pickle them for the workers."""
    video = make_video_clip(fps=fps, frames=frames)
    audio = {tone: clips.audio_clip(tone) for tone in (KIOSK_TONE, EXPERT_TONE)}
    with open(path, "wb") as out:
        pickle.dump({"video": video, "audio": audio}, out, protocol=pickle.HIGHEST_PROTOCOL)
    sizes = [len(f) for f in video.inter]
    keyframes = sum(1 for f in video.inter if not f[0] & 0x01)  # VP8 P bit clear: key frame
    audio_bytes = sum(len(p) for p in audio[KIOSK_TONE].packets)
    return {
        "sha256": video.sha256(),
        "video_kbps": sum(sizes) * 8 * fps / len(sizes) / 1000,
        "largest_frame": max(sizes),
        "keyframes": keyframes,
        "audio_kbps": audio_bytes * 8 / 1000,  # one second of packets
    }


# --- what one side sends and receives ------------------------------------------------------


@dataclass
class SentLog:
    """Packets of one published track, by RTP timestamp: [first send, marker send, packets]."""

    frames: dict[int, list[Any]] = field(default_factory=dict)
    seqs: set[int] = field(default_factory=set)
    repeats: int = 0  # same sequence number sent again (NACK retransmissions)
    octets: int = 0  # plaintext bytes (header + payload), all packets
    packets: int = 0

    def add(self, now: float, seq: int, ts: int, marker: bool, size: int) -> None:
        if seq in self.seqs:
            self.repeats += 1
            return
        self.seqs.add(seq)
        self.packets += 1
        self.octets += size
        entry = self.frames.get(ts)
        if entry is None:
            entry = self.frames[ts] = [now, None, 0, 0]
        entry[2] += 1
        entry[3] += size
        if marker:
            entry[1] = now


@dataclass
class RecvLog:
    """Packets of one received kind, by RTP timestamp: [first arrival, marker arrival, packets]."""

    frames: dict[int, list[Any]] = field(default_factory=dict)
    seqs: dict[int, set[int]] = field(default_factory=dict)  # by SSRC
    duplicates: int = 0
    packets: int = 0
    payload_types: set[int] = field(default_factory=set)
    first: asyncio.Event = field(default_factory=asyncio.Event)  # a marker packet arrived

    def add(self, now: float, ssrc: int, seq: int, ts: int, marker: bool) -> None:
        seen = self.seqs.setdefault(ssrc, set())
        if seq in seen:
            self.duplicates += 1
            return
        seen.add(seq)
        self.packets += 1
        entry = self.frames.get(ts)
        if entry is None:
            entry = self.frames[ts] = [now, None, 0]
        entry[2] += 1
        if marker and entry[1] is None:
            entry[1] = now
            if not self.first.is_set():
                self.first.set()


class LoadPeer:
    """A call participant that publishes pre-encoded clips and counts what it receives.

    Like signaling.peer.MediaPeer (first offer, then answers the server's offers; key-frame
    requests switch the clip to a key-frame branch), but its receivers never decode: the
    RTP of every remote track goes to a counter from the first packet on.
    """

    def __init__(
        self,
        client: SignalingClient,
        call_id: str,
        video_clip: clips.VideoClip,
        audio_clip: clips.AudioClip,
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.video = ClipVideoTrack(video_clip)
        self.audio = ClipAudioTrack(audio_clip)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.sent = {"audio": SentLog(), "video": SentLog()}
        self.received = {"audio": RecvLog(), "video": RecvLog()}
        self.kind_of_ssrc: dict[int, str] = {}
        self.participant_id: str | None = None
        self.offers_answered = 0
        self.errors: list[str] = []
        self.intercepted = 0
        self._negotiating = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wrapped: set[int] = set()
        self.pc.on("track", self._on_track)
        client.on("media.offer", self._on_offer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(repr(task.exception()))

    async def start(self) -> dict[str, Any]:
        audio = self.pc.addTransceiver(self.audio, direction="sendonly")
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        video.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        )
        hooks.on_keyframe_request(video.sender, self.video.request_keyframe)
        async with self._negotiating:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            result = await self.client.request(
                "media.join", call_id=self.call_id, sdp=self.pc.localDescription.sdp, timeout=15
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        self.participant_id = result["participant_id"]
        # Transports are final once the answer (with BUNDLE) is applied; RTP starts only
        # after ICE and DTLS connect, so no packet is sent before the wrap is in place.
        self.kind_of_ssrc = {audio.sender._ssrc: "audio", video.sender._ssrc: "video"}
        for sender in (audio.sender, video.sender):
            self._wrap_transport(sender.transport)
        return result

    def _wrap_transport(self, dtls: Any) -> None:
        if dtls is None or id(dtls) in self._wrapped:
            return
        self._wrapped.add(id(dtls))
        original = dtls._send_rtp
        kinds = self.kind_of_ssrc
        sent = self.sent
        monotonic = time.monotonic

        async def send_rtp(data: bytes) -> None:
            if len(data) >= 12 and not 192 <= data[1] <= 223:  # RTP, not RTCP
                kind = kinds.get(int.from_bytes(data[8:12], "big"))
                if kind is not None:
                    sent[kind].add(
                        monotonic(),
                        int.from_bytes(data[2:4], "big"),
                        int.from_bytes(data[4:8], "big"),
                        bool(data[1] & 0x80),
                        len(data),
                    )
            await original(data)

        dtls._send_rtp = send_rtp

    def _on_offer(self, frame: dict[str, Any]) -> None:
        payload = frame["payload"]
        if payload["call_id"] == self.call_id:
            self._spawn(self._answer(payload))

    async def _answer(self, payload: dict[str, Any]) -> None:
        async with self._negotiating:
            await self.pc.setRemoteDescription(RTCSessionDescription(payload["sdp"], "offer"))
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            await self.client.request(
                "media.answer", call_id=self.call_id, sdp=self.pc.localDescription.sdp, timeout=15
            )
            self.offers_answered += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        log_ = self.received[track.kind]
        monotonic = time.monotonic

        def count(packet: Any, arrival_ms: int) -> None:
            log_.add(
                monotonic(),
                packet.ssrc,
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
            )

        hooks.intercept_rtp(transceiver.receiver, count)
        self.intercepted += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.video.stop()
        self.audio.stop()
        await self.pc.close()


# --- one call, both sides ----------------------------------------------------------------------


@dataclass
class Call:
    index: int
    kiosk: SignalingClient | None = None
    expert: SignalingClient | None = None
    call_id: str | None = None
    kiosk_peer: LoadPeer | None = None
    expert_peer: LoadPeer | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def peers(self) -> list[LoadPeer]:
        return [p for p in (self.kiosk_peer, self.expert_peer) if p is not None]

    async def close(self) -> None:
        for peer in self.peers():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await peer.close()
        for client in (self.kiosk, self.expert):
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await client.close()


async def setup_call(
    call: Call,
    url: str,
    device_token: str,
    expert_token: str,
    media_clips: dict[str, Any],
    timeout: float,
) -> None:
    """Connect both sides, launch, ring, accept, join media, wait for media both ways."""
    t = call.timings
    mark = time.monotonic
    start = mark()
    async with asyncio.timeout(timeout):
        call.kiosk = await SignalingClient.connect(url, device_token=device_token)
        call.expert = await SignalingClient.connect(url, session_token=expert_token)
        await call.expert.request("presence.set", availability="available", timeout=10)
        t["connect"] = mark() - start
        launched = await call.kiosk.request("call.launch", dispute_type="family", timeout=10)
        call.call_id = call_id = launched["call"]["id"]
        ring = await call.expert.next_event(
            "call.ring", where=lambda p: p.get("call_id") == call_id, timeout=15
        )
        t["ring"] = mark() - start
        await call.expert.request(
            "call.accept", invitation_id=ring["payload"]["invitation_id"], timeout=10
        )
        t["active"] = mark() - start
        video = media_clips["video"]
        call.kiosk_peer = LoadPeer(call.kiosk, call_id, video, media_clips["audio"][KIOSK_TONE])
        call.expert_peer = LoadPeer(call.expert, call_id, video, media_clips["audio"][EXPERT_TONE])
        await call.kiosk_peer.start()
        await call.expert_peer.start()
        t["joined"] = mark() - start
        for peer in call.peers():
            for kind in ("audio", "video"):
                await peer.received[kind].first.wait()
        t["media"] = mark() - start


# --- figures for a window ------------------------------------------------------------------------


def direction_figures(
    publisher: LoadPeer, subscriber: LoadPeer, kind: str, t0: float, t1: float
) -> dict[str, Any]:
    """Frames the publisher started sending in [t0, t1): packets sent/received and latencies."""
    sent_log = publisher.sent[kind]
    recv_log = subscriber.received[kind]
    sent = received = frames = incomplete = octets = 0
    latencies: list[float] = []
    for ts, (first_send, marker_send, count, size) in sent_log.frames.items():
        if not t0 <= first_send < t1:
            continue
        frames += 1
        sent += count
        octets += size
        got = recv_log.frames.get(ts)
        if got is None:
            continue
        received += got[2]
        if kind == "video":
            if marker_send is not None and got[1] is not None:
                latencies.append((got[1] - marker_send) * 1000)
            else:
                incomplete += 1
        else:
            latencies.append((got[0] - first_send) * 1000)
    return {
        "frames": frames,
        "sent": sent,
        "received": received,
        "octets": octets,
        "incomplete": incomplete,
        "repeats": sent_log.repeats,
        "duplicates": recv_log.duplicates,
        "latencies_ms": [round(x, 3) for x in latencies],
    }


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        with open(args.clips, "rb") as src:
            self.clips: dict[str, Any] = pickle.load(src)
        self.calls: list[Call] = []
        self.lags: list[tuple[float, float]] = []  # (time, event-loop lag in s)
        self._probe: asyncio.Task[None] | None = None

    def write(self, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def probe(self) -> None:
        """Event-loop lag: how late a 20 ms sleep wakes up (load peers' own delay)."""
        # time.monotonic(), not loop.time(): uvloop's clock has millisecond resolution.
        while True:
            due = time.monotonic() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            now = time.monotonic()
            self.lags.append((now, max(0.0, now - due)))

    async def setup(self, msg: dict[str, Any]) -> None:
        call = Call(int(msg["call"]))
        try:
            await setup_call(
                call,
                self.args.url,
                msg["device_token"],
                msg["expert_token"],
                self.clips,
                self.args.setup_timeout,
            )
        except Exception as err:  # noqa: BLE001 - reported to the parent
            detail = repr(err) if not isinstance(err, TimeoutError) else "timed out"
            stages = ("connect", "ring", "active", "joined", "media")
            done = [s for s in stages if s in call.timings]
            detail += f" (steps done: {', '.join(done) or 'none'}"
            if "joined" in done:
                waiting = [
                    f"{side} has no {kind}"
                    for side, peer in (("kiosk", call.kiosk_peer), ("expert", call.expert_peer))
                    if peer is not None
                    for kind in ("audio", "video")
                    if not peer.received[kind].first.is_set()
                ]
                detail += f"; {', '.join(waiting)}"
            peer_errors = [e for p in call.peers() for e in p.errors]
            if peer_errors:
                detail += f"; peer errors: {'; '.join(peer_errors[:3])}"
            detail += ")"
            self.write({"type": "ready", "call": msg["call"], "ok": False, "error": detail})
            log.warning("call %s setup failed: %s", msg["call"], traceback.format_exc())
            # Leave nothing behind (an available expert could take the next call's ring).
            await call.close()
            return
        self.calls.append(call)
        self.write(
            {
                "type": "ready",
                "call": call.index,
                "ok": True,
                "call_id": call.call_id,
                "timings": call.timings,
            }
        )

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        calls = []
        for call in self.calls:
            assert call.kiosk_peer is not None and call.expert_peer is not None
            figures = {}
            for name, pub, sub in (
                ("kiosk->expert", call.kiosk_peer, call.expert_peer),
                ("expert->kiosk", call.expert_peer, call.kiosk_peer),
            ):
                figures[name] = {
                    kind: direction_figures(pub, sub, kind, t0, t1) for kind in ("audio", "video")
                }
            errors = [e for p in call.peers() for e in p.errors]
            states = [p.pc.connectionState for p in call.peers()]
            calls.append(
                {
                    "call": call.index,
                    "call_id": call.call_id,
                    "directions": figures,
                    "errors": errors,
                    "states": states,
                    "offers_answered": [p.offers_answered for p in call.peers()],
                    "tracks_intercepted": [p.intercepted for p in call.peers()],
                }
            )
        lags = sorted(lag for when, lag in self.lags if t0 <= when < t1)

        def rank(q: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(len(lags) * q))] * 1000, 2) if lags else None

        return {
            "type": "report",
            "pid": os.getpid(),
            "calls": calls,
            "loop_lag_ms": {"p50": rank(0.5), "p99": rank(0.99), "max": rank(1.0)},
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self._probe = asyncio.create_task(self.probe())
        self.write({"type": "hello", "pid": os.getpid()})
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                cmd = msg.get("cmd")
                if cmd == "setup":
                    await self.setup(msg)
                elif cmd == "report":
                    self.write(self.report(float(msg["t0"]), float(msg["t1"])))
                elif cmd == "stop":
                    break
        finally:
            self._probe.cancel()
            await asyncio.gather(*(c.close() for c in self.calls), return_exceptions=True)
            self.write({"type": "stopped"})


def main() -> None:
    parser = argparse.ArgumentParser(description="Load peers for bench/relay.py.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--clips", required=True, type=Path)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--setup-timeout", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"worker {args.worker}: %(levelname)s %(name)s: %(message)s",
    )
    loopback_only()
    worker = Worker(args)
    if uvloop is not None:
        uvloop.run(worker.run())
    else:
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()
