"""An aiortc call participant for tests and load: loops pre-encoded media, checks what it gets.

    peer = MediaPeer(client, call_id, colour=(255, 0, 0), tone=440)
    await peer.start()            # first offer, answer, then answers the server's offers
    await peer.wait_for_video(other_participant_id, frames=5)

It sends a clip (a solid colour with a painted frame counter) and a tone without
encoding anything, answers key-frame requests with the next frame's key version,
and for every remote track records the colour, the frame counters and the
dominant tone it decodes. Once a track has been checked it stops decoding and
only counts packets, so many peers fit on a small machine.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import logging
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media import clips, hooks
from signaling.client import SignalingClient

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, clips.VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, clips.AUDIO_RATE)


class ClipVideoTrack(MediaStreamTrack):
    """Loops a pre-encoded clip in real time; a key-frame request switches to key versions."""

    kind = "video"

    def __init__(self, clip: clips.VideoClip) -> None:
        super().__init__()
        self.clip = clip
        self.index = 0  # frame within the clip
        self.branch = 0  # which encoding of the clip we are in (see media.clips)
        self.sent = 0
        self.keyframe_wanted = False
        self.keyframe_requests = 0
        self.keyframe_requested = asyncio.Event()
        self.keyframes_sent: list[int] = []  # clip indices (= painted counters) sent as key frames
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.keyframe_wanted = True
        self.keyframe_requested.set()

    async def recv(self) -> av.Packet:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.sent / self.clip.fps
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # media pacing: one frame per 1/fps
        if self.index == len(self.clip.branches):
            self.index = self.branch = 0  # loop: frame 0 of branch 0 is a key frame
        if self.keyframe_wanted:
            self.keyframe_wanted = False
            self.branch = self.index
        if self.branch == self.index:
            self.keyframes_sent.append(self.index)
        packet = av.Packet(self.clip.frame(self.branch, self.index))
        packet.pts = self.sent * self.clip.frame_ticks
        packet.time_base = VIDEO_TIME_BASE
        self.index += 1
        self.sent += 1
        return packet


class ClipAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, clip: clips.AudioClip) -> None:
        super().__init__()
        self.clip = clip
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.sent * clips.AUDIO_FRAME_SAMPLES / clips.AUDIO_RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.clip.packets[self.sent % len(self.clip.packets)])
        packet.pts = self.sent * clips.AUDIO_FRAME_SAMPLES
        packet.time_base = AUDIO_TIME_BASE
        self.sent += 1
        return packet


@dataclass
class RemoteTrack:
    """What this peer received on one section."""

    kind: str
    mid: str
    participant_id: str | None = None
    frames: int = 0
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    counters: list[int] = field(default_factory=list)
    first_frame_keyframe: bool | None = None
    decode_errors: int = 0
    samples: list[int] = field(default_factory=list)
    tone: int | None = None
    packets_after_check: int = 0
    checked: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)


class MediaPeer:
    def __init__(
        self,
        client: SignalingClient,
        call_id: str,
        *,
        colour: tuple[int, int, int] = (255, 0, 0),
        tone: int = 440,
        codec: str = "vp8",
        publish: bool = True,
        frames_to_check: int = 5,
        tones: tuple[int, ...] = (440, 660, 880, 1100, 1320, 1540),
        keep_decoding: bool = False,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.publish = publish
        self.frames_to_check = frames_to_check
        self.tones = tones
        self.keep_decoding = keep_decoding
        self.video = ClipVideoTrack(clips.video_clip(colour, codec=codec)) if publish else None
        self.audio = ClipAudioTrack(clips.audio_clip(tone)) if publish else None
        self.codec = codec
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers or []
        ]
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.remote: dict[str, RemoteTrack] = {}  # by mid
        self.track_map: dict[str, str] = {}  # mid -> participant id
        self.offers_answered = 0
        self.changed = asyncio.Event()  # a track arrived or got its participant
        self._negotiating = asyncio.Lock()
        self._last_offer_id = 0
        self.participant_id: str | None = None
        self.last_remote_sdp = ""  # as the server sent it (aiortc drops b= lines it parses)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connection_states: list[str] = []
        self.pc.on("track", self._on_track)
        self.pc.on(
            "connectionstatechange",
            lambda: self.connection_states.append(self.pc.connectionState),
        )
        client.on("media.offer", self._on_offer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> dict[str, Any]:
        if self.publish:
            assert self.video is not None and self.audio is not None
            self.pc.addTransceiver(self.audio, direction="sendonly")
            video = self.pc.addTransceiver(self.video, direction="sendonly")
            mime = {"vp8": "video/VP8", "h264": "video/H264"}[self.codec]
            video.setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime]
            )
            hooks.on_keyframe_request(video.sender, self.video.request_keyframe)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        async with self._negotiating:  # server offers wait until our answer is applied
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            result = await self.client.request(
                "media.join", call_id=self.call_id, sdp=self.pc.localDescription.sdp, timeout=15
            )
            self.last_remote_sdp = result["sdp"]
            await self.pc.setRemoteDescription(RTCSessionDescription(result["sdp"], "answer"))
        self.participant_id = result["participant_id"]
        return result

    def _on_offer(self, frame: dict[str, Any]) -> None:
        payload = frame["payload"]
        if payload["call_id"] == self.call_id:
            self._spawn(self._answer(payload))

    async def _answer(self, payload: dict[str, Any]) -> None:
        async with self._negotiating:
            if payload["offer_id"] <= self._last_offer_id:
                return  # a resent offer we already answered
            self._last_offer_id = payload["offer_id"]
            await self._apply_offer(payload)

    async def _apply_offer(self, payload: dict[str, Any]) -> None:
        for entry in payload.get("tracks", []):
            self.track_map[entry["mid"]] = entry["participant_id"]
            if entry["mid"] in self.remote:
                self.remote[entry["mid"]].participant_id = entry["participant_id"]
        self.changed.set()
        self.last_remote_sdp = payload["sdp"]
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
        self.changed.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        mid = transceiver.mid or ""
        remote = RemoteTrack(track.kind, mid, self.track_map.get(mid))
        self.remote[mid] = remote
        self.changed.set()
        self._spawn(self._consume(track, transceiver, remote))

    async def _consume(
        self, track: MediaStreamTrack, transceiver: Any, remote: RemoteTrack
    ) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame: Any = await track.recv()
                remote.frames += 1
                if track.kind == "video":
                    if remote.first_frame_keyframe is None:
                        remote.first_frame_keyframe = bool(getattr(frame, "key_frame", True))
                    remote.colours.append(clips.mean_colour(frame))
                    remote.counters.append(clips.read_counter(frame))
                    done = remote.frames >= self.frames_to_check
                else:
                    samples = array.array("h", bytes(frame.planes[0]))
                    channels = len(frame.layout.channels)
                    remote.samples.extend(samples[::channels])
                    done = len(remote.samples) >= clips.AUDIO_RATE // 2
                    if done and remote.tone is None:
                        remote.tone = clips.dominant_frequency(
                            remote.samples[-clips.AUDIO_RATE // 4 :], clips.AUDIO_RATE, self.tones
                        )
                remote.progress.set()
                if done and not remote.checked.is_set():
                    remote.checked.set()
                    if not self.keep_decoding:
                        self._stop_decoding(transceiver, remote)
                        return

    def _stop_decoding(self, transceiver: Any, remote: RemoteTrack) -> None:
        def count(packet: Any, arrival_ms: int) -> None:
            remote.packets_after_check += 1
            remote.progress.set()

        hooks.intercept_rtp(transceiver.receiver, count)

    def tracks_from(self, participant_id: str) -> dict[str, RemoteTrack]:
        return {
            r.kind: r
            for r in self.remote.values()
            if (r.participant_id or self.track_map.get(r.mid)) == participant_id
        }

    async def wait_checked(
        self,
        participant_id: str,
        kinds: tuple[str, ...] = ("audio", "video"),
        timeout: float = 20,
    ) -> dict[str, RemoteTrack]:
        """Wait until this peer has checked the participant's tracks of these kinds."""
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()
                found = self.tracks_from(participant_id)
                if all(k in found for k in kinds):
                    for kind in kinds:
                        await found[kind].checked.wait()
                    return found
                await self.changed.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.video is not None:
            self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        await self.pc.close()


