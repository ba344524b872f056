"""Replay files: one participant's segments remuxed into one seekable file.

After a call, each participant's closed segments (000001.webm, 000002.webm/.mkv…)
become one file a player can seek in, by stream copy only: packets are read from
the segments and written again with new timestamps; nothing is decoded or encoded.
The segments stay the evidence; they are opened read-only and never touched.

Containers:
- VP8(+Opus) and audio-only → WebM, closed with Cues (an index of the video key
  frames, or of the clusters when audio-only) and a Duration, so a browser can
  seek in it; `cues_to_front` puts the Cues before the clusters (WebM's faststart).
- H.264(+Opus) → MP4 with `movflags=+faststart` (the `moov` index moved in front
  of `mdat`, so playback over HTTP can start and seek without reading to the end).
  Opus in MP4 (`Opus` sample entry with `dOps`) is written and read back by this
  FFmpeg (libavformat 62, PyAV 18.1): checked by the tests, which decode every
  audio packet of the MP4 again.

Timing: segments carry ms since the call start, continuing across segments. The
replay file starts at 0: every timestamp is shifted by the first packet's time,
which is returned as `start_offset_ms` (call time = file time + start_offset_ms).
Gaps between segments (a dropped stretch) stay gaps; they are never closed up.
In MP4, where a sample's time is the sum of the durations before it, a gap
becomes the duration of the sample before it.

Resolution changes (a change starts a new segment):
- VP8: every key frame carries its own size and decoders (FFmpeg, browsers)
  follow it; the WebM track header gives the first segment's size.
- H.264: the MP4 sample entry (avcC) holds the first video segment's SPS/PPS.
  Every segment starts with a key frame that carries its own SPS/PPS in-band
  (SegmentWriter takes the track's avcC from them, and WebRTC senders send them
  with every IDR), and the copy keeps them, so a later segment's new size is
  announced in the stream; FFmpeg's decoder follows it (tested). Only one
  sample entry is written (FFmpeg's MP4 muxer writes one per track): a reader
  that trusts the sample entry alone and ignores in-band parameter sets would
  show the later part wrongly; such a call can still be played from its segments.

Audio-only segments (audio that came before the first video key frame) are
simply audio without video: in the replay the video track starts later.

Synchronous and CPU-light (no codec work): the caller runs it in an executor.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream

from recorder.files import file_digest, fsync_path
from recorder.segmenter import MS, RecorderError

logger = logging.getLogger(__name__)

# video codec → replay container: the FFmpeg muxer's name and the file extension alike
REPLAY_FORMATS: dict[str | None, str] = {"vp8": "webm", "h264": "mp4", None: "webm"}
# Output time bases: WebM counts in ms; MP4 video in the usual 90 kHz, audio in samples.
_TIME_BASES = {
    ("webm", "video"): MS,
    ("webm", "audio"): MS,
    ("mp4", "video"): Fraction(1, 90000),
    ("mp4", "audio"): Fraction(1, 48000),
}
# A packet at most this much earlier than the one before it in its track (a ms
# collision at a segment boundary, say) is moved just after it; more is an error.
MAX_OVERLAP_MS = 10


@dataclass(frozen=True, slots=True)
class ReplayInfo:
    """What was written: the file, its hash, and what it holds."""

    path: Path
    size: int  # bytes
    sha256: str  # lowercase hex of the file
    video_frames: int  # video packets written (one per frame)
    audio_frames: int  # audio packets written (Opus packets)
    duration_ms: int  # from the file's start (0) to the end of its last packet
    start_offset_ms: int  # call time of the file's 0 (ms since the call start)


def replay_extension(video_codec: str | None) -> str:
    """The replay file's extension ("webm" or "mp4", no dot) for a participant's video codec."""
    if video_codec not in REPLAY_FORMATS:
        raise RecorderError(f"unsupported video codec {video_codec!r}")
    return REPLAY_FORMATS[video_codec]


@dataclass(slots=True)
class _Track:
    """One output stream and the timing state carried across segments."""

    kind: str  # "video" | "audio"
    stream: Stream
    last_dts_ms: int | None = None
    end_ms: int = 0  # end of the last packet (pts + duration)
    packets: int = 0
    bumped: int = 0  # packets whose time had to be moved to keep DTS increasing
    held: Packet | None = None  # video: waits for the next frame to learn its duration
    intervals: collections.deque[int] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )  # recent frame intervals


class _ToMs:
    """Integer conversion of one input stream's timestamps to ms (Fractions cost per packet)."""

    def __init__(self, time_base: Fraction) -> None:
        scaled = time_base * 1000
        self.num, self.den = scaled.numerator, scaled.denominator

    def __call__(self, value: int) -> int:
        if self.den == 1:
            return value * self.num  # segments count in ms: the usual case
        return (2 * value * self.num + self.den) // (2 * self.den)  # rounded


