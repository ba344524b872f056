"""RTP header handling and key-frame detection on real packetized clips."""

from __future__ import annotations

import fractions

import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import clips
from media.rtp import Rewriter, build_packet, keyframe_start, parse_header


def packetize(codec: str, data: bytes) -> list[bytes]:
    mime = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96))
    packet = av.Packet(data)
    packet.pts = 0
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, _ = encoder.pack(packet)
    return payloads


def test_key_frames_are_recognised_only_at_their_first_packet():
    for codec in ("vp8", "h264"):
        clip = clips.video_clip((10, 200, 30), codec=codec)
        key_payloads = packetize(codec, clip.key[3])
        assert keyframe_start(codec, key_payloads[0]), codec
        assert not any(keyframe_start(codec, p) for p in key_payloads[1:]), codec
        for inter in clip.inter[1:5]:
            assert not any(keyframe_start(codec, p) for p in packetize(codec, inter)), codec


def test_header_round_trip_skips_extensions_and_padding():
    packet = RtpPacket(payload_type=111, marker=1, sequence_number=65535, timestamp=123, ssrc=42)
    packet.payload = b"hello"
    packet.extensions.mid = "3"
    packet.padding_size = 4
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
            ]
        )
    )
    data = packet.serialize(ext_map)
    header = parse_header(data)
    assert (header.marker, header.payload_type, header.sequence, header.timestamp, header.ssrc) == (
        True,
        111,
        65535,
        123,
        42,
    )
    assert data[header.payload_offset : header.payload_end] == b"hello"
    rebuilt = build_packet(True, 96, 7, 123, 99, b"hello")
    again = parse_header(rebuilt)
    assert (again.payload_type, again.sequence, again.ssrc) == (96, 7, 99)
    assert rebuilt[again.payload_offset :] == b"hello"


def header(seq: int, ts: int = 1000, ssrc: int = 5):
    return parse_header(build_packet(False, 96, seq, ts, ssrc, b"x"))


def test_rewriter_keeps_subscriber_sequence_contiguous_across_drops():
    r = Rewriter(ssrc=1, payload_type=97)
    assert r.map(header(100))[0] == 100  # first packet passes through
    assert r.map(header(101))[0] == 101
    r.resync = True  # the server dropped 102..109 waiting for a key frame
    assert r.map(header(110))[0] == 102
    assert r.map(header(111))[0] == 103
    assert r.source_sequence(103) == 111
    assert r.source_sequence(101) is None  # sent before the resync: not the publisher's 109


def test_rewriter_continues_across_a_new_source_ssrc():
    r = Rewriter(ssrc=1, payload_type=97)
    r.map(header(65535, ts=5000, ssrc=5))
    seq, ts = r.map(header(20, ts=900000, ssrc=6))
    assert seq == 0 and ts == 8000