def loopback_only() -> None:
    """Offer only 127.0.0.1 as a host candidate (tests and benchmarks on one machine)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


async def run_kiosk(url: str, device_token: str, colour: tuple[int, int, int], tone: int) -> None:
    """A kiosk in its own process: launch a call (or rejoin its call), publish, run until killed."""
    client = await SignalingClient.connect(url, device_token=device_token)
    snapshot = await client.next_event("snapshot")
    calls = snapshot["payload"]["calls"]
    if calls:
        call_id = calls[0]["id"]
    else:
        launched = await client.request("call.launch", consent_evidence=True, dispute_type="family")
        call_id = launched["call"]["id"]
        print(f"LAUNCHED {call_id}", flush=True)
    if not calls or calls[0]["state"] != "active":
        await client.wait_call_state(call_id, "active", timeout=30)
    peer = MediaPeer(client, call_id, colour=colour, tone=tone)
    result = await peer.start()
    print(f"MEDIA_JOINED {result['participant_id']}", flush=True)
    await client.closed.wait()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A kiosk test peer in its own process.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--device-token", required=True)
    parser.add_argument("--colour", default="255,0,0")
    parser.add_argument("--tone", type=int, default=440)
    parser.add_argument("--loopback-only", action="store_true")
    args = parser.parse_args()
    if args.loopback_only:
        loopback_only()
    r, g, b = (int(x) for x in args.colour.split(","))
    asyncio.run(run_kiosk(args.url, args.device_token, (r, g, b), args.tone))


if __name__ == "__main__":
    main()
