"""The instance's adaptive rate limiter and the retry backoff, on a fake clock (no real waiting).

The limiter paces calls at the configured rate, halves it on a throttling answer (once per quota
window), recovers slowly toward the configured rate as calls pass, and holds every caller for a
server's retry-after. Time is the `pacing.clock` / `pacing.sleep` seam: sleeping moves the fake
clock, so every figure below is exact and no test waits.
"""

from __future__ import annotations

from itertools import pairwise

import pytest


@pytest.fixture
def pacing(fake_clock):
    from dwrerun import pacing

    pacing.fake = fake_clock
    return pacing


def call_times(pacing, limiter, n: int) -> list[float]:
    """When each of n back-to-back calls may go out (the fake clock after each acquire)."""
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(pacing.fake.now())
    return times


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in pairwise(times)]


def test_calls_are_spaced_at_the_configured_rate(pacing):
    limiter = pacing.RateLimiter(4.0)
    assert gaps(call_times(pacing, limiter, 5)) == [0.25] * 4


def test_a_throttling_answer_halves_the_rate_and_spaces_the_next_call_at_it(pacing):
    # GIVEN a limiter at 4 calls/s that has just made a call
    limiter = pacing.RateLimiter(4.0)
    limiter.acquire()
    # WHEN DataWorks throttles
    limiter.throttled()
    # THEN the rate is halved, and the next calls go out 0.5 s apart
    assert limiter.rate == 2.0
    assert gaps([pacing.fake.now(), *call_times(pacing, limiter, 3)]) == [0.5] * 3


def test_throttling_answers_within_one_quota_window_count_once(pacing):
    # Eight threads of one invocation throttled by the same full window must not divide the rate by 256.
    limiter = pacing.RateLimiter(8.0)
    for _ in range(8):
        limiter.throttled()
    assert limiter.rate == 4.0
    pacing.fake.advance(pacing.DECREASE_SPACING)  # a second later it is a new signal
    limiter.throttled()
    assert limiter.rate == 2.0


def test_the_rate_never_falls_below_the_floor(pacing):
    limiter = pacing.RateLimiter(10.0)
    for _ in range(20):
        limiter.throttled()
        pacing.fake.advance(pacing.DECREASE_SPACING)
    assert limiter.rate == pytest.approx(10.0 * pacing.FLOOR_SHARE) == limiter.floor


def test_calls_that_pass_recover_additively_and_never_past_the_configured_rate(pacing):
    # GIVEN a limiter at 10 calls/s, halved by a throttling answer
    limiter = pacing.RateLimiter(10.0)
    limiter.throttled()
    assert limiter.rate == 5.0
    # WHEN calls pass at the limiter's pace
    rates = []
    while limiter.rate < limiter.ceiling:
        limiter.acquire()
        limiter.passed()
        rates.append(limiter.rate)
    # THEN the rate climbs by small steps of step / rate per call (step = ceiling / RECOVERY_SECONDS:
    # about that many calls/s regained per second of calls) and stops at the configured rate
    assert rates == sorted(rates) and rates[-1] == limiter.ceiling
    assert rates[0] == pytest.approx(5.0 + (10.0 / pacing.RECOVERY_SECONDS) / 5.0)
    assert max(b - a for a, b in pairwise(rates)) < 0.11  # slow: no jump back to full speed
    # rate² grows by 2 × step per call: from 5 to 10 takes (100 - 25) / (2 × 0.5) = 75 calls
    assert 74 <= len(rates) <= 76
    limiter.passed()
    assert limiter.rate == limiter.ceiling


def test_a_retry_after_holds_every_caller_of_the_limiter(pacing):
    # GIVEN one call throttled with x-acs-retry-after of 3 s (the client gives it in seconds)
    limiter = pacing.RateLimiter(10.0)
    limiter.acquire()
    start = pacing.fake.now()
    limiter.throttled(retry_after=3.0)
    # THEN the next call, whichever thread makes it, waits the 3 s; the one after it the new interval
    times = call_times(pacing, limiter, 2)
    assert [round(t - start, 6) for t in times] == [3.0, 3.2]


def test_a_hold_past_the_deadline_raises_without_waiting(pacing):
    limiter = pacing.RateLimiter(10.0)
    limiter.throttled(retry_after=30.0)
    with pytest.raises(pacing.DeadlineReached):
        limiter.acquire(deadline=pacing.fake.now() + 10.0)
    assert pacing.fake.slept == []


def test_each_kind_of_call_has_one_limiter_per_instance(pacing):
    reads = pacing.limiter("read", 22.0)
    assert pacing.limiter("read", 22.0) is reads
    assert pacing.limiter("write", 9.0) is not reads
    reads.throttled()
    assert pacing.limiter("read", 22.0).rate == 11.0  # the slowdown is seen by every caller


