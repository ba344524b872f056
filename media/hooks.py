"""Every private aiortc and aioice internal the media relay relies on, in one place.

aiortc decodes whatever it receives and encodes whatever it sends; a relay must
do neither. The hooks below turn its receivers and senders into pipes for
encoded RTP while keeping its DTLS, SRTP, RTCP (receiver and sender reports,
RTT) and ICE machinery. They use name-mangled and underscored attributes, so the
versions are pinned (pyproject) and `tests/media/test_hooks.py` fails loudly when
an upgrade moves any of them.

What each hook touches:
- `RTCRtpReceiver._handle_rtp_packet` (replaced per instance): RTP never reaches
  the jitter buffer and decoder thread; `__remote_streams` is fed so receiver
  reports stay right.
- `RTCRtpReceiver._handle_rtcp_packet` (wrapped): sender reports of publishers.
- `RTCRtpReceiver._send_rtcp_pli` / `_send_rtcp_nack`: key-frame requests and
  NACKs towards a publisher.
- `RTCRtpSender._handle_rtcp_packet` (wrapped): a subscriber's NACK, PLI and FIR
  are handed to the relay instead of aiortc's encoder flag / retransmit buffer.
- `RTCRtpSender.__ntp_timestamp`, `__rtp_timestamp`, `__packet_count`,
  `__octet_count`: sender reports describe the forwarded stream.
- `RTCDtlsTransport._tx_srtp` and the ICE connection's nominated pair
  (`aioice.Connection._nominated`): protect and send a forwarded packet at once.
- `RTCRtpTransceiver._codecs`: the negotiated payload type of a subscriber leg.
- `aioice.Connection._protocols` and each protocol's `datagram_received` (replaced per
  instance, only while the test/operations hook `set_inbound_blocked` is on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioice
import aiortc
import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
)
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

log = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16."
SUPPORTED_AIOICE = "0.13."


def check_versions() -> None:
    """Refuse to run on aiortc/aioice versions these hooks were not written for."""
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        raise RuntimeError(f"media hooks need aiortc {SUPPORTED_AIORTC}*, not {aiortc.__version__}")
    if not aioice.__version__.startswith(SUPPORTED_AIOICE):
        raise RuntimeError(f"media hooks need aioice {SUPPORTED_AIOICE}*, not {aioice.__version__}")


class IdleTrack(MediaStreamTrack):
    """A sender's track that never yields: the relay writes that sender's RTP itself.

    aiortc's sender polls every 20 ms when it has no track, so each forwarded
    stream gets one of these to park its RTP loop until the sender stops.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._ended.done():
            self._ended.set_result(None)


# --- receivers (publisher legs) ----------------------------------------------------------

RtpHandler = Callable[[RtpPacket, int], None]


