"""The manifest's `clock` field: what adjtimex says about the server's wall clock."""

from __future__ import annotations

import ctypes

import pytest

from signaling.recording_hub import clock_state


class Libc:
    def __init__(self, state: int) -> None:
        self.state = state

    def adjtimex(self, _buffer: object) -> int:
        return self.state


@pytest.mark.parametrize(
    ("state", "synchronized", "source"),
    [
        (0, True, "system (kernel NTP discipline)"),  # TIME_OK
        (5, False, "system (unsynchronised)"),  # TIME_ERROR
        (-1, False, "system (synchronisation unknown)"),  # the call itself failed
    ],
)
def test_the_clock_state_follows_adjtimex(monkeypatch, state, synchronized, source) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: Libc(state))
    assert clock_state() == {"source": source, "synchronized": synchronized}
