"""The local FC runs a function as FC 3.0 runs a standard runtime: one invocation per instance,
each instance its own process, at most reservedConcurrency of them, an asynchronous queue above
that, and FC's retries of an invocation that raised, timed out or crashed.

No test waits for time to pass: handlers that must be "inside" at the same moment hold at a gate
(a loopback socket the test opens), and the test reads the model's state once they are there.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import textwrap
import threading
import urllib.error
import urllib.request

import pytest

from conftest import CREDS, ROTATED
from localcloud.eventbridge import EventBridge
from localcloud.fc import Function
from localcloud.fc.exceptions import ConcurrencyExceeded
from localcloud.gateway import HttpGateway

# Each invocation: report to the gate, hold until the test opens it, then print and return.
GATED = """
import json, os, socket

CALLS = 0

def handler(event, context):
    global CALLS
    CALLS += 1
    request = json.loads(event)
    if request.get("gate"):
        with socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"]))) as gate:
            gate.sendall(f"{os.environ['FC_INSTANCE_ID']} {os.getpid()}\\n".encode())
            gate.recv(1)
    print(json.dumps({"marker": request.get("marker"), "requestId": context.request_id}))
    return {"pid": os.getpid(), "calls": CALLS, "instance": os.environ["FC_INSTANCE_ID"]}
"""


class Gate:
    """Handlers connect, say who they are, and wait until `open()`."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.arrived: list[tuple[str, int]] = []
        self._waiting: list[socket.socket] = []
        self._cond = threading.Condition()
        self._open = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            instance, pid = conn.makefile().readline().split()
            with self._cond:
                self.arrived.append((instance, int(pid)))
                if self._open:
                    conn.sendall(b"!")
                    conn.close()
                else:
                    self._waiting.append(conn)
                self._cond.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, int]]:
        """Block until `count` handlers are inside (10 s at most: then the test fails)."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.arrived) >= count, timeout=10), self.arrived
            return list(self.arrived)

    def open(self):
        with self._cond:
            self._open = True
            for conn in self._waiting:
                conn.sendall(b"!")
                conn.close()
            self._waiting.clear()

    def close(self):
        self.open()
        self._server.close()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


@pytest.fixture
def make(tmp_path, gate):
    made = []

    def make(source=GATED, **kwargs):
        code = tmp_path / f"code{len(made)}"
        code.mkdir()
        (code / "index.py").write_text(textwrap.dedent(source), encoding="utf-8")
        kwargs.setdefault("reserved_concurrency", 2)
        kwargs.setdefault("env", {"GATE_PORT": str(gate.port)})
        fn = Function(
            "index.handler", code_dir=str(code), function_name="probe", logstore=str(tmp_path / "logs.jsonl"), **kwargs
        )
        made.append(fn)
        return fn

    yield make
    for fn in made:
        fn.close()


def event(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_concurrent_invocations_start_instances_up_to_the_reserved_concurrency_and_queue_the_rest(make, gate):
    # GIVEN a function allowed 2 instances
    fn = make(reserved_concurrency=2)

    # WHEN 5 asynchronous invocations arrive at once
    handles = [fn.invoke_async(event(gate=True, marker=f"m{n}")) for n in range(5)]

    # THEN 2 instances start, each serving one of them, and the other 3 wait in the queue
    inside = gate.wait_for(2)
    assert len({instance for instance, _ in inside}) == 2 and len({pid for _, pid in inside}) == 2
    assert len(fn.instances) == 2
    assert sorted(h.status for h in handles) == ["Enqueued"] * 3 + ["Running"] * 2

    # AND once let go, the queued ones run on the same two warm instances
    gate.open()
    fn.drain()
    assert [h.status for h in handles] == ["Succeeded"] * 5
    assert len(fn.instances) == 2 and sum(i.invocations for i in fn.instances) == 5
    finals = [h.final for h in handles]
    assert sum(f.cold_start for f in finals) == 2
    assert {f.instance_id for f in finals} == {i.instance_id for i in fn.instances}
    # every invocation kept its own output, and its own request id
    for n, final in enumerate(finals):
        assert final.records == [{"marker": f"m{n}", "requestId": final.request_id}]
    assert len({f.request_id for f in finals}) == 5


def test_module_state_is_per_instance(make, gate):
    fn = make(reserved_concurrency=2)
    both = [fn.invoke_async(event(gate=True)) for _ in range(2)]
    gate.wait_for(2)
    gate.open()
    fn.drain()
    results = [h.final.result for h in both]
    # two processes, each with its own module-level counter: neither saw the other's call
    assert results[0]["pid"] != results[1]["pid"]
    assert [r["calls"] for r in results] == [1, 1]


def test_an_idle_instance_is_reused_warm(make):
    fn = make(reserved_concurrency=3)
    first = fn.invoke_async(event())
    fn.drain()
    second = fn.invoke_async(event())
    fn.drain()
    third = fn.invoke(event())  # a synchronous call takes the idle instance too

    assert (first.final.cold_start, second.final.cold_start, third.cold_start) == (True, False, False)
    assert first.final.instance_id == second.final.instance_id == third.instance_id
    assert [second.final.result["calls"], third.result["calls"]] == [2, 3]
    assert len(fn.instances) == 1


def test_a_synchronous_invocation_above_the_cap_is_refused_not_queued(make, gate):
    fn = make(reserved_concurrency=1)
    fn.invoke_async(event(gate=True))
    gate.wait_for(1)
    with pytest.raises(ConcurrencyExceeded, match="reservedConcurrency 1"):
        fn.invoke(event())
    gate.open()
    fn.drain()
    assert fn.invoke(event()).error is None


RAISES_UNTIL = """
import os