def intercept_rtp(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Hand every RTP packet of this receiver to `handler` instead of its decoder."""
    streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        handler(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


def feed_receiver_statistics(
    receiver: RTCRtpReceiver, ssrc: int, clock_rate: int, packet: Any
) -> None:
    """Count a packet that bypassed the receiver (sequence_number and timestamp needed)."""
    streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    stream = streams.get(ssrc)
    if stream is None:
        stream = streams[ssrc] = StreamStatistics(clock_rate)
    stream.add(packet)


def watch_receiver_rtcp(
    receiver: RTCRtpReceiver, on_sender_report: Callable[[RtcpSrPacket], None]
) -> None:
    """Call back on each sender report the publisher sends (NTP<->RTP mapping)."""
    original = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            on_sender_report(packet)
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def packets_lost(receiver: RTCRtpReceiver) -> int:
    """Packets the publisher sent that never arrived (from the receiver's statistics)."""
    streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    return sum(max(0, s.packets_lost) for s in streams.values())


def sender_rtt(sender: RTCRtpSender) -> float | None:
    """Round-trip time to the subscriber, from its receiver reports (seconds)."""
    rtt: float | None = sender._RTCRtpSender__rtt  # type: ignore[attr-defined]
    return rtt


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    return receiver._send_rtcp_pli(media_ssrc)


def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> Awaitable[None]:
    return receiver._send_rtcp_nack(media_ssrc, lost)


# --- senders (subscriber legs) ------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """What a subscriber asked of a stream it receives."""

    kind: str  # "nack" | "keyframe"
    lost: tuple[int, ...] = ()


def intercept_sender_feedback(sender: RTCRtpSender, handler: Callable[[Feedback], None]) -> None:
    """NACK, PLI and FIR from the subscriber go to `handler`; reports still feed RTT stats.

    Every RTCP packet also reaches `handler` (as kind "report" when it is none of those),
    so a receive-only participant counts as alive. The handler runs inside aiortc's
    transport loop: an exception there would end the connection, so it is logged instead.
    """
    original = sender._handle_rtcp_packet

    def tell(feedback: Feedback) -> None:
        try:
            handler(feedback)
        except Exception:
            log.exception("subscriber feedback handling failed")

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            tell(Feedback("nack", tuple(packet.lost)))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            tell(Feedback("keyframe"))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            tell(Feedback("report"))  # REMB: not forwarded (the publisher is capped in SDP)
        else:
            tell(Feedback("report"))
            await original(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970


def ntp_now() -> int:
    """64-bit NTP time of now; aiortc's current_ntp_time() goes through datetime (slower)."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 32))


def record_sent(sender: RTCRtpSender, timestamp: int, payload_bytes: int) -> None:
    """Keep the sender's RTCP sender reports in step with what the relay sent."""
    sender._RTCRtpSender__ntp_timestamp = ntp_now()  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += payload_bytes  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """For test peers that send pre-encoded packets: learn of PLI/FIR from the far end."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        callback()
        original()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def keep_negotiated_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Offer this section again with the payload types and extension ids agreed for it.

    aiortc's `createOffer` resets every section to its own default payload types and
    header-extension ids. For a section a browser sends on (its first offer chose the
    numbers), a re-offer with other numbers makes the browser switch payload types
    mid-call, which the relay's receivers would no longer recognise. Marked sections
    keep their numbers: `create_media_description_for_transceiver` is wrapped (once,
    process-wide) to restore them; unmarked sections (clients', tests') are untouched.
    """
    _install_codec_keeper()
    transceiver._relay_keep = (  # type: ignore[attr-defined]
        list(transceiver._codecs),
        list(transceiver._headerExtensions),
    )


def offer_without_header_extensions(transceiver: RTCRtpTransceiver) -> None:
    """A section the server adds to send media: offer it with no header extensions.

    aiortc would offer its default extension ids (mid=1, audio-level=2…), which collide in
    the BUNDLE group with the ids the browser chose for its own sections (Chromium refuses
    the offer: "codec collision for header extension id=1"). The relay strips header
    extensions from forwarded packets anyway, and receivers demultiplex by SSRC.
    """
    _install_codec_keeper()
    transceiver._relay_no_extensions = True  # type: ignore[attr-defined]


_codec_keeper_installed = False


def _install_codec_keeper() -> None:
    global _codec_keeper_installed
    if _codec_keeper_installed:
        return
    import aiortc.rtcpeerconnection as pc_module

    original = pc_module.create_media_description_for_transceiver

    def create_media_description_for_transceiver(
        transceiver: Any, *args: Any, **kwargs: Any
    ) -> Any:
        kept = getattr(transceiver, "_relay_keep", None)
        if kept is not None:
            transceiver._codecs = list(kept[0])
            transceiver._headerExtensions = list(kept[1])
        if getattr(transceiver, "_relay_no_extensions", False):
            transceiver._headerExtensions = []
        return original(transceiver, *args, **kwargs)

    pc_module.create_media_description_for_transceiver = create_media_description_for_transceiver
    _codec_keeper_installed = True


def negotiated_payload_type(transceiver: RTCRtpTransceiver) -> int | None:
    codecs = transceiver._codecs
    return codecs[0].payloadType if codecs else None


# --- transports ----------------------------------------------------------------------------


def bind_host_candidates(
    connection: aioice.Connection,
    ports: range | None,
    public_ip: str | None,
    interfaces: tuple[str, ...] = (),
) -> None:
    """Gather host candidates on chosen addresses, in a UDP port range, advertising a public IPv4.

    aioice binds ephemeral ports on every interface address (never loopback) and
    advertises them; a server behind a firewall or a 1:1 NAT, or with a dedicated
    media interface, needs all three controlled. This replaces the connection's
    `get_component_candidates` (host candidates only: it is not used when the
    server's own connections have STUN or TURN servers).
    """
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority
    from aioice.ice import StunProtocol

    async def get_component_candidates(
        component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        candidates = []
        for address in interfaces or addresses:
            is_v4 = ":" not in address
            choices = list(ports) if ports is not None else [0]
            if len(choices) > 1:
                start = secrets.randbelow(len(choices))
                choices = choices[start:] + choices[:start]
            for port in choices:
                try:
                    transport, protocol = await loop.create_datagram_endpoint(
                        lambda: StunProtocol(connection), local_addr=(address, port)
                    )
                    break
                except OSError:
                    continue
            else:
                log.warning("no free UDP port for %s in the media port range", address)
                continue
            bound = transport.get_extra_info("sockname")
            host = public_ip if public_ip and is_v4 else bound[0]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=bound[1],
                type="host",
            )
            candidates.append(protocol.local_candidate)
            connection._protocols.append(protocol)
        return candidates

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


def ice_connection(dtls: RTCDtlsTransport) -> aioice.Connection:
    connection: aioice.Connection = dtls.transport.iceGatherer._connection
    return connection


CONGESTED_BYTES = 64 * 1024  # asyncio holding this much for a socket: the path is full
SRTP_TRAILER = 144  # room libsrtp may need after a packet (pylibsrtp's SRTP_MAX_TRAILER_LEN)
_SRTP_LENGTH = _srtp_ffi.new("int *")


class RtpOutput:
    """Protect and send RTP on a DTLS transport's selected ICE pair, without awaiting.

    `send_rtp` writes header and payload straight into pylibsrtp's own C buffer,
    protects in place with libsrtp (`srtp_protect`) and sends from there: no
    intermediate packet object and one copy less than `Session.protect`
    (RECIPES.md: in-place protection saved 15-20% of the forwarding CPU).
    """

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls

    def congested(self) -> bool:
        """The kernel refused recent datagrams and asyncio is buffering them."""
        pair = self._dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        buffered = getattr(pair.protocol.transport, "get_write_buffer_size", None)
        return buffered is not None and buffered() > CONGESTED_BYTES

    def send(self, packet: bytes) -> bool:
        """Returns False when the transport is not (or no longer) able to send."""
        return self.send_rtp(packet[:12], packet[12:])

    def send_rtp(self, header: bytes, payload: bytes) -> bool:
        dtls = self._dtls
        srtp = dtls._tx_srtp
        if srtp is None or dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        protected = protect_in_place(srtp, header, payload)
        if protected is None:
            return False
        pair.protocol.transport.sendto(protected, pair.remote_addr)
        return True


def unprotect_in_place(srtp: pylibsrtp.Session, data: bytes) -> memoryview | None:
    """SRTP-unprotect in the session's own buffer; a view valid until the next call."""
    size = len(data)
    cdata = srtp._cdata
    if size > len(cdata):
        return None
    buffer = srtp._buffer
    buffer[0:size] = data
    _SRTP_LENGTH[0] = size
    if _srtp_lib.srtp_unprotect(srtp._srtp[0], cdata, _SRTP_LENGTH) != 0:
        return None
    return memoryview(buffer)[0 : _SRTP_LENGTH[0]]


def protect_in_place(srtp: pylibsrtp.Session, header: bytes, payload: bytes) -> bytes | None:
    """SRTP-protect header+payload in the session's own buffer; None if libsrtp refuses."""
    size = len(header) + len(payload)
    cdata = srtp._cdata
    if size > len(cdata) - SRTP_TRAILER:
        return None  # larger than any packet a WebRTC peer sends (MTU ~1200): dropped
    buffer = srtp._buffer
    buffer[0 : len(header)] = header
    buffer[len(header) : size] = payload
    _SRTP_LENGTH[0] = size
    if _srtp_lib.srtp_protect(srtp._srtp[0], cdata, _SRTP_LENGTH) != 0:
        return None
    protected: bytes = buffer[0 : _SRTP_LENGTH[0]]
    return protected


def rtp_output(dtls: RTCDtlsTransport) -> RtpOutput:
    return RtpOutput(dtls)


class FastPath:
    """Forwarding straight from the publisher's socket (RECIPES.md, "Forwarding at Janus's cost").

    Wraps `datagram_received` of the ICE protocol of the nominated pair. For an
    SRTP packet (first byte 128-191, not RTCP) whose SSRC the relay knows, it
    unprotects with the DTLS transport's receive session and hands the plain
    packet to `on_rtp`; everything else (STUN, DTLS, RTCP, unknown SSRCs) falls
    through to aioice and aiortc unchanged. The SSRC is read before unprotecting,
    so a packet is never unprotected twice (SRTP replay protection would refuse).
    If the nominated pair changes (ICE restart), packets simply take aiortc's path.
    """

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        known: Callable[[int], bool],
        on_rtp: Callable[[memoryview], None],
    ) -> None:
        self.packets = 0
        self.installed = False
        self._dtls = dtls
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return
        protocol = pair.protocol
        # While an inbound block is on (set_inbound_blocked), wrap the handler it restores.
        original = _unblocked_handler(protocol)

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if (
                len(data) >= 12
                and 128 <= data[0] <= 191
                and not 192 <= data[1] <= 223
                and known(int.from_bytes(data[8:12], "big"))
            ):
                srtp = dtls._rx_srtp
                if srtp is not None:
                    plain = unprotect_in_place(srtp, data)
                    if plain is None:
                        return  # as aiortc would: a packet that fails authentication is dropped
                    self.packets += 1
                    on_rtp(plain)
                    return
            original(data, addr)

        _set_unblocked_handler(protocol, datagram_received)
        self.installed = True

    @property
    def blocked(self) -> bool:
        """Test hook (older spelling of `set_inbound_blocked` on this connection)."""
        return inbound_blocked(self._dtls)

    @blocked.setter
    def blocked(self, value: bool) -> None:
        set_inbound_blocked(self._dtls, value)


def install_fast_path(
    dtls: RTCDtlsTransport, known: Callable[[int], bool], on_rtp: Callable[[memoryview], None]
) -> FastPath:
    return FastPath(dtls, known, on_rtp)


# --- test and operations hook: cut a participant's inbound network ------------------------------

# While a protocol is blocked, its unblocked `datagram_received` waits here (or _CLASS_HANDLER:
# the class's own method), and the datagrams it dropped are counted in _DROPPED.
_UNBLOCKED = "_relay_unblocked_handler"
_DROPPED = "_relay_inbound_dropped"
_CLASS_HANDLER = object()


def _unblocked_handler(protocol: Any) -> Callable[[bytes, tuple[Any, ...]], None]:
    """The handler the protocol runs when not blocked (its current one if not blocked)."""
    saved = getattr(protocol, _UNBLOCKED, None)
    if saved is None:
        handler: Callable[[bytes, tuple[Any, ...]], None] = protocol.datagram_received
        return handler
    if saved is _CLASS_HANDLER:
        return type(protocol).datagram_received.__get__(protocol)
    return saved


def _set_unblocked_handler(
    protocol: Any, handler: Callable[[bytes, tuple[Any, ...]], None]
) -> None:
    """Install `handler` now, or (while blocked) for when the block is lifted."""
    if getattr(protocol, _UNBLOCKED, None) is None:
        protocol.datagram_received = handler
    else:
        setattr(protocol, _UNBLOCKED, handler)


def set_inbound_blocked(dtls: RTCDtlsTransport, blocked: bool) -> None:
    """Test/operations hook: drop every datagram that reaches this transport's ICE sockets.

    Blocking swaps `datagram_received` of every socket (aioice protocol) of the ICE
    connection under the DTLS transport for a function that counts and discards the
    datagram, so nothing from the far end reaches the server: not the fast path's SRTP,
    not aiortc's (RTP, RTCP, DTLS) nor aioice's (STUN checks and consent). Unblocking
    puts the previous handler back (the fast path's wrapper, if any). The server still
    sends. Costs nothing while unused: no per-packet check anywhere; blocking and
    unblocking are O(sockets). Kept under ~30 s it does not end the connection by
    itself (aioice's consent checks give up after 6 unanswered ones, ~30 s).
    """
    connection = ice_connection(dtls)
    for protocol in list(connection._protocols):
        if blocked:
            if getattr(protocol, _UNBLOCKED, None) is None:
                own = protocol.__dict__.get("datagram_received")
                setattr(protocol, _UNBLOCKED, own if own is not None else _CLASS_HANDLER)
                protocol.datagram_received = functools.partial(_drop_datagram, protocol)  # type: ignore[method-assign]
        else:
            saved = getattr(protocol, _UNBLOCKED, None)
            if saved is None:
                continue
            delattr(protocol, _UNBLOCKED)
            if saved is _CLASS_HANDLER:
                del protocol.datagram_received  # the class's method again
            else:
                protocol.datagram_received = saved  # type: ignore[method-assign]


def _drop_datagram(protocol: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    """What a blocked socket does with a datagram: count it, as lost by the network."""
    setattr(protocol, _DROPPED, getattr(protocol, _DROPPED, 0) + 1)


def inbound_blocked(dtls: RTCDtlsTransport) -> bool:
    """Whether `set_inbound_blocked(dtls, True)` is in force on any of its sockets."""
    connection = ice_connection(dtls)
    return any(getattr(p, _UNBLOCKED, None) is not None for p in connection._protocols)


def inbound_dropped(dtls: RTCDtlsTransport) -> int:
    """Datagrams the block has discarded on this transport's sockets so far."""
    connection = ice_connection(dtls)
    return sum(getattr(p, _DROPPED, 0) for p in connection._protocols)
