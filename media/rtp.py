"""RTP bytes without aiortc: header parsing and building, key-frame detection, rewriting.

Pure functions on plaintext RTP (RFC 3550), used on the forwarding path. The
server forwards a publisher's packets to each subscriber with the subscriber's
SSRC and payload type, without header extensions (ids differ between legs), and
with sequence numbers kept contiguous across the packets it chose to drop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_HEADER = struct.Struct("!BBHII")


@dataclass(slots=True)
class RtpHeader:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int  # where the payload starts in the packet
    payload_end: int  # where the payload ends (padding excluded)

    @property
    def sequence_number(self) -> int:
        """aiortc's name, so receiver statistics can count a header directly."""
        return self.sequence


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_header(data: bytes | memoryview) -> RtpHeader:
    """Parse an RTP header; raises ValueError on a malformed packet."""
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its header")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("not RTP version 2")
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < offset + 4:
            raise ValueError("truncated header extension")
        words = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:
        end -= data[-1]
    if offset > end:
        raise ValueError("truncated RTP packet")
    return RtpHeader(
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_offset=offset,
        payload_end=end,
    )


def build_header(
    marker: bool, payload_type: int, sequence: int, timestamp: int, ssrc: int
) -> bytes:
    """A plain 12-byte RTP header: no CSRCs, no header extensions, no padding."""
    return RTP_HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence, timestamp & 0xFFFFFFFF, ssrc
    )


def build_packet(
    marker: bool, payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    """A plain RTP packet: no CSRCs, no header extensions, no padding."""
    return build_header(marker, payload_type, sequence, timestamp, ssrc) + payload


def vp8_keyframe_start(payload: bytes) -> bool:
    """True if the packet starts a VP8 key frame (RFC 7741 payload descriptor)."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, partition index 0
        return False
    offset = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            offset += 1
    if len(payload) <= offset:
        return False
    return not payload[offset] & 0x01  # P bit clear: key frame


H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def h264_keyframe_start(payload: bytes) -> bool:
    """True if the packet starts an H.264 key frame: an SPS, or the start of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (H264_IDR, H264_SPS):
        return True
    if nal_type == H264_STAP_A:
        offset = 1
        while offset + 2 < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            if offset + 2 < len(payload) and payload[offset + 2] & 0x1F in (H264_IDR, H264_SPS):
                return True
            offset += 2 + size
        return False
    if nal_type == H264_FU_A and len(payload) > 1:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == H264_IDR
    return False


def keyframe_start(codec: str, payload: bytes) -> bool:
    """Does this packet start a frame a decoder can begin with? Audio always can."""
    if codec == "vp8":
        return vp8_keyframe_start(payload)
    if codec == "h264":
        return h264_keyframe_start(payload)
    return True


def seq_add(a: int, b: int) -> int:
    return (a + b) & 0xFFFF


def seq_newer(a: int, b: int) -> bool:
    """a comes after b in 16-bit sequence space."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


@dataclass(slots=True)
class Rewriter:
    """Maps one publisher stream onto one subscriber stream.

    Sequence numbers stay contiguous for the subscriber across packets the server
    dropped (a subscriber waiting for a key frame sees no gap to NACK); timestamps
    pass through, shifted only when the source changes (a publisher's new SSRC).
    """

    ssrc: int  # the subscriber-side SSRC
    payload_type: int  # the subscriber-side payload type
    source_ssrc: int | None = None
    seq_offset: int = 0
    ts_offset: int = 0
    last_seq: int | None = None  # last sequence number sent to the subscriber
    last_ts: int | None = None
    resync: bool = True  # recompute the offsets at the next forwarded packet
    epoch_start: int | None = None  # first subscriber sequence mapped with the current offset

    def map(self, header: RtpHeader) -> tuple[int, int]:
        """Subscriber-side (sequence, timestamp) for a packet that will be forwarded."""
        if self.source_ssrc != header.ssrc:
            if self.last_ts is not None:
                self.ts_offset = (self.last_ts + 3000 - header.timestamp) & 0xFFFFFFFF
            self.source_ssrc = header.ssrc
            self.resync = True
        if self.resync:
            self.resync = False
            if self.last_seq is not None:
                self.seq_offset = (self.last_seq + 1 - header.sequence) & 0xFFFF
            self.epoch_start = seq_add(header.sequence, self.seq_offset)
        seq = seq_add(header.sequence, self.seq_offset)
        ts = (header.timestamp + self.ts_offset) & 0xFFFFFFFF
        if self.last_seq is None or seq_newer(seq, self.last_seq):
            self.last_seq = seq
            self.last_ts = ts
        return seq, ts

    def source_sequence(self, subscriber_seq: int) -> int | None:
        """The publisher's sequence number for a subscriber's NACK.

        None for a packet sent before the last resync (another offset, maybe another
        source): asking the publisher for it would fetch a different packet.
        """
        start = self.epoch_start
        if start is not None and subscriber_seq != start and not seq_newer(subscriber_seq, start):
            return None
        return (subscriber_seq - self.seq_offset) & 0xFFFF
