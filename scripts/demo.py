#!/usr/bin/env python3
"""The quick-start demo: the whole product on the local cloud, in about 15 seconds, no account.

1. Starts the DataWorks emulator with a seeded workspace (scripts/localcloud/dataworks/seed.json),
   dated relative to now: its business date is yesterday and its failures ended a minute ago.
2. Delivers DataWorks failure events to the event function the way an EventBridge rule does (one
   of them twice, as at-least-once delivery may): into the function's asynchronous queue, which
   runs them as FC 3.0 does, one invocation per instance, each instance its own process, at most
   reservedConcurrency of them (localcloud.fc.function). The function reads each failed run's log
   and applies the failure rules: a syntax error is skipped (and alerted on), a network error is
   rerun after the delay its rule sets.
3. A failure the guards let through is scheduled, not rerun at once: the function invokes itself
   through the local FC OpenAPI (localcloud.fc.server: InvokeFunction, ACS3-signed, async, delayed,
   with a task id, so the second copy of the twice-delivered event gets FC's 409), and FC's
   delayed invocation reruns it when it comes due (real time here: DELAY_SECONDS, and the shipped
   rules' delays divided by RULE_DELAY_DIVISOR).
4. Makes a manual rerun through the local HTTP gateway, as an operator would with curl (always at
   once), waits for the scheduled reruns, then reruns by filter what is left of yesterday's
   failures with scripts/rerun_client.py: a plan (dry run), then the plan applied with its token.
5. A failure whose event is lost (the emulator's "event lost" fault, localcloud.dataworks.openevent):
   the sweep's timer fires (localcloud.fc.timer, one tick now), the sweep finds the failed run no
   event decided, claims it under its rerun's FC async task id, and the claim's invocation reruns it
   (docs/sweep.md). The alert dwrerun-events-missing fires.
6. Lets the reruns finish in the emulator, prints one row per decision, what each part showed,
   how to query the records, and what template.yml's alert rules would fire.

`--serve` keeps everything running for curl experiments instead, and prints the endpoints.
`--logs DIR` puts the local Logstore there instead of .localcloud/logs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import rerun_client  # noqa: E402
from localcloud.acs3 import Credentials  # noqa: E402
from localcloud.controlplane import ControlPlane  # noqa: E402
from localcloud.dataworks import DataWorksEmulator  # noqa: E402
from localcloud.dataworks.openevent import OpenEvent  # noqa: E402
from localcloud.eventbridge import EventBridge  # noqa: E402
from localcloud.fc import Function, FunctionComputeApi, TimerTrigger  # noqa: E402
from localcloud.gateway import HttpGateway  # noqa: E402

EVENTS = ROOT / "tests" / "events"
SEED = HERE / "localcloud" / "dataworks" / "seed.json"
RULES = ROOT / "function" / "dwrerun" / "failure_rules.json"
LOGS = ROOT / ".localcloud" / "logs"
# `make serve`: the HTTP function's gateway listens here (the docs' samples name it), the event
# publisher on the next port.
SERVE_PORT = 8780
# Local-only credentials: the emulator accepts these and nothing else.
CREDENTIALS = Credentials("LTAIdemokeyid000001", "demo-secret-local-only", "demo-sts-token-local-only")
CHINA = timezone(timedelta(hours=8))
PROJECT_ID = 48213

# (instance id, what the seeded workspace makes of it)
FAILURES = [
    (1000012345678, "failed, run 1"),
    (1000012345680, "failed, run 4: reruns exhausted"),
    (1000012345681, "failed, RerunMode AllDenied"),
    (1000012345683, "failed in Dev"),
    (1000012345690, "failed, run 2, another project"),
    (1000012345684, "failed on an SQL syntax error: a rule skips it"),
    (1000012345685, "failed on a network timeout: a rule sets its delay"),
]
DUPLICATED = 1000012345678  # its event is delivered twice
SYNTAX_ERROR, NETWORK_ERROR = 1000012345684, 1000012345685
MANUAL_IDS = [1000012345679, 1000012345682, 1000012345680]  # a success (AllAllowed), a running one, a capped one
# Failed yesterday, and no event came for them (an outage of the event channel): the rerun by filter finds them.
EVENTS_LOST = [1000012345686, 1000012345687]
# Failed 15 minutes ago, past the sweep's grace, and its event was lost: the sweep finds it (docs/sweep.md).
SWEPT = 1000012345692
# Instances each function may run at once. Small, so the demo's cold starts stay few on a laptop;
# the deployed value is template.yml's reservedConcurrency.
RESERVED_CONCURRENCY = 3
# The demo's schedule: RERUN_BACKOFF_BASE_SECONDS and RERUN_BACKOFF_MAX_SECONDS both this, so every
# scheduled rerun waits 2-4 s (equal jitter: half the ceiling at least). Deployed: 120 s and 1800 s.
DELAY_SECONDS = 4
# The demo's failure rules are the shipped ones with every delaySeconds divided by this (60 s: 6 s),
# so a rule's delay shows in seconds, not minutes.
RULE_DELAY_DIVISOR = 10
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
    parser.add_argument(
        "--port",
        type=int,
        default=SERVE_PORT,
        help=f"with --serve: the HTTP function's port, the event publisher's the next one (default {SERVE_PORT}; 0: any)",
    )
    args = parser.parse_args(argv)
    if args.serve and args.port:
        taken = [port for port in (args.port, args.port + 1) if not _free(port)]
        if taken:
            print(
                f"demo: port {taken[0]} is in use (another `make serve`?): stop it, or run "
                f"`.venv/bin/python scripts/demo.py --serve --port 0` for free ports (it prints them)",
                file=sys.stderr,
            )
            return 2
    logs = args.logs.resolve()
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.jsonl"):
        old.unlink()

    with (
        DataWorksEmulator(credentials=[CREDENTIALS], seed=SEED) as dataworks,
        FunctionComputeApi(credentials=[CREDENTIALS]) as fc_api,
        tempfile.TemporaryDirectory(prefix="dwrerun-demo-") as scratch,
    ):
        env = function_env(dataworks.url, fc_api.url, Path(scratch))
        event_fn = _function("index.handle_event", "dwrerun-event", env, logs, async_task=True)
        http_fn = _function("index.handle_http", "dwrerun-http", env, logs)
        fc_api.register(event_fn)
        with event_fn, http_fn, HttpGateway(http_fn, port=args.port if args.serve else 0) as gateway:
            if args.serve:
                return _serve(dataworks, fc_api, event_fn, gateway, logs, args.port and args.port + 1)
            started = time.monotonic()
            rows = _deliver_events(event_fn, dataworks.backend) + _manual_rerun(gateway) + _scheduled_reruns(event_fn)
            by_filter, filter_rows = _rerun_by_filter(gateway, Path(scratch), logs)
            rows += filter_rows
            sweep_rows, swept = _sweep(event_fn, dataworks)
            rows += sweep_rows
            rerun_ids = {
                int(r["instance"]) for r in rows if r["decision"] == "rerun" and r["result"].startswith("rerun ok")
            }
            ended = [i for i in dataworks.backend.advance() if i in rerun_ids]  # the reruns' runs end as scripted
            instances = event_fn.instances
            calls = fc_api.calls()
            seconds = time.monotonic() - started
    _print_table(rows)
    peaks = ", ".join(f"{i.peak_rss_mib:.0f}" for i in instances)
    print(
        f"\nThe event function ran on {len(instances)} instances (reservedConcurrency {RESERVED_CONCURRENCY}), "
        f"each its own process, one invocation at a time; peak memory per instance (MiB): {peaks}"
    )
    calls = [c for c in calls if not _storm_task(c.task_id or "")]  # the storm guard's tallies are not reruns
    # The sweep's claim is a delayed invocation too, told apart by its task id (its own line below).
    accepted = [c for c in calls if c.status == 202 and c.task_id != f"dwrerun-{SWEPT}-run-1"]
    delays = sorted({c.delay for c in accepted})
    print(
        f"Scheduled reruns: {len(accepted)} delayed invocations through the local FC InvokeFunction "
        f"(x-fc-async-delay {', '.join(map(str, delays)) or '-'} s), {sum(c.status == 409 for c in calls)} copy "
        "refused with 409 (already-scheduled)"
    )
    print(f"Rerun runs that then ended in the emulator: {', '.join(map(str, ended)) or 'none'}")
    print()
    _print_story(rows, by_filter, swept)
    print(f"\n(the story took {seconds:.0f} s)")
    print()
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


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _shown(logs: Path) -> str:
    """The Logstore directory as the printed commands name it: relative to the repository, where they run."""
    return str(logs.relative_to(ROOT)) if logs.is_relative_to(ROOT) else str(logs)


def function_env(dataworks_url: str, fc_url: str, scratch: Path) -> dict:
    """The local functions' settings: what template.yml's `environmentVariables` give the deployed
    ones, with the demo's own clock (delays of seconds) and a signing key of its own."""
    rules = json.loads(RULES.read_text())
    for rule in rules["rules"]:
        if rule.get("delaySeconds"):
            rule["delaySeconds"] = max(1, rule["delaySeconds"] // RULE_DELAY_DIVISOR)
    rules_file = scratch / "failure_rules.json"
    rules_file.write_text(json.dumps(rules, indent=1))
    return {
        "DATAWORKS_ENDPOINT": dataworks_url,
        "DATAWORKS_READ_QPS": "50",
        "DATAWORKS_WRITE_QPS": "20",
        "RERUN_BACKOFF_BASE_SECONDS": str(DELAY_SECONDS),
        "RERUN_BACKOFF_MAX_SECONDS": str(DELAY_SECONDS),
        "RERUN_RULES_FILE": str(rules_file),
        "FUNCTION_COMPUTE_ENDPOINT": fc_url,  # where the event function schedules its reruns
        # Signs plan tokens and bulk continuations (the rerun by filter), as scripts/deploy's key does
        # when deployed: DWRERUN_SIGNING_KEY as there, else a new one each run (plans do not outlive
        # the run); never printed or recorded.
        "RERUN_SIGNING_KEY": os.environ.get("DWRERUN_SIGNING_KEY") or secrets.token_urlsafe(32),
        # The sweep looks at the seeded workspace only (the events and operators act everywhere).
        "RERUN_SWEEP_PROJECT_IDS": str(PROJECT_ID),
    }


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


def failure_event(sample: dict, instance, event_id: str | None = None) -> dict:
    """The sample CloudEvent about this instance's failed run, as DataWorks publishes it when the run
    ends: its ids and times are the instance's (the seed is dated relative to now)."""
    event = json.loads(json.dumps(sample))
    data = event["data"]
    data.update(
        taskId=instance.id,
        nodeId=instance.task_id,
        appId=instance.project_id,
        dagId=instance.workflow_id,
        createTime=instance.create_time,
        beginWaitTimeTime=instance.trigger_time,
        beginWaitResTime=instance.waiting_resource_time,
        beginRunningTime=instance.started_time,
        finishTime=instance.finished_time,
        modifyTime=instance.modify_time,
    )
    finished = datetime.fromtimestamp(instance.finished_time / 1000, CHINA)
    event["time"] = finished.isoformat(timespec="seconds")
    event["aliyunpublishtime"] = finished.strftime("%Y-%m-%dT%H:%M:%S.000PRC")
    if event_id:
        event["id"] = event_id
    return event


def _deliver_events(event_fn: Function, backend) -> list[dict]:
    failed = json.loads((EVENTS / "dataworks-instance-failed.json").read_text())
    frozen = json.loads((EVENTS / "dataworks-instance-failed-frozen.json").read_text())
    events = []
    for instance_id, _ in FAILURES:
        # the sample itself keeps its event id
        event_id = None if instance_id == DUPLICATED else f"demo-{instance_id}"
        events.append((failure_event(failed, backend.instance(instance_id), event_id), instance_id == DUPLICATED))
    frozen_id = frozen["data"]["taskId"]
    events.append((failure_event(frozen, backend.instance(frozen_id)), False))
    events.append((json.loads((EVENTS / "dataworks-instance-succeeded.json").read_text()), False))

    rule = EventBridge(event_fn)
    # All at once, as a burst of failures arrives: FC spreads them over instances as they free up.
    handles = [handle for event, twice in events for handle in rule.deliver(event, duplicate=twice)]
    event_fn.drain()
    return _rows(handles)


def _scheduled_reruns(event_fn: Function) -> list[dict]:
    """Wait until FC's delayed invocations (the scheduled reruns) have come due and run."""
    # The storm guard's own tasks (a tally per failure, Enqueued for its window) are not reruns.
    handles = [h for h in event_fn.async_invocations if h.task_id is not None and not _storm_task(h.task_id)]
    if handles:
        wait = max(0.0, max(handle.due_at for handle in handles) - time.time())
        print(f"Waiting {wait:.0f} s for {len(handles)} scheduled reruns to come due...", file=sys.stderr, flush=True)
    for handle in handles:
        handle.wait(60)
    return _rows(handles, trigger="delayed")


def _storm_task(task_id: str) -> bool:
    """One of the storm guard's own FC async tasks (function/dwrerun/storm.py names them)."""
    return task_id.startswith(tuple(f"dwrerun-{kind}-k" for kind in "tsphrx"))


def _sweep(event_fn: Function, dataworks) -> tuple[list[dict], dict]:
    """A failure whose event is lost, then one tick of the sweep's timer: the sweep's summary, and the
    rows of the claimed run's decision."""
    finished = int((time.time() - 15 * 60) * 1000)
    dataworks.backend.add_instance(
        id=SWEPT,
        task_id=700000004427,
        project_id=PROJECT_ID,
        task_name="dws_inventory_snapshot_di",
        status="Failure",
        trigger_time=finished - 120_000,
        started_time=finished - 60_000,
        finished_time=finished,
    )
    openevent = OpenEvent(dataworks, EventBridge(event_fn).deliver)
    openevent.lose([SWEPT])
    openevent.fail(SWEPT, finish=False)  # published nothing: the event is lost
    timer = TimerTrigger(event_fn, "sweep", "@every 10m", "dwrerun-sweep", enable=False)
    tick = timer.fire()  # the timer's next tick, now
    tick.wait(60)
    summary = next((r for a in tick.attempts for r in a.records if r.get("kind") == "summary"), {})
    claims = [h for h in event_fn.async_invocations if h.task_id == f"dwrerun-{SWEPT}-run-1"]
    for handle in claims:
        handle.wait(60)
    return _rows(claims), summary


def _rerun_by_filter(gateway: HttpGateway, scratch: Path, logs: Path) -> tuple[dict, list[dict]]:
    """Yesterday's failures in the project, by filter, with the operator's client: a plan, then the
    plan applied. What the client printed for each, and the applied run's rows."""
    plan = scratch / "plan.json"
    bizdate = rerun_client.bizdate("yesterday")
    shown = {}
    for step, argv in (
        ("plan", ["--project-id", str(PROJECT_ID), "--bizdate", "yesterday", "--comment", "demo: after the outage",
                  "--plan", str(plan)]),
        ("apply", ["--apply", str(plan), "--logstore", str(logs)]),
    ):  # fmt: skip
        out = io.StringIO()
        with contextlib.redirect_stderr(io.StringIO()):
            status = rerun_client.main([gateway.url, *argv], out=out, environ={})
        shown[step] = (status, out.getvalue().replace(str(plan), "plan.json"))
    applied = gateway.invocations[-1].records
    rows = [_row(r, "filter") for r in applied if r.get("kind") == "instance"]
    return {"bizdate": bizdate, **shown}, rows


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
        if record.get("rule") not in (None, "default"):
            result += f", the delay of rule {record['rule']}"
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
        "record": record,
    }