def test_backoff_is_full_jitter_capped_and_at_least_retry_after(pacing, mocker):
    mocker.patch.object(pacing, "uniform", lambda low, high: high)
    assert [pacing.backoff(n) for n in (1, 2, 3, 6, 10)] == [0.2, 0.4, 0.8, 5.0, 5.0]
    assert pacing.backoff(1, retry_after=2.0) == 2.0


def test_a_shorter_hold_never_shortens_a_longer_one(pacing):
    # A second throttled answer with a shorter retry-after (another thread's) keeps the first hold.
    limiter = pacing.RateLimiter(10.0)
    start = pacing.fake.now()
    limiter.throttled(retry_after=3.0)
    limiter.throttled(retry_after=1.0)
    limiter.acquire()
    assert round(pacing.fake.now() - start, 6) == 3.0


def test_backoff_draws_between_zero_and_the_ceiling(pacing, mocker):
    drawn = []
    mocker.patch.object(pacing, "uniform", lambda low, high: drawn.append((low, high)) or low)
    assert [pacing.backoff(n) for n in (1, 2, 6)] == [0.0, 0.0, 0.0]
    assert drawn == [(0, 0.2), (0, 0.4), (0, 5.0)]


# --- pacing.retry: the one retry loop (failure._read, selection._call, handoff.invoke) -----------


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__("flaky")
        self.retry_after = retry_after


def attempts_of(*results):
    """An attempt that raises or returns each of `results` in turn, noting the time it was given."""
    given = []

    def attempt(left: float):
        given.append(left)
        result = results[len(given) - 1]
        if isinstance(result, Exception):
            raise result
        return result

    return attempt, given


def test_retry_returns_the_first_answer_after_transient_errors_waiting_at_least_retry_after(pacing, mocker):
    mocker.patch.object(pacing, "uniform", lambda low, high: high)  # the backoff's ceiling
    attempt, given = attempts_of(Flaky(), Flaky(retry_after=3.0), "answer")
    deadline = pacing.fake.now() + 60
    assert pacing.retry(attempt, deadline=deadline, transient=lambda e: isinstance(e, Flaky)) == "answer"
    # THEN two waits: the first backoff (0.2 s), then the server's 3 s over the second (0.4 s)
    assert pacing.fake.slept == [0.2, 3.0]
    assert given == [60, pytest.approx(59.8), pytest.approx(56.8)]  # each attempt told the time left


def test_retry_raises_what_the_caller_does_not_call_transient_at_once(pacing):
    attempt, given = attempts_of(ValueError("for good"), "never")
    with pytest.raises(ValueError, match="for good"):
        pacing.retry(attempt, deadline=pacing.fake.now() + 60, transient=lambda e: isinstance(e, Flaky))
    assert len(given) == 1 and pacing.fake.slept == []


def test_retry_raises_the_last_transient_error_when_the_attempts_are_spent(pacing):
    attempt, given = attempts_of(Flaky(), Flaky(), Flaky(), "never")
    with pytest.raises(Flaky):
        pacing.retry(attempt, deadline=pacing.fake.now() + 60, transient=lambda e: True, attempts=3)
    assert len(given) == 3 and len(pacing.fake.slept) == 2


def test_retry_raises_the_last_error_rather_than_wait_past_the_deadline(pacing):
    # GIVEN a server asking for 5 s with 4 s left: the wait would end past the deadline
    attempt, given = attempts_of(Flaky(retry_after=5.0), "never")
    with pytest.raises(Flaky):
        pacing.retry(attempt, deadline=pacing.fake.now() + 4, transient=lambda e: True)
    assert len(given) == 1 and pacing.fake.slept == []


def test_retry_starts_no_attempt_without_the_margin_left(pacing):
    attempt, given = attempts_of("never")
    with pytest.raises(pacing.DeadlineReached, match="no time left to list the selection"):
        pacing.retry(attempt, deadline=pacing.fake.now() + 0.4, transient=lambda e: True, what="list the selection")
    assert given == []


def test_retry_waits_for_the_limiters_slot_before_each_attempt(pacing, mocker):
    mocker.patch.object(pacing, "uniform", lambda low, high: 0.0)  # no backoff: the limiter alone spaces them
    limiter = pacing.RateLimiter(2.0)
    attempt, _ = attempts_of(Flaky(), "answer")
    pacing.retry(attempt, deadline=pacing.fake.now() + 60, transient=lambda e: True, limiter=limiter)
    assert pacing.fake.slept == [0.0, 0.5]  # the backoff (none), then the limiter's next slot at 2 calls/s


# --- spacing by when calls go out, not by when their slots were handed out ----------------------


