"""RecorderThread: one thread gives every call its rounds; a failing call does not stop the
others; a finished call leaves; close ends the thread."""

from __future__ import annotations

import threading

import pytest

from recorder.call_recorder import RecorderThread


class FakeCall:
    """Stands in for a CallRecorder: counts its rounds, finishes after `rounds`."""

    def __init__(self, call_id: str, rounds: int, fail: bool = False) -> None:
        self.call_id = call_id
        self.rounds_left = rounds
        self.fail = fail
        self.rounds = 0
        self.threads: set[str] = set()
        self.finished = threading.Event()

    def _round(self) -> bool:
        self.rounds += 1
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("a bug in this call's round")
        self.rounds_left -= 1
        if self.rounds_left == 0:
            self.finished.set()
            return True
        return False


def test_calls_share_one_thread_and_leave_when_finished() -> None:
    worker = RecorderThread(batch_s=0.01, name="recorder-test")
    short, long_, broken = FakeCall("a", 3), FakeCall("b", 8), FakeCall("c", 1, fail=True)
    for call in (short, long_, broken):
        worker.add(call)  # type: ignore[arg-type]
    assert long_.finished.wait(10), "the long call never got its rounds"
    assert short.finished.is_set()
    assert short.rounds == 3  # no rounds after it finished
    assert broken.rounds >= 8  # failing every round, it was never dropped nor fatal
    assert short.threads == long_.threads == {"recorder-test"}
    worker.close()  # the broken call never finishes: closing does not wait for it
    assert worker.closed
    assert not any(t.name == "recorder-test" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        worker.add(FakeCall("d", 1))  # type: ignore[arg-type]


def test_an_idle_thread_sleeps_until_a_call_comes_and_close_ends_it() -> None:
    worker = RecorderThread(batch_s=0.01, name="recorder-idle")
    first = FakeCall("a", 1)
    worker.add(first)  # type: ignore[arg-type]
    assert first.finished.wait(10)
    second = FakeCall("b", 2)
    worker.add(second)  # type: ignore[arg-type]
    assert second.finished.wait(10)
    worker.close()
    assert not any(t.name == "recorder-idle" for t in threading.enumerate())
