#!/usr/bin/env python3
"""What template.yml's SLS alert rules would fire on the local Logstore (`make demo` ends with it).

Each rule is evaluated as SLS evaluates it, from its definition in template.yml (scripts/
sls_views.py): its query over its time range (localcloud.sls), its count condition
(`__count__ > 0`), one alert per group of its GroupConfiguration fields (task and cause), and
its annotations with the group's first row filled in. A rule switched off in `vars` is listed as
off. SLS's repeat window (alertWindow) spans evaluations; one evaluation here fires each group once.

    python scripts/alerts.py [--logs .localcloud/logs]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sls_views  # noqa: E402
from localcloud import sls  # noqa: E402

LOGS = HERE.parent / ".localcloud" / "logs"
_COUNT_CONDITION = re.compile(r"^__count__\s*(>|>=|==|=)\s*(\d+)$")


@dataclass(frozen=True)
class Fired:
    """One alert a rule would send: its rule, group, severity and annotations filled in."""

    rule: sls_views.AlertRule
    group: dict
    rows: int  # rows of the query in this group
    annotations: dict[str, str]


def evaluate(entries: list[sls.Entry], views: sls_views.Views | None = None, now: float | None = None) -> list[Fired]:
    """Every alert the enabled rules would fire over `entries`, rule by rule."""
    views = views or sls_views.load()
    index = sls.Index(views.json_key_indices)
    now = time.time() if now is None else now
    fired = []
    for rule in views.alerts:
        if not rule.enabled:
            continue
        rows = sls.query(entries, rule.query, index, start=rule.start, end=rule.end, now=now)
        if not _holds(rule.count_condition, len(rows)):
            continue
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row.get(f) for f in rule.group_fields), []).append(row)
        for key, members in groups.items():
            annotations = {k: sls_views.annotate(v, members[0]) for k, v in rule.annotations.items()}
            fired.append(Fired(rule, dict(zip(rule.group_fields, key, strict=True)), len(members), annotations))
    return fired


def _holds(condition: str, count: int) -> bool:
    match = _COUNT_CONDITION.match(condition.strip())
    if match is None:
        raise sls.QueryError(f"count condition {condition!r}: only __count__ > n (or >=, ==) is evaluated here")
    operator, number = match.group(1), int(match.group(2))
    return {">": count > number, ">=": count >= number}.get(operator, count == number)


def report(fired: list[Fired], views: sls_views.Views) -> str:
    """The alerts as text: what fired, then the rules that stayed quiet or are off."""
    lines = [f"Alerts these records would fire (template.yml's SLS alert rules, evaluated locally): {len(fired)}"]
    for alert in fired:
        lines.append(f"  [{alert.rule.name}] {alert.rule.title}")
        lines.append(f"    {alert.annotations.get('desc', '')}")
        if "records" in alert.annotations:
            lines.append(f"    {alert.annotations['records']}")
    loud = {a.rule.logical_id for a in fired}
    quiet = [r for r in views.alerts if r.enabled and r.logical_id not in loud]
    off = [r for r in views.alerts if not r.enabled]
    if quiet:
        lines.append("  Quiet: " + ", ".join(r.name for r in quiet))
    if off:
        lines.append("  Off in vars: " + ", ".join(r.name for r in off))
    return "\n".join(lines)


def print_fired(logs: str | Path = LOGS) -> list[Fired]:
    """Print what the alerts would fire over the local Logstore in `logs`; the demo's last step."""
    views = sls_views.load()
    fired = evaluate(sls.read_logstore(logs), views)
    print(report(fired, views))
    return fired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(LOGS), help="the local Logstore directory (*.jsonl)")
    args = parser.parse_args(argv)
    print_fired(args.logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
