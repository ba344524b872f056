"""Turning tapped RTP payloads into closed, self-contained media segments.

Pure and synchronous: meant to run off the event loop (in an executor).

- `FrameAssembler` depayloads one track's RTP payloads into whole encoded frames
  (VP8 partitions concatenated, H.264 as Annex-B NAL units, Opus as is), dropping
  an incomplete frame on a sequence gap and waiting for the next key frame.
- `SegmentWriter` muxes frames by stream copy (PyAV, no decoding or encoding) into
  one WebM (VP8+Opus) or Matroska (H.264+Opus) file, closed with Cues and fsynced.
- `Segmenter` cuts one participant's frames into files 000001.webm, 000002.webm…
  at the first video key frame after the target length (by time when audio-only).
"""

from __future__ import annotations

import fractions
import io
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
from aiortc.codecs.h264 import H264PayloadDescriptor

from media.rtp import keyframe_start
from recorder.files import fsync_path
from recorder.h264 import SpsError, h264_size

MS = fractions.Fraction(1, 1000)
CLOCK_RATES = {"vp8": 90000, "h264": 90000, "opus": 48000}
EXTENSIONS = {"vp8": "webm", "h264": "mkv", None: "webm"}
FORMATS = {"vp8": "webm", "h264": "matroska", None: "webm"}


class RecorderError(Exception):
    pass


class PacketLike(Protocol):
    @property
    def payload(self) -> bytes: ...
    @property
    def rtp_timestamp(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def marker(self) -> bool: ...
    @property
    def keyframe(self) -> bool: ...


class Frame:
    """One whole encoded frame (or Opus packet).

    A plain class with slots: made for every frame recorded, and a frozen dataclass costs
    twice as much to build.
    """

    __slots__ = ("data", "rtp_timestamp", "keyframe", "arrival_ms")

    def __init__(
        self, data: bytes, rtp_timestamp: int, keyframe: bool, arrival_ms: int = 0
    ) -> None:
        self.data = data
        self.rtp_timestamp = rtp_timestamp
        self.keyframe = keyframe
        self.arrival_ms = arrival_ms

    def __iter__(self) -> Any:
        return iter((self.data, self.rtp_timestamp, self.keyframe))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.data, self.rtp_timestamp, self.keyframe, self.arrival_ms) == (
            other.data,
            other.rtp_timestamp,
            other.keyframe,
            other.arrival_ms,
        )

    def __repr__(self) -> str:
        return (
            f"Frame({len(self.data)} bytes, rtp_timestamp={self.rtp_timestamp}, "
            f"keyframe={self.keyframe}, arrival_ms={self.arrival_ms})"
        )


def vp8_depayload(payload: bytes) -> tuple[bytes, bool]:
    """The VP8 data of one RTP payload, and whether it starts a frame (RFC 7741 §4.2).

    Inline rather than aiortc's `VpxPayloadDescriptor.parse`, which builds an object per
    packet (1.4 us against 0.3 us; the recorder runs this for every video packet).
    """
    try:
        first = payload[0]
        offset = 1
        if first & 0x80:  # X: extension byte
            ext = payload[1]
            offset = 2
            if ext & 0x80:  # I: picture id, 7 or 15 bits
                offset += 2 if payload[2] & 0x80 else 1
            if ext & 0x40:  # L: TL0PICIDX
                offset += 1
            if ext & 0x30:  # T or K: TID/Y/KEYIDX
                offset += 1
    except IndexError:
        raise ValueError("truncated VP8 payload descriptor") from None
    if offset > len(payload):
        raise ValueError("truncated VP8 payload descriptor")
    return payload[offset:], bool(first & 0x10) and not first & 0x0F


def _h264_has_idr(annexb: bytes) -> bool:
    for chunk in annexb.split(b"\x00\x00\x01"):
        if chunk and chunk[0] & 0x1F == 5:
            return True
    return False


_NO_FRAMES: list[Frame] = []  # returned, never changed: the packet completed no frame


