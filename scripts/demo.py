#!/usr/bin/env python3
"""The quick-start demo: the whole product on the local cloud, in a few seconds, no account.

1. Starts the DataWorks emulator with a seeded workspace (scripts/localcloud/dataworks/seed.json).
2. Delivers DataWorks failure events to the event function the way an EventBridge rule does (one
   of them twice, as at-least-once delivery may): into the function's asynchronous queue, which
   runs them as FC 3.0 does, one invocation per instance, each instance its own process, at most
   reservedConcurrency of them (localcloud.fc.function).
3. A failure the guards let through is scheduled, not rerun at once: the function invokes itself
   through the local FC OpenAPI (localcloud.fc.server: InvokeFunction, ACS3-signed, async, delayed a
   few seconds, with a task id, so the second copy of the twice-delivered event gets FC's 409),
   and FC's delayed invocation reruns it when it comes due (real time here: DELAY_SECONDS).
4. Makes a manual rerun through the local HTTP gateway, as an operator would with curl (always at
   once), waits for the scheduled reruns, then lets the reruns finish in the emulator.
5. Prints one row per decision, the instances that ran, and how to query the records.

`--serve` keeps everything running for curl experiments instead, and prints the endpoints.
`--logs DIR` puts the local Logstore there instead of .localcloud/logs.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from localcloud.acs3 import Credentials  # noqa: E402
from localcloud.dataworks import DataWorksEmulator  # noqa: E402
from localcloud.eventbridge import EventBridge  # noqa: E402
from localcloud.fc import Function, FunctionComputeApi  # noqa: E402
from localcloud.gateway import HttpGateway  # noqa: E402

EVENTS = ROOT / "tests" / "events"
SEED = HERE / "localcloud" / "dataworks" / "seed.json"
LOGS = ROOT / ".localcloud" / "logs"
# Local-only credentials: the emulator accepts these and nothing else.
CREDENTIALS = Credentials("LTAIdemokeyid000001", "demo-secret-local-only", "demo-sts-token-local-only")

# (instance id, what the seeded workspace makes of it)
FAILURES = [
    (1000012345678, "failed, run 1"),
    (1000012345680, "failed, run 4: reruns exhausted"),
    (1000012345681, "failed, RerunMode AllDenied"),
    (1000012345683, "failed in Dev"),
    (1000012345690, "failed, run 2, another project"),
]
MANUAL_IDS = [1000012345679, 1000012345682, 1000012345680]  # a success (AllAllowed), a running one, a capped one
# Instances each function may run at once. Small, so the demo's cold starts stay few on a laptop;
# the deployed value is template.yml's reservedConcurrency.
RESERVED_CONCURRENCY = 3
# The demo's schedule: RERUN_BACKOFF_BASE_SECONDS and RERUN_BACKOFF_MAX_SECONDS both this, so every
# scheduled rerun waits 2-4 s (equal jitter: half the ceiling at least). Deployed: 120 s and 1800 s.
DELAY_SECONDS = 4
# The records sit JSON-encoded in each Logstore line's "message": these unwrap them.
RERUN_QUERY_JQ = 'jq -c \'.message | fromjson? | select(type == "object" and .decision == "rerun")\' {path}'
RERUN_QUERY_PYTHON = (
    'python3 -c \'import json, sys; [print(m) for m in (json.loads(line)["message"] for line in open(sys.argv[1])) '
    'if m.startswith("{{") and json.loads(m).get("decision") == "rerun"]\' {path}'
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep the local cloud running for curl experiments")
    # The tests give the demo a directory of its own: a `make demo` run by hand meanwhile empties this one.
    parser.add_argument(
        "--logs", type=Path, default=LOGS, metavar="DIR", help="the local Logstore directory it empties and fills"
    )
    args = parser.parse_args(argv)
    logs = args.logs.resolve()
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.jsonl"):
        old.unlink()

    with (
        DataWorksEmulator(credentials=[CREDENTIALS], seed=SEED) as dataworks,
        FunctionComputeApi(credentials=[CREDENTIALS]) as fc_api,
    ):
        env = {
            "DATAWORKS_ENDPOINT": dataworks.url,
            "DATAWORKS_READ_QPS": "50",
            "DATAWORKS_WRITE_QPS": "20",
            "RERUN_BACKOFF_BASE_SECONDS": str(DELAY_SECONDS),
            "RERUN_BACKOFF_MAX_SECONDS": str(DELAY_SECONDS),
            "FUNCTION_COMPUTE_ENDPOINT": fc_api.url,  # where the event function schedules its reruns
        }
        event_fn = _function("index.handle_event", "dwrerun-event", env, logs, async_task=True)
        http_fn = _function("index.handle_http", "dwrerun-http", env, logs)
        fc_api.register(event_fn)
        with event_fn, http_fn, HttpGateway(http_fn) as gateway:
            if args.serve:
                return _serve(dataworks, fc_api, event_fn, gateway, logs)
            rows = _deliver_events(event_fn) + _manual_rerun(gateway) + _scheduled_reruns(event_fn)
            ended = dataworks.backend.advance()  # the reruns' runs end as the seed scripts them
            instances = event_fn.instances
            calls = fc_api.calls()
    _print_table(rows)
    peaks = ", ".join(f"{i.peak_rss_mib:.0f}" for i in instances)
    print(
        f"\nThe event function ran on {len(instances)} instances (reservedConcurrency {RESERVED_CONCURRENCY}), "
        f"each its own process, one invocation at a time; peak memory per instance (MiB): {peaks}"
    )
    accepted = [c for c in calls if c.status == 202]
    delays = sorted({c.delay for c in accepted})
    print(
        f"Scheduled reruns: {len(accepted)} delayed invocations through the local FC InvokeFunction "
        f"(x-fc-async-delay {', '.join(map(str, delays)) or '-'} s), {sum(c.status == 409 for c in calls)} copy "
        "refused with 409 (already-scheduled)"
    )
    print(f"Rerun runs that then ended in the emulator: {', '.join(map(str, ended)) or 'none'}")
    path = f"{_shown(logs)}/dwrerun-event.jsonl"
    print(f"Records (one JSON line per decision, as shipped to SLS): {_shown(logs)}/*.jsonl")
    print('Each Logstore line holds a record as a JSON string in "message"; the reruns, for example:')
    print(f"  {RERUN_QUERY_JQ.format(path=path)}")
    print(f"  {RERUN_QUERY_PYTHON.format(path=path)}")
    print()
    # Last: what template.yml's SLS alert rules would have fired on these records (scripts/alerts.py).
    from alerts import print_fired

    print_fired(logs)
    return 0


def _shown(logs: Path) -> str:
    """The Logstore directory as the printed commands name it: relative to the repository, where they run."""
    return str(logs.relative_to(ROOT)) if logs.is_relative_to(ROOT) else str(logs)


def _function(handler: str, name: str, env: dict, logs: Path, async_task: bool = False) -> Function:
    return Function(
        handler=handler,
        code_dir=str(ROOT / "function"),
        runtime="python3.12",
        timeout=60,
        function_name=name,
        region="cn-hangzhou",
        env=env,
        credentials=CREDENTIALS,
        logstore=str(logs / f"{name}.jsonl"),
        reserved_concurrency=RESERVED_CONCURRENCY,
        max_async_retry_attempts=3,
        async_task=async_task,  # asyncInvokeConfig.asyncTask: FC refuses a repeated task id (409)
    )


def _deliver_events(event_fn: Function) -> list[dict]:
    failed = json.loads((EVENTS / "dataworks-instance-failed.json").read_text())
    events = []
    for instance_id, _ in FAILURES:
        event = json.loads(json.dumps(failed))
        if instance_id != 1000012345678:  # the sample itself keeps its id
            event["id"] = f"demo-{instance_id}"
            event["data"]["taskId"] = instance_id
        events.append((event, instance_id == 1000012345678))  # the first is delivered twice
    for name in ("dataworks-instance-failed-frozen.json", "dataworks-instance-succeeded.json"):
        events.append((json.loads((EVENTS / name).read_text()), False))

    rule = EventBridge(event_fn)
    # All at once, as a burst of failures arrives: FC spreads them over instances as they free up.
    handles = [handle for event, twice in events for handle in rule.deliver(event, duplicate=twice)]
    event_fn.drain()
    return _rows(handles)


def _scheduled_reruns(event_fn: Function) -> list[dict]:
    """Wait until FC's delayed invocations (the scheduled reruns) have come due and run."""
    handles = [handle for handle in event_fn.async_invocations if handle.task_id is not None]
    if handles:
        wait = max(0.0, max(handle.due_at for handle in handles) - time.time())
        print(f"Waiting {wait:.0f} s for {len(handles)} scheduled reruns to come due...", file=sys.stderr, flush=True)
    for handle in handles:
        handle.wait(60)
    return _rows(handles, trigger="delayed")


