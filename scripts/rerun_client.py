#!/usr/bin/env python3
"""Rerun DataWorks task instances through the deployed HTTP function, and print what happened.

    scripts/rerun_client.py URL --ids 1000012345678 1000012345679 --comment "rerun after upstream fix"
    scripts/rerun_client.py URL --ids 1000012345678 --dry-run --json

By filter, after an outage ("plan, then apply"): the plan is a dry run whose answer, with its
token, is saved to a file; the apply sends the same request with that token, then follows the
continuation until every selected instance has its record:

    scripts/rerun_client.py URL --project-id 48213 --bizdate yesterday --use-latest-config --plan plan.json
    scripts/rerun_client.py URL --apply plan.json

--bizdate takes YYYY-MM-DD, epoch milliseconds, or `yesterday` / `today` (China time, the zone
the function reads a business date in): the client sends the date it names.

Following reads the records the functions wrote, by the request's id (`originRequestId`): in the
local cloud from the Logstore files (`--logstore`, default .localcloud/logs for a loopback URL),
with a progress line on stderr. Against a deployment it prints the SLS query that does the same.

The HTTP trigger's authType is `function`: FC's gateway accepts only requests signed with an
AccessKey allowed `fc:InvokeFunction` on the function. The client signs with the credentials in
ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET (/ ALIBABA_CLOUD_SECURITY_TOKEN),
or with a profile of the aliyun CLI's ~/.aliyun/config.json (--profile). Against the local
gateway (a loopback URL) it needs none and sends the request unsigned when it has none.

Exit status: 0 when the function answered 200 (or 202 and the continuation was followed to its
end, or not followed), 1 when it refused or failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcloud.fc import auth  # noqa: E402 - the one implementation of FC's HTTP-trigger signature

PROFILE_FILE = Path.home() / ".aliyun" / "config.json"
LOCAL_LOGS = Path(__file__).resolve().parents[1] / ".localcloud" / "logs"
PLAN_VERSION = 1
CHINA = timezone(timedelta(hours=8))  # the function reads YYYY-MM-DD as 00:00 of this zone
RELATIVE_DAYS = {"today": 0, "yesterday": 1}


def bizdate(value: str, now: float | None = None) -> str | int:
    """A --bizdate as the request carries it: `yesterday` and `today` become YYYY-MM-DD in China
    time (at `now`, epoch seconds), digits epoch ms, anything else is sent as written."""
    if value.lower() in RELATIVE_DAYS:
        day = datetime.fromtimestamp(time.time() if now is None else now, CHINA).date()
        return (day - timedelta(days=RELATIVE_DAYS[value.lower()])).isoformat()
    return int(value) if value.isdigit() else value


def main(argv: list[str] | None = None, out=sys.stdout, environ=None, err=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    err = err or sys.stderr
    url = args.url.rstrip("/") + "/rerun" if urlsplit(args.url).path in ("", "/") else args.url
    try:
        body = _body(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    try:
        credentials = _credentials(args.profile, os.environ if environ is None else environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if credentials is not None:
        headers.update(auth.sign("POST", url, credentials, data))
    elif not _is_loopback(url):
        print(
            "error: no credentials to sign with: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or pass --profile",
            file=sys.stderr,
        )
        return 2
    status, answer = _post(url, data, headers, args.timeout)
    if args.json:
        print(json.dumps({"status": status, **answer}, indent=2, ensure_ascii=False), file=out)
    else:
        _print_table(status, answer, out)
    if args.plan and status == 200:
        _save_plan(args.plan, url, body, answer)
        print(
            f"plan saved to {args.plan}: apply it with --apply {args.plan} before {answer.get('PlanExpiresAt')}",
            file=out,
        )
    if status == 202 and answer.get("Continuation") and not args.no_follow:
        logstore = args.logstore or (LOCAL_LOGS if _is_loopback(url) else None)
        continuation = answer["Continuation"]
        if logstore is None:
            print(
                f"{answer['Continuing']} instance(s) continue in {continuation['Function']}; follow them in SLS with:",
                file=out,
            )
            print(f"    {continuation['Query']}", file=out)
            return 0
        done = follow(Path(logstore), answer["RequestId"], answer["Selected"], args.follow_timeout, err)
        _print_follow(done, out)
        return 0 if sum(done.values()) >= answer["Selected"] else 1
    return 0 if status in (200, 202) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the HTTP trigger's URL (…/rerun is added when the path is empty)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--ids", nargs="+", type=int, metavar="ID", help="task instance ids")
    what.add_argument("--project-id", type=int, help="a filter: the workspace (project) id, with --bizdate")
    what.add_argument("--apply", metavar="PLAN", help="apply a plan --plan saved: its request, with its token")
    parser.add_argument(
        "--bizdate", help="the business date: YYYY-MM-DD (China time), epoch ms, or yesterday / today (China time)"
    )
    parser.add_argument("--task-ids", nargs="+", type=int, metavar="ID", help="only these tasks (nodes)")
    parser.add_argument("--env", choices=("Prod", "Dev"), help="ProjectEnv (default: the function's)")
    parser.add_argument("--failed-from", help="only runs that ended at or after this (ISO 8601 with offset, or ms)")
    parser.add_argument("--failed-to", help="only runs that ended at or before this (ISO 8601 with offset, or ms)")
    parser.add_argument("--ignore-rules", action="store_true", help="rerun what a failure rule says a rerun cannot fix")
    parser.add_argument("--plan", metavar="FILE", help="with a filter: make a dry run and save it, token included")
    parser.add_argument("--comment", help="why: kept in DataWorks' operation log and in the SLS records")
    parser.add_argument("--dry-run", action="store_true", help="decide and record, rerun nothing")
    parser.add_argument("--force", action="store_true", help="lift the RERUN_MAX_RERUNS cap (only that)")
    parser.add_argument("--use-latest-config", action="store_true", help="rerun with the nodes' latest configuration")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON instead of a table")
    parser.add_argument("--profile", help="an aliyun CLI profile name in ~/.aliyun/config.json")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the answer")
    parser.add_argument(
        "--logstore", help="follow a continuation in these local Logstore files (a .jsonl or a directory)"
    )
    parser.add_argument("--no-follow", action="store_true", help="do not follow a continuation")
    parser.add_argument("--follow-timeout", type=float, default=900, help="seconds to follow a continuation at most")
    return parser


def _body(args) -> dict:
    """The request body the arguments ask for. Raises ValueError for a bad combination."""
    if args.apply:
        try:
            saved = json.loads(Path(args.apply).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the plan {args.apply}: {exc}") from None
        if not isinstance(saved, dict) or saved.get("version") != PLAN_VERSION or "request" not in saved:
            raise ValueError(f"{args.apply} is not a plan saved by --plan")
        return {**saved["request"], "PlanToken": saved["planToken"]}
    options = {}
    if args.comment:
        options["Comment"] = args.comment
    if args.force:
        options["Force"] = True
    if args.use_latest_config:
        options["UseLatestConfig"] = True
    if args.ids:
        filter_only = [
            n
            for n in ("bizdate", "task_ids", "env", "failed_from", "failed_to", "ignore_rules", "plan")
            if getattr(args, n)
        ]
        if filter_only:
            raise ValueError(f"--{filter_only[0].replace('_', '-')} goes with a filter (--project-id), not --ids")
        return {"Ids": args.ids, "DryRun": args.dry_run, **options}
    if not args.bizdate:
        raise ValueError("a filter needs --bizdate as well as --project-id")
    body = {"ProjectId": args.project_id, "Bizdate": bizdate(args.bizdate)}
    if args.task_ids:
        body["TaskIds"] = args.task_ids
    if args.env:
        body["ProjectEnv"] = args.env
    for name, value in (("FinishedTimeStart", args.failed_from), ("FinishedTimeEnd", args.failed_to)):
        if value:
            body[name] = int(value) if value.isdigit() else value
    if args.ignore_rules:
        options["IgnoreRules"] = True
    return {**body, **options, "DryRun": bool(args.dry_run or args.plan)}


def _save_plan(path: str, url: str, body: dict, answer: dict) -> None:
    request = {k: v for k, v in body.items() if k != "DryRun"}
    plan = {
        "version": PLAN_VERSION,
        "url": url,
        "request": request,
        "planToken": answer["PlanToken"],
        "expiresAt": answer.get("PlanExpiresAt"),
        "dryRun": answer.get("RequestId"),
        "selected": answer.get("Selected"),
        "counts": answer.get("Counts"),
    }
    Path(path).write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n")


def follow(logstore: Path, request_id: str, selected: int, timeout: float, err, poll: float = 1.0) -> dict[str, int]:
    """Read the records of `request_id` (`originRequestId`) from the local Logstore files as they
    are written, until every selected instance has a final record (any reason but `deferred`) or
    `timeout` seconds pass; a progress line on `err`. Returns the final records counted by reason.

    The local form of the SLS query `message.originRequestId: "<id>"`: FC ships each stdout line
    to the Logstore as an entry whose `message` is the record."""
    offsets: dict[Path, int] = {}
    latest: dict[int, str] = {}
    end = time.monotonic() + timeout
    shown = None
    while True:
        files = sorted(logstore.glob("*.jsonl")) if logstore.is_dir() else [logstore]
        for path in files:
            offsets[path] = _read_new(path, offsets.get(path, 0), request_id, latest)
        done = {}
        for reason in latest.values():
            if reason != "deferred":
                done[reason] = done.get(reason, 0) + 1
        finished = sum(done.values())
        line = f"following {request_id}: {finished}/{selected} instances done " + _counts(done)
        if line != shown:
            print(line, file=err, flush=True)
            shown = line
        if finished >= selected or time.monotonic() >= end:
            return done
        time.sleep(poll)


def _read_new(path: Path, offset: int, request_id: str, latest: dict[int, str]) -> int:
    """Read whole lines past `offset`; keep each instance's latest reason. Returns the new offset."""
    try:
        with path.open("rb") as source:
            source.seek(offset)
            data = source.read()
    except OSError:
        return offset
    complete = data[: data.rfind(b"\n") + 1]
    for raw in complete.splitlines():
        try:
            record = json.loads(json.loads(raw).get("message") or "null")
        except (ValueError, AttributeError):
            continue
        if (
            isinstance(record, dict)
            and record.get("kind") == "instance"
            and record.get("originRequestId") == request_id
        ):
            latest[record["instanceId"]] = record.get("reason") or "?"
    return offset + len(complete)


