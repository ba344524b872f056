"""Per-call media routing: one server-side peer connection per participant, encoded forwarding.

A `CallMedia` holds a `Peer` per participant. Each peer publishes what its client
sends (audio, video) and subscribes to every other visible peer's tracks. The
server never decodes or encodes: each RTP packet a publisher sends is rewritten
(SSRC, payload type, sequence) and protected for each subscriber at once
(`Stream.forward`), through that subscriber's bounded `Outlet`.

Negotiation: the client makes the first offer (`join`); after that only the
server offers, one negotiation at a time per peer (`Peer._negotiate`), whenever
subscriptions change. Sections of a departed publisher go inactive and are
reused for the next one. The signaling layer is reached only through the
`MediaSignals` callbacks, so this package knows nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from aiortc.sdp import candidate_from_sdp

from media import hooks
from media.rtp import (
    Rewriter,
    RtpHeader,
    build_header,
    keyframe_start,
    parse_header,
    seq_newer,
)
from media.sdp import cap_bandwidth

log = logging.getLogger(__name__)


class MediaError(Exception):
    code = "media_error"


class CodecUnsupported(MediaError):
    code = "codec_unsupported"


class NegotiationFailed(MediaError):
    code = "negotiation_failed"


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class MediaSettings:
    video_codec: str = "vp8"  # "vp8" | "h264": fixed for a call when it becomes active
    ice_servers: tuple[IceServer, ...] = ()  # for the server's own peer connections
    max_video_kbps: int = 1500  # what one subscriber may receive in all; split per publisher
    min_video_kbps: int = 150
    media_inactivity_s: float = 5.0
    keyframe_interval_s: float = 0.5  # at most one key-frame request per publisher track
    outlet_packets: int = 512  # bound of each subscriber's send queue
    fast_path: bool = True  # forward straight from the socket (see hooks.install_fast_path)
    udp_ports: range | None = None  # host candidates bind here (firewalls)
    public_ip: str | None = None  # advertised instead of the interface address (1:1 NAT)
    interfaces: tuple[str, ...] = ()  # addresses media sockets bind on; empty: all
    negotiation_timeout_s: float = 10.0


class MediaSignals(Protocol):
    """What the media layer tells its owner (the signaling hub)."""

    def send_offer(
        self,
        call_id: str,
        participant_id: str,
        sdp: str,
        tracks: list[dict[str, str]],
        offer_id: int,
    ) -> None: ...

    def media_event(self, call_id: str, participant_id: str, event: str) -> None: ...


SUBSCRIBER_KEYFRAME_INTERVAL_S = 1.0
OFFER_ATTEMPTS = 3  # an unanswered server offer is sent this many times in all

VIDEO_MIME = {"vp8": "video/VP8", "h264": "video/H264"}


@dataclass
class TrackStats:
    packets_in: int = 0
    bytes_in: int = 0
    keyframe_requests_in: int = 0  # from subscribers
    plis_sent: int = 0  # to the publisher, after throttling


@dataclass
class Published:
    """One track a peer publishes."""

    peer: Peer
    kind: str
    receiver: RTCRtpReceiver
    codec: str  # "vp8" | "h264" | "opus"
    clock_rate: int = 90000
    payload_types: frozenset[int] = frozenset()
    ssrc: int | None = None
    streams: set[Stream] = field(default_factory=set)
    stats: TrackStats = field(default_factory=TrackStats)
    last_pli: float = -1e9
    pli_pending: asyncio.TimerHandle | None = None
    taps: list[PacketTap] = field(default_factory=list)
    sender_report: tuple[int, int] | None = None  # (NTP, RTP) of the last sender report

    def request_key_frame(self) -> None:
        """Ask the publisher for a key frame, at most once per keyframe_interval_s.

        A request inside the interval is not sent; when the interval ends, one more
        request goes out only if a subscriber (or tap) is still waiting for a key
        frame. So any number of simultaneous requests cost the publisher one key
        frame, and a subscriber that keeps asking cannot make it send them
        continuously.
        """
        if self.kind != "video":
            return
        interval = self.peer.call.settings.keyframe_interval_s
        now = time.monotonic()
        if now - self.last_pli >= interval:
            self._send_pli()
        if self.pli_pending is None:
            wait = max(0.0, self.last_pli + interval - now)
            self.pli_pending = asyncio.get_running_loop().call_later(wait, self._retry)

    def _retry(self) -> None:
        self.pli_pending = None
        self.peer.call.changed.set()
        if any(s.active and s.waiting_for_keyframe for s in self.streams):
            self.request_key_frame()

    def _send_pli(self) -> None:
        self.last_pli = time.monotonic()  # also before the first packet: retry, never spin
        if self.ssrc is None or self.peer.closed:
            return
        self.stats.plis_sent += 1
        self.peer.call.changed.set()
        self.peer.spawn(hooks.send_pli(self.receiver, self.ssrc))

    def close(self) -> None:
        if self.pli_pending is not None:
            self.pli_pending.cancel()
            self.pli_pending = None


@dataclass(eq=False)
class Slot:
    """A sending section on a subscriber's connection; reused after its publisher leaves."""

    transceiver: RTCRtpTransceiver
    track: hooks.IdleTrack
    rewriter: Rewriter | None = None
    stream: Stream | None = None


