"""The failure-rules step on its own: what it reads, how often, and the decision it makes.

DataWorks is a small in-test fake here (a seam: the step's only I/O); the end-to-end behaviour
against the emulator is in tests/test_failure_rules.py and the fault matrix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dwrerun import failure, pacing, rules
from dwrerun.config import Settings
from dwrerun.dataworks import DataWorksError
from dwrerun.policy import Decision, Instance

LOGS = Path(__file__).parent / "logs"
SHIPPED = rules.load()
FAR = 1e12  # a deadline that is never reached


class FakeDataWorks:
    """Answers GetTaskInstanceLog from a script: a log text, or a DataWorksError to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.reads: list[tuple[int, int, float]] = []

    def get_task_instance_log(self, instance_id, run_number, timeout):
        self.reads.append((instance_id, run_number, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def instance(run_number=1, task_type="ODPS_SQL") -> Instance:
    return Instance(7, 70, "t", 1, "Prod", "Failure", run_number, "FailureAllowed", "Normal", task_type)


def error(code, transient=True, **kw) -> DataWorksError:
    return DataWorksError("GetTaskInstanceLog", code, "m", transient=transient, **kw)


def test_the_failed_runs_log_is_read_by_its_run_number_with_the_log_timeout():
    dataworks = FakeDataWorks((LOGS / "odps_sql_syntax_error.log").read_text())
    verdict = failure.classify(dataworks, instance(run_number=3), Settings(log_timeout=42), SHIPPED, FAR)
    assert dataworks.reads == [(7, 3, 42)]
    assert (verdict.rule, verdict.failure_class, verdict.action, verdict.calls) == (
        "maxcompute-syntax-error",
        "not-retryable",
        "skip",
        1,
    )
    assert verdict.run_number == 3 and "FAILED: ODPS-0130161" in verdict.matched_line


@pytest.mark.parametrize(
    ("answers", "calls", "why"),
    [
        ([error("Throttling.Api.Risk")], 1, "Throttling.Api.Risk"),  # the daily limit: not retried
        ([error("Throttling.Resource")], 1, "Throttling.Resource"),  # the edition's quota: not retried
        ([error("InvalidSecurityToken.Expired", needs_new_invocation=True)], 1, "InvalidSecurityToken.Expired"),
        ([error("Forbidden", transient=False)], 1, "Forbidden"),
        ([error("Throttling.User")] * 3, 3, "Throttling.User, 3 attempt(s)"),
    ],
)
def test_a_log_that_cannot_be_read_gives_an_unknown_verdict_that_reruns(answers, calls, why):
    dataworks = FakeDataWorks(*answers)
    verdict = failure.classify(dataworks, instance(), Settings(rules_default="skip"), SHIPPED, FAR)
    assert (verdict.rule, verdict.failure_class, verdict.action) == (None, "unknown", "rerun")
    assert len(dataworks.reads) == calls == verdict.calls
    assert f"could not be read ({why})" in verdict.note


def test_a_transient_error_is_retried_with_backoff_and_the_log_then_decides(mocker):
    sleep = mocker.patch.object(pacing, "sleep")
    dataworks = FakeDataWorks(
        error("ServiceUnavailable", retry_after=2.0), "FAILED: ODPS-0130131:[1,1] Table not found"
    )
    verdict = failure.classify(dataworks, instance(), Settings(), SHIPPED, FAR)
    assert verdict.rule == "maxcompute-table-not-found" and verdict.calls == 2
    assert any(call.args[0] >= 2.0 for call in sleep.call_args_list)  # the server's Retry-After is honoured


def test_no_read_is_started_without_time_for_it_and_the_rerun_after_it(mocker):
    mocker.patch.object(pacing, "clock", lambda: 100.0)
    dataworks = FakeDataWorks()
    # 2.9 s left: the rerun after the read needs 0.5 s + its read timeout (2 s), the read at least 0.5 s
    verdict = failure.classify(dataworks, instance(), Settings(read_timeout=2.0), SHIPPED, 102.9)
    assert dataworks.reads == [] and verdict.rule is None
    assert "no time left before the deadline" in verdict.note


def test_logs_turned_off_or_no_run_number_read_nothing():
    dataworks = FakeDataWorks()
    off = failure.classify(dataworks, instance(), Settings(read_logs=False), SHIPPED, FAR)
    unknown_run = failure.classify(dataworks, instance(run_number=None), Settings(), SHIPPED, FAR)
    assert dataworks.reads == [] and off.rule is None is unknown_run.rule
    assert "RERUN_READ_LOGS is false" in off.note and "no RunNumber" in unknown_run.note


ELIGIBLE = Decision(True, "eligible", "run 1 Failure: rerun as run 2")


def verdict(**kw) -> failure.Verdict:
    values = dict(run_number=1, rule="r", failure_class="retryable", action="rerun", note="rule 'r' matched")
    return failure.Verdict(**{**values, **kw})


def test_apply_skips_what_the_rules_call_not_retryable():
    decision = failure.apply(ELIGIBLE, verdict(action="skip", failure_class="not-retryable"), instance(), Settings())
    assert (decision.rerun, decision.reason) == (False, "not-retryable")
    assert decision.message.startswith("rule 'r' matched. A rerun cannot fix it")


def test_a_not_retryable_message_ends_the_rules_description_with_one_full_stop():
    # The message an operator reads in the record, Skipped and NotRetryable: one sentence end.
    log = (LOGS / "odps_sql_table_not_found.log").read_text(encoding="utf-8")
    verdict = failure.classify(FakeDataWorks(log), instance(), Settings(), SHIPPED, FAR)
    decision = failure.apply(ELIGIBLE, verdict, instance(), Settings())
    assert decision.message == (
        "failure rule 'maxcompute-table-not-found' matched line 25 of the log of run 1: ODPS-0130131 Table not "
        "found: the table does not exist (or is not visible to the account). A rerun cannot fix it: the instance "
        "stays Failure for a person to fix and rerun"
    )


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("rule 'r' matched: disk full.", "rule 'r' matched: disk full. A rerun cannot fix it"),
        ("rule 'r' matched: disk full!", "rule 'r' matched: disk full! A rerun cannot fix it"),
        ("rule 'r' matched: disk full?", "rule 'r' matched: disk full? A rerun cannot fix it"),
        ("rule 'r' matched: disk full", "rule 'r' matched: disk full. A rerun cannot fix it"),
    ],
)
def test_a_description_that_ends_its_own_sentence_gets_no_second_full_stop(note, message):
    # An operator's own rules file may end a description with any of . ! ? or with none.
    skip = verdict(action="skip", failure_class="not-retryable", note=note)
    decision = failure.apply(ELIGIBLE, skip, instance(), Settings())
    assert decision.message.startswith(message + ": the instance stays Failure")