def late_sleeps(pacing, late: dict[int, float], during: dict[int, object] | None = None):
    """A `pacing.sleep` whose n-th wait (from 1) ends `late[n]` seconds after it should (a cold
    start, a loaded CPU), and during which `during[n]()` runs: what another caller does meanwhile."""
    count = 0
    fake = pacing.fake

    def waits(seconds: float) -> None:
        nonlocal count
        count += 1
        n = count
        end = fake.now() + seconds + late.get(n, 0.0)  # a real sleep ends at a time, whatever happens meanwhile
        if during and n in during:
            during[n]()
        fake.sleep(max(0.0, end - fake.now()))

    return waits


def test_a_slot_used_late_moves_the_next_call_a_whole_interval_after_it(pacing, mocker):
    # GIVEN a limiter at 4 calls/s whose first wait ends 0.2 s late (the instance was busy)
    limiter = pacing.RateLimiter(4.0)
    mocker.patch.object(pacing, "sleep", late_sleeps(pacing, {1: 0.2}))
    # WHEN three calls go out back to back
    times = call_times(pacing, limiter, 3)
    # THEN the call after the late one waits a whole interval after it, not after its slot (0.05 s)
    assert gaps(times) == [0.45, 0.25]


def test_a_caller_given_an_early_slot_that_goes_late_does_not_bunch_with_the_next(pacing, mocker):
    # GIVEN a limiter at 4 calls/s that has just made a call, and caller A given the next slot
    limiter = pacing.RateLimiter(4.0)
    limiter.acquire()
    sent = {"first": pacing.fake.now()}

    def caller_b() -> None:
        # While A waits, B is given the slot after A's and makes its call on time
        limiter.acquire()
        sent["B"] = pacing.fake.now()

    # A's wait runs B meanwhile: A wakes only after B's slot, its own long past (late by 0.25 s)
    mocker.patch.object(pacing, "sleep", late_sleeps(pacing, {}, during={1: caller_b}))
    limiter.acquire()
    sent["A"] = pacing.fake.now()
    # THEN A does not go out together with B: it waits an interval after B's call
    start = sent["first"]
    assert {k: round(v - start, 6) for k, v in sent.items()} == {"first": 0.0, "B": 0.5, "A": 0.75}


def test_no_one_second_window_holds_more_than_the_rates_calls_however_late_the_slots_are_used(pacing, mocker):
    # GIVEN 4.5 calls/s (at most 5 calls in any second: 0, 0.222 ... 0.889), and every other wait late
    limiter = pacing.RateLimiter(4.5)
    mocker.patch.object(pacing, "sleep", late_sleeps(pacing, {n: 0.15 for n in range(1, 40, 2)}))
    times = call_times(pacing, limiter, 40)
    # THEN DataWorks' sliding one-second window never sees more than 5 of them
    most = max(sum(1 for t in times if end - 1.0 < t <= end) for end in times)
    assert most <= 5
    assert min(gaps(times)) >= round(1 / 4.5, 6)


def test_a_retry_after_also_holds_a_caller_already_given_its_slot(pacing, mocker):
    # GIVEN a limiter at 10 calls/s that has just made a call, and the next caller waiting for its slot
    limiter = pacing.RateLimiter(10.0)
    limiter.acquire()
    start = pacing.fake.now()
    # WHEN, during that wait, another thread's call is throttled with x-acs-retry-after of 3 s
    mocker.patch.object(pacing, "sleep", late_sleeps(pacing, {}, during={1: lambda: limiter.throttled(3.0)}))
    limiter.acquire()
    # THEN the waiting caller goes out after the 3 s too, not at the slot it was given before
    assert round(pacing.fake.now() - start, 6) == 3.0


def test_the_first_answer_counts_as_the_first_calls_sending_later_answers_do_not(pacing):
    # GIVEN a limiter at 4 calls/s whose first call takes 0.3 s: it opened the instance's connection
    # after leaving the limiter, so it may have reached DataWorks only just before its answer
    limiter = pacing.RateLimiter(4.0)
    start = pacing.fake.now()
    limiter.acquire()
    pacing.fake.advance(0.3)
    limiter.passed()
    # WHEN the next call goes out, and after its quick answer (the connection is open) the one after
    limiter.acquire()
    second = pacing.fake.now()
    pacing.fake.advance(0.03)
    limiter.passed()
    limiter.acquire()
    # THEN the second waits an interval after the first answer (not its slot at 0.25 s, long past),
    # and the third is spaced from the second as usual
    assert [round(t - start, 6) for t in (second, pacing.fake.now())] == [0.55, 0.8]


def test_acquire_waits_at_most_twice_even_when_the_clock_does_not_move(pacing, mocker):
    # A clock that stands still (a test's frozen clock, a coarse one) must not keep a caller waiting
    # in a loop: the slot's wait, then at most one more for the spacing after the last call.
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        assert len(slept) < 20, "acquire keeps waiting"

    mocker.patch.object(pacing, "clock", lambda: 100.0)
    mocker.patch.object(pacing, "sleep", sleep)
    limiter = pacing.RateLimiter(4.0)
    for _ in range(3):
        limiter.acquire()
    assert len(slept) <= 4
