"""Segmenting real packetized clips by stream copy, checked by decoding the files."""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import clips
from media.rtp import keyframe_start
from recorder.segmenter import Frame, FrameAssembler, RtpClock, Segmenter, vp8_size

FPS = 15
KEYS = (0, 8, 16, 24)  # frames sent as key frames (the clip's branches)


@dataclass
class Tapped:
    kind: str
    codec: str
    payload: bytes
    rtp_timestamp: int
    sequence: int
    marker: bool
    keyframe: bool
    arrival_ms: int


def packetize(codec: str, data: bytes) -> list[bytes]:
    mime = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96))
    packet = av.Packet(data)
    packet.pts = 0
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, _ = encoder.pack(packet)
    return payloads


def video_frames(codec: str) -> list[bytes]:
    clip = clips.video_clip((200, 40, 40), codec=codec, frames=30)
    out = []
    for n in range(30):
        branch = max(k for k in KEYS if k <= n)
        out.append(clip.frame(branch, n))
    return out


def video_packets(codec: str, seq0: int = 65500, ts0: int = 4294900000) -> list[Tapped]:
    packets = []
    seq = seq0
    for n, data in enumerate(video_frames(codec)):
        payloads = packetize(codec, data)
        ts = (ts0 + n * 90000 // FPS) & 0xFFFFFFFF
        for i, payload in enumerate(payloads):
            packets.append(
                Tapped(
                    "video",
                    codec,
                    payload,
                    ts,
                    seq & 0xFFFF,
                    i == len(payloads) - 1,
                    i == 0 and keyframe_start(codec, payload),
                    1000 + n * 1000 // FPS,
                )
            )
            seq += 1
    return packets


def audio_packets(seconds: int = 2) -> list[Tapped]:
    tone = clips.audio_clip(440).packets
    return [
        Tapped("audio", "opus", tone[n % len(tone)], 7000 + n * 960, n, False, False, 1000 + n * 20)
        for n in range(seconds * 50)
    ]


def record(codec: str, tmp_path, round_ms: int = 0) -> tuple[list, Segmenter]:
    """Frames in arrival order; with `round_ms`, in rounds as the recorder takes them: a
    round's video, then its audio."""
    segmenter = Segmenter(tmp_path, codec, target_s=1.0)
    video_asm, audio_asm = FrameAssembler(codec), FrameAssembler("opus")
    video_clock, audio_clock = RtpClock(codec, 1000), RtpClock("opus", 1000)
    events = sorted(
        [(p.arrival_ms, 0, p) for p in video_packets(codec)]
        + [(p.arrival_ms, 1, p) for p in audio_packets()],
        key=lambda e: (e[0] // round_ms, e[1], e[0]) if round_ms else (e[0], e[1]),
    )
    closed = []
    for _, _, packet in events:
        if packet.kind == "video":
            for frame in video_asm.feed(packet):
                pts = video_clock.to_ms(frame.rtp_timestamp, frame.arrival_ms)
                closed += segmenter.add_video(frame, pts)
        else:
            for frame in audio_asm.feed(packet):
                pts = audio_clock.to_ms(frame.rtp_timestamp, frame.arrival_ms)
                closed += segmenter.add_audio(frame, pts)
    closed += segmenter.close()
    assert video_asm.gaps == 0 and audio_asm.gaps == 0
    return closed, segmenter


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_segments_open_decode_and_continue(codec, tmp_path):
    closed, _ = record(codec, tmp_path)
    ext = "webm" if codec == "vp8" else "mkv"
    assert [p.name for p in closed] == [f"00000{i}.{ext}" for i in range(1, len(closed) + 1)]
    assert len(closed) == 2  # cut at frame 16, the first key frame after 1 s
    counters: list[int] = []
    previous_last_pts = None
    for path in closed:
        with av.open(str(path)) as container:
            assert container.duration  # Duration written on close
            video = container.streams.video[0]
            assert (video.codec_context.width, video.codec_context.height) == (320, 240)
            assert container.streams.audio, "no audio"
            packets = [p for p in container.demux(video) if p.size]
            assert packets[0].is_keyframe
            pts = [p.pts for p in packets]
            assert pts == sorted(pts) and len(set(pts)) == len(pts)
            if previous_last_pts is not None:
                gap_ms = float((pts[0] - previous_last_pts) * video.time_base * 1000)
                assert 0 < gap_ms <= 1000 / FPS + 2
            previous_last_pts = pts[-1]
        with av.open(str(path)) as container:
            container.seek(0)  # Cues present: seekable
            frames = list(container.decode(video=0))
            seg = [clips.read_counter(f) for f in frames]
            assert seg == list(range(seg[0], seg[0] + len(frames)))
            counters += seg
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(audio=0)) > 10
    assert counters == list(range(30))


def test_a_segments_first_and_last_pts_are_those_in_its_file(tmp_path):
    """In rounds, the key frame that opens a segment is muxed before the same round's audio,
    whose earlier packets then go into the new segment: the times its chain link names
    (first/last pts, so start/end UTC) are still those of the packets in the file."""
    closed, segmenter = record("vp8", tmp_path, round_ms=500)
    assert len(closed) == 2
    for path in closed:
        info = segmenter.info[path]
        pts = packet_times_ms(path)
        assert (info.first_pts_ms, info.last_pts_ms) == (min(pts), max(pts)), path.name
    # The case this test is about happened: audio before the opening key frame.
    assert min(packet_times_ms(closed[1], "audio")) < min(packet_times_ms(closed[1], "video"))


def packet_times_ms(path, kind: str | None = None) -> list[int]:
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if kind is None or s.type == kind]
        return [
            round(float(p.pts * p.time_base * 1000))
            for p in container.demux(streams)
            if p.size and p.pts is not None
        ]