def _rows(handles, trigger: str | None = None) -> list[dict]:
    rows = []
    for invocation in (attempt for handle in handles for attempt in handle.attempts):
        rows += [_row(r, trigger) for r in invocation.records if r.get("kind") == "instance"]
        if invocation.error:
            rows.append(
                {
                    "trigger": trigger or "eventbridge",
                    "instance": "-",
                    "decision": "error",
                    "reason": "",
                    "result": invocation.error["errorMessage"],
                }
            )
    return rows


def _manual_rerun(gateway: HttpGateway) -> list[dict]:
    body = json.dumps({"Ids": MANUAL_IDS, "Comment": "demo: rerun after the upstream fix"}).encode()
    request = urllib.request.Request(
        f"{gateway.url}/rerun", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        json.loads(response.read())
    return [_row(r) for r in gateway.invocations[-1].records if r.get("kind") == "instance"]


def _row(record: dict, trigger: str | None = None) -> dict:
    if record["decision"] == "rerun":
        result = "rerun ok" if record["success"] else f"rerun FAILED: {record['message']}"
        if record.get("asyncTaskId"):
            result += f" (FC async task {record['asyncTaskId']}, due {record['dueAt']})"
    elif record["decision"] == "scheduled":
        result = f"rerun in {record['delaySeconds']} s (FC async task {record['asyncTaskId']})"
    elif record["decision"] == "dry-run":
        result = "would rerun"
    else:
        result = record["message"]
    return {
        "trigger": trigger or record["trigger"],
        "instance": str(record["instanceId"] or "-"),
        "decision": record["decision"],
        "reason": record["reason"],
        "result": result,
    }


def _print_table(rows: list[dict]) -> None:
    columns = ("trigger", "instance", "decision", "reason", "result")
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths.get(c, 0)) for c in columns))


