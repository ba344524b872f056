#!/usr/bin/env python3
"""Load peers for bench/relay.py: whole 2-party calls in one process, counting RTP, never decoding.

    python bench/relay_peer.py --backend ours|naive|janus --url URL --clips FILE --worker 0

Started by `bench/relay.py` (not meant to be run by hand), inside the bench's peer network
namespace. The process hosts one or more complete calls, both sides of each (called
"kiosk" and "expert" for every backend). Both sides publish a pre-encoded 640x480 VP8 clip
and an Opus tone (no encoding here) and receive the other side's media through the server,
counting packets without decoding. Both sides of a call live in this process, so send and
arrival times come from one clock (`time.monotonic()`).

The backend only changes signaling:
- ours:  the project's WebSocket API (kiosk device token, expert session token, launch,
         ring, accept, `media.join`; the server's later offers are answered);
- naive: bench/naive_relay.py, one sendrecv peer connection per side, offer by HTTP POST;
- janus: Janus videoroom over its HTTP API (bench/janus_client.py), a publisher peer
         connection and a subscriber peer connection per side.
Every peer connection uses `iceServers=[]`; aioice gathers the host addresses of the
namespace (the veth address). `--loopback-only` restricts them to 127.0.0.1 instead.

Protocol: one JSON object per line. The parent writes commands on stdin:
    {"cmd": "setup", "call": i, ...backend fields}
    {"cmd": "fetch", "url": ...}          (an HTTP GET from this namespace, e.g. /metrics)
    {"cmd": "report", "t0": monotonic, "t1": monotonic}
    {"cmd": "hangup", "call": i}           (ours: the kiosk sends `call.leave`)
    {"cmd": "stop"}
and the worker answers each on stdout (`hello` first, then `ready`, `fetched`, `report`,
`hungup`, `stopped`). Diagnostics go to stderr. For ours, a setup's `consent_evidence`
(default true) is passed to `call.launch`: true records the call, false needs a server
with kiosk_without_consent=unrecorded.

Measuring points:
- publisher: the client DTLS transport's `_send_rtp(data)` is wrapped; the plaintext RTP
  header (sequence, timestamp, marker, SSRC) is read before it is protected and sent.
- subscriber: each receiver's RTP goes to `media.hooks.intercept_rtp` (set on the `track`
  event, before any packet), which bypasses aiortc's jitter buffer and decoder. The arrival
  time is taken there, after the client's own unprotect and parse.
- matching: a subscriber's RTP timestamps are the publisher's plus a constant per stream
  (0 for ours; Janus rebases each subscriber stream; the naive relay's sender adds a random
  origin). The publisher's timestamps carry a fingerprint (each frame's timestamp is moved
  by a pseudo-random 0-89 ticks at 90 kHz, 0-47 samples at 48 kHz: under 1 ms), so the
  offset of a received stream is found by voting (see `learn_offset`) without any
  assumption on latency. Packets are then matched by timestamp.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import functools
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

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from janus_client import JanusError, JanusSession

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
BACKENDS = ("ours", "naive", "janus")
KINDS = ("audio", "video")
# Timestamp fingerprint: per-frame deviation from the nominal step, in clock ticks.
FINGERPRINT_TICKS = {"video": 90, "audio": 48}  # < 1 ms at 90 kHz and 48 kHz
OFFSET_MAX_LAG_S = 2.0  # a received frame is matched to frames sent up to 2 s before it
OFFSET_SAMPLE = 400  # received frames used for the vote
OFFSET_TOLERANCE_RANGE = (-1, 0, 1)  # ticks
OFFSET_TOLERANCE_ORDER = (0, -1, 1)
JANUS_FEED_RETRY_S = 10.0  # Janus answers 428 "No such feed" until the publisher is up


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


# --- the published tracks: the clip, with a timestamp fingerprint ----------------------------


_FINGERPRINT_RNG = random.Random(20262)
_FINGERPRINTS = tuple(_FINGERPRINT_RNG.randrange(1 << 20) for _ in range(4096))


def fingerprint(kind: str, index: int) -> int:
    """Deviation of frame `index`'s RTP timestamp from the nominal step (seeded random table).

    Random rather than a formula: with a linear hash, the frames shifted by k would
    differ by a nearly constant amount and a wrong alignment would collect votes.
    """
    return _FINGERPRINTS[index % len(_FINGERPRINTS)] % FINGERPRINT_TICKS[kind]


class StampedVideoTrack(ClipVideoTrack):
    async def recv(self) -> av.Packet:
        packet = await super().recv()
        packet.pts += fingerprint("video", self.sent - 1)
        return packet


class StampedAudioTrack(ClipAudioTrack):
    async def recv(self) -> av.Packet:
        packet = await super().recv()
        packet.pts += fingerprint("audio", self.sent - 1)
        return packet


# --- what one side sends and receives ------------------------------------------------------


@dataclass
class SentLog:
    """One published track, by RTP timestamp: [first send, marker send, packets, bytes]."""

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
    """One received kind, by RTP timestamp: [first arrival, marker arrival, packets, bytes]."""

    frames: dict[int, list[Any]] = field(default_factory=dict)
    seqs: dict[int, set[int]] = field(default_factory=dict)  # by SSRC
    duplicates: int = 0
    packets: int = 0
    payload_types: set[int] = field(default_factory=set)
    first: asyncio.Event = field(default_factory=asyncio.Event)  # a marker packet arrived

    def add(self, now: float, ssrc: int, seq: int, ts: int, marker: bool, size: int) -> None:
        seen = self.seqs.setdefault(ssrc, set())
        if seq in seen:
            self.duplicates += 1
            return
        seen.add(seq)
        self.packets += 1
        entry = self.frames.get(ts)
        if entry is None:
            entry = self.frames[ts] = [now, None, 0, 0]
        entry[2] += 1
        entry[3] += size
        if marker and entry[1] is None:
            entry[1] = now
            if not self.first.is_set():
                self.first.set()


class LoadPeer:
    """A call participant that publishes pre-encoded clips and counts what it receives.

    Key-frame requests switch the clip to a key-frame branch; the RTP of every remote track
    goes to a counter from the first packet on (no jitter buffer, no decoder). Subclasses
    do the signaling of one backend; they create peer connections with `new_pc()`, add
    the published tracks with `add_tracks()` and call `published()` once the answer is
    applied.
    """

    def __init__(self, video_clip: clips.VideoClip, audio_clip: clips.AudioClip) -> None:
        self.video = StampedVideoTrack(video_clip)
        self.audio = StampedAudioTrack(audio_clip)
        self.pcs: list[RTCPeerConnection] = []
        self.sent = {"audio": SentLog(), "video": SentLog()}
        self.received = {"audio": RecvLog(), "video": RecvLog()}
        self.kind_of_ssrc: dict[int, str] = {}
        self.offers_answered = 0
        self.errors: list[str] = []
        self.intercepted = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wrapped: set[int] = set()

    def new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", functools.partial(self._on_track, pc))
        self.pcs.append(pc)
        return pc

    def add_tracks(
        self, pc: RTCPeerConnection, direction: str
    ) -> tuple[RTCRtpTransceiver, RTCRtpTransceiver]:
        audio = pc.addTransceiver(self.audio, direction=direction)
        video = pc.addTransceiver(self.video, direction=direction)
        video.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        )
        hooks.on_keyframe_request(video.sender, self.video.request_keyframe)
        return audio, video

    def published(self, audio: RTCRtpTransceiver, video: RTCRtpTransceiver) -> None:
        # Transports are final once the answer (with BUNDLE) is applied; RTP starts only
        # after ICE and DTLS connect, so no packet is sent before the wrap is in place.
        self.kind_of_ssrc = {audio.sender._ssrc: "audio", video.sender._ssrc: "video"}
        for sender in (audio.sender, video.sender):
            self._wrap_transport(sender.transport)

    @property
    def states(self) -> list[str]:
        return [pc.connectionState for pc in self.pcs]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(repr(task.exception()))

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

    def _on_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
        log_ = self.received[track.kind]
        monotonic = time.monotonic

        def count(packet: Any, arrival_ms: int) -> None:
            log_.add(
                monotonic(),
                packet.ssrc,
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                12 + len(packet.payload),
            )

        hooks.intercept_rtp(transceiver.receiver, count)
        self.intercepted += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.video.stop()
        self.audio.stop()
        for pc in self.pcs:
            await pc.close()


class OursPeer(LoadPeer):
    """Our server: first offer by `media.join`, then answers the server's offers."""

    def __init__(
        self,
        client: SignalingClient,
        call_id: str,
        video_clip: clips.VideoClip,
        audio_clip: clips.AudioClip,
    ) -> None:
        super().__init__(video_clip, audio_clip)
        self.client = client
        self.call_id = call_id
        self.pc = self.new_pc()
        self.participant_id: str | None = None
        self._negotiating = asyncio.Lock()
        client.on("media.offer", self._on_offer)

    async def start(self) -> dict[str, Any]:
        audio, video = self.add_tracks(self.pc, "sendonly")
        async with self._negotiating:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            result = await self.client.request(
                "media.join", call_id=self.call_id, sdp=self.pc.localDescription.sdp, timeout=15
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        self.participant_id = result["participant_id"]
        self.published(audio, video)
        return result

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
                "media.answer",
                call_id=self.call_id,
                sdp=self.pc.localDescription.sdp,
                offer_id=payload["offer_id"],
                timeout=15,
            )
            self.offers_answered += 1


