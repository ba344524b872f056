"""Replay files: real clips segmented by the Segmenter, remuxed, then decoded and sought in."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import clips
from media.rtp import keyframe_start
from recorder.replay import ReplayInfo, remux_segments, replay_extension
from recorder.segmenter import FrameAssembler, RecorderError, RtpClock, Segmenter, SegmentWriter
from tests.recorder.test_segmenter import Tapped, packetize

FPS = 15
FRAMES = 30
KEYS = (0, 8, 16, 24)  # frames sent as key frames (the clip's branches)
TARGET_S = 0.5  # cut at keys 8, 16, 24: four video segments of 8, 8, 8 and 6 frames
VIDEO_START_MS = 1000  # arrival of frame 0, in ms since the call start
AUDIO_START_MS = 500  # audio arrives before the first video key frame
AUDIO_PACKETS = 125  # 20 ms each: 500..3000 ms, past the last video frame
FRAME_MS = 1000 / FPS
COLOUR = (200, 40, 40)
RESIZED = (384, 288)  # the size after a resolution change


def frame_call_ms(n: int) -> int:
    """Call time of frame n, as RtpClock maps its RTP timestamp."""
    return VIDEO_START_MS + n * (90000 // FPS) * 1000 // 90000


def video_frame(codec: str, n: int, resize: bool) -> bytes:
    branch = max(k for k in KEYS if k <= n)
    if resize and n >= 16:
        width, height = RESIZED
        return clips.video_clip(COLOUR, codec=codec, width=width, height=height).frame(branch, n)
    return clips.video_clip(COLOUR, codec=codec).frame(branch, n)


def video_packets(codec: str, resize: bool, dropped: range) -> list[Tapped]:
    packets = []
    seq = 100
    for n in range(FRAMES):
        payloads = packetize(codec, video_frame(codec, n, resize))
        for i, payload in enumerate(payloads):
            if n not in dropped:
                packets.append(
                    Tapped(
                        "video",
                        codec,
                        payload,
                        1000 + n * 90000 // FPS,
                        seq,
                        i == len(payloads) - 1,
                        i == 0 and keyframe_start(codec, payload),
                        frame_call_ms(n),
                    )
                )
            seq += 1
    return packets


def audio_packets(dropped_ms: range) -> list[Tapped]:
    tone = clips.audio_clip(440).packets
    packets = []
    for n in range(AUDIO_PACKETS):
        arrival = AUDIO_START_MS + n * 20
        if arrival not in dropped_ms:
            packets.append(
                Tapped(
                    "audio", "opus", tone[n % len(tone)], 7000 + n * 960, n, False, False, arrival
                )
            )
    return packets


def record(
    directory: Path, codec: str | None, *, resize: bool = False, dropped: range = range(0)
) -> list[Path]:
    """Feed packetized clips through the assemblers and a Segmenter; the closed segments.

    `dropped` frames (and the audio of the same stretch) never reach the recorder.
    """
    segmenter = Segmenter(directory, codec, target_s=TARGET_S)
    dropped_ms = (
        range(frame_call_ms(dropped.start), frame_call_ms(dropped.stop)) if dropped else dropped
    )
    events = [(p.arrival_ms, 1, p) for p in audio_packets(dropped_ms)]
    if codec is not None:
        events += [(p.arrival_ms, 0, p) for p in video_packets(codec, resize, dropped)]
    assemblers = {"audio": FrameAssembler("opus")}
    clocks = {"audio": RtpClock("opus", 0)}
    if codec is not None:
        assemblers["video"], clocks["video"] = FrameAssembler(codec), RtpClock(codec, 0)
    closed: list[Path] = []
    for _, _, packet in sorted(events, key=lambda e: (e[0], e[1])):
        for frame in assemblers[packet.kind].feed(packet):
            pts = clocks[packet.kind].to_ms(frame.rtp_timestamp, frame.arrival_ms)
            closed += segmenter.add(packet.kind, frame, pts)
    closed += segmenter.close()
    return closed


@dataclass(frozen=True)
class Picture:
    counter: int
    pts_ms: float
    size: tuple[int, int]


@dataclass(frozen=True)
class Contents:
    pictures: list[Picture]
    audio_pts_ms: list[float]  # of the audio packets, in file order


def _ms(value: int | None, time_base: Fraction | None) -> float:
    assert value is not None and time_base is not None
    return float(value * time_base * 1000)


def contents(path: Path) -> Contents:
    """Decode every video frame (counter, time, size); list every audio packet's time."""
    with av.open(str(path)) as container:
        pictures = [
            Picture(clips.read_counter(f), _ms(f.pts, f.time_base), (f.width, f.height))
            for f in (container.decode(video=0) if container.streams.video else ())
        ]
    with av.open(str(path)) as container:
        audio = [_ms(p.pts, p.time_base) for p in container.demux(audio=0) if p.size]
    return Contents(pictures, audio)