@dataclass(eq=False)
class Stream:
    """One publisher track forwarded to one subscriber."""

    source: Published
    subscriber: Peer
    slot: Slot
    active: bool = False  # negotiated: packets flow
    waiting_for_keyframe: bool = True
    forwarded: int = 0
    dropped: int = 0
    keyframe_requests: int = 0
    delivered: tuple[int, int] | None = None  # (sequence, timestamp) last handed to the socket
    last_keyframe_request: float = -1e9  # monotonic time of this subscriber's last PLI/FIR

    @property
    def kind(self) -> str:
        return self.source.kind

    def forward(self, header: RtpHeader, payload: bytes, keyframe: bool) -> None:
        if not self.active or self.slot.rewriter is None:
            return
        if self.waiting_for_keyframe:
            if not keyframe:
                self.dropped += 1
                return
            self.waiting_for_keyframe = False
            self.slot.rewriter.resync = True
        rewriter = self.slot.rewriter
        seq, ts = rewriter.map(header)
        rtp_header = build_header(header.marker, rewriter.payload_type, seq, ts, rewriter.ssrc)
        self.subscriber.outlet.push(self, rtp_header, payload, ts)

    def restart(self, *, request: bool = True) -> None:
        """Hold packets until the next key frame, and (if `request`) ask for one.

        Sequence numbers given to packets that were then dropped are taken back,
        so the subscriber sees no gap to NACK.
        """
        self.waiting_for_keyframe = self.kind == "video"
        rewriter = self.slot.rewriter
        if rewriter is not None and self.delivered is not None:
            rewriter.last_seq, rewriter.last_ts = self.delivered
            rewriter.resync = True
        if request:
            self.source.request_key_frame()

    def on_feedback(self, feedback: hooks.Feedback) -> None:
        self.subscriber.touch()
        source = self.source
        if feedback.kind == "keyframe":
            self.keyframe_requests += 1
            source.stats.keyframe_requests_in += 1
            source.peer.call.changed.set()
            now = time.monotonic()
            # One subscriber's requests count once a second at most: a client that keeps
            # asking cannot hold its publisher at the shared throttle's limit.
            if now - self.last_keyframe_request >= SUBSCRIBER_KEYFRAME_INTERVAL_S:
                self.last_keyframe_request = now
                source.request_key_frame()
        elif feedback.kind == "nack" and source.ssrc is not None and self.slot.rewriter:
            mapped = (self.slot.rewriter.source_sequence(seq) for seq in feedback.lost)
            lost = [seq for seq in mapped if seq is not None]
            if lost:
                source.peer.spawn(hooks.send_nack(source.receiver, source.ssrc, lost))


@dataclass
class OutletStats:
    sent: int = 0
    dropped_video: int = 0
    dropped_audio: int = 0


class Outlet:
    """A subscriber's send path: immediate while it keeps up, else a bounded queue.

    "Keeps up" means the socket takes the packet: once asyncio starts buffering for
    this subscriber's socket (more than `hooks.CONGESTED_BYTES` waiting, its own buffer
    being unbounded), packets wait here instead, and each later packet first flushes
    what the socket will take. When the queue is full, video of the overflowing stream
    is dropped until its next key frame (and one is requested); audio is dropped
    oldest first. The publisher and the other subscribers are never slowed.
    """

    def __init__(self, peer: Peer, bound: int) -> None:
        self.peer = peer
        self.bound = bound
        self.queue: deque[tuple[Stream, bytes, bytes, int]] = deque()  # header, payload, ts
        self.stalled = False  # test hook: a network that stops draining
        self.stats = OutletStats()
        self.output: hooks.RtpOutput | None = None

    def push(self, stream: Stream, header: bytes, payload: bytes, timestamp: int) -> None:
        if not self.stalled:
            output = self.output
            congested = output is not None and output.congested()
            while self.queue and not congested:
                self._send(*self.queue.popleft())
                congested = output is not None and output.congested()
            if not self.queue and not congested:
                self._send(stream, header, payload, timestamp)
                return
        if len(self.queue) >= self.bound:
            if stream.kind == "video":
                self.stats.dropped_video += 1
                stream.dropped += 1
                kept = [item for item in self.queue if item[0] is not stream]
                self.stats.dropped_video += len(self.queue) - len(kept)
                self.queue = deque(kept)
                stream.restart()
                return
            self.stats.dropped_audio += 1
            for index, item in enumerate(self.queue):
                if item[0].kind == "audio":
                    del self.queue[index]  # oldest audio goes
                    break
            else:
                stream.dropped += 1
                return  # only video queued: this audio packet goes (video is never cut)
        self.queue.append((stream, header, payload, timestamp))
        self.peer.call.changed.set()

    def set_stalled(self, stalled: bool) -> None:
        self.stalled = stalled
        if not stalled:
            while self.queue and not self.stalled:
                self._send(*self.queue.popleft())

    def _send(self, stream: Stream, header: bytes, payload: bytes, timestamp: int) -> None:
        output = self.output
        if output is None or not output.send_rtp(header, payload):
            # The transport is not up (yet or any more): start over at a key frame once it
            # is; asking the publisher now would only repeat until then.
            stream.dropped += 1
            stream.restart(request=False)
            return
        stream.forwarded += 1
        seq = int.from_bytes(header[2:4], "big")
        if stream.delivered is None or seq_newer(seq, stream.delivered[0]):
            stream.delivered = (seq, timestamp)
        self.stats.sent += 1
        hooks.record_sent(stream.slot.transceiver.sender, timestamp, len(payload))


