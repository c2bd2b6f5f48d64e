"""Secrets audit: a test whose output holds a credential fails, whatever it asserts.

Registered from tests/conftest.py (`pytest_plugins = ["secrets_audit"]`). It looks at:
- everything pytest captured for the test (stdout, stderr, log records), through the report's
  sections, so no test has to ask for capsys/capfd;
- every Function Compute invocation the test made (`localcloud.fc.harness.FunctionCompute.invoke`, and
  every attempt on the process model, `localcloud.fc.function.Function.record_attempt`): its
  stdout/stderr lines (the records), its result (an HTTP response too) and its error;
- the local Logstore files: *.jsonl under the test's tmp_path, and what the test appended to
  .localcloud/logs/.
It looks for the secrets and STS tokens of the test credentials (tests/conftest.py CREDS and
ROTATED) and any `Signature=<value>` (an ACS3 Authorization header or a signed URL). A finding
names the secret and the place, never the secret itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_LOGS = ROOT / ".localcloud" / "logs"
SIGNATURE = re.compile(r"Signature=[^\s,;\"'&]+")


def secrets() -> dict[str, str]:
    """name -> value of every secret the tests use; the key ids are not secret."""
    from conftest import CREDS, ROTATED

    found = {}
    for label, creds in (("CREDS", CREDS), ("ROTATED", ROTATED)):
        found[f"{label}.access_key_secret"] = creds.access_key_secret
        if creds.security_token:
            found[f"{label}.security_token"] = creds.security_token
    return found


def leaks(text: str, where: str) -> list[str]:
    """What in `text` is a secret, each as 'NAME in WHERE' (the value is never repeated)."""
    if not text:
        return []
    found = [f"{name} in {where}" for name, value in secrets().items() if value in text]
    if SIGNATURE.search(text):
        found.append(f"a Signature= value in {where}")
    return found


def _invocation_text(invocation) -> str:
    parts = [*invocation.stdout, *invocation.stderr]
    parts.append(json.dumps(invocation.result, default=repr, ensure_ascii=False))
    parts.append(json.dumps(invocation.error, default=repr, ensure_ascii=False))
    return "\n".join(parts)


# A `make demo` run by hand during the tests deletes and rewrites .localcloud/logs: a file may vanish
# between the listing and the read. The tests' own demo writes elsewhere (tests/conftest.py
# demo_logs), and tests/test_demo.py audits it.


def _log_sizes() -> dict[Path, int]:
    sizes = {}
    for path in LOCAL_LOGS.glob("*.jsonl") if LOCAL_LOGS.is_dir() else ():
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:
            pass
    return sizes


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as source:
            source.seek(offset)
            return source.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


@pytest.fixture(autouse=True)
def secrets_audit(request, monkeypatch):
    """Fails the test (at teardown) if its invocations or Logstore files hold a secret."""
    from localcloud.fc import Function, FunctionCompute

    invocations = []
    real_invoke = FunctionCompute.invoke
    real_record = Function.record_attempt

    def invoke(self, *args, **kwargs):
        invocation = real_invoke(self, *args, **kwargs)
        invocations.append(invocation)
        return invocation

    def record_attempt(self, invocation):
        invocations.append(invocation)
        real_record(self, invocation)

    monkeypatch.setattr(FunctionCompute, "invoke", invoke)
    monkeypatch.setattr(Function, "record_attempt", record_attempt)
    sizes = _log_sizes()
    yield
    found = []
    for invocation in invocations:
        found += leaks(_invocation_text(invocation), f"invocation {invocation.request_id}")
    tmp_path = request.node.funcargs.get("tmp_path")
    if isinstance(tmp_path, Path) and tmp_path.is_dir():
        for path in sorted(tmp_path.rglob("*.jsonl")):
            found += leaks(path.read_text(encoding="utf-8", errors="replace"), f"Logstore file {path.name}")
    for path in LOCAL_LOGS.glob("*.jsonl") if LOCAL_LOGS.is_dir() else ():
        found += leaks(_read_from(path, sizes.get(path, 0)), f"Logstore file .localcloud/logs/{path.name}")
    if found:
        pytest.fail("secrets leaked: " + "; ".join(found), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Fails a phase whose captured stdout, stderr or log records hold a secret."""
    report = yield
    found = []
    for title, content in report.sections:
        if title.endswith(f" {report.when}"):  # each phase's own captures, once
            found += leaks(content, title)
    if found and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = "secrets leaked: " + "; ".join(found)
    return report
