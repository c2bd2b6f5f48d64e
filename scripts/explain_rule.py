#!/usr/bin/env python3
"""Which failure rule matches a DataWorks task log, and why: test a rule before you deploy it.

    scripts/explain_rule.py LOG_FILE [--task-type ODPS_SQL] [--rules FILE]
    scripts/explain_rule.py --instance ID [--run N] [--rules FILE]     (reads the log from DataWorks)
    scripts/explain_rule.py --check [--rules FILE]                     (only check the rules file)

It matches the way the function does (function/dwrerun/rules.py: the log's tail, first rule wins,
noise lines passed over) and prints the rule, what the function would do, the matched line
(redacted, as a record would show it), the pattern, and the hits it passed over as noise. It
never prints the log itself.

With --instance it calls GetTaskInstance (for TaskType and RunNumber) and GetTaskInstanceLog on
the DataWorks endpoint the function would use: DATAWORKS_ENDPOINT, else dataworks.<region>.
aliyuncs.com for --region (or FC_REGION), with the ALIBABA_CLOUD_ACCESS_KEY_ID /
ALIBABA_CLOUD_ACCESS_KEY_SECRET (/ ALIBABA_CLOUD_SECURITY_TOKEN) credentials of the environment.
RERUN_RULES_FILE and RERUN_RULES_DEFAULT are read as the function reads them.

Exit status: 0 explained (or, with --check, the file is valid); 1 the rules file is invalid;
2 bad usage, bad settings, or the log could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "function"))

from dwrerun import rules  # noqa: E402
from dwrerun.config import ConfigError, Settings  # noqa: E402

RULES_INVALID, CANNOT_READ = 1, 2
# Said to the person at the terminal: the function's own message is about its role, which is not theirs.
NO_CREDENTIALS = (
    "--instance reads the log from DataWorks with your own AccessKey, and none is set: export "
    "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS "
    "credentials) of a RAM user allowed dataworks:GetTaskInstance and dataworks:GetTaskInstanceLog; against the "
    "local cloud, the ones `make serve` prints. Or save the log from DataWorks and pass the file instead."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Which failure rule matches a DataWorks task log, the matched line (redacted) and why.",
        epilog="Exit status: 0 explained, 1 the rules file is invalid, 2 bad usage or the log could not be read.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("log", nargs="?", help='a log saved from DataWorks ("-" reads standard input)')
    source.add_argument("--instance", type=int, metavar="ID", help="read the log of this task instance from DataWorks")
    source.add_argument("--check", action="store_true", help="only check the rules file")
    parser.add_argument("--run", type=int, metavar="N", help="with --instance: the run (default: its current run)")
    parser.add_argument(
        "--rules", metavar="FILE", help="the rules file (default: RERUN_RULES_FILE, else the shipped one)"
    )
    parser.add_argument("--task-type", metavar="TYPE", help="the node's TaskType, e.g. ODPS_SQL, DI, DIDE_SHELL")
    parser.add_argument("--region", help="with --instance and no DATAWORKS_ENDPOINT: the DataWorks region")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.run is not None and args.instance is None:
        parser.error("--run needs --instance")

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(CANNOT_READ, f"bad setting: {exc}")
    try:
        rule_set = rules.load(args.rules or settings.rules_file)
    except rules.RulesError as exc:
        hint = ""
        if args.rules and not Path(args.rules).is_absolute() and Path(args.rules).exists():
            hint = (
                f"; a relative --rules is read from the code package ({ROOT / 'function'}), as the function "
                f"reads RERUN_RULES_FILE: for the file here, give --rules {Path(args.rules).resolve()}"
            )
        return _fail(RULES_INVALID, str(exc) + hint)
    if args.check:
        print(f"{rule_set.path}: {len(rule_set)} rules, valid")
        return 0

    task_type = args.task_type
    if args.instance is not None:
        try:
            log, shown, instance_type, run = _read_from_dataworks(args.instance, args.run, args.region, settings)
        except (ConfigError, LookupError) as exc:
            return _fail(CANNOT_READ, str(exc))
        task_type = task_type or instance_type
    else:
        try:
            log = sys.stdin.read() if args.log == "-" else Path(args.log).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return _fail(CANNOT_READ, f"cannot read {args.log}: {exc.strerror or exc}")
        shown, run = ("standard input" if args.log == "-" else args.log), None

    found = rules.match(rule_set, log, task_type)
    report = _report(found, rule_set, shown, run, task_type, settings.rules_default)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else _text(report))
    return 0


def _read_from_dataworks(instance_id: int, run: int | None, region: str | None, settings: Settings):
    """(log, how to name it, TaskType, run) read with the function's own client."""
    from dwrerun.dataworks import DataWorksError, client_for, credentials_from

    if not (os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID") and os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")):
        raise ConfigError(NO_CREDENTIALS)
    credentials = credentials_from(os.environ, None)
    dataworks = client_for(credentials, settings, region or os.environ.get("FC_REGION"))
    try:
        instance = dataworks.get_task_instance(instance_id, settings.read_timeout)
        run = run or int(instance.get("RunNumber") or 1)
        log = dataworks.get_task_instance_log(instance_id, run, settings.log_timeout)
    except DataWorksError as exc:
        raise LookupError(
            f"DataWorks answered {exc.code} for {exc.action} of instance {instance_id}: {exc.message}"
        ) from None
    task_type = instance.get("TaskType") if isinstance(instance.get("TaskType"), str) else None
    return log, f"instance {instance_id} run {run} ({dataworks.endpoint})", task_type, run