@contextlib.contextmanager
def _open_segment(path: Path) -> Iterator[InputContainer]:
    """A segment opened for reading only: a read-only file object, handed to FFmpeg."""
    with open(path, "rb") as file:
        try:
            container = av.open(file, "r")
        except av.error.FFmpegError as err:
            raise RecorderError(f"cannot read segment {path}: {err}") from err
        try:
            yield container
        except av.error.FFmpegError as err:
            raise RecorderError(f"while reading segment {path}: {err}") from err
        finally:
            container.close()


def _first_pts_ms(container: InputContainer) -> int | None:
    to_ms = {s.index: _ToMs(s.time_base) for s in container.streams if s.time_base is not None}
    first: int | None = None
    for packet in container.demux():
        if packet.size and packet.pts is not None and packet.stream_index in to_ms:
            pts = to_ms[packet.stream_index](packet.pts)
            first = pts if first is None else min(first, pts)
    return first


class _Remuxer:
    """Writes the packets of successive segments into one output container."""

    def __init__(self, output: OutputContainer, offset_ms: int) -> None:
        self.output = output
        self.offset_ms = offset_ms
        self.tracks: dict[str, _Track] = {}

    def add_track(self, template: Stream, time_base: Fraction) -> None:
        """An output stream with the template's codec parameters (a header, no codec work)."""
        stream = self.output.add_stream_from_template(template)
        stream.time_base = time_base
        self.tracks[template.type] = _Track(template.type, stream)

    def add_segment(self, container: InputContainer, path: Path, video_codec: str | None) -> None:
        routes: dict[int, tuple[_Track, _ToMs]] = {}
        for stream in container.streams:
            _check_stream(path, stream, video_codec)
            track = self.tracks.get(stream.type)
            if track is None or stream.time_base is None:
                raise RecorderError(f"{path}: unexpected {stream.type} stream")
            routes[stream.index] = (track, _ToMs(stream.time_base))
        for packet in container.demux():
            if not packet.size or packet.dts is None or packet.pts is None:
                continue  # the demuxer's end-of-stream packets
            track, to_ms = routes[packet.stream_index]
            self._write(track, packet, to_ms, path)

    def _write(self, track: _Track, packet: Packet, to_ms: _ToMs, path: Path) -> None:
        assert packet.pts is not None and packet.dts is not None
        dts = to_ms(packet.dts) - self.offset_ms
        pts = to_ms(packet.pts) - self.offset_ms
        if dts < 0:
            raise RecorderError(f"{path}: a packet before the first segment's start")
        if track.last_dts_ms is not None and dts <= track.last_dts_ms:
            if track.last_dts_ms - dts > MAX_OVERLAP_MS:
                raise RecorderError(
                    f"{path}: {track.kind} time goes back {track.last_dts_ms - dts} ms"
                    " (segments out of order?)"
                )
            shift = track.last_dts_ms + 1 - dts  # DTS strictly increasing, as the muxers need
            dts, pts = dts + shift, pts + shift
            track.bumped += 1
        track.last_dts_ms = dts
        duration = to_ms(packet.duration) if packet.duration else 0
        packet.time_base = MS
        packet.pts, packet.dts = pts, dts
        packet.stream = track.stream
        if track.kind == "video":
            self._flush_held(track, dts)
            track.held = packet  # muxed once the next frame's time is known
        else:
            packet.duration = duration
            self._mux(track, packet, pts + duration)

    def _flush_held(self, track: _Track, next_dts: int | None) -> None:
        held = track.held
        if held is None:
            return
        assert held.pts is not None and held.dts is not None
        if next_dts is not None:
            duration = next_dts - held.dts
            track.intervals.append(duration)
        else:  # the last frame: as long as a typical frame
            duration = int(statistics.median(track.intervals)) if track.intervals else 0
        held.duration = duration
        track.held = None
        self._mux(track, held, held.pts + duration)

    def _mux(self, track: _Track, packet: Packet, end_ms: int) -> None:
        try:
            self.output.mux(packet)
        except av.error.FFmpegError as err:  # not a reading error of the open segment
            raise RecorderError(f"writing the replay file failed: {err}") from err
        track.packets += 1
        track.end_ms = max(track.end_ms, end_ms)

    def finish(self) -> None:
        for track in self.tracks.values():
            self._flush_held(track, None)
            if track.bumped:
                logger.warning(
                    "replay %s: %d %s packets moved to keep time increasing",
                    self.output.name,
                    track.bumped,
                    track.kind,
                )

    def count(self, kind: str) -> int:
        track = self.tracks.get(kind)
        return track.packets if track else 0

    @property
    def duration_ms(self) -> int:
        return max((track.end_ms for track in self.tracks.values()), default=0)