class NaivePeer(LoadPeer):
    """The naive relay: one sendrecv peer connection, offer by POST, answer in the reply."""

    async def start(self, http: aiohttp.ClientSession, url: str, call: str, side: str) -> None:
        pc = self.new_pc()
        audio, video = self.add_tracks(pc, "sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(
            f"{url}/offer",
            json={"call": call, "side": side, "sdp": pc.localDescription.sdp},
            timeout=aiohttp.ClientTimeout(total=40),
        ) as resp:
            body = await resp.json()
        if "sdp" not in body:
            raise RuntimeError(f"naive relay refused the offer: {body}")
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        self.published(audio, video)


class JanusPeer(LoadPeer):
    """Janus videoroom: a publisher handle and connection, a subscriber handle and connection."""

    def __init__(
        self, session: JanusSession, video_clip: clips.VideoClip, audio_clip: clips.AudioClip
    ) -> None:
        super().__init__(video_clip, audio_clip)
        self.session = session
        self.feed_id: int | None = None
        self.pub: Any = None
        self.sub: Any = None
        self.join_retries = 0

    async def publish(self, room: int, display: str) -> None:
        self.pub = await self.session.attach()
        data, _ = await self.pub.message(
            {"request": "join", "ptype": "publisher", "room": room, "display": display}
        )
        self.feed_id = int(data["id"])
        pc = self.new_pc()
        audio, video = self.add_tracks(pc, "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        _, jsep = await self.pub.message(
            {"request": "configure", "audio": True, "video": True},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False},
        )
        if not jsep or jsep.get("type") != "answer":
            raise RuntimeError(f"Janus gave no answer to the publisher offer ({jsep})")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        self.published(audio, video)

    async def subscribe(self, room: int, feed: int) -> None:
        self.sub = await self.session.attach()
        deadline = time.monotonic() + JANUS_FEED_RETRY_S
        while True:
            try:
                _, jsep = await self.sub.message(
                    {"request": "join", "ptype": "subscriber", "room": room,
                     "streams": [{"feed": feed}]}
                )  # fmt: skip
                break
            except JanusError as err:
                if err.code != 428 or time.monotonic() > deadline:
                    raise
                self.join_retries += 1
                await asyncio.sleep(0.2)
        if not jsep or jsep.get("type") != "offer":
            raise RuntimeError(f"Janus gave no offer to the subscriber ({jsep})")
        pc = self.new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.sub.message(
            {"request": "start", "room": room},
            jsep={"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False},
        )


# --- one call, both sides ----------------------------------------------------------------------


@dataclass
class Call:
    index: int
    call_id: str | None = None
    kiosk_peer: LoadPeer | None = None
    expert_peer: LoadPeer | None = None
    clients: list[SignalingClient] = field(default_factory=list)
    janus: list[JanusSession] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def peers(self) -> list[LoadPeer]:
        return [p for p in (self.kiosk_peer, self.expert_peer) if p is not None]

    async def wait_media(self) -> None:
        for peer in self.peers():
            for kind in KINDS:
                await peer.received[kind].first.wait()

    async def close(self) -> None:
        for peer in self.peers():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await peer.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await client.close()
        for session in self.janus:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await session.close()
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.close()


async def setup_ours(
    call: Call, url: str, msg: dict[str, Any], media_clips: dict[str, Any], timeout: float
) -> None:
    """Connect both sides, launch, ring, accept, join media, wait for media both ways."""
    t = call.timings
    mark = time.monotonic
    start = mark()
    async with asyncio.timeout(timeout):
        kiosk = await SignalingClient.connect(url, device_token=msg["device_token"])
        call.clients.append(kiosk)
        expert = await SignalingClient.connect(url, session_token=msg["expert_token"])
        call.clients.append(expert)
        await expert.request("presence.set", availability="available", timeout=10)
        t["connect"] = mark() - start
        # With consent the server records the call; without it (relay only) the server must
        # run with kiosk_without_consent=unrecorded, or it refuses the launch.
        launched = await kiosk.request(
            "call.launch",
            consent_evidence=bool(msg.get("consent_evidence", True)),
            dispute_type="family",
            timeout=10,
        )
        call.call_id = call_id = launched["call"]["id"]
        ring = await expert.next_event(
            "call.ring", where=lambda p: p.get("call_id") == call_id, timeout=15
        )
        t["ring"] = mark() - start
        await expert.request(
            "call.accept", invitation_id=ring["payload"]["invitation_id"], timeout=10
        )
        t["active"] = mark() - start
        video = media_clips["video"]
        kiosk_peer = OursPeer(kiosk, call_id, video, media_clips["audio"][KIOSK_TONE])
        call.kiosk_peer = kiosk_peer
        expert_peer = OursPeer(expert, call_id, video, media_clips["audio"][EXPERT_TONE])
        call.expert_peer = expert_peer
        await kiosk_peer.start()
        await expert_peer.start()
        t["joined"] = mark() - start
        await call.wait_media()
        t["media"] = mark() - start


async def setup_naive(
    call: Call, url: str, msg: dict[str, Any], media_clips: dict[str, Any], timeout: float
) -> None:
    """Both sides offer at once; the relay answers when it has both; wait for media."""
    t = call.timings
    mark = time.monotonic
    start = mark()
    async with asyncio.timeout(timeout):
        call.http = aiohttp.ClientSession()
        video = media_clips["video"]
        kiosk = call.kiosk_peer = NaivePeer(video, media_clips["audio"][KIOSK_TONE])
        expert = call.expert_peer = NaivePeer(video, media_clips["audio"][EXPERT_TONE])
        key = str(msg["key"])
        call.call_id = key
        await asyncio.gather(
            kiosk.start(call.http, url, key, "a"), expert.start(call.http, url, key, "b")
        )
        t["answered"] = mark() - start
        await call.wait_media()
        t["media"] = mark() - start


async def setup_janus(
    call: Call, url: str, msg: dict[str, Any], media_clips: dict[str, Any], timeout: float
) -> None:
    """A room per call; both sides publish, then subscribe to each other; wait for media."""
    t = call.timings
    mark = time.monotonic
    start = mark()
    room = int(msg["room"])
    call.call_id = f"room {room}"
    async with asyncio.timeout(timeout):
        call.janus = [JanusSession(url), JanusSession(url)]
        await asyncio.gather(*(s.create() for s in call.janus))
        video = media_clips["video"]
        kiosk = JanusPeer(call.janus[0], video, media_clips["audio"][KIOSK_TONE])
        expert = JanusPeer(call.janus[1], video, media_clips["audio"][EXPERT_TONE])
        call.kiosk_peer, call.expert_peer = kiosk, expert
        t["connect"] = mark() - start
        admin = await call.janus[0].attach()
        created = await admin.request(
            {"request": "create", "room": room, "publishers": 2, "videocodec": "vp8",
             "audiocodec": "opus", "bitrate": 4_000_000, "is_private": True,
             "permanent": False}
        )  # fmt: skip
        if created.get("videoroom") != "created":
            raise RuntimeError(f"room not created: {created}")
        await admin.detach()
        t["room"] = mark() - start
        await asyncio.gather(kiosk.publish(room, "kiosk"), expert.publish(room, "expert"))
        t["published"] = mark() - start
        await asyncio.gather(kiosk.pub.webrtcup.wait(), expert.pub.webrtcup.wait())
        t["webrtcup"] = mark() - start
        assert kiosk.feed_id is not None and expert.feed_id is not None
        await asyncio.gather(
            kiosk.subscribe(room, expert.feed_id), expert.subscribe(room, kiosk.feed_id)
        )
        t["subscribed"] = mark() - start
        await call.wait_media()
        t["media"] = mark() - start


SETUPS = {"ours": setup_ours, "naive": setup_naive, "janus": setup_janus}


# --- figures for a window ------------------------------------------------------------------------


def learn_offset(sent_log: SentLog, recv_log: RecvLog) -> tuple[int | None, float, float, int]:
    """The constant (received - sent) RTP timestamp offset of one stream, by vote.

    For a sample of received frames, every publisher frame sent in the OFFSET_MAX_LAG_S
    before the frame's arrival votes for (received ts - sent ts) mod 2^32. The true offset
    gets a vote from every sampled frame (within +-OFFSET_TOLERANCE ticks: the naive
    relay's decode -> encode path rounds some timestamps by one tick); thanks to the
    fingerprint, a wrong alignment by k frames spreads its votes over the fingerprint
    range. Returns (offset, share of sampled frames that voted for it, the same share for
    the best other offset, sample size).
    """
    sends = sorted((entry[0], ts) for ts, entry in sent_log.frames.items())
    times = [s[0] for s in sends]
    received = sorted((entry[0], ts) for ts, entry in recv_log.frames.items())
    if not sends or not received:
        return None, 0.0, 0.0, 0
    step = max(1, len(received) // OFFSET_SAMPLE)
    votes: collections.Counter[int] = collections.Counter()
    sampled = 0
    for arrival, rts in received[::step]:
        lo = bisect.bisect_left(times, arrival - OFFSET_MAX_LAG_S)
        hi = bisect.bisect_right(times, arrival)
        if lo == hi:
            continue
        sampled += 1
        for i in range(lo, hi):
            votes[(rts - sends[i][1]) & 0xFFFFFFFF] += 1
    if not votes:
        return None, 0.0, 0.0, 0

    def near(offset: int) -> int:
        return sum(votes.get((offset + d) & 0xFFFFFFFF, 0) for d in OFFSET_TOLERANCE_RANGE)

    offset = max(votes, key=near)
    runner_up = max((n for o, n in votes.items() if (o - offset + 1) & 0xFFFFFFFF > 2), default=0)
    return offset, min(1.0, near(offset) / sampled), runner_up / sampled, sampled


def lookup(recv_log: RecvLog, ts: int, offset: int) -> list[Any] | None:
    """The received frame of publisher timestamp `ts` (offset +- the tolerance)."""
    frames = recv_log.frames
    for d in OFFSET_TOLERANCE_ORDER:
        got = frames.get((ts + offset + d) & 0xFFFFFFFF)
        if got is not None:
            return got
    return None


def direction_figures(
    publisher: LoadPeer, subscriber: LoadPeer, kind: str, t0: float, t1: float
) -> dict[str, Any]:
    """Frames the publisher started sending in [t0, t1): packets sent/received and latencies."""
    sent_log = publisher.sent[kind]
    recv_log = subscriber.received[kind]
    offset, share, runner_up, sampled = learn_offset(sent_log, recv_log)
    sent = received = frames = frames_received = incomplete = octets = 0
    latencies: list[float] = []
    for ts, (first_send, marker_send, count, size) in sent_log.frames.items():
        if not t0 <= first_send < t1:
            continue
        frames += 1
        sent += count
        octets += size
        got = None if offset is None else lookup(recv_log, ts, offset)
        if got is None:
            continue
        frames_received += 1
        received += got[2]
        if kind == "video":
            if marker_send is not None and got[1] is not None:
                latencies.append((got[1] - marker_send) * 1000)
            else:
                incomplete += 1
        else:
            latencies.append((got[0] - first_send) * 1000)
    # What the subscriber received in the window (frames first seen in [t0, t1)).
    window_packets = window_octets = 0
    for first_arrival, _, count, size in recv_log.frames.values():
        if t0 <= first_arrival < t1:
            window_packets += count
            window_octets += size
    return {
        "frames": frames,
        "frames_received": frames_received,
        "sent": sent,
        "received": received,
        "octets": octets,
        "incomplete": incomplete,
        "repeats": sent_log.repeats,
        "duplicates": recv_log.duplicates,
        "offset": offset,
        "offset_share": round(share, 4),
        "offset_runner_up": round(runner_up, 4),
        "offset_sample": sampled,
        "window_packets": window_packets,
        "window_octets": window_octets,
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
            await SETUPS[self.args.backend](
                call, self.args.url, msg, self.clips, self.args.setup_timeout
            )
        except Exception as err:  # noqa: BLE001 - reported to the parent
            detail = repr(err) if not isinstance(err, TimeoutError) else "timed out"
            done = list(call.timings)
            detail += f" (steps done: {', '.join(done) or 'none'}"
            waiting = [
                f"{side} has no {kind}"
                for side, peer in (("kiosk", call.kiosk_peer), ("expert", call.expert_peer))
                if peer is not None and peer.pcs
                for kind in KINDS
                if not peer.received[kind].first.is_set()
            ]
            if waiting:
                detail += f"; {', '.join(waiting)}"
            peer_errors = [e for p in call.peers() for e in p.errors]
            peer_errors += [e for s in call.janus for e in s.errors]
            if peer_errors:
                detail += f"; errors: {'; '.join(peer_errors[:3])}"
            detail += ")"
            self.write({"type": "ready", "call": msg["call"], "ok": False, "error": detail})
            log.warning("call %s setup failed: %s", msg["call"], traceback.format_exc())
            # Leave nothing behind (an available expert could take the next call's ring).
            await call.close()
            return
        self.calls.append(call)
        extra = {}
        if self.args.backend == "janus":
            extra["join_retries"] = sum(getattr(p, "join_retries", 0) for p in call.peers())
        self.write(
            {
                "type": "ready",
                "call": call.index,
                "ok": True,
                "call_id": call.call_id,
                "timings": call.timings,
                **extra,
            }
        )

    async def fetch(self, url: str) -> None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as resp:
                    text = await resp.text()
            self.write({"type": "fetched", "ok": True, "text": text})
        except Exception as err:  # noqa: BLE001 - reported to the parent
            self.write({"type": "fetched", "ok": False, "error": repr(err)})

    async def hangup(self, index: int) -> None:
        """ours: the kiosk (the caller) hangs up with `call.leave`, which ends the call.

        Replies with the monotonic times just before the request was sent and when the
        server's reply arrived (the parent's clock is the same CLOCK_MONOTONIC).
        """
        call = next((c for c in self.calls if c.index == index), None)
        sent = time.monotonic()
        error = None
        try:
            if call is None or not call.clients or call.call_id is None:
                raise RuntimeError(f"no call {index} with a signaling client here")
            await call.clients[0].request("call.leave", call_id=call.call_id, timeout=10)
        except Exception as err:  # noqa: BLE001 - reported to the parent
            error = repr(err)
        self.write(
            {
                "type": "hungup",
                "call": index,
                "ok": error is None,
                "error": error,
                "t_sent": sent,
                "t_reply": time.monotonic(),
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
                figures[name] = {kind: direction_figures(pub, sub, kind, t0, t1) for kind in KINDS}
            errors = [e for p in call.peers() for e in p.errors]
            errors += [e for s in call.janus for e in s.errors]
            states = [s for p in call.peers() for s in p.states]
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
                elif cmd == "fetch":
                    await self.fetch(str(msg["url"]))
                elif cmd == "report":
                    self.write(self.report(float(msg["t0"]), float(msg["t1"])))
                elif cmd == "hangup":
                    await self.hangup(int(msg["call"]))
                elif cmd == "stop":
                    break
        finally:
            self._probe.cancel()
            await asyncio.gather(*(c.close() for c in self.calls), return_exceptions=True)
            self.write({"type": "stopped"})


def main() -> None:
    parser = argparse.ArgumentParser(description="Load peers for bench/relay.py.")
    parser.add_argument("--backend", choices=BACKENDS, default="ours")
    parser.add_argument("--url", required=True, help="ours: ws URL; naive/janus: base URL")
    parser.add_argument("--clips", required=True, type=Path)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--setup-timeout", type=float, default=60.0)
    parser.add_argument(
        "--loopback-only", action="store_true", help="offer 127.0.0.1 only (no namespaces)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"worker {args.worker}: %(levelname)s %(name)s: %(message)s",
    )
    if args.loopback_only:
        loopback_only()
    worker = Worker(args)
    if uvloop is not None:
        uvloop.run(worker.run())
    else:
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()
