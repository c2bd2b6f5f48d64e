"""Storm on instance processes: scripts/bench/storm.py's scenario (500 instances fail for one cause
over 5 minutes, the cause clears at minute 20), with the guard and without it (today,
RERUN_STORM_THRESHOLD=0), in the same run, on the local cloud's process model and clock.

    .venv/bin/python scripts/bench/storm_cloud.py                  # 500 failures: several minutes
    .venv/bin/python scripts/bench/storm_cloud.py --failures 30 --threshold 5   # a smoke run

What runs: the event function as template.yml deploys its settings (reservedConcurrency 9, the
per-instance QPS limits and their real pacing, the storm guard's and the schedule's defaults, 3
reruns as the cap, FC's 3 retries), plus the signing key the tests' `cloud` fixture gives it, on FC
instance processes (`localcloud.fc.function`), scheduling through the local FC OpenAPI (delayed
InvokeFunction with task ids, ListAsyncTasks, GetAsyncTask) and calling the DataWorks emulator over
real HTTP with ACS3 signatures. Every failure event goes through the EventBridge publisher into
FC's asynchronous queue. One ManualClock (`localcloud.clock.SharedClock`: FC's delays, the
instances' `schedule.clock`, the emulator's journal) is moved by this driver straight to the next
due moment: the next failure event, FC task or run end; then it waits until FC has run what came
due. Nothing sleeps: the function's own waits (its limiters' spacing, a retry's backoff) end at once
and are counted in the clock's time, which stands still within a moment (so the writes of one
moment share its clock second, as the step model's do).

The world this driver plays (DataWorks' scheduler): a rerun DataWorks accepted runs RUN_SECONDS (60)
of the clock, then ends Failure while the cause is down (its failure event is published EVENT_LAG
(5 s) later) or Success once it cleared. Each instance is its own task; its log matches no rule
(the cause is the workspace's "default").

Counted: reruns sent (ids of the RerunTaskInstances calls DataWorks accepted, its journal) and
wasted (runs that ended Failure), DataWorks calls (the journal), instances at the cap and alerts
(the function's Logstore: one per instance at the cap, one per storm opened, one per storm whose
held instances gave up), peak writes per second (the journal, by clock second), and when the last
instance recovered after the clearing. Correctness, too: reruns DataWorks refused (a doubled
rerun), instances without a record, invocations FC gave up on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import storm as step  # scripts/bench/storm.py: the scenario's constants, its table (and function/ on the path)
from common import CREDENTIALS, REGION, ROOT, template_environment

from dwrerun import canary, schema
from dwrerun import storm as guard
from dwrerun.config import Settings
from localcloud.clock import SharedClock
from localcloud.dataworks import DataWorksEmulator
from localcloud.dataworks.openevent import OpenEvent
from localcloud.eventbridge import EventBridge
from localcloud.fc import FunctionComputeApi
from localcloud.scheduled import scheduling_function, waits_on

START = 1_790_000_000.0  # the clock's epoch second at minute 0
FIRST_ID = 1_000_030_000_000
FIRST_TASK = 700_000_100_000
PROJECT_ID = 48213
SIGNING_KEY = "storm-bench-signing-key-0123456789abcdef"  # as the tests' `cloud` fixture gives one
STEP_TIMEOUT = 600  # real seconds FC may take over what came due in one moment


@dataclass
class World:
    """DataWorks' scheduler as the scenario has it: runs end RUN_SECONDS after their rerun, Failure
    while the cause is down, Success after; a failed run's event follows EVENT_LAG seconds later."""

    dataworks: DataWorksEmulator
    clock: SharedClock
    rule: EventBridge
    clear_at: float
    openevent: OpenEvent = field(init=False)  # the CloudEvent DataWorks publishes for a failed run
    started: set = field(default_factory=set)  # (instance, run) of every rerun run that started
    wasted: int = 0
    recovered: dict = field(default_factory=dict)  # instance -> clock time of its successful run's end
    seen: int = 0  # journal entries looked at

    def __post_init__(self):
        self.openevent = OpenEvent(self.dataworks, self.rule.deliver)

    def fail_at(self, instance_id: int, when: float) -> None:
        """The instance's first run failed; its event is published at `when`."""
        self.clock.call_at(when, lambda: self._publish(self.dataworks.backend.instance(instance_id)))

    def _publish(self, instance) -> None:
        self.rule.deliver(self.openevent.event(instance))

    def look(self) -> None:
        """After a moment: the reruns DataWorks accepted in it start runs that end later."""
        entries = self.dataworks.journal[self.seen :]
        self.seen += len(entries)
        for entry in entries:
            if entry.action != "RerunTaskInstances" or entry.status != 200 or not entry.accepted:
                continue
            for instance_id in json.loads(entry.params["Ids"]):
                inst = self.dataworks.backend.instance(int(instance_id))
                key = (inst.id, inst.run_number)
                if inst.status == "Running" and key not in self.started:
                    self.started.add(key)
                    self.clock.call_at(entry.time + step.RUN_SECONDS, lambda i=inst.id: self._end(i))

    def _end(self, instance_id: int) -> None:
        now = self.clock.now()
        if now < self.clear_at:
            self.wasted += 1
            ended = self.dataworks.backend.finish(instance_id, "Failure")
            self.clock.call_at(now + step.EVENT_LAG, lambda: self._publish(ended))
        else:
            self.dataworks.backend.finish(instance_id, "Success")
            self.recovered[instance_id] = now


