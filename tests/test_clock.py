"""The local cloud's clocks: a manual one tests advance, a real one the demo uses."""

import threading

import pytest

from localcloud.clock import ManualClock, RealClock


def test_the_manual_clock_runs_what_came_due_in_order_and_nothing_early():
    clock = ManualClock(start=100)
    ran = []
    clock.call_at(130, lambda: ran.append("b"))
    clock.call_at(110, lambda: ran.append("a"))
    clock.call_at(130, lambda: ran.append("c"))  # same time: in the order they were set

    assert clock.advance(9) == 0 and ran == []
    assert clock.advance(1) == 1 and ran == ["a"]
    assert clock.advance(100) == 2 and ran == ["a", "b", "c"]
    assert clock.now() == 210 and clock.pending == 0
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


def test_the_real_clock_runs_a_callback_once_it_is_due_never_before():
    clock = RealClock()
    seen = {}
    done = threading.Event()
    due = clock.now() + 0.05

    def callback():
        seen["at"] = clock.now()
        done.set()

    clock.call_at(due, callback)
    assert done.wait(10)
    assert seen["at"] >= due and clock.pending == 0
