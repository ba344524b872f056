"""Pre-encoded test clips: a solid colour with a painted frame counter, and a pure tone.

Test peers and load peers loop these packets instead of encoding live, so a
six-party call costs little CPU. The counter is painted as 16 black-or-white
blocks across the top of the picture (bit 15 leftmost), which survives lossy
coding; `read_counter` reads it. For every frame k the clip also holds a branch:
frames k..end encoded by a fresh encoder, so a peer answers a key-frame request
by switching to the branch of the next frame (its first frame is a key frame,
and the frames after it reference only that branch's own pictures, golden frame
included; a lone key frame spliced into the sequence would not be enough).
"""

from __future__ import annotations

import fractions
import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av

COUNTER_BITS = 16
BLOCK = 16  # pixels per counter block (width and height)
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_FRAME_SAMPLES = 960  # 20 ms


@dataclass(frozen=True)
class VideoClip:
    codec: str  # "vp8" | "h264"
    width: int
    height: int
    fps: int
    colour: tuple[int, int, int]  # RGB
    branches: tuple[tuple[bytes, ...], ...]  # branches[k]: frames k..end, frame k a key frame

    @property
    def inter(self) -> tuple[bytes, ...]:
        """The whole clip in sequence (branch 0)."""
        return self.branches[0]

    @property
    def key(self) -> tuple[bytes, ...]:
        """Frame k as a key frame."""
        return tuple(branch[0] for branch in self.branches)

    def frame(self, branch: int, index: int) -> bytes:
        return self.branches[branch][index - branch]

    @property
    def frame_ticks(self) -> int:
        return VIDEO_CLOCK // self.fps

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for data in self.inter:
            digest.update(data)
        return digest.hexdigest()


@dataclass(frozen=True)
class AudioClip:
    frequency: int
    packets: tuple[bytes, ...]  # Opus, 20 ms each, one second


def _rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


def paint_frame(
    width: int, height: int, colour: tuple[int, int, int], counter: int
) -> av.VideoFrame:
    """A yuv420p frame of one colour with the counter's bits as blocks along the top."""
    y, u, v = _rgb_to_yuv(colour)
    luma = bytearray([y]) * (width * height)
    for bit in range(COUNTER_BITS):
        on = (counter >> (COUNTER_BITS - 1 - bit)) & 1
        value = 235 if on else 16
        x0 = bit * BLOCK
        for row in range(BLOCK):
            start = row * width + x0
            luma[start : start + BLOCK] = bytes([value]) * BLOCK
    frame = av.VideoFrame(width, height, "yuv420p")
    planes = (bytes(luma), bytes([u]) * (width * height // 4), bytes([v]) * (width * height // 4))
    for plane, data in zip(frame.planes, planes, strict=True):
        line = plane.line_size
        plane_width = plane.width
        if line == plane_width:
            plane.update(data)
        else:
            padded = bytearray(line * plane.height)
            for row in range(plane.height):
                padded[row * line : row * line + plane_width] = data[
                    row * plane_width : (row + 1) * plane_width
                ]
            plane.update(bytes(padded))
    return frame


def read_counter(frame: av.VideoFrame) -> int:
    """Read the painted counter back from a decoded frame (any size >= 256 wide)."""
    gray = frame.reformat(format="gray")
    plane = gray.planes[0]
    data = bytes(plane)
    line = plane.line_size
    value = 0
    for bit in range(COUNTER_BITS):
        x = bit * BLOCK + BLOCK // 2
        y = BLOCK // 2
        value = (value << 1) | (1 if data[y * line + x] > 128 else 0)
    return value


def mean_colour(frame: av.VideoFrame) -> tuple[int, int, int]:
    """Average RGB of the picture below the counter row."""
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    line = plane.line_size
    sums = [0, 0, 0]
    count = 0
    for y in range(BLOCK * 2, frame.height, 8):
        for x in range(0, frame.width, 8):
            offset = y * line + x * 3
            sums[0] += data[offset]
            sums[1] += data[offset + 1]
            sums[2] += data[offset + 2]
            count += 1
    return (sums[0] // count, sums[1] // count, sums[2] // count)


def _encoder(codec: str, width: int, height: int, fps: int, bitrate: int = 300_000) -> Any:
    name = {"vp8": "libvpx", "h264": "libx264"}[codec]
    ctx: Any = av.CodecContext.create(name, "w")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.thread_count = 1
    if codec == "vp8":
        ctx.options = {
            "deadline": "good",
            "cpu-used": "4",
            "lag-in-frames": "0",
            "kf-max-dist": "100000",
        }
    else:
        ctx.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": "keyint=100000:min-keyint=100000:scenecut=0:repeat-headers=1",
        }
        ctx.profile = "Constrained Baseline"
    return ctx


def _encode_all(ctx: Any, frames: Sequence[av.VideoFrame]) -> list[bytes]:
    out: list[bytes] = []
    for pts, frame in enumerate(frames):
        frame.pts = pts
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    return out


@functools.lru_cache(maxsize=32)
def video_clip(
    colour: tuple[int, int, int],
    *,
    codec: str = "vp8",
    width: int = 320,
    height: int = 240,
    fps: int = 15,
    frames: int = 30,
    bitrate: int = 300_000,
) -> VideoClip:
    """A looping clip of `frames` frames; counters 0..frames-1 are painted in."""
    pictures = [paint_frame(width, height, colour, n) for n in range(frames)]
    branches = []
    for start in range(frames):
        encoded = _encode_all(_encoder(codec, width, height, fps, bitrate), pictures[start:])
        if len(encoded) != frames - start:
            raise RuntimeError(f"{codec} encoder gave {len(encoded)} packets for {frames - start}")
        branches.append(tuple(encoded))
    return VideoClip(codec, width, height, fps, colour, tuple(branches))


@functools.lru_cache(maxsize=32)
def audio_clip(frequency: int) -> AudioClip:
    """One second of a sine tone as 50 Opus packets (whole cycles, so it loops cleanly)."""
    ctx: Any = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = AUDIO_RATE
    ctx.layout = "stereo"
    ctx.format = "s16"
    ctx.bit_rate = 48000
    ctx.time_base = fractions.Fraction(1, AUDIO_RATE)
    packets: list[bytes] = []
    # Two seconds in, one second kept: the encoder's start-up is out of the loop.
    for index in range(2 * AUDIO_RATE // AUDIO_FRAME_SAMPLES):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_FRAME_SAMPLES)
        samples = bytearray()
        for n in range(AUDIO_FRAME_SAMPLES):
            t = (index * AUDIO_FRAME_SAMPLES + n) / AUDIO_RATE
            value = int(12000 * math.sin(2 * math.pi * frequency * t))
            pair = value.to_bytes(2, "little", signed=True)
            samples += pair + pair
        frame.planes[0].update(bytes(samples))
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        packets.extend(bytes(p) for p in ctx.encode(frame))
    keep = packets[-(AUDIO_RATE // AUDIO_FRAME_SAMPLES) :]
    return AudioClip(frequency, tuple(keep))


def dominant_frequency(samples: Sequence[float], rate: int, candidates: Sequence[int]) -> int:
    """Which candidate frequency is strongest in the samples (Goertzel per candidate)."""

    def power(freq: int) -> float:
        coeff = 2 * math.cos(2 * math.pi * freq / rate)
        s_prev = s_prev2 = 0.0
        for x in samples:
            s = x + coeff * s_prev - s_prev2
            s_prev2, s_prev = s_prev, s
        return s_prev2**2 + s_prev**2 - coeff * s_prev * s_prev2

    return max(candidates, key=power)