def _report(found: rules.Match, rule_set: rules.RuleSet, shown: str, run, task_type, default: str) -> dict:
    rule = found.rule
    report = {
        "rules": rule_set.path,
        "ruleCount": len(rule_set),
        "log": shown,
        "run": run,
        "lines": found.lines,
        "scannedFromLine": found.first_scanned_line,
        "taskType": task_type,
        "rule": rule.name if rule else rules.DEFAULT_RULE,
        "action": rule.action if rule else default,
        "failureClass": ("retryable" if rule.action == rules.RERUN else "not-retryable") if rule else "unknown",
        "description": rule.description if rule else None,
        "source": rule.source if rule else None,
        "maxReruns": rule.max_reruns if rule else None,
        "delaySeconds": rule.delay_seconds if rule else None,
        "pattern": found.pattern,
        "lineNumber": found.line_number,
        "matchedLine": found.line,
        "passedOver": [{"rule": i.rule, "line": i.line_number, "why": i.why} for i in found.ignored],
        "notApplicable": list(found.not_applicable),
    }
    return report


def _text(report: dict) -> str:
    out = [
        f"rules:       {report['rules']} ({report['ruleCount']} rules)",
        f"log:         {report['log']}, {report['lines']} lines; scanned from line {report['scannedFromLine']} "
        f"(the last {rules.TAIL_CHARS} characters at most)",
        f"task type:   {report['taskType'] or '(none given: only rules without taskTypes apply)'}",
    ]
    if report["rule"] == rules.DEFAULT_RULE:
        out.append(f"verdict:     no rule matched -> RERUN_RULES_DEFAULT: {report['action']} (failureClass unknown)")
    else:
        what = "a rerun can fix it" if report["action"] == rules.RERUN else "a rerun cannot fix it: skip, stays Failure"
        limits = [f"at most {report['maxReruns']} rerun(s)"] if report["maxReruns"] is not None else []
        limits += [f"wait {report['delaySeconds']} s first"] if report["delaySeconds"] is not None else []
        out += [
            f"verdict:     rule {report['rule']!r} -> {report['action']} ({report['failureClass']}): {what}"
            + (f"; {', '.join(limits)}" if limits else ""),
            f"why:         {report['description'] or '(no description)'}",
            f"source:      {report['source']}",
            f"pattern:     {report['pattern']}",
            f"line {report['lineNumber']}:".ljust(13) + report["matchedLine"],
        ]
    if report["passedOver"]:
        out.append("passed over (noise: does not count):")
        out += [f"  line {i['line']}: {i['rule']} - {i['why']}" for i in report["passedOver"]]
    if report["notApplicable"]:
        out.append(f"not for this task type: {', '.join(report['notApplicable'])}")
    return "\n".join(out)


def _fail(status: int, message: str) -> int:
    print(f"explain_rule: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