def handler(event, context):
    marker = os.path.join(os.environ["MARKERS"], context.request_id)
    count = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as out:
        out.write(str(count + 1))
    if count < int(event):
        raise ConnectionError(f"attempt {count + 1} failed")
    return count + 1
"""


@pytest.mark.parametrize(("failures", "retries", "status", "attempts"), [(2, 3, "Succeeded", 3), (9, 2, "Failed", 3)])
def test_a_raising_invocation_is_retried_up_to_max_async_retry_attempts(
    make, tmp_path, failures, retries, status, attempts
):
    fn = make(RAISES_UNTIL, max_async_retry_attempts=retries, env={"MARKERS": str(tmp_path)})
    handle = fn.invoke_async(str(failures).encode())
    fn.drain()
    assert handle.status == status and len(handle.attempts) == attempts
    assert {a.request_id for a in handle.attempts} == {handle.request_id}  # FC keeps the request id
    errors = [a.error and a.error["errorType"] for a in handle.attempts]
    assert errors == ["ConnectionError"] * min(failures, attempts) + [None] * (attempts - min(failures, attempts))


def test_a_synchronous_invocation_is_never_retried(make, tmp_path):
    fn = make(RAISES_UNTIL, env={"MARKERS": str(tmp_path)})
    inv = fn.invoke(b"1")
    assert inv.error["errorType"] == "ConnectionError"
    assert len(fn.invocations) == 1


HANGS_FIRST = """
import os, threading

def handler(event, context):
    marker = os.path.join(os.environ["MARKERS"], "first")
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("stuck")
        threading.Event().wait()  # until FC kills the instance
    return "done"
"""


def test_a_timed_out_invocation_kills_its_instance_and_is_retried_on_a_new_one(make, tmp_path):
    # The retry's cold start counts toward its timeout, as on FC: 3 s keeps a loaded 2-core CI
    # machine from timing it out too (0.5 s did, under load: three attempts instead of two).
    fn = make(HANGS_FIRST, timeout=3, env={"MARKERS": str(tmp_path)})
    handle = fn.invoke_async(b"{}")
    fn.drain()
    first, retry = handle.attempts
    assert first.timed_out and first.error["errorType"] == "FunctionTimeout" and first.stdout == ["stuck"]
    assert retry.result == "done" and retry.cold_start and retry.instance_id != first.instance_id
    killed, fresh = fn.instances
    assert killed.ended == "timeout" and fresh.ended is None
    assert handle.status == "Succeeded"


CRASHES_FIRST = """
import os