def test_apply_skips_by_the_default_without_claiming_a_rerun_cannot_help():
    skip = verdict(rule="default", failure_class="unknown", action="skip", note="no failure rule matched")
    decision = failure.apply(ELIGIBLE, skip, instance(), Settings(rules_default="skip"))
    assert (decision.rerun, decision.reason) == (False, "not-retryable")
    assert decision.message == "no failure rule matched. Not rerun: the instance stays Failure for a person to look at"


def test_apply_keeps_a_rerun_with_the_rules_delay_hint():
    decision = failure.apply(ELIGIBLE, verdict(delay_seconds=600), instance(), Settings())
    assert (decision.rerun, decision.reason, decision.delay_seconds) == (True, "eligible", 600)
    assert decision.message == "run 1 Failure: rerun as run 2 (rule 'r' matched)"


def test_apply_never_turns_a_skip_into_a_rerun():
    held = Decision(False, "rerun-denied", "AllDenied")
    assert failure.apply(held, verdict(), instance(), Settings()) is held


@pytest.mark.parametrize(("rule_max", "setting", "run", "rerun"), [(1, 3, 1, True), (1, 3, 2, False), (5, 2, 3, False)])
def test_apply_caps_at_the_lower_of_the_rules_max_and_rerun_max_reruns(rule_max, setting, run, rerun):
    decision = failure.apply(ELIGIBLE, verdict(max_reruns=rule_max), instance(run), Settings(max_reruns=setting))
    assert decision.rerun is rerun
    if not rerun:
        assert decision.reason == "cap-reached" and f"the {min(rule_max, setting)} rerun(s)" in decision.message


def test_an_unread_log_keeps_the_run_it_was_for_and_why(mocker):
    mocker.patch.object(pacing, "sleep")
    backoff = mocker.spy(pacing, "backoff")
    refused = failure.classify(
        FakeDataWorks(error("Forbidden", transient=False)), instance(2), Settings(), SHIPPED, FAR
    )
    assert (refused.run_number, refused.error_code, refused.calls) == (2, "Forbidden", 1)
    assert refused.note == "the log of run 2 could not be read (Forbidden)"
    kept_failing = failure.classify(
        FakeDataWorks(*[error("ServiceUnavailable")] * 3), instance(), Settings(), SHIPPED, FAR
    )
    assert kept_failing.error_code == "ServiceUnavailable, 3 attempt(s)"
    assert backoff.call_count == 2  # between the 3 attempts; no wait after the last


def test_log_reads_share_the_instances_read_limiter(mocker):
    # GetTaskInstanceLog is a read: DataWorks meters it with GetTaskInstance, so one limiter paces both.
    mocker.patch.object(pacing, "_limiters", {})
    failure.classify(FakeDataWorks("no rule matches this"), instance(), Settings(read_qps=7.0), SHIPPED, FAR)
    assert list(pacing._limiters) == [("read", 7.0)]