class FrameAssembler:
    """Depayloads one track's packets, fed in sequence order, into whole frames."""

    def __init__(self, codec: str) -> None:
        if codec not in CLOCK_RATES:
            raise RecorderError(f"unsupported codec {codec!r}")
        self.codec = codec
        self.video = codec != "opus"
        self._vp8 = codec == "vp8"
        self.expected_sequence: int | None = None
        self.waiting_for_keyframe = self.video  # a recording starts at a key frame
        self.gaps = 0  # sequence gaps seen
        self.lost_packets = 0  # packets missing in those gaps
        self.dropped_frames = 0  # incomplete frames thrown away
        self.skipped_packets = 0  # packets skipped while waiting for a key frame
        # Each sequence gap as (first missing, last missing, count): evidence of loss.
        self.gap_log: list[tuple[int, int, int]] = []
        # Each run of packets received but skipped while waiting for a key frame (after a
        # loss, or before the first one) as (first, last, count): the media is missing too.
        self.skip_log: list[tuple[int, int, int]] = []
        self._skipping: list[int] | None = None  # [first, last, count] of the run under way
        self._parts: list[bytes] = []
        self._timestamp: int | None = None
        self._keyframe = False
        self._arrival_ms = 0

    def feed(self, packet: PacketLike) -> Sequence[Frame]:
        """Take one packet; return the frames it completes (usually zero or one; a shared
        empty list when none, hence read-only)."""
        return self.feed_fields(
            packet.payload,
            packet.rtp_timestamp,
            packet.sequence,
            packet.marker,
            packet.keyframe,
            int(getattr(packet, "arrival_ms", 0)),
        )

    def feed_fields(
        self,
        payload: bytes,
        rtp_timestamp: int,
        sequence: int,
        marker: bool,
        keyframe: bool,
        arrival_ms: int = 0,
    ) -> Sequence[Frame]:
        """`feed` for a packet given field by field, in the order of the router's
        `TappedPacket` tuple (the recorder calls `feed_fields(*tapped)`)."""
        sequence &= 0xFFFF
        if sequence == self.expected_sequence and self._vp8 and not self.waiting_for_keyframe:
            # The common case in few steps (it runs for every video packet recorded): the
            # next packet of a VP8 frame under way or starting. Anything else (Opus, whose
            # path below is as short) takes the full path.
            parts = self._parts
            if not parts or rtp_timestamp == self._timestamp:
                try:
                    data, starts = vp8_depayload(payload)
                except ValueError:
                    pass  # the full path below drops the frame
                else:
                    if parts or starts:
                        self.expected_sequence = (sequence + 1) & 0xFFFF
                        if not parts:
                            self._timestamp = rtp_timestamp
                            self._arrival_ms = arrival_ms
                            self._keyframe = keyframe
                        parts.append(data)
                        return self._finish() if marker else _NO_FRAMES
        expected = self.expected_sequence
        if expected is not None and sequence != expected:
            missing = (sequence - expected) & 0xFFFF
            if missing >= 0x8000:  # late or duplicate: ignore it
                return []
            self.gaps += 1
            self.lost_packets += missing
            self.gap_log.append((expected, (sequence - 1) & 0xFFFF, missing))
            if self.video:
                if self._parts:
                    self.dropped_frames += 1
                self._reset()
                self.waiting_for_keyframe = True
        self.expected_sequence = (sequence + 1) & 0xFFFF

        if not self.video:
            if payload:
                return [Frame(payload, rtp_timestamp, True, arrival_ms)]
            return []

        out: list[Frame] = []
        if self._parts and rtp_timestamp != self._timestamp:
            # The previous frame ended without a marker bit.
            out.extend(self._finish())

        if self.waiting_for_keyframe:
            if not (keyframe or keyframe_start(self.codec, payload)):
                self._skip(sequence)
                return out
            self.waiting_for_keyframe = False
            self._end_skip()

        try:
            data, starts = self._depayload(payload)
        except ValueError:
            self.dropped_frames += 1 if self._parts else 0
            self._reset()
            self.waiting_for_keyframe = True
            return out
        if not self._parts:
            if not starts:
                # A frame's middle with no beginning (after an earlier drop).
                self._skip(sequence)
                return out
            self._end_skip()
            self._timestamp = rtp_timestamp
            self._arrival_ms = arrival_ms
            # VP8's key-frame bit is read from the whole frame in _finish.
            self._keyframe = keyframe or (
                self.codec == "h264" and keyframe_start(self.codec, payload)
            )
        self._parts.append(data)
        if marker:
            out.extend(self._finish())
        return out

    def _skip(self, sequence: int) -> None:
        self.skipped_packets += 1
        run = self._skipping
        if run is None:
            self._skipping = [sequence, sequence, 1]
        else:
            run[1] = sequence
            run[2] += 1

    def _end_skip(self) -> None:
        run = self._skipping
        if run is not None:
            self._skipping = None
            self.skip_log.append((run[0], run[1], run[2]))

    def feed_all(self, packets: Iterable[PacketLike]) -> list[Frame]:
        out: list[Frame] = []
        for packet in packets:
            out.extend(self.feed(packet))
        return out

    def flush(self) -> list[Frame]:
        """The frame in progress counts as incomplete: it is dropped."""
        if self._parts:
            self.dropped_frames += 1
        self._reset()
        return []

    def _depayload(self, payload: bytes) -> tuple[bytes, bool]:
        if self.codec == "vp8":
            return vp8_depayload(payload)
        h264, data = H264PayloadDescriptor.parse(payload)
        return data, bool(h264.first_fragment)

    def _finish(self) -> list[Frame]:
        data = b"".join(self._parts)
        assert self._timestamp is not None
        keyframe = self._keyframe
        if self.codec == "vp8":
            keyframe = bool(data) and not data[0] & 0x01
        elif self.codec == "h264":
            keyframe = keyframe or _h264_has_idr(data)
        frame = Frame(data, self._timestamp, keyframe, self._arrival_ms)
        self._reset()
        return [frame] if data else []

    def _reset(self) -> None:
        self._parts = []
        self._timestamp = None
        self._keyframe = False


