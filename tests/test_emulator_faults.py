"""Injected faults and the rate quota of the DataWorks emulator, as the generic client experiences them."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException

from localcloud import openapi
from localcloud.acs3 import Credentials
from localcloud.clock import ManualClock
from localcloud.dataworks import DataWorksEmulator

CREDS = Credentials("LTAItestkeyid0001", "test-secret-do-not-log", "test-sts-token-do-not-log")
FAILED = 1000012345678


@pytest.fixture
def emu():
    with DataWorksEmulator(credentials=[CREDS]) as emu:
        emu.backend.add_instance(id=FAILED, task_id=700000004417, project_id=48213, status="Failure")
        emu.backend.add_instance(id=FAILED + 1, task_id=700000004417, project_id=48213, status="Failure")
        yield emu


def make_client(emu, read_timeout_ms: int = 10_000):
    return openapi.client(emu.endpoint, CREDS, read_timeout_ms=read_timeout_ms)


def rerun(client, ids: str = f"[{FAILED}]") -> dict:
    return openapi.call(client, "RerunTaskInstances", Ids=ids, Comment="fault test")["body"]


def get(client, instance_id: int = FAILED) -> dict:
    return openapi.call(client, "GetTaskInstance", "GET", Id=instance_id)["body"]


def test_latency_delays_the_answer(emu):
    emu.faults.set("RerunTaskInstances", latency=0.025)
    client = make_client(emu)
    started = time.monotonic()
    rerun(client)
    assert time.monotonic() - started >= 0.025  # a lower bound only
    assert emu.journal.calls("RerunTaskInstances")[0].duration >= 0.025
    get(client)
    assert emu.journal.calls("GetTaskInstance")[0].fault is None


def test_throttle_fault_hits_the_next_calls_only(emu):
    # GIVEN three throttled calls armed
    emu.faults.set("GetTaskInstance", throttle=3, throttle_code="Throttling.User")
    client = make_client(emu)
    # THEN the generic client raises the 429 throttling error three times, then the call passes
    for _ in range(3):
        with pytest.raises(ClientException) as err:
            get(client)
        assert (err.value.status_code, err.value.code) == (429, "Throttling.User")
    assert get(client)["TaskInstance"]["Id"] == FAILED
    assert emu.journal.count(code="Throttling.User") == 3
    assert len(emu.journal.calls("GetTaskInstance")) == 1


def test_throttle_with_retry_after_raises_throttling_exception(emu):
    emu.faults.set("RerunTaskInstances", throttle=1, throttle_code="Throttling.Api", retry_after=2)
    with pytest.raises(ThrottlingException) as err:
        rerun(make_client(emu))
    assert (err.value.code, err.value.retry_after) == ("Throttling.Api", 2)
    assert emu.backend.instance(FAILED).run_number == 1


@pytest.mark.parametrize(("code", "status"), [("ServiceUnavailable", 503), ("InternalError", 500)])
def test_server_error_raises_server_exception(emu, code, status):
    emu.faults.set("RerunTaskInstances", server_error=2, server_error_code=code)
    client = make_client(emu)
    for _ in range(2):
        with pytest.raises(ServerException) as err:
            rerun(client)
        assert (err.value.status_code, err.value.code) == (status, code)
    assert emu.backend.instance(FAILED).status == "Failure"
    assert rerun(client)["SuccessInfo"][str(FAILED)]["Success"] is True


def test_hang_hits_the_client_read_timeout_and_stop_still_returns(emu):
    emu.faults.set("RerunTaskInstances", hang=1)
    with pytest.raises(UnretryableException):
        rerun(make_client(emu, read_timeout_ms=500))
    assert emu.backend.instance(FAILED).run_number == 1  # never reached the backend
    entry = emu.journal.entries()[-1]
    assert (entry.fault, entry.status, entry.accepted) == ("hang", 0, False)
    # Another client hangs right now; stop() must still return.
    emu.faults.set("RerunTaskInstances", hang=1)

    def hung_call():
        with contextlib.suppress(UnretryableException):  # the connection drops when the emulator stops
            rerun(make_client(emu))

    caller = threading.Thread(target=hung_call, daemon=True)
    caller.start()
    while emu.journal.count(fault="hang") < 2:
        time.sleep(0.01)
    stopper = threading.Thread(target=emu.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    caller.join(timeout=30)


def test_reset_is_a_connection_error(emu):
    emu.faults.set("RerunTaskInstances", reset=1)
    client = make_client(emu)
    with pytest.raises(UnretryableException) as err:
        rerun(client)
    assert "Connection" in str(err.value) or "reset" in str(err.value).lower()
    assert rerun(client)["SuccessInfo"][str(FAILED)]["Success"] is True  # the next call on a new connection works


def test_malformed_answer_makes_the_client_raise(emu):
    emu.faults.set("GetTaskInstance", malformed=1)
    with pytest.raises(UnretryableException):
        get(make_client(emu))


def test_fault_after_backend_loses_the_answer_but_changes_state(emu):
    # The dangerous case for a retrying caller: the rerun happened, the answer did not arrive.
    emu.faults.set("RerunTaskInstances", reset=1, after_backend=True)
    with pytest.raises(UnretryableException):
        rerun(make_client(emu))
    assert emu.backend.instance(FAILED).run_number == 2
    assert emu.journal.calls("RerunTaskInstances")[0].fault == "reset"


def test_partial_failure_refuses_only_the_named_instances(emu):
    emu.faults.set("RerunTaskInstances", partial_failure={FAILED: "Instance is locked by another operation."})
    info = rerun(make_client(emu), f"[{FAILED},{FAILED + 1}]")["SuccessInfo"]
    assert info[str(FAILED)] == {"Success": False, "Message": "Instance is locked by another operation."}
    assert info[str(FAILED + 1)]["Success"] is True
    assert emu.backend.instance(FAILED).run_number == 1
    assert emu.backend.instance(FAILED + 1).status == "Running"


def test_star_applies_to_every_action_and_clear_disarms(emu):
    emu.faults.set("*", server_error=None)  # None: every call
    client = make_client(emu)
    for call in (get, rerun, get):
        with pytest.raises(ServerException):
            call(client)
    emu.faults.clear()
    assert get(client)["TaskInstance"]["Id"] == FAILED


def test_bad_fault_settings_are_refused(emu):
    with pytest.raises(ValueError, match="throttle"):
        emu.faults.set("GetTaskInstance", throttle=-1)
    with pytest.raises(ValueError, match="throttle code"):
        emu.faults.set("GetTaskInstance", throttle=1, throttle_code="Throttling.Nope")
    with pytest.raises(ValueError, match="read_qps"):
        emu.quota(read_qps=0)
    with pytest.raises(ValueError, match="daily_limit"):
        emu.quota(daily_limit=0)
    with pytest.raises(ValueError, match="neighbour"):
        emu.quota(read_qps=10, neighbour=1.0)
    with pytest.raises(ValueError, match="code"):
        emu.quota(read_qps=10, code="Throttling.Api.Risk")  # a quota limit, not a rate code
    with pytest.raises(ValueError, match="concurrent_rerun"):
        emu.faults.set("RerunTaskInstances", concurrent_rerun=-1)


def test_quota_throttles_a_caller_that_exceeds_it(emu):
    # GIVEN a read quota of 5 calls per second
    quota = 5
    emu.quota(read_qps=quota)
    clients = [make_client(emu) for _ in range(4)]
    stop = threading.Event()

    def hammer(client):
        for _ in range(100):  # bounded, in case the machine is very slow
            if stop.is_set():
                return
            try:
                get(client)
            except ClientException as exc:
                assert exc.code == "Throttling.User"
                stop.set()

    # WHEN four threads call as fast as they can until one is throttled
    threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN some calls were throttled with the real code, and no one-second window admitted more than the quota
    assert emu.journal.count(code="Throttling.User", status=429) >= 1
    admitted = sorted(e.time for e in emu.journal.calls("GetTaskInstance"))
    for t in admitted:
        assert sum(1 for u in admitted if t - 1.0 < u <= t) <= quota
    # AND writes are a separate category, unlimited here
    assert rerun(clients[0])["SuccessInfo"][str(FAILED)]["Success"] is True


def test_refuse_fault_answers_403_resource_not_authorized_for_that_action_only(emu):
    # GIVEN the role may not read logs
    emu.faults.set("GetTaskInstanceLog", refuse=1)
    client = make_client(emu)
    # THEN the log read is refused once, with DataWorks' documented code; other actions pass
    with pytest.raises(ClientException) as err:
        openapi.call(client, "GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=1)
    assert (err.value.status_code, err.value.code) == (403, "ResourceNotAuthorized.Api")
    get(client)
    log = openapi.call(client, "GetTaskInstanceLog", "GET", Id=FAILED, RunNumber=1)["body"]["TaskInstanceLog"]
    assert "Exit code" in log
    assert emu.journal.count(action="GetTaskInstanceLog", fault="refuse", status=403) == 1
    assert len(emu.journal.calls("GetTaskInstanceLog")) == 1  # the refused call never reached the backend


# The DataWorks error-code page: every throttling answer is 429, with these messages.
DOCUMENTED = {
    "Throttling.User": "Your request is too frequent. Try again later.",
    "Throttling.Api": "The request for this resource has exceeded your available limit.",
    "Throttling.System": "The DataWorks system is busy. Try again later.",
    "Throttling.Api.Risk": "The request for this resource has exceeded your daily available limit.",
    "Throttling.Resource": "the number of API calls that you can make has reached the upper limit. You can "
    "upgrade the edition of your DataWorks service to obtain a larger quota for the number of API calls.",
}


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
def test_every_throttling_code_is_a_429_with_the_documented_message(emu, code):
    emu.faults.set("GetTaskInstance", throttle=1, throttle_code=code)
    with pytest.raises(ClientException) as err:
        get(make_client(emu))
    assert (err.value.status_code, err.value.code) == (429, code)
    assert err.value.data["Message"] == DOCUMENTED[code]


def test_the_daily_limit_refuses_every_call_once_used_until_the_next_day(emu):
    # GIVEN a budget of 3 calls a day (reads and writes together, as DataWorks counts them)
    emu.quota(daily_limit=3)
    client = make_client(emu)
    get(client)
    rerun(client)
    get(client)
    assert emu.calls_today == 3
    # THEN every further call, read or write, is refused with the daily-limit code
    for call in (get, rerun, get):
        with pytest.raises(ClientException) as err:
            call(client)
        assert (err.value.status_code, err.value.code) == (429, "Throttling.Api.Risk")
    assert emu.journal.count(code="Throttling.Api.Risk") == 3 and len(emu.journal.calls()) == 3
    assert emu.backend.instance(FAILED).run_number == 2  # the refused rerun changed nothing
    # AND a new day gives a new budget
    emu.new_day()
    assert get(client)["TaskInstance"]["Id"] == FAILED


def test_the_daily_limit_counts_days_by_the_quota_clock(emu):
    clock = ManualClock(start=1_767_196_799.0)  # 2025-12-31 23:59:59 China time
    emu.quota_clock = clock.now
    emu.quota(daily_limit=1)
    client = make_client(emu)
    get(client)
    with pytest.raises(ClientException, match="Throttling.Api.Risk"):
        get(client)
    clock.advance(1.0)  # midnight in China time (inferred: DataWorks' day)
    assert get(client)["TaskInstance"]["Id"] == FAILED


def test_an_exhausted_edition_quota_refuses_everything(emu):
    emu.quota(read_qps=50, write_qps=20, edition_exhausted=True)
    client = make_client(emu)
    for call in (get, rerun):
        with pytest.raises(ClientException) as err:
            call(client)
        assert (err.value.status_code, err.value.code) == (429, "Throttling.Resource")
    assert emu.journal.calls() == [] and emu.backend.instance(FAILED).run_number == 1
    emu.quota()
    assert get(client)["TaskInstance"]["Id"] == FAILED


def test_a_neighbour_leaves_the_rest_of_each_rate_limit(emu):
    # GIVEN 10 reads/s and 5 writes/s, 60% used by another client of the account; time stands still
    clock = ManualClock(start=1000.0)
    emu.quota_clock = clock.now
    emu.quota(read_qps=10, write_qps=5, neighbour=0.6)
    client = make_client(emu)
    # THEN 4 reads and 2 writes are admitted in one second, the next of each gets 429 Throttling.User
    for _ in range(4):
        get(client)
    with pytest.raises(ClientException, match="Throttling.User"):
        get(client)
    rerun(client, f"[{FAILED}]")
    rerun(client, f"[{FAILED + 1}]")
    with pytest.raises(ClientException, match="Throttling.User"):
        rerun(client)
    # AND a second later the window has room again
    clock.advance(1.0)
    get(client)
    assert emu.journal.count(code="Throttling.User", status=429) == 2


def test_a_concurrent_rerun_gets_there_first_and_the_callers_rerun_is_refused(emu):
    # GIVEN another client reruns the instance just before this caller's rerun reaches the backend
    emu.faults.set("RerunTaskInstances", concurrent_rerun=1)
    client = make_client(emu)
    info = rerun(client)["SuccessInfo"][str(FAILED)]
    # THEN exactly one rerun started (the other client's), and the caller is told the instance is not finished
    assert info["Success"] is False and "Running" in info["Message"]
    inst = emu.backend.instance(FAILED)
    assert (inst.run_number, inst.status) == (2, "Running") and "another client" in inst.comment
    assert emu.journal.calls("RerunTaskInstances")[0].fault == "concurrent_rerun"
    # AND the fault is used up: the next rerun of a finished instance goes through
    assert rerun(client, f"[{FAILED + 1}]")["SuccessInfo"][str(FAILED + 1)]["Success"] is True


def test_a_rerun_of_an_instance_that_is_no_longer_finished_is_refused(emu):
    # Two callers read the same failed run; the first reruns it, the second's rerun is refused.
    client = make_client(emu)
    assert rerun(client)["SuccessInfo"][str(FAILED)]["Success"] is True
    second = rerun(client)["SuccessInfo"][str(FAILED)]
    assert second == {
        "Success": False,
        "Message": "The instance is Running: only a finished (Failure or Success) instance can be rerun.",
    }
    assert emu.backend.instance(FAILED).run_number == 2
