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


def test_a_sleep_on_the_manual_clock_moves_it_on_at_once_and_never_back():
    # GIVEN the tests' fake time
    clock = ManualClock(start=1000)
    ran = []
    clock.call_at(1001.5, lambda: ran.append("due"))
    # WHEN code under test waits
    clock.sleep(1)
    clock.sleep(1)
    clock.sleep(-5)
    # THEN the waits add up, what came due ran, and a negative wait is no wait
    assert clock.now() == 1002 and clock.elapsed == 2 and ran == ["due"]
    assert clock.slept == [1, 1, -5]


def test_overlapping_sleeps_on_two_threads_take_as_long_as_the_longest():
    # GIVEN two threads that read the clock at the same moment
    clock = ManualClock(start=1000, overlapping_sleeps=True)
    read = threading.Barrier(2)

    def wait(seconds):
        clock.now()
        read.wait()
        clock.sleep(seconds)

    threads = [threading.Thread(target=wait, args=(s,)) for s in (1, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN the waits ran side by side
    assert clock.now() == 1003