def _print_story(rows: list[dict], by_filter: dict, swept: dict) -> None:
    """What each part of the demo showed, in the product's words."""

    def first(trigger: str, instance: int, decision: str | None = None, reason: str | None = None) -> dict:
        for row in rows:
            if row["trigger"] == trigger and row["instance"] == str(instance):
                if (decision is None or row["decision"] == decision) and (reason is None or row["reason"] == reason):
                    return row["record"]
        return {}

    syntax = first("eventbridge", SYNTAX_ERROR)
    scheduled = first("eventbridge", NETWORK_ERROR, "scheduled")
    network = first("delayed", NETWORK_ERROR)
    duplicate = first("eventbridge", DUPLICATED, reason="already-scheduled")
    print("What this showed:")
    print(
        f"- Reruns only what a rerun can fix: {SYNTAX_ERROR} ({syntax.get('taskName')}) failed on "
        f"{syntax.get('matchedLine')!r}; rule {syntax.get('rule')} ({syntax.get('failureClass')}) skipped it: "
        "a rerun fails the same way. The alert dwrerun-not-retryable fires (below)."
    )
    shipped = {r["name"]: r.get("delaySeconds") for r in json.loads(RULES.read_text())["rules"]}
    print(
        f"- A rule sets the wait: {NETWORK_ERROR} ({scheduled.get('taskName')}) failed on a network timeout; rule "
        f"{scheduled.get('rule')} scheduled its rerun {scheduled.get('delaySeconds')} s later (the shipped rule "
        f"says {shipped.get(scheduled.get('rule'))} s: the demo divides rule delays by {RULE_DELAY_DIVISOR}), "
        f"and the delayed invocation reran it: {'ok' if network.get('success') else network.get('message')}."
    )
    print(
        f"- Never twice: the event of {DUPLICATED} came twice, to two instances at once; FC refused the second "
        f"copy's async task id {duplicate.get('asyncTaskId') or ''} with 409, so that copy was recorded "
        f"{duplicate.get('reason')} and one rerun ran."
    )
    manual = [row for row in rows if row["trigger"] == "http"]
    print(
        "- A manual rerun over HTTP (POST /rerun): "
        + "; ".join(f"{row['instance']} {row['decision']} ({row['reason']})" for row in manual)
        + "."
    )
    print(
        f"- A rerun by filter (project {PROJECT_ID}, yesterday's business date {by_filter['bizdate']}), "
        f"with scripts/rerun_client.py; {' and '.join(map(str, EVENTS_LOST))} failed while no event came (an outage "
        "of the event channel). First the plan (a dry run, saved with its token),"
    )
    for line in by_filter["plan"][1].splitlines():
        print(f"    {line}")
    print("  then the plan applied:")
    for line in by_filter["apply"][1].splitlines():
        print(f"    {line}")
    decided = first("sweep", SWEPT)
    print(
        f"- The sweep: {SWEPT} ({decided.get('taskName')}) failed 15 minutes ago and its event was lost. The sweep's "
        f"timer fired; it listed {swept.get('listed')} failed run(s) in its window, {swept.get('alreadyDecided')} "
        f"decided before, {swept.get('missed')} missed ({swept.get('calls')} calls, {swept.get('pages')} "
        f"ListTaskInstances pages), claimed it as FC async task {decided.get('asyncTaskId')}, and the claim's "
        f"invocation decided it as its event would have: {decided.get('decision')} "
        f"({'ok' if decided.get('success') else decided.get('reason')}, missedEvent {decided.get('missedEvent')}). "
        "The alert dwrerun-events-missing fires (below)."
    )