def _counts(done: dict[str, int]) -> str:
    return "(" + ", ".join(f"{reason} {n}" for reason, n in sorted(done.items())) + ")" if done else ""


def _print_follow(done: dict[str, int], out) -> None:
    print("instances by reason, the request and its continuation together:", file=out)
    for reason, n in sorted(done.items()):
        print(f"  {reason:<22} {n}", file=out)


def _credentials(profile: str | None, environ):
    if profile:
        try:
            config = json.loads(PROFILE_FILE.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {PROFILE_FILE}: {exc}") from None
        for entry in config.get("profiles", []):
            if entry.get("name") == profile:
                return SimpleNamespace(
                    access_key_id=entry.get("access_key_id"),
                    access_key_secret=entry.get("access_key_secret"),
                    security_token=entry.get("sts_token") or None,
                )
        raise ValueError(f"no profile {profile!r} in {PROFILE_FILE}")
    key_id = environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not (key_id and secret):
        return None
    return SimpleNamespace(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None,
    )


def _post(url: str, data: bytes, headers: dict, timeout: float) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        return 0, {"Code": "ConnectionFailed", "Message": str(getattr(error, "reason", error))}
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"Code": "NotJSON", "Message": raw[:200].decode("utf-8", "replace")}
    return status, answer if isinstance(answer, dict) else {"Answer": answer}


