"""Storm: 500 instances fail for one cause over 5 minutes, the cause clears at minute 20; with the
storm guard and without it (today), in the same run, with controls.

    .venv/bin/python scripts/bench/storm.py            # the scenario and its controls, ~1 min
    .venv/bin/python scripts/bench/storm.py --quick    # the scenario only

What runs is the function's own decision code, not a model of it: `schedule.delay_seconds` (the
backoff), `storm.py` (every guard decision: tallies, opening, canary, checks, holds, release, give-up)
over the local cloud's FC async task store (`localcloud.asynctasks`: task ids with FC's 409, delays,
ListAsyncTasks/GetAsyncTask), on a numeric clock this script moves from one due moment to the next.
What is modelled, plainly: each invocation of the event function is one step here (not an instance
process), so FC's concurrency and the DataWorks emulator's wire are left out; a rerun runs
RUN_SECONDS and ends Failure while its cause is down, Success after; the failure event of a run
arrives EVENT_LAG seconds after it ends. DataWorks calls are counted per invocation as the pipeline
makes them: a failure event reads the instance and its log (2 reads), a delayed invocation reads
the instance (1), a rerun is 1 write, a canary check 1 read; held instances make none.
`storm_cloud.py` runs the same scenario on instance processes, the local FC OpenAPI and the emulator.

Printed: reruns sent and wasted (ended in Failure), DataWorks calls, instances at the cap, alerts
(one cap-reached per instance, as each is its own task; one dwrerun-storm per storm, plus one per
storm whose held instances gave up), peak writes per second, and when the last instance recovered,
measured from the clearing; each as guard/today, a ratio against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent / "function")]

from dwrerun import canary, schedule, storm  # noqa: E402
from localcloud.asynctasks import AsyncTasks  # noqa: E402

PROJECT = 10001
CAUSE = storm.Cause(PROJECT, "upstream-down")
OTHER = storm.Cause(PROJECT, "other-cause")
RUN_SECONDS = 60  # a rerun runs this long, then ends
EVENT_LAG = 5  # seconds from a run's end to its failure event
CLEAR_AT = 20 * 60
MAX_RERUNS = 3
BASE, MAXIMUM = 120, 1800  # RERUN_BACKOFF_BASE_SECONDS, RERUN_BACKOFF_MAX_SECONDS (the defaults)
HORIZON = 6 * 3600


@dataclass
class Instance:
    id: int
    cause: storm.Cause
    status: str = "Failure"
    run: int = 1
    recovered_at: float | None = None
    capped: bool = False


@dataclass
class Figures:
    reruns: int = 0
    wasted: int = 0
    reads: int = 0
    writes_per_second: dict = field(default_factory=dict)
    capped: int = 0
    storms: set = field(default_factory=set)
    gave_up: set = field(default_factory=set)  # storms with a give-up
    gave_up_instances: int = 0
    events: list = field(default_factory=list)

    @property
    def calls(self) -> int:
        return self.reads + self.reruns

    @property
    def alerts(self) -> int:
        return self.capped + len(self.storms) + len(self.gave_up)


class Simulation:
    def __init__(self, *, guard: bool, down: list[tuple[float, float]], lose_first_canary=False, fc_reads_fail=False):
        self.now = 0.0
        self.tasks = AsyncTasks(lambda: self.now, error=storm.CoordinationError)
        if fc_reads_fail:
            self.tasks.fail(True, ("list", "get"))
        self.limits = storm.Limits(20 if guard else 0, 600, 7200, BASE, MAXIMUM)
        self.down = down
        self.instances: dict[int, Instance] = {}
        self.figures = Figures()
        self.queue: list = []
        self.seq = itertools.count()
        self.lose_first_canary = lose_first_canary

    # --- the world --------------------------------------------------------------------------------

    def cause_down(self, cause: storm.Cause, at: float) -> bool:
        return cause == CAUSE and any(start <= at < end for start, end in self.down)

    def fail(self, instance_id: int, cause: storm.Cause, at: float) -> None:
        self.instances[instance_id] = Instance(instance_id, cause)
        self._at(at, "event", instance_id)

    def _at(self, at: float, kind: str, instance_id: int) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), kind, instance_id))

    def run(self) -> Figures:
        random.seed(25)  # schedule.delay_seconds' jitter: the same draws with and without the guard
        while True:
            task_due = self.tasks.next_due()
            event_due = self.queue[0][0] if self.queue else None
            dues = [t for t in (task_due, event_due) if t is not None]
            due = min(dues) if dues else None
            if due is None or due > HORIZON:
                return self.figures
            self.now = due
            if event_due is not None and event_due <= due:
                _, _, kind, instance_id = heapq.heappop(self.queue)
                (self.failure_event if kind == "event" else self.run_end)(self.instances[instance_id])
                continue
            for task_id, payload in self.tasks.due(self.now):
                self.task(task_id, payload)
                self.tasks.finish(task_id)

    def rerun(self, inst: Instance) -> None:
        self.figures.reruns += 1
        second = int(self.now)
        self.figures.writes_per_second[second] = self.figures.writes_per_second.get(second, 0) + 1
        inst.run += 1
        inst.status = "Running"
        self._at(self.now + RUN_SECONDS, "end", inst.id)

    def run_end(self, inst: Instance) -> None:
        if self.cause_down(inst.cause, self.now):
            inst.status = "Failure"
            self.figures.wasted += 1
            self._at(self.now + EVENT_LAG, "event", inst.id)
        else:
            inst.status = "Success"
            inst.recovered_at = self.now

    # --- the event function ------------------------------------------------------------------------

    def failure_event(self, inst: Instance) -> None:
        self.figures.reads += 2  # GetTaskInstance, GetTaskInstanceLog
        if inst.run > MAX_RERUNS:
            inst.capped = True
            self.figures.capped += 1
            return
        delay = schedule.delay_seconds(inst.run, BASE, MAXIMUM)
        if self.limits.on:
            said = storm.on_failure(self.tasks, self.limits, inst.cause, inst.id, inst.run, self.now, delay=delay)
            self.note(said.notes)
            if said.action != storm.PROCEED:
                return
        rerun = schedule.ScheduledRerun(inst.id, inst.run, schedule.due_at(delay, self.now))
        self.tasks.create(rerun.async_task_id, delay, rerun.to_payload())

    def task(self, task_id: str, payload: bytes) -> None:
        step = storm.parse(payload)
        if step is None:
            return self.delayed(schedule.parse(payload))
        if step.step == "canary":
            if self.lose_first_canary and step.get("slot") == 1:
                self.lose_first_canary = False
                self.figures.events.append((self.now, "canary 1 lost"))
                return None
            self.note(canary.on_canary(step, self.tasks, self.limits, self.now, self.rerun_now).notes)
        elif step.step == "check":
            self.note(canary.on_check(step, self.tasks, self.limits, self.now, self.read).notes)
        elif step.step == "hold":
            result = canary.on_hold(step, self.tasks, self.limits, self.now)
            self.note(result.notes)
            if result.verdict == "expired":
                self.figures.gave_up.add(storm.release_tag(step.cause, step.epoch))
                self.figures.gave_up_instances += 1
            elif result.verdict == "fail-open":
                self.rerun_now(step.get("instanceId"), step.get("runNumber"))
        return None

    def delayed(self, rerun: schedule.ScheduledRerun) -> None:
        inst = self.instances[rerun.instance_id]
        self.figures.reads += 1
        if inst.status != "Failure" or inst.run != rerun.failed_run_number:
            return
        if rerun.storm is None and self.limits.on:
            said = storm.on_failure(
                self.tasks, self.limits, inst.cause, inst.id, inst.run, self.now, delay=0, counts=False
            )
            if said.action != storm.PROCEED:
                return
        self.rerun(inst)

    def rerun_now(self, instance_id: int, run: int) -> bool:
        inst = self.instances[instance_id]
        self.figures.reads += 1
        if inst.status != "Failure" or inst.run != run:
            return False
        self.rerun(inst)
        return True

    def read(self, instance_id: int):
        self.figures.reads += 1
        inst = self.instances[instance_id]
        return inst.status, inst.run

    def note(self, notes) -> None:
        for n in notes:
            if n.event == storm.OPENED:
                self.figures.storms.add(storm.release_tag(n.cause, n.epoch))
            self.figures.events.append((self.now, f"{n.event} #{n.epoch}" + (f" ({n.count})" if n.count else "")))


# --- scenarios --------------------------------------------------------------------------------------


def scenario(guard: bool, *, failures=500, spread=300, down=None, other=0, **kwargs) -> Simulation:
    sim = Simulation(guard=guard, down=down or [(0, CLEAR_AT)], **kwargs)
    rng = random.Random(25)
    for i in range(failures):
        sim.fail(1_000_000 + i, CAUSE, rng.uniform(0, spread))
    for i in range(other):  # another cause, failing now and then and recovering on its first rerun
        sim.fail(2_000_000 + i, OTHER, i * 60.0)
    return sim


def summary(sim: Simulation, cause: storm.Cause = CAUSE) -> dict:
    f = sim.figures
    mine = [i for i in sim.instances.values() if i.cause == cause]
    recovered = [i.recovered_at for i in mine if i.recovered_at is not None]
    return {
        "reruns sent": f.reruns,
        "reruns wasted": f.wasted,
        "DataWorks calls": f.calls,
        "instances at the cap": f.capped,
        "alerts": f.alerts,
        "peak writes/s": max(f.writes_per_second.values(), default=0),
        "recovered": len(recovered),
        "last recovered (s after clearing)": (max(recovered) - CLEAR_AT) if len(recovered) == len(mine) else None,
        "storms": len(f.storms),
        "gave up": f.gave_up_instances,
    }


def table(title: str, guard: dict, today: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':38} {'guard':>10} {'today':>10} {'guard/today':>12}")
    for key in guard:
        g, t = guard[key], today[key]
        shown = "-" if g is None or t in (None, 0) else f"{g / t:.2f}"
        print(f"  {key:38} {_v(g):>10} {_v(t):>10} {shown:>12}")


def _v(value) -> str:
    if value is None:
        return "never"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the scenario only, no controls")
    args = parser.parse_args(argv)
    started = time.monotonic()
    checks: list[tuple[str, bool]] = []

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    progress("500 failures of one cause over 5 min, cleared at minute 20: with the guard")
    guarded = scenario(True)
    guarded.run()
    progress("... and today (RERUN_STORM_THRESHOLD=0)")
    today = scenario(False)
    today.run()
    g, t = summary(guarded), summary(today)
    table("500 failures, one cause, cleared at minute 20", g, t)
    print("  guard's storm:", "; ".join(f"{when / 60:.1f} min {what}" for when, what in guarded.figures.events[:12]))
    # The bound: the canary interval running at the clearing, the canary's run and its check, the
    # release ramp, and the last released instance's run.
    bound = _canary_interval_at(guarded, CLEAR_AT) + canary.CHECK_SECONDS + canary.ramp_seconds(500) + RUN_SECONDS
    checks += [
        ("guard sends fewer reruns", g["reruns sent"] < t["reruns sent"]),
        ("guard wastes fewer reruns", g["reruns wasted"] < t["reruns wasted"]),
        ("guard makes fewer DataWorks calls", g["DataWorks calls"] < t["DataWorks calls"]),
        ("guard has fewer instances at the cap", g["instances at the cap"] < t["instances at the cap"]),
        ("guard fires fewer alerts", g["alerts"] < t["alerts"]),
        (
            f"guard recovers every instance within {bound:.0f} s of the clearing",
            g["last recovered (s after clearing)"] is not None and g["last recovered (s after clearing)"] <= bound,
        ),
    ]
    if not args.quick:
        progress("control: a trickle of 19 failures over 5 minutes whose reruns succeed (below the threshold)")
        tg, tt = scenario(True, failures=19, down=[(0, 1)]), scenario(False, failures=19, down=[(0, 1)])
        tg.run(), tt.run()
        a, b = summary(tg), summary(tt)
        table("control: a trickle of 19 failures, reruns succeed", a, b)
        checks.append(("a trickle: the guard changes nothing", a == b))
        progress("control: 15 failures of an outage that lasts 20 minutes (their reruns fail again)")
        og, ot = scenario(True, failures=15), scenario(False, failures=15)
        og.run(), ot.run()
        table(
            "control: 15 failures, outage of 20 minutes (failed reruns count as failed runs)", summary(og), summary(ot)
        )
        progress("control: another cause failing once a minute alongside")
        sg, st = scenario(True, other=60), scenario(False, other=60)
        sg.run(), st.run()
        a, b = summary(sg, OTHER), summary(st, OTHER)
        checks.append(
            ("another cause: every instance recovered, with the guard as today", a["recovered"] == b["recovered"] == 60)
        )
        print(
            f"\ncontrol: another cause alongside: recovered {a['recovered']}/60 with the guard, {b['recovered']}/60 today"
        )
        progress("control: a flapping upstream (down again from minute 24 to 40)")
        flap = [(0, CLEAR_AT), (24 * 60, 40 * 60)]
        fg, ft = scenario(True, down=flap), scenario(False, down=flap)
        fg.run(), ft.run()
        a, b = summary(fg), summary(ft)
        table("control: flapping upstream (down again at minute 24 to 40)", a, b)
        checks.append(("flapping: every instance recovered with the guard", a["recovered"] == 500))
        progress("control: the first canary's invocation lost")
        lost = scenario(True, lose_first_canary=True)
        lost.run()
        a = summary(lost)
        print(
            f"\ncontrol: canary 1 lost: storms {a['storms']}, recovered {a['recovered']}/500, "
            f"last {_v(a['last recovered (s after clearing)'])} s after the clearing, "
            f"{sum('canary-restored' in e for _, e in lost.figures.events)} canary restored"
        )
        checks.append(("a lost canary is restored and every instance recovered", a["recovered"] == 500))
        progress("control: FC's ListAsyncTasks/GetAsyncTask failing")
        failing = scenario(True, fc_reads_fail=True)
        failing.run()
        a = summary(failing)
        print(
            f"\ncontrol: FC's reads failing: the guard fails open: reruns {a['reruns sent']} (today {t['reruns sent']}), "
            f"at the cap {a['instances at the cap']} (today {t['instances at the cap']})"
        )
        checks.append(("FC failing: exactly today's behaviour", a == t))
    print()
    for name, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    progress("done")
    return 0 if all(ok for _, ok in checks) else 1


def _canary_interval_at(sim: Simulation, at: float) -> float:
    """The canary interval running at `at`: the one after as many failed canaries as had failed by then."""
    failed = sum(1 for when, what in sim.figures.events if when <= at and what.startswith(storm.CANARY_FAILED))
    return sim.limits.canary_interval(failed)


if __name__ == "__main__":
    sys.exit(main())
