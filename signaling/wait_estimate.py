"""How long a queued caller will probably wait (pure; docs/protocol.md section 7).

    estimated_wait_s = position x average handle time / max(1, experts serving)

The average handle time is that of the last `HANDLE_TIME_SAMPLE` answered calls (answer to
end), or `DEFAULT_HANDLE_TIME_S` before any call was answered; experts serving are those
connected and available or on duty (busy ones included: they take the next call).
"""

from __future__ import annotations

from collections.abc import Collection

DEFAULT_HANDLE_TIME_S = 300.0
HANDLE_TIME_SAMPLE = 20


def average_handle_time_s(handle_times_ms: Collection[int]) -> float:
    if not handle_times_ms:
        return DEFAULT_HANDLE_TIME_S
    return sum(handle_times_ms) / len(handle_times_ms) / 1000


def estimate_wait_s(
    position: int | None, handle_times_ms: Collection[int], experts_serving: int
) -> int | None:
    """Whole seconds, or None when the call is not in the queue (`position` None)."""
    if position is None:
        return None
    return round(position * average_handle_time_s(handle_times_ms) / max(1, experts_serving))
