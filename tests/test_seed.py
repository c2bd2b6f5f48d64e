"""The seeded workspace is dated relative to the moment it is loaded, as an operator's own is.

scripts/localcloud/dataworks/seed.json says which "now" it was written for; loaded at another
moment, its runs move by the time between, and its business dates by whole days (China time), so
the docs can say "yesterday's business date" and the demo's failures ended moments ago.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localcloud.dataworks.models import DataWorksBackend

SEED = Path(__file__).resolve().parents[1] / "scripts" / "localcloud" / "dataworks" / "seed.json"
CHINA = timezone(timedelta(hours=8))
WRITTEN_FOR = datetime.fromisoformat(json.loads(SEED.read_text())["now"])
FAILED = 1000012345678


def loaded_at(moment: datetime) -> DataWorksBackend:
    backend = DataWorksBackend()
    backend.load_json(SEED, now=moment.timestamp())
    return backend


def test_loaded_at_the_moment_it_was_written_for_the_seed_is_as_written():
    inst = loaded_at(WRITTEN_FOR).instance(FAILED)
    assert (inst.bizdate, inst.finished_time) == (1764172800000, 1764270065000)


@pytest.mark.parametrize(
    "today",
    ["2026-12-07T23:10:00+08:00", "2026-12-08T00:20:00+08:00", "2027-03-01T15:00:00+00:00"],
    ids=["evening", "just-after-midnight", "another-zone"],
)
def test_loaded_later_its_business_date_is_yesterday_and_its_failures_ended_moments_ago(today):
    moment = datetime.fromisoformat(today)
    inst = loaded_at(moment).instance(FAILED)
    yesterday = datetime.combine(moment.astimezone(CHINA).date() - timedelta(days=1), datetime.min.time(), CHINA)
    assert inst.bizdate == int(yesterday.timestamp() * 1000)
    assert inst.finished_time == int(moment.timestamp() * 1000) - 55_000  # 03:01:05 in a seed written for 03:02


def test_every_seeded_time_is_in_the_past_and_a_run_starts_after_it_is_triggered():
    moment = datetime.fromisoformat("2026-12-08T00:20:00+08:00")
    now_ms = int(moment.timestamp() * 1000)
    for inst in loaded_at(moment).instances():
        times = [inst.create_time, inst.trigger_time, inst.started_time, inst.finished_time]
        assert all(t is None or t <= now_ms for t in times), inst.id
        if inst.started_time and inst.finished_time:
            assert inst.started_time <= inst.finished_time, inst.id


def test_a_seed_now_without_an_offset_is_refused(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"now": "2025-11-28T03:02:00", "instances": []}))
    with pytest.raises(ValueError, match="ISO 8601 with its offset"):
        DataWorksBackend().load_json(path)


def test_every_seeded_failure_ended_the_same_time_ago_whatever_the_time_of_day():
    # The demo's sweep (window: 6 h back, to 10 min ago) must list the same runs at any hour: a
    # failed run with no times of its own got 02:00 China time of today, which is inside that
    # window from 02:10 to 08:00 and outside it the rest of the day (the demo then listed 3, not 1).
    ages = {}
    for today in ("2026-12-07T02:30:00+08:00", "2026-12-07T15:00:00+08:00"):
        moment = datetime.fromisoformat(today)
        now_ms = moment.timestamp() * 1000
        finished = {i.id: i.finished_time for i in loaded_at(moment).instances() if i.status == "Failure"}
        ages[today] = {i: round(now_ms - t) for i, t in finished.items()}
    night, afternoon = ages.values()
    assert night == afternoon
