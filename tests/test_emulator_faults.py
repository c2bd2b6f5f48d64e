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
    # THEN the generic client raises the 400 throttling error three times, then the call passes
    for _ in range(3):
        with pytest.raises(ClientException) as err:
            get(client)
        assert (err.value.status_code, err.value.code) == (400, "Throttling.User")
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
    assert emu.journal.count(code="Throttling.User", status=400) >= 1
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