def _print_table(status: int, answer: dict, out) -> None:
    if "Code" in answer:
        print(f"HTTP {status} {answer.get('Code')}: {answer.get('Message')}", file=out)
    if "Selected" in answer:  # the filter form: counts, not a row per instance
        print(f"selected {answer['Selected']} failed instance(s) with {json.dumps(answer.get('Filter'))}", file=out)
        decisions = answer.get("Decisions", {})
        for reason, n in answer.get("Counts", {}).items():
            print(f"  {reason:<22} {n:<5} {_ids(decisions.get(reason, []))}".rstrip(), file=out)
        for instance_id, held in answer.get("NotRetryable", {}).items():
            print(f"  held back {instance_id}: rule {held['Rule']}: {held['MatchedLine']}", file=out)
        if answer.get("LogsNotRead"):
            print(f"  {answer['LogsNotRead']} log(s) not read in the time of this dry run", file=out)
        if not answer.get("DryRun"):
            info = answer.get("SuccessInfo", {})
            print(f"rerun: {_ids([i for i, r in info.items() if r.get('Success')]) or 'none'}", file=out)
            for instance_id, result in info.items():
                if not result.get("Success"):
                    print(f"  rerun refused {instance_id}: {result.get('Message')}", file=out)
        if answer.get("Continuing"):
            print(f"started {answer.get('Started', 0)}; {answer['Continuing']} continue asynchronously", file=out)
        print(f"request {answer.get('RequestId')}" + (" (dry run)" if answer.get("DryRun") else ""), file=out)
        return
    rows = [("instance", "result", "message")]
    for instance_id, info in answer.get("SuccessInfo", {}).items():
        rows.append((instance_id, "rerun" if info.get("Success") else "failed", info.get("Message") or ""))
    for instance_id, reason in answer.get("Skipped", {}).items():
        if reason.startswith(DRY_RUN_PREFIX):  # "dry-run: dry run: run 2 Failure: rerun as run 3; ..."
            detail = reason.removeprefix(DRY_RUN_PREFIX)
            rows.append((instance_id, "would rerun", detail.removeprefix("dry run: ")))
        else:
            rows.append((instance_id, "skipped", reason))
    if len(rows) > 1:
        widths = [max(len(str(row[n])) for row in rows) for n in range(2)]
        for row in rows:
            print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}", file=out)
    if answer.get("RequestId"):
        print(f"request {answer['RequestId']}" + (" (dry run)" if answer.get("DryRun") else ""), file=out)


DRY_RUN_PREFIX = "dry-run: "  # the reason of a dry run's id under Skipped
SHOWN_IDS = 20


def _ids(ids: list) -> str:
    """Instance ids as a line: the first SHOWN_IDS, then how many more."""
    shown = ", ".join(map(str, ids[:SHOWN_IDS]))
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
