"""The local Function Compute harness behaves like an FC 3.0 Python instance."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from localcloud.acs3 import Credentials
from localcloud.fc import CONTEXT_SHAPES, FunctionCompute

ROLE = Credentials("STS.role-key-1", "role-secret-1", "role-token-1")


def write_module(directory, source, name="index"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return directory


@pytest.fixture
def make_fn(tmp_path):
    made = []

    def make(source, handler="index.handler", code="code", **kwargs):
        code_dir = write_module(tmp_path / code, source)
        kwargs.setdefault("logstore", tmp_path / "logs" / "fn.jsonl")
        kwargs.setdefault("function_name", "dwrerun-event")
        fn = FunctionCompute(handler=handler, code_dir=code_dir, **kwargs)
        made.append(fn)
        return fn

    yield make
    for fn in made:
        fn.close()


CONTEXT_PROBE = """
    def handler(event, context):
        out = {
            "event_type": type(event).__name__,
            "event": event.decode(),
            "request_id": context.request_id,
            "region": context.region,
            "account_id": context.account_id,
            "function": vars(context.function),
            "has_credentials": hasattr(context, "credentials"),
            "has_service": hasattr(context, "service"),
        }
        if hasattr(context, "credentials"):
            out["credentials"] = vars(context.credentials)
            out["service"] = vars(context.service)
        else:
            out["log_project"] = context.log_project
            out["log_store"] = context.log_store
            out["logger"] = type(context.getLogger()).__name__
        return out