TappedPacket = tuple[bytes, int, int, bool, bool, int]
"""An encoded packet as the recorder sees it (its tap knows the kind and codec):
``(payload, rtp_timestamp, sequence, marker, keyframe, arrival_ms)``, arrival in monotonic ms
(`time.monotonic()`; a recording maps it onto its call's timeline).

A plain tuple on purpose, made for every packet of every recorded track. CPython stops
tracking a plain tuple of bytes and ints the first time a collection looks at it, and takes
small tuples from a free list without counting them as new objects; a tuple subclass such
as a NamedTuple gets neither. A tap holds its packets until the recorder's next round (up
to 1 s): as NamedTuples they drove the young collections and were promoted with everything
else alive, and a server recording calls ran a full collection, which stops the event loop
and all forwarding for ~50 ms, in every 20 s measured ("Garbage collection" in
docs/performance.md)."""

ARRIVAL_MS = 5  # TappedPacket's index of the arrival time


def tapped_packet(
    payload: bytes,
    rtp_timestamp: int,
    sequence: int,
    marker: bool,
    keyframe: bool,
    arrival_ms: int,
) -> TappedPacket:
    """A TappedPacket, field by field (tests and benches; `Peer._forward` builds the tuple
    inline, without a call per packet)."""
    return (payload, rtp_timestamp, sequence, marker, keyframe, arrival_ms)


class TapClosed(MediaError):
    """The tapped participant left for good, or the call ended."""


@dataclass(frozen=True)
class SourceChanged:
    """In a tap's queue: packets after this come from a new peer connection (a rejoin),
    with a new SSRC, sequence numbers and RTP timestamps."""

    kind: str


class PacketTap:
    """A bounded copy of one published track's packets; never slows forwarding.

    It follows the participant across a reconnect (a new peer connection publishes
    a new track: the tap moves to it, and a SourceChanged marks the place in the
    queue). `get()` skips those markers and raises TapClosed once the participant
    has left and the queue is empty; `drain()` takes everything queued. Several
    taps may share one `ready` event, so one reader can wait for any of them.
    """

    def __init__(
        self, published: Published, bound: int = 1024, ready: asyncio.Event | None = None
    ) -> None:
        self.published = published
        self.queue: deque[TappedPacket | SourceChanged] = deque()
        self.bound = bound
        self.overflow = 0  # packets refused because the queue was full
        self.overflowed = asyncio.Event()  # set at each refusal (for monitors and tests)
        self.closed = False
        self.ready = ready or asyncio.Event()
        # A reader that drains in rounds (the recorder thread) is called once the queue
        # holds `wake_at` packets, so a round comes before the tap overflows; once per fill
        # (`drain` re-arms it).
        self.wake_at = 0
        self.on_fill: Callable[[], None] | None = None
        self._fill_signalled = False
        # The closed tap this one replaced, left for the reader to finish first: a tap has
        # one reader (its `drain` is not safe for two), so the new owner never drains it.
        self.previous: PacketTap | None = None

    def offer(self, packet: TappedPacket) -> None:
        queue = self.queue
        if len(queue) >= self.bound:
            self.overflow += 1
            self.overflowed.set()
            return
        queue.append(packet)
        self.ready.set()
        if self.on_fill is not None and len(queue) >= self.wake_at and not self._fill_signalled:
            self._fill_signalled = True
            self.on_fill()

    async def get(self) -> TappedPacket:
        while True:
            while not self.queue:
                if self.closed:
                    raise TapClosed("the tapped track has ended")
                self.ready.clear()
                await self.ready.wait()
            item = self.queue.popleft()
            if not isinstance(item, SourceChanged):
                return item

    def drain(self) -> list[TappedPacket | SourceChanged]:
        """Everything queued, oldest first. Safe from another thread while the event loop
        offers: each `popleft` is atomic, and what arrives meanwhile stays for next time."""
        self._fill_signalled = False
        pop = self.queue.popleft
        return [pop() for _ in range(len(self.queue))]

    @property
    def kind(self) -> str:
        return self.published.kind

    @property
    def codec(self) -> str:
        return self.published.codec

    @property
    def sender_report(self) -> tuple[int, int] | None:
        return self.published.sender_report

    def request_key_frame(self) -> None:
        self.published.request_key_frame()

    def close(self) -> None:
        self.closed = True
        self.ready.set()
        if self in self.published.taps:
            self.published.taps.remove(self)

    def move_to(self, published: Published) -> None:
        if self in self.published.taps:
            self.published.taps.remove(self)
        self.published = published
        published.taps.append(self)
        self.queue.append(SourceChanged(published.kind))
        self.ready.set()