@pytest.mark.parametrize(
    ("deadline", "reads"),
    [
        # read_timeout 2 s: the read's own deadline is 0.5 s + 2 s before the invocation's; a read
        # needs 0.5 s of it. At 100.0 with the deadline at 103.0 exactly 0.5 s is left: it goes.
        (103.0, 1),
        (102.75, 0),
    ],
)
def test_a_read_goes_out_with_exactly_its_least_time_left(mocker, deadline, reads):
    mocker.patch.object(pacing, "clock", lambda: 100.0)
    mocker.patch.object(pacing, "_limiters", {})
    dataworks = FakeDataWorks("no rule matches this")
    failure.classify(dataworks, instance(), Settings(read_timeout=2.0), SHIPPED, deadline)
    assert len(dataworks.reads) == reads


def test_a_read_waiting_for_its_slot_past_its_deadline_is_not_made(mocker):
    # The read limiter's next slot is 0.3 s away; the read's deadline leaves only 0.2 s to wait.
    mocker.patch.object(pacing, "clock", lambda: 100.0)
    mocker.patch.object(pacing, "_limiters", {})
    limiter = pacing.limiter("read", Settings().read_qps)
    limiter._next_slot = 100.3
    dataworks = FakeDataWorks("no rule matches this")
    verdict = failure.classify(dataworks, instance(), Settings(read_timeout=2.0), SHIPPED, 103.2)
    assert dataworks.reads == [] and verdict.error_code == "no time left before the deadline"


@pytest.mark.parametrize(
    ("delay", "reads"),
    [
        # The invocation's deadline 105.0, read_timeout 2 s: the reads' own deadline is 102.5. At 100.0
        # a retry after `delay` needs 0.5 s more: 2.0 s fits exactly, 2.5 s does not.
        (2.0, 2),
        (2.5, 1),
    ],
)
def test_a_retry_is_not_waited_for_when_it_could_not_start_in_time(mocker, delay, reads):
    mocker.patch.object(pacing, "clock", lambda: 100.0)
    mocker.patch.object(pacing, "sleep")
    mocker.patch.object(pacing, "_limiters", {})
    mocker.patch.object(pacing, "backoff", lambda attempt, retry_after=None: delay)
    dataworks = FakeDataWorks(error("ServiceUnavailable"), "no rule matches this")
    verdict = failure.classify(dataworks, instance(), Settings(read_timeout=2.0), SHIPPED, 105.0)
    assert len(dataworks.reads) == reads
    if reads == 1:
        # The retry could not start in time: the verdict says so, which is what hands the log to
        # a continuation on the filter path (failure.ran_out_of_time).
        assert verdict.error_code == f"ServiceUnavailable, 1 attempt(s); {failure.NO_TIME_LEFT}"
        assert failure.ran_out_of_time(verdict) and pacing.sleep.call_count == 0


def test_a_log_unread_for_another_reason_did_not_run_out_of_time():
    # Only a log the deadline left unread is handed to a continuation; a DataWorks error is not.
    verdict = failure.classify(
        FakeDataWorks(error("Forbidden.Access", transient=False)), instance(), Settings(), SHIPPED, FAR
    )
    assert verdict.error_code is not None and not failure.ran_out_of_time(verdict)


def test_logs_turned_off_say_so_and_keep_the_run():
    verdict = failure.classify(FakeDataWorks(), instance(4), Settings(read_logs=False), SHIPPED, FAR)
    assert (verdict.run_number, verdict.calls, verdict.error_code) == (4, 0, None)
    assert verdict.note == "RERUN_READ_LOGS is false: the log was not read"


def test_a_transient_error_then_a_read_slot_past_the_deadline_ran_out_of_time(mocker):
    # GIVEN a first read that fails transiently, and a read limiter whose next slot (4 s on at
    # 0.25 reads/s) is past the reads' own deadline (105.5 - 0.5 - 2.0 = 103.0, less 0.5 to start)
    mocker.patch.object(pacing, "clock", lambda: 100.0)
    mocker.patch.object(pacing, "sleep")
    mocker.patch.object(pacing, "_limiters", {})
    dataworks = FakeDataWorks(error("ServiceUnavailable"), "FAILED: ODPS-0130131:[1,1] Table not found")
    verdict = failure.classify(dataworks, instance(), Settings(read_qps=0.25, read_timeout=2.0), SHIPPED, 105.5)
    # THEN the log is unread because the time ran out (not because of DataWorks): on the filter
    # path that hands the instance on, rather than rerunning it with its log unread (issue 24, 9)
    assert len(dataworks.reads) == 1
    assert verdict.error_code == f"ServiceUnavailable, 1 attempt(s); {failure.NO_TIME_LEFT}"
    assert failure.ran_out_of_time(verdict)