class RtpClock:
    """Maps one track's RTP timestamps to ms since the call start.

    Anchored at the first frame's arrival; 32-bit wrap-around is unwrapped. `origin_ms` is
    the call's start on the clock arrivals are stamped with (monotonic ms in the server:
    `recorder/timeline.py`).
    """

    def __init__(self, codec: str, origin_ms: int = 0) -> None:
        self.rate = CLOCK_RATES[codec]
        self.origin_ms = origin_ms
        self._base_rtp: int | None = None
        self._base_ms = 0
        self._last_rtp = 0
        self._unwrapped = 0

    def to_ms(self, rtp_timestamp: int, arrival_ms: int) -> int:
        if self._base_rtp is None:
            self._base_rtp = rtp_timestamp
            self._base_ms = arrival_ms - self.origin_ms
            self._last_rtp = rtp_timestamp
            self._unwrapped = 0
        delta = (rtp_timestamp - self._last_rtp) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self._unwrapped += delta
        self._last_rtp = rtp_timestamp
        return self._base_ms + (self._unwrapped * 1000) // self.rate


def vp8_size(frame: bytes) -> tuple[int, int]:
    """Width and height from a VP8 key frame's header."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        raise RecorderError("not a VP8 key frame")
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


@dataclass(frozen=True)
class _Templates:
    """Stream parameters (VP8, and Opus with its OpusHead) copied into every segment.

    Made once per process from a tiny file written with real encoders; a segment's
    streams are then created from these templates, so no encoder is ever opened per
    segment (that cost ~6 ms of CPU and ~8 MiB each; bench/recording.py).
    """

    container: Any
    vp8: Any
    opus: Any


_TEMPLATES: _Templates | None = None
_TEMPLATES_LOCK = threading.Lock()


def _templates() -> _Templates:
    global _TEMPLATES
    with _TEMPLATES_LOCK:
        if _TEMPLATES is None:
            buf = io.BytesIO()
            out: Any = av.open(buf, "w", format="webm")
            video = out.add_stream("libvpx", rate=1000)
            video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
            audio = out.add_stream("libopus", rate=48000)
            audio.layout = "stereo"
            picture = av.VideoFrame(320, 240, "yuv420p")
            for plane in picture.planes:
                plane.update(bytes(plane.buffer_size))
            silence = av.AudioFrame(format="s16", layout="stereo", samples=960)
            silence.sample_rate = 48000
            silence.planes[0].update(bytes(silence.planes[0].buffer_size))
            # One packet each, so that the file can be read back: its parameters are all
            # that is used (never these packets).
            for stream, frame in ((video, picture), (audio, silence)):
                out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
            out.close()
            buf.seek(0)
            reader: Any = av.open(buf, format="webm")
            _TEMPLATES = _Templates(reader, reader.streams.video[0], reader.streams.audio[0])
        return _TEMPLATES


class SegmentWriter:
    """One self-contained file by stream copy; timestamps in ms since the call start."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        video_codec: str | None,
        start_pts_ms: int,
        size: tuple[int, int] | None = None,
    ) -> None:
        if video_codec not in EXTENSIONS:
            raise RecorderError(f"unsupported video codec {video_codec!r}")
        self.path = Path(path)
        self.video_codec = video_codec
        self.start_pts_ms = start_pts_ms  # of the frame that opened it (due times count from it)
        self.size = size
        # The earliest and latest pts in the file, for its chain link. The earliest may be
        # before start_pts_ms: a round's audio is muxed after its video, so audio older
        # than the key frame that opened this segment lands here.
        self.first_pts_ms = start_pts_ms
        self.last_pts_ms = start_pts_ms
        self.video_frames = 0
        self.audio_frames = 0
        self.closed = False
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._last_video_dts = self._last_audio_dts = -(2**62)
        self._pending_audio: list[tuple[bytes, int]] = []

    @property
    def started(self) -> bool:
        return self._container is not None

    def _start(self, keyframe: bytes | None) -> None:
        container: Any = av.open(str(self.path), "w", format=FORMATS[self.video_codec])
        try:
            if self.video_codec == "vp8":
                assert keyframe is not None
                width, height = self.size or vp8_size(keyframe)
                video = container.add_stream_from_template(_templates().vp8)
                video.width, video.height = width, height
                video.time_base = MS
                self._video = video
            elif self.video_codec == "h264":
                assert keyframe is not None
                probe: Any = av.open(io.BytesIO(keyframe), format="h264")
                try:
                    template = probe.streams.video[0]
                    if not template.codec_context.width:
                        raise RecorderError("no SPS in the H.264 key frame")
                    # The SPS/PPS become the track's extradata (avcC), size from the SPS.
                    self._video = container.add_stream_from_template(template)
                finally:
                    probe.close()
                if self.size:
                    self._video.width, self._video.height = self.size
                self._video.time_base = MS
            audio = container.add_stream_from_template(_templates().opus)
            audio.time_base = MS
            self._audio = audio
            container.start_encoding()
            # Packets carry no time base of their own: PyAV then takes the stream's, which
            # Matroska keeps at 1 ms (checked here, so a change cannot shift every pts).
            for stream in container.streams:
                if stream.time_base != MS:
                    raise RecorderError(f"{stream.type} stream time base {stream.time_base}")
        except Exception:
            container.close()
            raise
        self._container = container

    def write_video(self, data: bytes, pts_ms: int, keyframe: bool) -> None:
        if self.video_codec is None:
            raise RecorderError("this segment has no video")
        if not self.started:
            if not keyframe:
                raise RecorderError("a segment must start with a video key frame")
            self._start(data)
            self._mux_video(data, pts_ms, True)
            for audio, audio_pts in self._pending_audio:
                self._mux_audio(audio, audio_pts)
            self._pending_audio = []
            return
        self._mux_video(data, pts_ms, keyframe)

    def write_audio(self, data: bytes, pts_ms: int) -> None:
        if not self.started:
            if self.video_codec is not None:
                self._pending_audio.append((data, pts_ms))
                return
            self._start(None)
        self._mux_audio(data, pts_ms)

    # The two below run for every frame recorded: kept flat, one stream each.

    def _mux_video(self, data: bytes, pts_ms: int, keyframe: bool) -> None:
        if self.closed:
            raise RecorderError("segment is closed")
        if pts_ms <= self._last_video_dts:
            pts_ms = self._last_video_dts + 1  # DTS strictly increasing
        self._last_video_dts = pts_ms
        packet = av.Packet(data)  # the packet holds its own copy of the bytes
        packet.pts = packet.dts = pts_ms  # in the stream's time base: ms
        packet.stream = self._video
        packet.is_keyframe = keyframe
        self.video_frames += 1
        self._container.mux_one(packet)
        if pts_ms > self.last_pts_ms:
            self.last_pts_ms = pts_ms
        elif pts_ms < self.first_pts_ms:
            self.first_pts_ms = pts_ms

    def _mux_audio(self, data: bytes, pts_ms: int) -> None:
        if self.closed:
            raise RecorderError("segment is closed")
        if pts_ms <= self._last_audio_dts:
            pts_ms = self._last_audio_dts + 1
        self._last_audio_dts = pts_ms
        packet = av.Packet(data)
        packet.pts = packet.dts = pts_ms
        packet.stream = self._audio
        self.audio_frames += 1
        self._container.mux_one(packet)
        if pts_ms > self.last_pts_ms:
            self.last_pts_ms = pts_ms
        elif pts_ms < self.first_pts_ms:
            self.first_pts_ms = pts_ms

    def close(self) -> Path | None:
        """Finish the file (Cues, Duration) and fsync it; None if nothing was written."""
        if self.closed:
            return self.path if self.started else None
        self.closed = True
        if not self.started:
            return None
        self._container.close()
        fsync_path(self.path)
        fsync_path(self.path.parent)
        return self.path


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What a closed segment holds, for its chain link."""

    path: Path
    index: int
    first_pts_ms: int
    last_pts_ms: int
    video_frames: int
    audio_frames: int
    has_video: bool
    size: tuple[int, int] | None


_NOTHING: list[Path] = []  # returned, never changed: no segment closed


class Segmenter:
    """Cuts one participant's frames (audio and video) into numbered segment files.

    A new segment starts at the first video key frame after the target length, and at
    any key frame whose resolution differs from the open segment's (a file has one
    video size; VP8 from the frame header, H.264 from the key frame's in-band SPS).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        video_codec: str | None,
        target_s: float = 10.0,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.video_codec = video_codec
        self.target_ms = int(target_s * 1000)
        self.size = size
        self.index = 0
        self.closed: list[Path] = []
        self.info: dict[Path, SegmentInfo] = {}
        self.dropped_video = 0  # frames before the first key frame
        self._writer: SegmentWriter | None = None
        self._has_video = False  # the current segment carries video
        self._size: tuple[int, int] | None = None  # the open segment's VP8 video size

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.video_codec]

    def _open(self, pts_ms: int, video: bool) -> list[Path]:
        done = self._close_current()
        self.index += 1
        path = self.directory / f"{self.index:06d}.{self.extension}"
        self._writer = SegmentWriter(
            path, self.video_codec if video else None, pts_ms, self.size if video else None
        )
        self._has_video = video
        return done

    def _close_current(self) -> list[Path]:
        writer = self._writer
        if writer is None:
            return []
        path = writer.close()
        self._writer = None
        if path is None:
            return []
        self.closed.append(path)
        self.info[path] = SegmentInfo(
            path,
            self.index,
            writer.first_pts_ms,
            writer.last_pts_ms,
            writer.video_frames,
            writer.audio_frames,
            self._has_video,
            self._size,
        )
        return [path]

    def due(self, pts_ms: int) -> bool:
        """Is the current segment long enough to be cut (ask for a key frame then)?"""
        left = self.until_due(pts_ms)
        return left is not None and left <= 0

    def until_due(self, pts_ms: int) -> int | None:
        """Media milliseconds from `pts_ms` until the open segment is due (<= 0: due now);
        None when no segment is open. Lets the recorder ask for the cutting key frame on
        time though it only looks at the media once a round."""
        writer = self._writer
        return None if writer is None else writer.start_pts_ms + self.target_ms - pts_ms

    def add_video(self, frame: Frame, pts_ms: int) -> list[Path]:
        """Take one video frame; return the segments this closed."""
        if self.video_codec is None:
            raise RecorderError("audio-only segmenter got video")
        done: list[Path] = []
        size = self._frame_size(frame) if frame.keyframe else None
        resized = size is not None and self._has_video and size != self._size
        if frame.keyframe and (
            self._writer is None or not self._has_video or resized or self.due(pts_ms)
        ):
            done = self._open(pts_ms, True)
            self._size = size
        if self._writer is None or not self._has_video:
            self.dropped_video += 1
            return done
        self._writer.write_video(frame.data, pts_ms, frame.keyframe)
        return done

    def _frame_size(self, frame: Frame) -> tuple[int, int] | None:
        """A key frame's picture size (VP8 frame header, H.264 SPS); None when unreadable
        (an H.264 IDR without an in-band SPS keeps the open segment)."""
        try:
            if self.video_codec == "vp8":
                return vp8_size(frame.data)
            if self.video_codec == "h264":
                return h264_size(frame.data)
        except (RecorderError, SpsError):
            pass
        return None

    def add_audio(self, frame: Frame, pts_ms: int) -> list[Path]:
        """Take one audio frame; return the segments this closed.

        Audio before the first video key frame (or of an audio-only participant)
        goes into audio-only segments cut by time.
        """
        done: list[Path] = []
        if self._writer is None or (not self._has_video and self.due(pts_ms)):
            done = self._open(pts_ms, False)
        assert self._writer is not None
        self._writer.write_audio(frame.data, pts_ms)
        return done

    def add(self, kind: str, frame: Frame, pts_ms: int) -> list[Path]:
        writer = self._writer
        # The common case first, in few calls (it runs for every frame recorded): a frame
        # that goes into the open, started segment and closes nothing.
        if writer is not None and writer._container is not None:
            if kind == "audio":
                if self._has_video or pts_ms - writer.start_pts_ms < self.target_ms:
                    writer._mux_audio(frame.data, pts_ms)
                    return _NOTHING
            elif not frame.keyframe and self._has_video:
                writer._mux_video(frame.data, pts_ms, False)
                return _NOTHING
        if kind == "video":
            return self.add_video(frame, pts_ms)
        return self.add_audio(frame, pts_ms)

    def close(self) -> list[Path]:
        """Close the open segment; return it (if it holds anything)."""
        return self._close_current()