def handler(event, context):
    marker = os.path.join(os.environ["MARKERS"], "first")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return "done"
"""


def test_a_crashed_instance_is_an_error_fc_retries(make, tmp_path):
    fn = make(CRASHES_FIRST, env={"MARKERS": str(tmp_path)})
    handle = fn.invoke_async(b"{}")
    fn.drain()
    crashed, retry = handle.attempts
    assert crashed.error["errorType"] == "InstanceExited" and "code 3" in crashed.error["errorMessage"]
    assert retry.result == "done" and retry.cold_start
    assert [i.ended for i in fn.instances] == ["crashed", None]


ENVIRONMENT = """
import hashlib, os

def handler(event, context):
    names = ["ALIBABA_CLOUD_ACCESS_KEY_ID", "FC_INSTANCE_ID", "FC_FUNCTION_NAME", "FC_FUNC_CODE_PATH", "SHELL_ONLY",
             "DATAWORKS_ENDPOINT"]
    creds = getattr(context, "credentials", None)
    token = os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")
    return {
        "env": {n: os.environ.get(n) for n in names},
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),  # never the token itself
        "cwd": os.getcwd(),
        "context_key": creds and creds.access_key_id,
        "function": vars(context.function),
    }
"""


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12"])
def test_an_instance_has_fcs_variables_and_context_and_nothing_from_this_shell(make, tmp_path, monkeypatch, runtime):
    monkeypatch.setenv("SHELL_ONLY", "not for the function")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "shell-key")
    fn = make(ENVIRONMENT, runtime=runtime, credentials=CREDS, env={"DATAWORKS_ENDPOINT": "http://127.0.0.1:1"})
    first = fn.invoke(b"{}")
    fn.rotate_credentials(ROTATED)
    second = fn.invoke(b"{}")

    seen = first.result
    assert seen["env"]["ALIBABA_CLOUD_ACCESS_KEY_ID"] == CREDS.access_key_id
    assert seen["env"]["FC_INSTANCE_ID"] == first.instance_id and seen["env"]["FC_FUNCTION_NAME"] == "probe"
    assert seen["env"]["FC_FUNC_CODE_PATH"] == seen["cwd"] == str(tmp_path / "code0")
    assert seen["env"]["SHELL_ONLY"] is None and seen["env"]["DATAWORKS_ENDPOINT"] == "http://127.0.0.1:1"
    assert seen["function"]["name"] == "probe" and seen["function"]["handler"] == "index.handler"
    # STS keys rotate under a running instance: the same warm instance sees the new ones
    assert second.instance_id == first.instance_id
    assert second.result["token_sha256"] == hashlib.sha256(ROTATED.security_token.encode()).hexdigest()
    if runtime == "python3.10":
        assert (seen["context_key"], second.result["context_key"]) == (CREDS.access_key_id, ROTATED.access_key_id)
    else:
        assert seen["context_key"] is None  # python3.12 has no context.credentials


def test_every_line_reaches_the_logstore_with_its_instance_and_request(make, tmp_path):
    fn = make(
        """
        import sys
        def handler(event, context):
            print('{"decision": "rerun"}')
            print("partial", end="")
            sys.stderr.write("oops\\n")
            raise ValueError("no")
        """,
        max_async_retry_attempts=0,
    )
    handle = fn.invoke_async(b"{}")
    fn.drain()
    (inv,) = handle.attempts
    assert inv.stdout == ['{"decision": "rerun"}', "partial"] and inv.stderr[0] == "oops"
    assert any("ValueError: no" in line for line in inv.stderr)
    assert not any("localcloud" in frame for frame in inv.error["stackTrace"])
    lines = fn.logstore_lines()
    assert lines[0]["message"] == f"FC Invoke Start RequestId: {inv.request_id}"
    assert lines[-1]["message"] == f"FC Invoke End RequestId: {inv.request_id}"
    assert {(line["instanceId"], line["requestId"], line["__topic__"]) for line in lines} == {
        (inv.instance_id, inv.request_id, "FCLogs:probe")
    }


def test_drain_names_what_is_left_when_it_gives_up(make, gate):
    fn = make(reserved_concurrency=1)
    fn.invoke_async(event(gate=True))
    fn.invoke_async(event())
    gate.wait_for(1)
    with pytest.raises(TimeoutError, match="1 queued and 1 running"):
        fn.drain(timeout=0.2)


def test_each_instance_reports_its_peak_memory(make):
    fn = make()
    fn.invoke(event())
    (instance,) = fn.instances
    assert instance.peak_rss_mib > 1  # a Python process is megabytes, whatever the machine


def test_the_publisher_delivers_into_the_queue_and_keeps_one_request_id_per_copy(make, gate):
    fn = make(reserved_concurrency=2)
    bridge = EventBridge(fn, filter_pattern={"source": ["acs.dataworks"]})
    handles = bridge.deliver({"source": "acs.dataworks", "gate": True}, duplicate=True)
    assert bridge.deliver({"source": "acs.oss"}) == []
    inside = gate.wait_for(2)  # the two copies run at once, on two instances
    assert len({instance for instance, _ in inside}) == 2
    gate.open()
    fn.drain()
    assert [h.status for h in handles] == ["Succeeded", "Succeeded"]
    assert handles[0].request_id != handles[1].request_id
    assert json.loads(handles[0].final.event) == {"source": "acs.dataworks", "gate": True}


def test_bad_configuration_is_refused_with_a_clear_error(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    with pytest.raises(ValueError, match="reserved_concurrency"):
        Function("index.handler", code_dir=str(code), reserved_concurrency=0)
    with pytest.raises(ValueError, match="maxAsyncRetryAttempts"):
        Function("index.handler", code_dir=str(code), reserved_concurrency=1, max_async_retry_attempts=9)
    with pytest.raises(ValueError, match="FC_"):
        Function("index.handler", code_dir=str(code), reserved_concurrency=1, env={"FC_X": "1"})
    fn = Function("index.handler", code_dir=str(code), reserved_concurrency=1, logstore=str(tmp_path / "l.jsonl"))
    with pytest.raises(ValueError, match="max_async_retry_attempts on the Function"):
        EventBridge(fn, max_retries=2)
    with pytest.raises(TypeError, match="bytes"):
        fn.invoke_async({"not": "bytes"})
    fn.close()
    with pytest.raises(RuntimeError, match="closed"):
        fn.invoke_async(b"{}")
    assert fn.instances == [] and not os.listdir(code)


def test_the_http_gateway_answers_429_while_every_allowed_instance_is_busy(make, gate):
    fn = make(reserved_concurrency=1)
    fn.invoke_async(event(gate=True))
    gate.wait_for(1)
    with HttpGateway(fn) as gateway:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(gateway.url + "/probe", data=b"{}", timeout=30)
        assert refused.value.code == 429
        assert json.loads(refused.value.read())["errorCode"] == "ResourceExhausted"
        gate.open()
        fn.drain()
        with urllib.request.urlopen(gateway.url + "/probe", data=b"{}", timeout=30) as answer:
            assert answer.status == 200 and json.loads(answer.read())["calls"] == 2


def test_an_attempt_that_starts_its_instance_after_close_fails_cleanly(tmp_path):
    # close() while an async worker is starting a new instance for its attempt: close() did not see
    # that instance, so the worker stops it itself and the attempt ends as an instance that exited.
    # Before: the worker invoked on the stopped instance and its thread died with RuntimeError.
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text("def handler(event, context):\n    return 'ran'\n", encoding="utf-8")
    fn = Function("index.handler", code_dir=str(code), reserved_concurrency=1, logstore=str(tmp_path / "l.jsonl"))
    fn.close()
    invocation = fn._attempt(b"{}", "1-late-attempt", None)  # what _run_async does once close() has run
    assert invocation.result is None and invocation.error["errorType"] == "InstanceExited"
    assert invocation.error["errorMessage"] == "the instance had ended (stopped) before the invocation started"
