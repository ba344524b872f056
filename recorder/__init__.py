"""Recording: one participant's tapped packets into closed, uploadable segments."""

from recorder.segmenter import (
    Frame,
    FrameAssembler,
    RecorderError,
    RtpClock,
    Segmenter,
    SegmentWriter,
    vp8_size,
)

__all__ = [
    "Frame",
    "FrameAssembler",
    "RecorderError",
    "RtpClock",
    "SegmentWriter",
    "Segmenter",
    "vp8_size",
]