def decoded_audio_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(audio=0))


def fingerprint(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


def seek_frame(path: Path, t_ms: int) -> Picture:
    """Seek to t (back to a key frame), decode forward to the first frame at or after t."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        container.seek(int(Fraction(t_ms, 1000) / stream.time_base), stream=stream)
        for frame in container.decode(stream):
            pts = _ms(frame.pts, frame.time_base)
            if pts >= t_ms:
                return Picture(clips.read_counter(frame), pts, (frame.width, frame.height))
    raise AssertionError(f"no frame at or after {t_ms} ms")


def painted_for(t_ms: int, offset_ms: int) -> int:
    """The frame on screen at file time t: the last one painted at or before it."""
    return max(n for n in range(FRAMES) if frame_call_ms(n) - offset_ms <= t_ms)


def ebml_children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(element id, data offset, data size) of the EBML elements between start and end."""

    def vint(offset: int, keep_marker: bool) -> tuple[int, int]:
        length = 1
        while not data[offset] & (0x80 >> (length - 1)):
            length += 1
        value = int.from_bytes(data[offset : offset + length], "big")
        if not keep_marker:
            value &= (1 << (7 * length)) - 1
        return value, offset + length

    offset = start
    while offset < end:
        element, offset = vint(offset, True)
        size, offset = vint(offset, False)
        yield element, offset, size
        offset += size


SEGMENT, INFO, DURATION, CLUSTER, CUES, CUE_POINT = (
    0x18538067,
    0x1549A966,
    0x4489,
    0x1F43B675,
    0x1C53BB6B,
    0xBB,
)


def webm_index(path: Path) -> tuple[float, int, int, int]:
    """Duration (ms), number of cue points, offset of the Cues, offset of the first cluster."""
    data = path.read_bytes()
    segment = next((o, s) for i, o, s in ebml_children(data, 0, len(data)) if i == SEGMENT)
    children = list(ebml_children(data, segment[0], segment[0] + segment[1]))
    info = next((o, s) for i, o, s in children if i == INFO)
    duration = next(
        struct.unpack(">d" if s == 8 else ">f", data[o : o + s])[0]
        for i, o, s in ebml_children(data, info[0], info[0] + info[1])
        if i == DURATION
    )
    cues = next((o, s) for i, o, s in children if i == CUES)
    points = sum(1 for i, _, _ in ebml_children(data, cues[0], cues[0] + cues[1]) if i == CUE_POINT)
    first_cluster = min((o for i, o, _ in children if i == CLUSTER), default=len(data))
    return duration, points, cues[0], first_cluster


def mp4_atoms(path: Path) -> list[tuple[str, int]]:
    """Top-level atoms (type, byte offset) in file order."""
    data = path.read_bytes()
    atoms, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        atoms.append((kind.decode("latin-1"), offset))
        offset += size
    return atoms


@dataclass(frozen=True)
class Remuxed:
    codec: str | None
    segments: list[Path]
    before: dict[Path, tuple[str, int, int]]  # fingerprints taken before the remux
    info: ReplayInfo


def remux(directory: Path, codec: str | None, **kwargs: object) -> Remuxed:
    segments = record(directory / "segments", codec, **kwargs)  # type: ignore[arg-type]
    before = {p: fingerprint(p) for p in segments}
    out = directory / "replay" / f"participant.{replay_extension(codec)}"
    return Remuxed(codec, segments, before, remux_segments(segments, out, codec))


@pytest.fixture(scope="module", params=["vp8", "h264"])
def remuxed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Remuxed:
    return remux(tmp_path_factory.mktemp(request.param), request.param)


def test_audio_before_the_first_key_frame_makes_an_audio_only_first_segment(remuxed):
    """The case the replay must survive is really there: 1 audio-only + 4 video segments."""
    assert len(remuxed.segments) == 5
    first, *rest = (contents(p) for p in remuxed.segments)
    assert not first.pictures and first.audio_pts_ms
    assert all(c.pictures for c in rest)
    assert remuxed.info.start_offset_ms == AUDIO_START_MS  # the file starts with that audio


def test_every_frame_is_in_the_replay_in_order(remuxed):
    """The decoded frame count is the segments' sum; painted counters run 0..29, none lost."""
    segment_pictures = [p for s in remuxed.segments for p in contents(s).pictures]
    replay = contents(remuxed.info.path).pictures
    assert len(replay) == len(segment_pictures) == remuxed.info.video_frames == FRAMES
    assert [p.counter for p in replay] == list(range(FRAMES))
    # Times continue from the segments, shifted so that the file starts at 0.
    offset = remuxed.info.start_offset_ms
    assert [p.pts_ms for p in replay] == [p.pts_ms - offset for p in segment_pictures]
    assert [p.pts_ms for p in replay] == [frame_call_ms(n) - offset for n in range(FRAMES)]


def test_every_audio_packet_is_in_the_replay(remuxed):
    """Audio packet count and times are preserved, and every packet decodes."""
    segment_audio = [t for s in remuxed.segments for t in contents(s).audio_pts_ms]
    replay_audio = contents(remuxed.info.path).audio_pts_ms
    assert len(replay_audio) == len(segment_audio) == remuxed.info.audio_frames == AUDIO_PACKETS
    offset = remuxed.info.start_offset_ms
    assert replay_audio == pytest.approx([t - offset for t in segment_audio], abs=0.05)
    assert decoded_audio_frames(remuxed.info.path) == AUDIO_PACKETS


@pytest.mark.parametrize("frame,late_ms", [(3, 20), (5, 0), (11, 30), (13, 0), (19, 40), (27, 10)])
def test_seeking_returns_the_frame_painted_for_t(remuxed, frame, late_ms):
    """Seek to t, decode forward to the first frame at or after t: the frame for t, ±1."""
    offset = remuxed.info.start_offset_ms
    t = frame_call_ms(frame) - offset + late_ms
    picture = seek_frame(remuxed.info.path, t)
    assert picture.counter - painted_for(t, offset) in (0, 1)
    assert t <= picture.pts_ms < t + FRAME_MS
    if late_ms == 0:
        assert picture.counter == frame


def test_the_file_is_indexed_for_seeking(remuxed):
    """WebM: Cues (in front) and a Duration; MP4: moov before mdat (faststart)."""
    path = remuxed.info.path
    if remuxed.codec == "vp8":
        duration, cue_points, cues_at, first_cluster = webm_index(path)
        assert cue_points >= 4  # at least every video segment's first key frame
        assert cues_at < first_cluster
        assert abs(duration - remuxed.info.duration_ms) <= FRAME_MS
    else:
        atoms = mp4_atoms(path)
        kinds = [kind for kind, _ in atoms]
        assert kinds[0] == "ftyp" and "moov" in kinds and "mdat" in kinds
        assert dict(atoms)["moov"] < dict(atoms)["mdat"]
        with av.open(str(path)) as container:
            assert container.duration is not None
            assert abs(container.duration / 1000 - remuxed.info.duration_ms) <= FRAME_MS
    assert remuxed.info.duration_ms >= frame_call_ms(FRAMES - 1) - remuxed.info.start_offset_ms


def test_originals_are_untouched_and_the_info_describes_the_file(remuxed):
    """Segment bytes, sizes and mtimes are as before; size and hash are the file's."""
    assert {p: fingerprint(p) for p in remuxed.segments} == remuxed.before
    info = remuxed.info
    head = info.path.read_bytes()[:8]
    assert head[:4] == b"\x1a\x45\xdf\xa3" if remuxed.codec == "vp8" else head[4:] == b"ftyp"
    assert info.size == info.path.stat().st_size
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    assert sorted(os.listdir(info.path.parent)) == [info.path.name]  # no temp file left


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_dropped_stretch_stays_a_gap(codec, tmp_path):
    """Frames 10..15 (and their audio) never arrived: the replay keeps the hole in time."""
    result = remux(tmp_path, codec, dropped=range(10, 16))
    replay = contents(result.info.path)
    counters = [p.counter for p in replay.pictures]
    assert counters == [*range(10), *range(16, FRAMES)]
    before, after = replay.pictures[9], replay.pictures[10]
    assert after.pts_ms - before.pts_ms == frame_call_ms(16) - frame_call_ms(9)
    audio_steps = [
        b - a for a, b in zip(replay.audio_pts_ms, replay.audio_pts_ms[1:], strict=False)
    ]
    assert max(audio_steps) >= (frame_call_ms(16) - frame_call_ms(10)) - 20
    segment_audio = [t for s in result.segments for t in contents(s).audio_pts_ms]
    offset = result.info.start_offset_ms
    assert replay.audio_pts_ms == pytest.approx([t - offset for t in segment_audio], abs=0.05)
    # A time inside the hole: the next frame is the first after it, not a shifted one.
    t = frame_call_ms(12) - offset
    assert seek_frame(result.info.path, t).counter == 16
    assert result.info.duration_ms >= frame_call_ms(FRAMES - 1) - offset


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_resolution_change_decodes_at_both_sizes(codec, tmp_path):
    """The segment from key frame 16 on is 384x288: the replay decodes and seeks in both sizes."""
    result = remux(tmp_path, codec, resize=True)
    sizes = [{p.size for p in contents(s).pictures} for s in result.segments[1:]]
    assert sizes == [{(320, 240)}, {(320, 240)}, {RESIZED}, {RESIZED}]
    pictures = contents(result.info.path).pictures
    assert [p.counter for p in pictures] == list(range(FRAMES))
    assert [p.size for p in pictures] == [(320, 240)] * 16 + [RESIZED] * 14
    offset = result.info.start_offset_ms
    for frame in (11, 21):
        picture = seek_frame(result.info.path, frame_call_ms(frame) - offset)
        assert picture.counter == frame
        assert picture.size == ((320, 240) if frame < 16 else RESIZED)


def test_audio_only_participant_gives_an_audio_only_webm(tmp_path):
    """Audio-only segments cut by time become one WebM with every audio packet."""
    result = remux(tmp_path, None)
    assert len(result.segments) == 5 and result.info.path.suffix == ".webm"
    replay = contents(result.info.path)
    assert not replay.pictures
    segment_audio = [t for s in result.segments for t in contents(s).audio_pts_ms]
    assert len(replay.audio_pts_ms) == len(segment_audio) == result.info.audio_frames
    assert replay.audio_pts_ms == pytest.approx([t - AUDIO_START_MS for t in segment_audio])
    assert decoded_audio_frames(result.info.path) == AUDIO_PACKETS
    assert result.info.video_frames == 0 and result.info.start_offset_ms == AUDIO_START_MS
    duration, cue_points, _, _ = webm_index(result.info.path)
    assert cue_points >= 1 and abs(duration - result.info.duration_ms) <= 20


def test_a_failed_remux_leaves_no_file(tmp_path):
    """Segments out of order fail while writing; nothing is left at or beside out_path."""
    segments = record(tmp_path / "segments", "vp8")
    out = tmp_path / "replay" / "participant.webm"
    with pytest.raises(RecorderError, match="before the first segment"):
        remux_segments([segments[2], *segments[:2], *segments[3:]], out, "vp8")
    assert os.listdir(out.parent) == []
    with pytest.raises(RecorderError, match="time goes back"):
        remux_segments([*segments[:2], segments[3], segments[2], segments[4]], out, "vp8")
    assert os.listdir(out.parent) == []


def test_a_ms_collision_at_a_segment_boundary_is_moved_1_ms(tmp_path):
    """Frame 8, stamped like frame 7 in the next segment, is moved 1 ms later; no other."""
    clip = clips.video_clip(COLOUR, codec="vp8")
    paths = []
    for first, last, start_ms in ((0, 7, 0), (8, 15, 7 * 66)):
        writer = SegmentWriter(tmp_path / f"{first:06d}.webm", "vp8", start_ms)
        for n in range(first, last + 1):
            writer.write_video(clip.frame(first, n), start_ms + (n - first) * 66, n == first)
        path = writer.close()
        assert path is not None
        paths.append(path)
    info = remux_segments(paths, tmp_path / "replay" / "p.webm", "vp8")
    pictures = contents(info.path).pictures
    assert [p.counter for p in pictures] == list(range(16))
    stamped = [n * 66 for n in range(8)] + [(n - 1) * 66 for n in range(8, 16)]
    stamped[8] += 1  # only the colliding frame moves
    assert [p.pts_ms for p in pictures] == stamped


def test_an_unreadable_or_foreign_segment_is_an_error(tmp_path):
    """A segment of another codec, or one FFmpeg cannot read, fails with its name."""
    segments = record(tmp_path / "segments", "vp8")
    with pytest.raises(RecorderError, match="000002.webm: video 'vp8', expected 'h264'"):
        remux_segments(segments, tmp_path / "participant.mp4", "h264")
    segments[2].write_bytes(b"not a media file at all")
    with pytest.raises(RecorderError, match="000003.webm"):
        remux_segments(segments, tmp_path / "participant.webm", "vp8")
    assert sorted(os.listdir(tmp_path)) == ["segments"]


def test_refuses_a_wrong_suffix_or_overwriting_a_segment(tmp_path):
    segments = record(tmp_path, None)
    with pytest.raises(RecorderError, match=r"\.mp4"):
        remux_segments(segments, tmp_path / "replay.webm", "h264")
    with pytest.raises(RecorderError, match="overwrite"):
        remux_segments(segments, segments[0], None)
    with pytest.raises(RecorderError):
        remux_segments([], tmp_path / "replay.webm", None)


def test_a_key_frame_stamped_before_the_audio_only_first_segment_starts(tmp_path):
    """The first segment is audio-only (audio came before the first key frame) and the next
    starts with the key frame, stamped by its first packet's arrival a few ms EARLIER than
    that audio: the replay starts at the earliest packet, nothing is refused or lost."""
    clip = clips.video_clip(COLOUR, codec="vp8")
    audio = clips.audio_clip(440)
    first = SegmentWriter(tmp_path / "000001.webm", None, 450)
    for n in range(3):
        first.write_audio(audio.packets[n], 450 + 20 * n)
    second = SegmentWriter(tmp_path / "000002.webm", "vp8", 446)
    for n in range(8):
        second.write_video(clip.frame(0, n), 446 + n * 66, n == 0)
        second.write_audio(audio.packets[3 + n], 510 + 20 * n)
    paths = [first.close(), second.close()]
    assert all(p is not None for p in paths)
    info = remux_segments(paths, tmp_path / "replay" / "p.webm", "vp8")  # type: ignore[arg-type]
    assert info.start_offset_ms == 446
    pictures = contents(info.path).pictures
    assert [p.counter for p in pictures] == list(range(8))
    assert pictures[0].pts_ms == 0
    assert decoded_audio_frames(info.path) == 11