class Peer:
    """One participant's server-side peer connection."""

    def __init__(self, call: CallMedia, participant_id: str, *, visible: bool) -> None:
        self.call = call
        self.participant_id = participant_id
        self.visible = visible
        settings = call.settings
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in settings.ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.published: dict[str, Published] = {}
        self.fast_ssrcs: dict[int, Published] = {}  # SSRCs the fast path forwards
        self.fast_path: hooks.FastPath | None = None
        self.slots: list[Slot] = []
        self.outlet = Outlet(self, settings.outlet_packets)
        self.closed = False
        self.ready = False  # the client has our first answer: server offers may start
        self.needs_offer = False
        self.answer: asyncio.Future[str] | None = None
        self.offer_id = 0  # id of the latest server offer; its answer must name it
        self.last_media_at = time.monotonic()
        self.created_at = self.last_media_at
        self.timed_out = False
        self.audio_enabled = True
        self.video_enabled = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self._negotiation: asyncio.Task[None] | None = None

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            # Runs inside aiortc's connection set-up: never let an error escape into it.
            try:
                self._on_state()
            except Exception:
                log.exception("participant %s media state handling failed", participant_id)

    def _on_state(self) -> None:
        call, participant_id = self.call, self.participant_id
        state = self.pc.connectionState
        log.info("participant %s media connection %s", participant_id, state)
        loop = asyncio.get_running_loop()
        if state == "connected":
            self.outlet.output = hooks.rtp_output(self._dtls())
            if call.settings.fast_path:
                self._install_fast_path()
            self.touch()
            self.activate_streams()
            loop.call_soon(call.signals.media_event, call.call_id, participant_id, "connected")
        elif state in ("failed", "closed"):
            self.outlet.output = None  # streams to it wait for a key frame, without asking
            loop.call_soon(call.signals.media_event, call.call_id, participant_id, "failed")

    def _dtls(self) -> Any:
        """The DTLS transport all sections share (the server bundles everything)."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.transport is not None:
                return transceiver.receiver.transport
        raise MediaError("no transport")

    def bind_candidates(self) -> None:
        """Apply the port range and public address before the first gathering."""
        settings = self.call.settings
        if settings.udp_ports is None and settings.public_ip is None and not settings.interfaces:
            return
        if settings.ice_servers:
            return  # with STUN/TURN for the server itself, aioice gathers as usual
        seen = set()
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is not None and id(dtls) not in seen:
                seen.add(id(dtls))
                hooks.bind_host_candidates(
                    hooks.ice_connection(dtls),
                    settings.udp_ports,
                    settings.public_ip,
                    settings.interfaces,
                )

    def set_inbound_blocked(self, blocked: bool) -> None:
        """Test/operations hook: ignore every datagram from this participant, or stop
        ignoring (see `CallMedia.set_inbound_blocked`)."""
        seen = set()
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is not None and id(dtls) not in seen:
                seen.add(id(dtls))
                hooks.set_inbound_blocked(dtls, blocked)

    def inbound_dropped(self) -> int:
        """Datagrams from this participant that `set_inbound_blocked` discarded."""
        transports = {
            id(t.receiver.transport): t.receiver.transport for t in self.pc.getTransceivers()
        }
        return sum(hooks.inbound_dropped(d) for d in transports.values() if d is not None)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when ignored below
        gone = self.closed or self.pc.connectionState == "closed"
        if not gone and error is not None:
            log.warning("participant %s media task failed: %r", self.participant_id, error)

    def touch(self) -> None:
        self.last_media_at = time.monotonic()
        if self.timed_out:
            # Media is back after a media_timeout (e.g. a roaming Wi-Fi): say so, outside
            # whatever packet handler we are in.
            self.timed_out = False
            asyncio.get_running_loop().call_soon(
                self.call.signals.media_event, self.call.call_id, self.participant_id, "media_back"
            )

    # --- publishing -----------------------------------------------------------------------

    def _publish(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        hooks.keep_negotiated_codecs(transceiver)
        codec = "opus" if kind == "audio" else self.call.video_codec
        negotiated = transceiver._codecs
        published = Published(
            self,
            kind,
            transceiver.receiver,
            codec,
            clock_rate=negotiated[0].clockRate if negotiated else 90000,
            payload_types=frozenset(
                c.payloadType for c in negotiated if c.name != "rtx" and c.payloadType is not None
            ),
        )
        self.published[kind] = published
        hooks.intercept_rtp(
            transceiver.receiver, lambda packet, arrival: self._on_rtp(published, packet, arrival)
        )

        def on_sender_report(packet: Any) -> None:
            self.touch()
            published.sender_report = (
                packet.sender_info.ntp_timestamp,
                packet.sender_info.rtp_timestamp,
            )

        hooks.watch_receiver_rtcp(transceiver.receiver, on_sender_report)

    def _on_rtp(self, published: Published, packet: RtpPacket, ntp_arrival_ms: int) -> None:
        """Slow path: a packet aiortc parsed (before its SSRC is known to the fast path).

        aiortc's arrival time counts from the NTP epoch (1900, `aiortc.clock.current_ms`);
        taps take their own monotonic stamp, as on the fast path. It once went through
        unchanged and put a recording's first frames, and so every timestamp after them,
        70 years late."""
        if published.ssrc != packet.ssrc:
            previous = published.ssrc
            if previous is not None:
                self.fast_ssrcs.pop(previous, None)
            published.ssrc = packet.ssrc
            self.fast_ssrcs[packet.ssrc] = published
            if previous is not None:
                for stream in published.streams:
                    stream.restart()  # asks the new SSRC for a key frame
        header = RtpHeader(
            marker=bool(packet.marker),
            payload_type=packet.payload_type,
            sequence=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload_offset=0,
            payload_end=len(packet.payload),
        )
        self._forward(published, header, packet.payload)

    def _on_datagram(self, plain: memoryview) -> None:
        """Fast path: a decrypted RTP packet of a known publisher SSRC, straight off the socket.

        `plain` is a view of libsrtp's buffer, valid only during this call: the payload
        is copied out once (forwarding and taps keep that copy).
        """
        try:
            header = parse_header(plain)
        except ValueError:
            return
        published = self.fast_ssrcs.get(header.ssrc)
        if published is None:
            return
        if header.payload_type not in published.payload_types:
            return  # e.g. RTX or an unnegotiated payload type: not forwarded
        hooks.feed_receiver_statistics(
            published.receiver, header.ssrc, published.clock_rate, header
        )
        self._forward(published, header, bytes(plain[header.payload_offset : header.payload_end]))

    def _forward(self, published: Published, header: RtpHeader, payload: bytes) -> None:
        self.last_media_at = time.monotonic()
        if self.timed_out:
            self.touch()
        published.stats.packets_in += 1
        published.stats.bytes_in += len(payload)
        keyframe = keyframe_start(published.codec, payload)
        for stream in published.streams:
            stream.forward(header, payload, keyframe)
        if published.taps:
            tapped = (  # a TappedPacket
                payload,
                header.timestamp,
                header.sequence,
                header.marker,
                keyframe,
                # Arrival, monotonic ms (a recording's timeline, recorder/timeline.py):
                # the wall clock can be stepped mid-call.
                int(self.last_media_at * 1000),
            )
            for tap in published.taps:
                tap.offer(tapped)

    def _install_fast_path(self) -> None:
        """Take known publisher SSRCs off the socket before aiortc parses them."""
        try:
            dtls = self._dtls()
        except MediaError:
            return
        self.fast_path = hooks.install_fast_path(
            dtls, lambda ssrc: ssrc in self.fast_ssrcs, self._on_datagram
        )

    # --- subscribing ----------------------------------------------------------------------

    def subscribe(self, source: Published) -> Stream:
        slot = next(
            (s for s in self.slots if s.stream is None and s.transceiver.kind == source.kind), None
        )
        if slot is None:
            track = hooks.IdleTrack(source.kind)
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            self.call.prefer_codecs(transceiver)
            hooks.offer_without_header_extensions(transceiver)
            slot = Slot(transceiver, track)
            self.slots.append(slot)
            # One wrapper per section, whichever stream it carries now.
            hooks.intercept_sender_feedback(
                transceiver.sender, functools.partial(self._feedback, slot)
            )
        else:
            slot.transceiver.direction = "sendonly"
        stream = Stream(source, self, slot)
        slot.stream = stream
        source.streams.add(stream)
        self.needs_offer = True
        return stream

    def _feedback(self, slot: Slot, feedback: hooks.Feedback) -> None:
        self.touch()
        if slot.stream is not None and feedback.kind != "report":
            slot.stream.on_feedback(feedback)

    def unsubscribe(self, stream: Stream) -> None:
        stream.active = False
        stream.source.streams.discard(stream)
        stream.slot.stream = None
        stream.slot.transceiver.direction = "inactive"
        self.outlet.queue = deque(item for item in self.outlet.queue if item[0] is not stream)
        self.needs_offer = True

    def streams(self) -> list[Stream]:
        return [slot.stream for slot in self.slots if slot.stream is not None]

    def track_map(self) -> list[dict[str, str]]:
        """Which section carries whom, for the client to label its tiles."""
        return [
            {
                "mid": slot.transceiver.mid or "",
                "participant_id": slot.stream.source.peer.participant_id,
                "kind": slot.stream.kind,
            }
            for slot in self.slots
            if slot.stream is not None
        ]

    # --- negotiation ------------------------------------------------------------------------

    def negotiate_soon(self) -> None:
        if self.closed or not self.ready or not self.needs_offer:
            return
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.ensure_future(self._negotiate())
            self._tasks.add(self._negotiation)
            self._negotiation.add_done_callback(self._task_done)

    async def _negotiate(self) -> None:
        """Offer, wait for the answer to that very offer, apply it; again while needed.

        An unanswered offer is sent again (same id, same SDP) up to OFFER_ATTEMPTS
        times, so a client whose signaling connection blinked still gets it; answers
        to older offers are refused by their id.
        """
        while self.needs_offer and not self.closed:
            self.needs_offer = False
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            sdp = self.call.cap_publisher_bandwidth(self.pc.localDescription.sdp)
            self.offer_id += 1
            self.answer = asyncio.get_running_loop().create_future()
            answer_sdp = None
            try:
                for _ in range(OFFER_ATTEMPTS):
                    self.call.signals.send_offer(
                        self.call.call_id,
                        self.participant_id,
                        sdp,
                        self.track_map(),
                        self.offer_id,
                    )
                    try:
                        async with asyncio.timeout(self.call.settings.negotiation_timeout_s):
                            answer_sdp = await asyncio.shield(self.answer)
                        break
                    except TimeoutError:
                        continue
            finally:
                self.answer = None
            if answer_sdp is None:
                log.warning("participant %s did not answer the server's offer", self.participant_id)
                self.call.signals.media_event(self.call.call_id, self.participant_id, "failed")
                return
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
            self.activate_streams()

    def activate_streams(self) -> None:
        """Start the negotiated streams once the connection is up, each at a key frame."""
        if self.outlet.output is None:
            return
        for slot in self.slots:
            stream = slot.stream
            if stream is None or stream.active:
                continue
            if slot.transceiver.currentDirection not in ("sendonly", "sendrecv"):
                continue  # the client has not accepted this section yet
            payload_type = hooks.negotiated_payload_type(slot.transceiver)
            if payload_type is None:
                continue
            if slot.rewriter is None:
                slot.rewriter = Rewriter(
                    ssrc=slot.transceiver.sender._ssrc, payload_type=payload_type
                )
            else:
                slot.rewriter.payload_type = payload_type
            stream.active = True
            stream.restart()
            self.call.changed.set()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for published in self.published.values():
            published.close()
        for slot in self.slots:
            slot.track.stop()
        if self.answer is not None and not self.answer.done():
            self.answer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.pc.close()


def check_offer_shape(sdp: str) -> None:
    """One bundled connection with at most one audio and one video section from the client.

    Each extra section would cost the server a transceiver (and, unbundled, its own
    sockets and ICE/DTLS transport), so a client may not ask for more.
    """
    kinds = [line[2:7] for line in sdp.splitlines() if line.startswith("m=")]
    if not kinds or any(k not in ("audio", "video") for k in kinds):
        raise MediaError("the offer must carry audio and/or video sections only")
    if kinds.count("audio") > 1 or kinds.count("video") > 1:
        raise MediaError("the offer may carry one audio and one video section")
    if len(kinds) > 1 and "a=group:BUNDLE" not in sdp:
        raise MediaError("the offer must bundle its sections (a=group:BUNDLE)")


class CallMedia:
    """The media of one call: its peers and the streams between them."""

    def __init__(self, call_id: str, settings: MediaSettings, signals: MediaSignals) -> None:
        hooks.check_versions()
        self.call_id = call_id
        self.settings = settings
        self.signals = signals
        self.video_codec = settings.video_codec
        self.peers: dict[str, Peer] = {}
        self._watchdog: asyncio.Task[None] | None = None
        # Set on rare changes (feedback, key-frame requests, queueing, streams starting),
        # never per forwarded packet: lets tests and tools wait without polling.
        self.changed = asyncio.Event()
        self.closed = False
        # Joins run one at a time: each one's subscriptions see every earlier joiner once.
        self._joining = asyncio.Lock()
        self.inbound_blocked: set[str] = set()  # test/operations hook: set_inbound_blocked

    # --- codecs and bandwidth ------------------------------------------------------------

    def prefer_codecs(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        wanted = "audio/opus" if kind == "audio" else VIDEO_MIME[self.video_codec]
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        chosen = [c for c in capabilities if c.mimeType.lower() == wanted.lower()]
        transceiver.setCodecPreferences(chosen)

    def video_cap_kbps(self) -> int:
        others = max(1, len([p for p in self.peers.values() if p.visible]) - 1)
        return max(self.settings.min_video_kbps, self.settings.max_video_kbps // others)

    def cap_publisher_bandwidth(self, sdp: str) -> str:
        return cap_bandwidth(sdp, self.video_cap_kbps(), directions=("recvonly", "sendrecv"))

    # --- participants ---------------------------------------------------------------------

    async def join(self, participant_id: str, offer_sdp: str, *, visible: bool = True) -> str:
        """Answer a client's first offer (or a reconnect's new offer) for a participant.

        Publishes what the offer sends (visible participants only) and subscribes
        the participant to everyone else. The caller must call `ready()` once the
        answer is on its way, so that server offers come after it.
        """
        check_offer_shape(offer_sdp)
        async with self._joining:
            if self.closed:
                raise MediaError("the call has ended")
            answer = await self._join(participant_id, offer_sdp, visible=visible)
            if self.closed:
                await self._drop(participant_id)
                raise MediaError("the call has ended")
            return answer

    async def _join(self, participant_id: str, offer_sdp: str, *, visible: bool) -> str:
        old = self.peers.get(participant_id)
        kept_streams: dict[tuple[str, str], Stream] = {}
        kept_taps: dict[str, list[PacketTap]] = {}
        if old is not None:
            kept_taps = {kind: list(p.taps) for kind, p in old.published.items()}
            # A reconnect: subscribers keep their sections; only the sources change.
            for kind, published in old.published.items():
                for stream in published.streams:
                    kept_streams[(stream.subscriber.participant_id, kind)] = stream
            for stream in old.streams():
                old.unsubscribe(stream)
            await old.close()
        peer = Peer(self, participant_id, visible=visible)
        self.peers[participant_id] = peer
        # Sections for what the offer sends, made first so that the call's codecs are the
        # only ones aiortc negotiates (it matches them to the offer's sections by kind).
        for line in offer_sdp.splitlines():
            if line.startswith(("m=audio", "m=video")):
                transceiver = peer.pc.addTransceiver(line[2:7], direction="recvonly")
                self.prefer_codecs(transceiver)
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            peer.bind_candidates()
            answer = await peer.pc.createAnswer()
            await peer.pc.setLocalDescription(answer)
            if participant_id in self.inbound_blocked:
                peer.set_inbound_blocked(True)  # a rejoin during a cut is cut off too
        except Exception as err:
            await self._drop(participant_id)
            for gone in kept_streams.values():  # a failed reconnect: its sections go inactive
                if gone.slot.stream is gone:
                    gone.subscriber.unsubscribe(gone)
                    gone.subscriber.negotiate_soon()
            for taps in kept_taps.values():
                for tap in taps:
                    tap.close()
            if "video description" in str(err):
                raise CodecUnsupported(f"the call's video codec is {self.video_codec}") from err
            raise NegotiationFailed(f"cannot answer the offer: {err}") from err
        for transceiver in peer.pc.getTransceivers():
            if visible and transceiver._codecs and transceiver.kind not in peer.published:
                peer._publish(transceiver)
        for kind, taps in kept_taps.items():
            if kind in peer.published:
                for tap in taps:
                    tap.move_to(peer.published[kind])
                peer.published[kind].request_key_frame()  # taps resume on a key frame
        for other in self.peers.values():
            if other is peer:
                continue
            if other.visible:
                for published in other.published.values():
                    peer.subscribe(published)
            for kind, published in peer.published.items():
                kept = kept_streams.get((other.participant_id, kind))
                if kept is not None and kept.slot.stream is kept:
                    # Same section, new source: the rewriter bridges the SSRC change.
                    stream = Stream(published, other, kept.slot, active=kept.active)
                    kept.slot.stream = stream
                    published.streams.add(stream)
                    stream.restart()
                else:
                    other.subscribe(published)
            other.needs_offer = True  # bandwidth caps change with the number of peers
            other.negotiate_soon()
        self._ensure_watchdog()
        return self.cap_publisher_bandwidth(peer.pc.localDescription.sdp)

    def ready(self, participant_id: str) -> None:
        """The participant has our answer: server-made offers may start."""
        peer = self.peers.get(participant_id)
        if peer is not None:
            peer.ready = True
            peer.negotiate_soon()

    def answer(self, participant_id: str, sdp: str, offer_id: int) -> None:
        peer = self.peers.get(participant_id)
        if peer is None or peer.answer is None or peer.answer.done():
            raise MediaError("no offer is waiting for an answer")
        if offer_id != peer.offer_id:
            raise MediaError(f"answer to offer {offer_id}, but offer {peer.offer_id} is waiting")
        peer.answer.set_result(sdp)

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        peer = self.peers.get(participant_id)
        if peer is None:
            raise MediaError("not joined")
        if not candidate:
            return  # end of candidates
        parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await peer.pc.addIceCandidate(parsed)

    def set_inbound_blocked(self, participant_id: str, blocked: bool) -> None:
        """Test/operations hook: the server ignores every datagram from this participant.

        While blocked, whatever reaches the participant's media sockets is dropped before
        anyone reads it: fast path and aiortc path alike, STUN, DTLS, RTP and RTCP, as if
        the participant's network had failed one way (the server still sends). The block
        follows the participant: a peer connection it joins with meanwhile (a rejoin) is
        blocked too, until `set_inbound_blocked(participant_id, False)`. With the block
        longer than `media_inactivity_s` the participant is reported `media_timeout`;
        after it, media resumes on the same connection (`media_back`) or a rejoin. Keep
        it under ~30 s, or aioice's consent checks end the connection. Costs nothing
        when unused: no per-packet check (see `hooks.set_inbound_blocked`).
        """
        if blocked:
            self.inbound_blocked.add(participant_id)
        else:
            self.inbound_blocked.discard(participant_id)
        peer = self.peers.get(participant_id)
        if peer is not None and peer.pc.localDescription is not None:
            peer.set_inbound_blocked(blocked)

    def set_enabled(self, participant_id: str, *, audio: bool, video: bool) -> None:
        peer = self.peers.get(participant_id)
        if peer is not None:
            peer.audio_enabled = audio
            peer.video_enabled = video

    async def leave(self, participant_id: str) -> None:
        await self._drop(participant_id)

    async def _drop(self, participant_id: str) -> None:
        peer = self.peers.pop(participant_id, None)
        if peer is None:
            return
        for stream in peer.streams():
            peer.unsubscribe(stream)
        for published in peer.published.values():
            for stream in list(published.streams):
                stream.subscriber.unsubscribe(stream)
                stream.subscriber.negotiate_soon()
            for tap in list(published.taps):
                tap.close()
        await peer.close()

    async def close(self) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        for participant_id in list(self.peers):
            await self._drop(participant_id)

    # --- liveness -----------------------------------------------------------------------

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """No RTP and no RTCP from a peer for media_inactivity_s: tell the owner once."""
        limit = self.settings.media_inactivity_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for peer in list(self.peers.values()):
                if not peer.timed_out and now - peer.last_media_at > limit:
                    peer.timed_out = True
                    log.info("participant %s media timeout", peer.participant_id)
                    self.signals.media_event(self.call_id, peer.participant_id, "media_timeout")

    # --- recorder and stats -------------------------------------------------------------------

    def tap(
        self,
        participant_id: str,
        kind: str,
        bound: int = 1024,
        ready: asyncio.Event | None = None,
    ) -> PacketTap:
        """A copy of a participant's published track (KeyError if not published)."""
        published = self.peers[participant_id].published[kind]
        tap = PacketTap(published, bound, ready)
        published.taps.append(tap)
        return tap

    def totals(self) -> dict[str, int]:
        """Aggregates over the call, for /metrics."""
        totals = {"participants": len(self.peers), "forwarded": 0, "dropped": 0, "plis_sent": 0}
        for peer in self.peers.values():
            totals["forwarded"] += peer.outlet.stats.sent
            totals["dropped"] += peer.outlet.stats.dropped_video + peer.outlet.stats.dropped_audio
            totals["plis_sent"] += sum(p.stats.plis_sent for p in peer.published.values())
        return totals

    def stats(self, participant_id: str) -> dict[str, Any]:
        peer = self.peers.get(participant_id)
        if peer is None:
            return {}
        elapsed = max(1e-3, time.monotonic() - peer.created_at)
        published = {
            kind: {
                "packets_in": p.stats.packets_in,
                "bytes_in": p.stats.bytes_in,
                "kbps_in": round(p.stats.bytes_in * 8 / elapsed / 1000, 1),
                "packets_lost": hooks.packets_lost(p.receiver),
                "keyframe_requests_in": p.stats.keyframe_requests_in,
                "plis_sent": p.stats.plis_sent,
            }
            for kind, p in peer.published.items()
        }
        rtts = [
            rtt
            for s in peer.streams()
            if (rtt := hooks.sender_rtt(s.slot.transceiver.sender)) is not None
        ]
        streams = [
            {
                "from": s.source.peer.participant_id,
                "kind": s.kind,
                "forwarded": s.forwarded,
                "dropped": s.dropped,
                "keyframe_requests": s.keyframe_requests,
            }
            for s in peer.streams()
        ]
        return {
            "rtt_ms": round(1000 * sum(rtts) / len(rtts), 1) if rtts else None,
            "audio_enabled": peer.audio_enabled,
            "video_enabled": peer.video_enabled,
            "published": published,
            "received": streams,
            "outlet": {
                "sent": peer.outlet.stats.sent,
                "queued": len(peer.outlet.queue),
                "dropped_video": peer.outlet.stats.dropped_video,
                "dropped_audio": peer.outlet.stats.dropped_audio,
            },
        }