"""


@pytest.mark.parametrize("runtime", CONTEXT_SHAPES)
def test_event_is_bytes_and_context_has_the_runtime_shape(make_fn, runtime):
    # GIVEN a function on each Python runtime
    fn = make_fn(CONTEXT_PROBE, runtime=runtime, credentials=ROLE, timeout=30, memory=512)

    # WHEN it is invoked with bytes and a chosen request id
    inv = fn.invoke(b'{"hello": 1}', request_id="1-abc-req")

    # THEN the handler saw bytes and the context FC builds for that runtime
    assert inv.error is None
    out = inv.result
    assert out["event_type"] == "bytes" and out["event"] == '{"hello": 1}'
    assert out["request_id"] == "1-abc-req" == inv.request_id
    assert out["region"] == "cn-hangzhou" and out["account_id"] == "1877700012345678"
    assert out["function"]["name"] == "dwrerun-event"
    assert out["function"]["handler"] == "index.handler"
    assert out["function"]["memory"] == 512 and out["function"]["timeout"] == 30
    if runtime == "python3.10":
        assert out["has_credentials"] and out["has_service"]
        assert out["credentials"] == {
            "access_key_id": "STS.role-key-1",
            "access_key_secret": "role-secret-1",
            "security_token": "role-token-1",
        }
        assert set(out["service"]) >= {"log_project", "log_store", "qualifier", "version_id"}
        assert set(out["function"]) == {"name", "handler", "memory", "timeout"}
    else:
        assert not out["has_credentials"] and not out["has_service"]
        assert out["log_project"] and out["log_store"] == "dwrerun-event"
        assert out["function"]["qualifier"] == "LATEST" and "version_id" in out["function"]
        assert out["logger"] == "Logger"


def test_fc_variables_are_set_during_the_call_and_restored_on_close(make_fn, tmp_path, monkeypatch):
    # GIVEN a developer shell with its own AccessKey, and a function whose role is ROLE
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "shell-key")
    monkeypatch.delenv("DATAWORKS_ENDPOINT", raising=False)
    names = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "FC_REGION",
        "FC_ACCOUNT_ID",
        "FC_FUNCTION_NAME",
        "FC_FUNCTION_HANDLER",
        "FC_FUNCTION_MEMORY_SIZE",
        "FC_INSTANCE_ID",
        "FC_FUNC_CODE_PATH",
        "DATAWORKS_ENDPOINT",
    ]
    fn = make_fn(
        f"import os\ndef handler(event, context):\n    return {{n: os.environ.get(n) for n in {names!r}}}\n",
        credentials=ROLE,
        env={"DATAWORKS_ENDPOINT": "127.0.0.1:1234"},
    )

    # WHEN it is invoked
    seen = fn.invoke(b"{}").result

    # THEN it saw FC's variables, the role's keys and its own variables
    assert seen["ALIBABA_CLOUD_ACCESS_KEY_ID"] == "STS.role-key-1"
    assert seen["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] == "role-secret-1"
    assert seen["ALIBABA_CLOUD_SECURITY_TOKEN"] == "role-token-1"
    assert seen["FC_REGION"] == "cn-hangzhou" and seen["FC_ACCOUNT_ID"] == "1877700012345678"
    assert seen["FC_FUNCTION_NAME"] == "dwrerun-event" and seen["FC_FUNCTION_HANDLER"] == "index.handler"
    assert seen["FC_FUNCTION_MEMORY_SIZE"] == "256" and seen["FC_INSTANCE_ID"] == fn.instance_id
    assert seen["FC_FUNC_CODE_PATH"] == str(tmp_path / "code")
    assert seen["DATAWORKS_ENDPOINT"] == "127.0.0.1:1234"

    # AND closing the instance gives the shell its environment back
    fn.close()
    assert os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"] == "shell-key"
    assert "FC_FUNCTION_NAME" not in os.environ and "DATAWORKS_ENDPOINT" not in os.environ


def test_without_a_role_no_credentials_leak_in_from_the_shell(make_fn, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "shell-key")
    fn = make_fn("import os\ndef handler(event, context):\n    return os.environ.get('ALIBABA_CLOUD_ACCESS_KEY_ID')\n")
    assert fn.invoke(b"{}").result is None


def test_invoke_many_serves_one_invocation_at_a_time_on_the_one_instance(make_fn):
    # FC 3.0 standard runtimes have no instance concurrency; invocations at the same moment run on
    # separate instances: tests/test_fc_instances.py (localcloud.fc.function) covers those.
    fn = make_fn(
        """
        import threading
        INSIDE = PEAK = 0
        LOCK = threading.Lock()

        def handler(event, context):
            global INSIDE, PEAK
            with LOCK:
                INSIDE += 1
                PEAK = max(PEAK, INSIDE)
            print(event.decode())
            with LOCK:
                INSIDE -= 1
            return PEAK
        """
    )
    invocations = fn.invoke_many([b"a", b"b", b"c"])
    assert [inv.result for inv in invocations] == [1, 1, 1]
    assert [inv.stdout for inv in invocations] == [["a"], ["b"], ["c"]]
    assert [inv.cold_start for inv in invocations] == [True, False, False]
    assert {inv.instance_id for inv in invocations} == {fn.instance_id}


def test_every_line_goes_to_the_logstore_file(make_fn, tmp_path):
    fn = make_fn(
        """
        import sys
        def handler(event, context):
            print('{"instanceId": 1, "outcome": "rerun"}')
            print("plain text")
            print("oops", file=sys.stderr)
        """
    )
    inv = fn.invoke(b"{}")

    lines = [line for line in fn.logstore_lines() if line["requestId"] == inv.request_id]
    messages = [(line["stream"], line["message"]) for line in lines]
    assert ("stdout", '{"instanceId": 1, "outcome": "rerun"}') in messages
    assert ("stdout", "plain text") in messages and ("stderr", "oops") in messages
    assert messages[0] == ("stdout", f"FC Invoke Start RequestId: {inv.request_id}")
    assert messages[-1] == ("stdout", f"FC Invoke End RequestId: {inv.request_id}")
    for line in lines:
        assert line["functionName"] == "dwrerun-event" and line["__topic__"] == "FCLogs:dwrerun-event"
        assert line["instanceId"] == fn.instance_id and line["qualifier"] == "LATEST"
        assert isinstance(line["__time__"], int)
    # the file itself is JSON lines
    raw = (tmp_path / "logs" / "fn.jsonl").read_text().splitlines()
    assert all(json.loads(r) for r in raw)


def test_without_a_named_logstore_each_harness_writes_to_a_file_of_its_own(make_fn, tmp_path, monkeypatch):
    # The default was the working directory's .localcloud/logs: tests on parallel workers appended
    # to one another's file (and to the demo's, which test_demo reads).
    monkeypatch.chdir(tmp_path)
    source = "def handler(event, context):\n    print('hello')\n"
    first, second = (make_fn(source, code=f"code{n}", logstore=None) for n in (1, 2))
    first.invoke(b"{}")
    second.invoke(b"{}")
    assert first.logstore != second.logstore
    assert not (tmp_path / ".localcloud").exists()
    assert [line["message"] for line in first.logstore_lines()].count("hello") == 1


def test_python312_logger_writes_fc_formatted_lines(make_fn):
    fn = make_fn("def handler(event, context):\n    context.getLogger().info('rerun %s', 42)\n", runtime="python3.12")
    inv = fn.invoke(b"{}")
    assert len(inv.stdout) == 1
    stamp, request_id, level, message = inv.stdout[0].split(" ", 3)
    assert stamp.endswith("Z") and "T" in stamp
    assert (request_id, level, message) == (inv.request_id, "[INFO]", "rerun 42")


def test_a_handler_that_runs_too_long_times_out(make_fn):
    # GIVEN a handler that blocks until the test lets it go
    fn = make_fn(
        """
        import threading
        RELEASE = threading.Event()
        def handler(event, context):
            if event == b"warm":
                return "ready"
            print("working")
            RELEASE.wait(30)
            return "late"
        """,
        timeout=0.3,
    )
    assert fn.invoke(b"warm").result == "ready"
    module = sys.modules["index"]
    try:
        # WHEN the function's timeout passes first
        inv = fn.invoke(b"{}")

        # THEN FC's timeout error comes back, without a result
        assert inv.timed_out is True and inv.result is None
        assert inv.error["errorType"] == "FunctionTimeout"
        assert "timed out" in inv.error["errorMessage"]
        assert inv.stdout == ["working"]
    finally:
        module.RELEASE.set()

    # AND the timed-out instance is gone: the next call is a cold start
    fn.timeout = 30
    assert fn.invoke(b"warm").cold_start is True


def test_an_unhandled_exception_becomes_fcs_error_body(make_fn):
    fn = make_fn(
        """
        def handler(event, context):
            raise ValueError("no instance id in the event")
        """
    )
    inv = fn.invoke(b"{}")

    assert inv.result is None and inv.timed_out is False
    assert inv.error["errorType"] == "ValueError"
    assert inv.error["errorMessage"] == "no instance id in the event"
    assert isinstance(inv.error["stackTrace"], list)
    assert any("index.py" in frame and "handler" in frame for frame in inv.error["stackTrace"])
    assert not any("localcloud" in frame for frame in inv.error["stackTrace"])
    # FC logs the traceback too
    assert any("ValueError: no instance id in the event" in line for line in inv.stderr)


def test_a_module_that_does_not_import_fails_the_invocation(make_fn):
    fn = make_fn("import no_such_module_here\ndef handler(event, context):\n    return 1\n")
    inv = fn.invoke(b"{}")
    assert inv.error["errorType"] == "ModuleNotFoundError"


def test_new_instance_imports_the_code_again(make_fn):
    fn = make_fn(
        """
        CALLS = 0
        def handler(event, context):
            global CALLS
            CALLS += 1
            return CALLS
        """
    )
    first, second = fn.invoke(b"{}"), fn.invoke(b"{}")
    assert (first.result, first.cold_start) == (1, True)
    assert (second.result, second.cold_start) == (2, False)
    old_instance = fn.instance_id

    fn.new_instance()

    third = fn.invoke(b"{}")
    assert (third.result, third.cold_start) == (1, True)
    assert fn.instance_id != old_instance


def test_the_initializer_runs_once_per_instance(make_fn):
    fn = make_fn(
        """
        INITS = []
        def initialize(context):
            INITS.append(context.request_id)
        def handler(event, context):
            return len(INITS)
        """,
        initializer="index.initialize",
    )
    assert [fn.invoke(b"{}").result for _ in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("runtime", CONTEXT_SHAPES)
def test_rotated_credentials_reach_the_next_invocations(make_fn, runtime):
    fn = make_fn(
        """
        import os
        def handler(event, context):
            creds = getattr(context, "credentials", None)
            return {
                "env": [os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN")],
                "context": creds and [creds.access_key_id, creds.security_token],
            }
        """,
        runtime=runtime,
        credentials=ROLE,
    )
    assert fn.invoke(b"{}").result["env"] == ["STS.role-key-1", "role-token-1"]

    fn.rotate_credentials(Credentials("STS.role-key-2", "role-secret-2", "role-token-2"))

    seen = fn.invoke(b"{}").result
    assert seen["env"] == ["STS.role-key-2", "role-token-2"]
    if runtime == "python3.10":
        assert seen["context"] == ["STS.role-key-2", "role-token-2"]


def test_two_code_packages_with_the_same_module_name_do_not_mix(make_fn):
    one = make_fn("def handler(event, context):\n    return 'one'\n", code="one", function_name="f1")
    two = make_fn("def handler(event, context):\n    return 'two'\n", code="two", function_name="f2")
    assert one.invoke(b"{}").result == "one"
    assert two.invoke(b"{}").result == "two"


def test_bad_input_is_refused_with_a_clear_error(make_fn, tmp_path):
    fn = make_fn("def handler(event, context):\n    return 1\n")
    with pytest.raises(TypeError, match="bytes"):
        fn.invoke({"not": "bytes"})
    with pytest.raises(ValueError, match="FC_"):
        FunctionCompute(handler="index.handler", code_dir=tmp_path / "code", env={"FC_SECRET": "x"})
    with pytest.raises(ValueError, match="runtime"):
        FunctionCompute(handler="index.handler", code_dir=tmp_path / "code", runtime="python2.7")
    with pytest.raises(ValueError, match="module.function"):
        FunctionCompute(handler="handler", code_dir=tmp_path / "code")
    with pytest.raises(ValueError, match="bytes"):
        FunctionCompute(handler="index.handler", code_dir=tmp_path / "code", env={"BIG": "x" * 5000})


@pytest.fixture
def host_code(tmp_path, monkeypatch):
    """A code package whose modules the test process imports before any harness, as a test file
    imports dwrerun at collection."""
    code = tmp_path / "host"
    write_module(code, "import hostpkg.errors\ndef handler(event, context):\n    return hostpkg.errors.seam()\n")
    write_module(code / "hostpkg", "", name="__init__")
    write_module(code / "hostpkg", "class Oops(Exception):\n    pass\ndef seam():\n    return 'real'\n", name="errors")
    write_module(code / "hostpkg", "VALUE = 'extra'\n", name="extra")
    monkeypatch.syspath_prepend(str(code))
    yield code
    for loaded in [m for m in sys.modules if m == "hostpkg" or m.startswith("hostpkg.")]:
        del sys.modules[loaded]


def test_modules_loaded_before_the_harness_are_put_back_when_it_closes(host_code, monkeypatch):
    # GIVEN a module of the code package that the test imported (and patched) before the harness
    import importlib

    errors = importlib.import_module("hostpkg.errors")
    monkeypatch.setattr(errors, "seam", lambda: "patched")
    with FunctionCompute(handler="index.handler", code_dir=host_code) as fn:
        # WHEN the function runs on it, then on a new instance (which imports the code afresh)
        assert fn.invoke(b"{}").result == "patched"
        fn.new_instance()
        assert fn.invoke(b"{}").result == "real"
        importlib.import_module("hostpkg.extra")  # a module first loaded while the harness ran
    # THEN closing puts back the very modules the test holds, so its classes and seams stay the
    # function's for the next harness (before: close unloaded them, and the next harness imported
    # a second copy, unpatched, with other exception classes)
    assert sys.modules["hostpkg.errors"] is errors
    assert importlib.import_module("hostpkg").errors is errors
    with FunctionCompute(handler="index.handler", code_dir=host_code) as again:
        assert again.invoke(b"{}").result == "patched"
    # AND a module loaded only while the harness ran is gone, attribute of its package included
    assert "hostpkg.extra" not in sys.modules
    assert not hasattr(importlib.import_module("hostpkg"), "extra")
    assert importlib.import_module("hostpkg.extra") is importlib.import_module("hostpkg").extra