def settings(dataworks_url: str, fc_url: str, threshold: int | None) -> dict[str, str]:
    """template.yml's event function settings, on this local cloud, acting (not a dry run)."""
    env = template_environment("event")
    env.update(
        DATAWORKS_ENDPOINT=dataworks_url,
        FUNCTION_COMPUTE_ENDPOINT=fc_url,
        RERUN_DRY_RUN="false",  # template.yml's default until a deployment turns it off
        RERUN_SIGNING_KEY=SIGNING_KEY,
    )
    if threshold is not None:
        env["RERUN_STORM_THRESHOLD"] = str(threshold)
    return env


def template_function() -> dict:
    """The event function's FC settings in template.yml (reservedConcurrency, retries, timeout...)."""
    from bench import template_defaults

    return template_defaults()["event"]


def scenario(threshold: int | None, failures: int, scratch: Path, progress, label: str) -> dict:
    """One run of the scenario (threshold None: the template's); what it measured."""
    fc = template_function()
    with (
        DataWorksEmulator(credentials=[CREDENTIALS]) as dataworks,
        FunctionComputeApi(credentials=[CREDENTIALS]) as fc_api,
    ):
        clock = SharedClock(scratch / f"clock-{label}", start=START)
        dataworks.quota_clock = clock.now  # the journal's times are the clock's (no quota is set)
        env = settings(dataworks.url, fc_api.url, threshold)
        fn = scheduling_function(
            fc_api,
            clock,
            setup=waits_on(clock),  # the limiters' waits end at once, counted in the clock's time
            code_dir=str(ROOT / "function"),
            runtime=fc["runtime"],
            timeout=fc["timeout"],
            memory=fc["memory"],
            function_name=fc["function_name"],
            region=REGION,
            env=env,
            credentials=CREDENTIALS,
            logstore=str(scratch / f"{label}.jsonl"),
            reserved_concurrency=fc["reserved_concurrency"],
            max_async_retry_attempts=fc["retries"],
        )
        with fn:
            world = World(dataworks, clock, EventBridge(fn), START + step.CLEAR_AT)
            ids = seed(dataworks, world, failures)
            timeline = drive(fn, clock, world, progress, label)
            return figures(fn, dataworks, world, ids, timeline, guard.Limits.of(Settings.from_env(env)))


def seed(dataworks, world: World, failures: int) -> list[int]:
    """`failures` instances, each its own task, failed at run 1; their events over 5 minutes, at the
    step model's moments (its seed)."""
    rng = random.Random(25)
    ids = []
    for n in range(failures):
        instance_id = FIRST_ID + n
        dataworks.backend.add_instance(
            id=instance_id,
            task_id=FIRST_TASK + n,
            project_id=PROJECT_ID,
            status="Failure",
            run_number=1,
            rerun_mode="FailureAllowed",
            project_env="Prod",
            trigger_recurrence="Normal",
            task_name=f"ods_upstream_{n}",
        )
        world.fail_at(instance_id, START + rng.uniform(0, 300))
        ids.append(instance_id)
    return ids


def drive(fn, clock: SharedClock, world: World, progress, label: str) -> list[tuple[float, dict]]:
    """Move the clock from one due moment to the next until nothing is due (or the step model's
    horizon); after each, wait until FC ran what came due. The storm records, with their minute."""
    timeline: list[tuple[float, dict]] = []
    attempts, moments, last = 0, 0, time.monotonic()
    while True:
        due = clock.next_due()
        if due is None or due > START + step.HORIZON:
            return timeline
        clock.advance(max(0.0, due - clock.now()))
        fn.drain(STEP_TIMEOUT)
        world.look()
        moments += 1
        ended = fn.invocations[attempts:]
        attempts += len(ended)
        at = clock.now() - START
        timeline += [(at, r) for a in ended for r in a.records if r.get("kind") == schema.STORM_KIND]
        if time.monotonic() - last >= 10:
            last = time.monotonic()
            progress(
                f"  {label}: minute {at / 60:5.1f}, {moments} moments, {attempts} invocations, "
                f"{len(world.started)} reruns started, {len(world.recovered)} recovered"
            )


