"""A call's timeline: the wall clock read once, at the start; the monotonic clock after."""

from __future__ import annotations

from recorder.timeline import CallTimeline


class Monotonic:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_times_count_from_the_launch_on_the_monotonic_clock_whatever_the_wall_clock_does():
    mono = Monotonic(50_000)
    # Launched at Unix 1_000_000 ms, monotonic 49_700 ms; 300 ms later:
    timeline = CallTimeline(1_000_000, 49_700, monotonic=mono)
    assert timeline.now_ms() == 1_000_300
    assert timeline.media_ms(50_000) == 300  # a packet arriving now has pts 300
    mono.ms += 10_000
    assert timeline.now_ms() == 1_010_300
    assert timeline.unix_ms(55_000) == 1_005_300
    # The wall clock was stepped back two minutes meanwhile: the timeline did not move.
    assert timeline.step_ms(wall_ms=1_010_300 - 120_000) == -120_000
    assert timeline.step_ms(wall_ms=1_010_300) == 0