def _serve(dataworks, fc_api: FunctionComputeApi, event_fn: Function, gateway: HttpGateway, logs: Path) -> int:
    rule = EventBridge(event_fn)

    class PublishHandler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                invocations = rule.publish(json.loads(body))
                answer = [{"requestId": i.request_id, "result": i.result, "error": i.error} for i in invocations]
                status = 200
            except (ValueError, TypeError) as exc:
                answer, status = {"error": str(exc)}, 400
            data = json.dumps(answer, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    events = ThreadingHTTPServer(("127.0.0.1", 0), PublishHandler)
    threading.Thread(target=events.serve_forever, daemon=True).start()
    events_url = f"http://127.0.0.1:{events.server_address[1]}"
    print(
        f"""The local cloud is running (Ctrl-C stops it).

DataWorks OpenAPI emulator  {dataworks.url}
  credentials (local only)  ALIBABA_CLOUD_ACCESS_KEY_ID={CREDENTIALS.access_key_id}
                            ALIBABA_CLOUD_ACCESS_KEY_SECRET={CREDENTIALS.access_key_secret}
                            ALIBABA_CLOUD_SECURITY_TOKEN={CREDENTIALS.security_token}
HTTP function (gateway)     {gateway.url}   (authType anonymous locally: no signature needed)
Event function (publisher)  {events_url}   (POST one CloudEvent; it goes to the event function as an EventBridge rule delivers it)
FC OpenAPI (InvokeFunction) {fc_api.url}   (the event function schedules its reruns here: they run {DELAY_SECONDS // 2}-{DELAY_SECONDS} s later)
Records                     {_shown(logs)}/dwrerun-event.jsonl, dwrerun-http.jsonl

Try:
  curl -s {events_url} -d @tests/events/dataworks-instance-failed.json
  curl -s {gateway.url}/rerun -H 'Content-Type: application/json' -d '{{"Ids": [1000012345679], "Comment": "after a fix"}}'
  curl -s {gateway.url}/health
  .venv/bin/python scripts/rerun_client.py {gateway.url} --ids 1000012345690 --dry-run
""",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        events.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