def figures(fn, dataworks, world: World, ids: list[int], timeline, limits: guard.Limits) -> dict:
    journal = dataworks.journal.calls()
    writes = [e for e in journal if e.action == "RerunTaskInstances" and e.status == 200]
    sent = [int(i) for e in writes for i in json.loads(e.params["Ids"])]
    records = logged(fn)
    instance = [r for r in records if r.get("kind") == "instance"]
    capped = {r["instanceId"] for r in instance if r.get("reason") == schema.Reason.CAP_REACHED}
    storms = {r["stormId"] for r in records if r.get("stormEvent") == guard.OPENED}
    expired = [r for r in instance if r.get("reason") == schema.Reason.STORM_HOLD_EXPIRED]
    gave_up = {r.get("stormId") for r in expired}
    recovered = [world.recovered[i] for i in ids if i in world.recovered]
    clear_at = START + step.CLEAR_AT
    failed_canaries = sum(1 for at, r in timeline if at <= step.CLEAR_AT and r["stormEvent"] == guard.CANARY_FAILED)
    return {
        "reruns sent": len(sent),
        "reruns wasted": world.wasted,
        "DataWorks calls": len(journal),
        "instances at the cap": len(capped),
        "alerts": len(capped) + len(storms) + len(gave_up),
        "peak writes/s": max(Counter(int(e.time) for e in writes).values(), default=0),
        "recovered": len(recovered),
        "last recovered (s after clearing)": max(recovered) - clear_at if len(recovered) == len(ids) else None,
        "storms": len(storms),
        "gave up": len({r["instanceId"] for r in expired}),
        # correctness: a rerun DataWorks refused was sent twice; every instance has its records
        "reruns refused": len(sent) - len(world.started),
        "instances without a record": len(set(ids) - {r.get("instanceId") for r in instance}),
        "invocations FC gave up on": sum(1 for h in fn.async_invocations if h.status == "Failed"),
        "invocations": len(fn.async_invocations),
        "calls by action": dict(sorted(Counter(e.action for e in journal).items())),
        "bound (s after clearing)": limits.canary_interval(failed_canaries)
        + canary.CHECK_SECONDS
        + canary.ramp_seconds(len(ids))
        + step.RUN_SECONDS,
        "storm events": [(round(at / 60, 1), r["stormEvent"], r.get("count")) for at, r in timeline],
    }


def logged(fn) -> list[dict]:
    """The function's records, from its Logstore: each JSON object a line's message holds."""
    out = []
    for line in fn.logstore_lines():
        message = line.get("message", "")
        if message.startswith("{"):
            try:
                record = json.loads(message)
            except ValueError:
                continue
            if isinstance(record, dict) and "kind" in record:
                out.append(record)
    return out


SHOWN = (
    "reruns sent",
    "reruns wasted",
    "DataWorks calls",
    "instances at the cap",
    "alerts",
    "peak writes/s",
    "recovered",
    "last recovered (s after clearing)",
    "storms",
    "gave up",
    "reruns refused",
    "instances without a record",
    "invocations FC gave up on",
    "invocations",
)


def checks(g: dict, t: dict, failures: int) -> list[tuple[str, bool]]:
    last, bound = g["last recovered (s after clearing)"], g["bound (s after clearing)"]
    return [
        ("guard sends fewer reruns", g["reruns sent"] < t["reruns sent"]),
        ("guard wastes fewer reruns", g["reruns wasted"] < t["reruns wasted"]),
        ("guard makes fewer DataWorks calls", g["DataWorks calls"] < t["DataWorks calls"]),
        ("guard has fewer instances at the cap", g["instances at the cap"] < t["instances at the cap"]),
        ("guard fires fewer alerts", g["alerts"] < t["alerts"]),
        (f"guard recovers all {failures} within {bound:.0f} s of the clearing", last is not None and last <= bound),
        (
            "no rerun refused (none sent twice), every instance recorded, no invocation given up (both runs)",
            all(
                f["reruns refused"] == 0
                and f["instances without a record"] == 0
                and f["invocations FC gave up on"] == 0
                for f in (g, t)
            ),
        ),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", type=int, default=500, help="instances failing for the cause (default 500)")
    parser.add_argument("--threshold", type=int, help="the guard's RERUN_STORM_THRESHOLD (default: template.yml's)")
    parser.add_argument("--json", type=Path, help="also write both runs' figures here")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="dwrerun-bench-storm-") as scratch:
        progress(f"{args.failures} failures of one cause over 5 min, cleared at minute 20: with the guard")
        g = scenario(args.threshold, args.failures, Path(scratch), progress, "guard")
        progress("... and today (RERUN_STORM_THRESHOLD=0)")
        t = scenario(0, args.failures, Path(scratch), progress, "today")
    step.table(
        f"{args.failures} failures, one cause, cleared at minute 20, on instance processes",
        {k: g[k] for k in SHOWN},
        {k: t[k] for k in SHOWN},
    )
    print(
        "  guard's storm:", "; ".join(f"{m} min {e}" + (f" ({c})" if c else "") for m, e, c in g["storm events"][:12])
    )
    print(f"  DataWorks calls by action: guard {g['calls by action']}; today {t['calls by action']}")
    results = checks(g, t, args.failures)
    print()
    for name, ok in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if args.json:
        args.json.write_text(json.dumps({"guard": g, "today": t, "checks": results}, indent=1))
    progress("done")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