def test_sequence_gap_skips_to_next_key_frame():
    packets = video_packets("vp8")
    # Drop one packet of frame 3: frames 3..7 are lost, frame 8 (a key frame) resumes.
    index = next(
        i for i, p in enumerate(packets) if p.rtp_timestamp == packets[0].rtp_timestamp + 3 * 6000
    )
    missing = packets[index].sequence & 0xFFFF
    del packets[index]
    assembler = FrameAssembler("vp8")
    frames = assembler.feed_all(packets)
    assert assembler.gaps == 1 and assembler.lost_packets == 1
    assert assembler.gap_log == [(missing, missing, 1)]  # the evidence of the loss
    # ... and of the packets received but skipped until that key frame: the rest of frame 3
    # and frames 4..7, as one run.
    resume = next(
        i for i, p in enumerate(packets) if p.rtp_timestamp == packets[0].rtp_timestamp + 8 * 6000
    )
    skipped = packets[index:resume]
    assert assembler.skip_log == [(skipped[0].sequence, skipped[-1].sequence, len(skipped))]
    assert len(frames) == 30 - 5
    assert (
        frames[3].keyframe
        and frames[3].rtp_timestamp == (packets[0].rtp_timestamp + 8 * 6000) & 0xFFFFFFFF
    )
    assert vp8_size(frames[0].data) == (320, 240)
    assert frames[0].keyframe and not frames[1].keyframe


def test_audio_only_is_segmented_by_time(tmp_path):
    segmenter = Segmenter(tmp_path, None, target_s=1.0)
    assembler, clock = FrameAssembler("opus"), RtpClock("opus", 1000)
    closed = []
    for packet in audio_packets(3):
        for frame in assembler.feed(packet):
            closed += segmenter.add_audio(frame, clock.to_ms(frame.rtp_timestamp, frame.arrival_ms))
    closed += segmenter.close()
    assert len(closed) == 3
    for path in closed:
        with av.open(str(path)) as container:
            assert not container.streams.video
            assert 40 <= sum(1 for _ in container.decode(audio=0)) <= 60


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_resolution_change_starts_a_new_segment(tmp_path, codec):
    """A key frame of another size (VP8 frame header, H.264 SPS) closes the segment; each
    file has one size."""
    small = clips.video_clip((40, 200, 40), codec=codec, width=320, height=240, frames=4)
    large = clips.video_clip((40, 40, 200), codec=codec, width=640, height=480, frames=4)
    segmenter = Segmenter(tmp_path, codec, target_s=60.0)
    frames = [small.frame(0, n) for n in range(4)] + [large.frame(0, n) for n in range(4)]
    closed = []
    for n, data in enumerate(frames):
        frame = Frame(data, n * 6000, keyframe=n in (0, 4))
        closed += segmenter.add_video(frame, n * 66)
    closed += segmenter.close()
    assert len(closed) == 2
    sizes = []
    for path in closed:
        info = segmenter.info[path]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            sizes.append((stream.codec_context.width, stream.codec_context.height))
            decoded = sum(1 for _ in container.decode(stream))
        assert decoded == info.video_frames == 4
    assert sizes == [(320, 240), (640, 480)]
    assert [segmenter.info[p].size for p in closed] == sizes
    assert segmenter.info[closed[1]].first_pts_ms == 4 * 66
