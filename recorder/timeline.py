"""One call's timeline: the times a recording gives its media, on a clock that cannot jump.

The wall clock can be stepped while a call runs (NTP correcting a server that booted with a
wrong clock, an operator setting the time). Media times once came from the wall clock at
each track's first packet, and chain links, gaps and the call's end from the wall clock
when written: a step of a minute put a participant who joined after it a minute off the
others in the replay, and a backward step put the call's segments after its recorded end,
which `verify` rightly fails.

So a recording takes the wall clock's reading at the call's launch (the dispatcher reads
both clocks then) and counts everything after on the monotonic clock: a time on the
timeline is the launch (Unix ms, as the wall clock said then) plus the monotonic time
since. Media times (pts), gap and bookmark times and the call's end are on it. How far the
wall clock moved apart meanwhile is `step_ms()`, which the manifest records. Chain links'
`utc` stay signing times on the wall clock: the signing keys' validity is on that clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


def monotonic_ms() -> int:
    """The clock packet arrivals are stamped with (`media/router.py`)."""
    return int(time.monotonic() * 1000)


@dataclass(frozen=True)
class CallTimeline:
    """Unix ms at the call's launch, and the monotonic ms that the launch was at."""

    launched_ms: int
    launch_mono_ms: int
    monotonic: Callable[[], int] = monotonic_ms

    def media_ms(self, mono_ms: int) -> int:
        """Milliseconds since the launch (a pts) of a monotonic instant."""
        return mono_ms - self.launch_mono_ms

    def unix_ms(self, mono_ms: int) -> int:
        """Unix ms on the timeline of a monotonic instant."""
        return self.launched_ms + mono_ms - self.launch_mono_ms

    def now_ms(self) -> int:
        """Now, in Unix ms on the timeline."""
        return self.unix_ms(self.monotonic())

    def step_ms(self, wall_ms: int) -> int:
        """How far the wall clock (reading `wall_ms` now) has moved from the timeline since
        the launch: 0 for a clock that was not stepped (slewing moves both alike)."""
        return wall_ms - self.now_ms()