def _print_table(rows: list[dict]) -> None:
    columns = ("trigger", "instance", "decision", "reason", "result")  # a row's "record" is not shown
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths.get(c, 0)) for c in columns))


def _serve(
    dataworks, fc_api: FunctionComputeApi, event_fn: Function, gateway: HttpGateway, logs: Path, events_port: int
) -> int:
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

    # What `make verify-local` asks (scripts/verify): the deployment's control plane, from template.yml.
    plane = ControlPlane.from_template(_template(), [CREDENTIALS], logs=logs, functions={"dwrerun-event": event_fn})
    plane.start().write_discovery(ROOT / ".localcloud" / "cloud.json")
    events = ThreadingHTTPServer(("127.0.0.1", events_port), PublishHandler)
    threading.Thread(target=events.serve_forever, daemon=True).start()
    events_url = f"http://127.0.0.1:{events.server_address[1]}"
    yesterday = rerun_client.bizdate("yesterday")
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
Control plane (make verify) {plane.url}   (EventBridge, FC and SLS as scripts/verify asks them: `make verify-local`)

The seeded workspace: project {PROJECT_ID}, business date yesterday ({yesterday}), failures that ended a minute ago.

Try (in another terminal, from the repository):
  curl -s {gateway.url}/health
  curl -s {gateway.url}/rerun -H 'Content-Type: application/json' -d '{{"Ids": [1000012345679], "Comment": "after a fix"}}'
  curl -s {gateway.url}/rerun -H 'Content-Type: application/json' -d '{{"ProjectId": {PROJECT_ID}, "Bizdate": "{yesterday}", "DryRun": true}}'
  .venv/bin/python scripts/rerun_client.py {gateway.url} --ids 1000012345690 --dry-run
  .venv/bin/python scripts/rerun_client.py {gateway.url} --project-id {PROJECT_ID} --bizdate yesterday --plan .localcloud/plan.json
  .venv/bin/python scripts/rerun_client.py {gateway.url} --apply .localcloud/plan.json
  curl -s {events_url} -d @tests/events/dataworks-instance-failed.json
""",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        events.shutdown()
        plane.stop()
    return 0


def _template() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "template.yml").read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