def _check_stream(path: Path, stream: Stream, video_codec: str | None) -> None:
    name = stream.codec_context.name
    if stream.type == "video":
        if video_codec is None or name != video_codec:
            raise RecorderError(f"{path}: video {name!r}, expected {video_codec!r}")
    elif stream.type == "audio":
        if name != "opus":
            raise RecorderError(f"{path}: audio {name!r}, expected 'opus'")
    else:
        raise RecorderError(f"{path}: unexpected {stream.type} stream")


def _templates_and_offset(
    segment_paths: Sequence[Path], video_codec: str | None
) -> tuple[dict[str, Path], int]:
    """The segments whose streams the replay copies (the first with video, the first with audio).

    Also the start offset: the earliest packet time of the segments it opened. That is
    not always the first segment's: a participant's first segment can be audio-only (audio
    before the first video key frame) and the next one start with that key frame, whose
    time (the arrival of its first packet) can lie a few ms before the audio segment's
    start. Looks only as far as it must (usually one or two segments): opening a segment
    costs FFmpeg's stream probing, several ms for H.264.
    """
    wanted = {"audio"} if video_codec is None else {"video", "audio"}
    templates: dict[str, Path] = {}
    offset: int | None = None
    for index, path in enumerate(segment_paths):
        with _open_segment(path) as container:
            for stream in container.streams:
                _check_stream(path, stream, video_codec)
                templates.setdefault(stream.type, path)
            first = _first_pts_ms(container)
            if first is None:
                if index == 0:
                    raise RecorderError(f"{path}: an empty segment")
            else:
                offset = first if offset is None else min(offset, first)
        if wanted <= templates.keys():
            break
    assert offset is not None
    return templates, offset


def remux_segments(
    segment_paths: list[Path], out_path: Path, video_codec: str | None
) -> ReplayInfo:
    """Remux one participant's segments, in order, into one seekable replay file.

    `video_codec` is the participant's ("vp8", "h264", or None for audio only);
    `out_path` must end in `.` + `replay_extension(video_codec)`. The file is written under
    a temporary name beside `out_path`, fsynced, then renamed into place, so
    `out_path` is either absent or complete. Raises RecorderError on bad input.
    """
    if not segment_paths:
        raise RecorderError("no segments to remux")
    fmt = replay_extension(video_codec)
    if out_path.suffix != f".{fmt}":
        raise RecorderError(f"a {video_codec or 'audio-only'} replay is a .{fmt} file")
    resolved = {Path(p).resolve() for p in segment_paths}
    if out_path.resolve() in resolved:
        raise RecorderError("the replay file would overwrite a segment")

    templates, offset_ms = _templates_and_offset(segment_paths, video_codec)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        remuxer = _write(tmp, video_codec, templates, offset_ms, segment_paths)
        fsync_path(tmp)
        info = ReplayInfo(
            path=out_path,
            size=tmp.stat().st_size,
            sha256=file_digest(tmp)[1],
            video_frames=remuxer.count("video"),
            audio_frames=remuxer.count("audio"),
            duration_ms=remuxer.duration_ms,
            start_offset_ms=offset_ms,
        )
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(out_path.parent)
    return info


def _write(
    tmp: Path,
    video_codec: str | None,
    templates: dict[str, Path],
    offset_ms: int,
    segment_paths: list[Path],
) -> _Remuxer:
    """Mux every segment's packets into `tmp` and close it (the trailer makes it seekable)."""
    fmt = REPLAY_FORMATS[video_codec]
    # WebM: Cues moved in front of the clusters, like MP4's faststart, so a player
    # fetching over HTTP finds the index without reading the end of the file.
    options = {"movflags": "+faststart"} if fmt == "mp4" else {"cues_to_front": "1"}
    try:
        output = av.open(str(tmp), "w", format=fmt, options=options)
    except av.error.FFmpegError as err:
        raise RecorderError(f"cannot write a replay file at {tmp}: {err}") from err
    try:
        remuxer = _Remuxer(output, offset_ms)
        for kind in ("video", "audio"):
            if kind in templates:
                with _open_segment(templates[kind]) as container:
                    template = next(s for s in container.streams if s.type == kind)
                    remuxer.add_track(template, _TIME_BASES[(fmt, kind)])
        for path in segment_paths:
            with _open_segment(path) as container:
                remuxer.add_segment(container, path, video_codec)
        remuxer.finish()
    except BaseException as err:
        with contextlib.suppress(Exception):
            output.close()
        if isinstance(err, av.error.FFmpegError):
            raise RecorderError(f"remuxing failed: {err}") from err
        raise
    try:
        output.close()  # the trailer: Cues and Duration, or the moov moved to the front
    except av.error.FFmpegError as err:
        raise RecorderError(f"finishing the replay file failed: {err}") from err
    return remuxer
