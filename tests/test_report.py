"""`make report`: the dashboard's panels from the local Logstore, one self-contained HTML page.

The page is checked in a real headless Chromium over the DevTools protocol (tests/cdp.py): it
loads with no console error and every panel draws data. Without Chromium the browser tests skip
and say why (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import json
import re

import pytest

import cdp
import report
import sls_views
from localcloud import sls
from test_local_sls import NOW, every_kind_of_record, instance_line

VIEWS = sls_views.load()
TITLES = [chart.title for chart in VIEWS.charts]
SCHEDULED = "Scheduled reruns: waiting, then ran"

# Each panel as the page drew it: its rows and how many marks (bars, slices, points, cells, a number) show them.
PANELS_JS = """Array.from(document.querySelectorAll('section.panel')).map(s => ({
  title: s.dataset.title, rows: Number(s.dataset.rows), drawn: s.dataset.drawn,
  marks: s.querySelectorAll('svg rect, svg path, svg circle, svg polyline, table td, .number').length}))"""


def embedded(page: str) -> list[dict]:
    return json.loads(re.search(r'<script type="application/json" id="panels">(.*?)</script>', page, re.S).group(1))


def write_logstore(directory, lines: list[dict]):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dwrerun-event.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return directory


def test_the_page_holds_each_dashboard_chart_with_the_rows_of_its_own_query(tmp_path):
    logs = write_logstore(tmp_path / "logs", every_kind_of_record())
    page = report.build(sls.read_logstore(logs), VIEWS, now=NOW)
    panels = embedded(page)
    assert [p["title"] for p in panels] == TITLES
    assert [p["query"] for p in panels] == [c.query for c in VIEWS.charts]  # the template's, not a copy
    rows = {p["title"]: p["rows"] for p in panels}
    assert rows[SCHEDULED] == [
        {"asyncTaskId": "t6", "taskName": "ods_orders_di", "instanceId": 6, "failed run": 1, "dueAt": "2027-01-15T08:00:00Z", "state": "waiting"},
        {"asyncTaskId": "t4", "taskName": "ods_orders_di", "instanceId": 4, "failed run": 1, "dueAt": "2027-01-15T08:00:00Z", "state": "ran"},
    ]  # fmt: skip
    assert rows["Matched failure rules"][0]["rule"] in ("default", "sql-syntax")
    (minutes,) = rows["Time from failure to rerun (minutes)"]
    assert minutes["median"] == 10.0  # the records' failed runs ended 600 s before the reruns
    assert all(rows[title] for title in TITLES), [t for t in TITLES if not rows[t]]
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)=["'](?!data:)""", page) and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_make_report_writes_the_page_from_the_local_logstore(tmp_path):
    logs = write_logstore(tmp_path / "logs", every_kind_of_record())
    out = tmp_path / "out" / "report.html"
    assert report.main(["--logs", str(logs), "--out", str(out)]) == 0
    assert [p["title"] for p in embedded(out.read_text())] == TITLES


@pytest.fixture(scope="module")
def chromium():
    binary = cdp.find()
    if binary is None:
        pytest.skip(
            "no Chromium here (looked for $CHROMIUM, chromium, chromium-browser, google-chrome): "
            "`apt-get install chromium` (.ci/run does) to run the report's browser tests"
        )
    with cdp.Chromium(binary) as browser:
        yield browser


def test_the_browser_check_catches_console_errors_and_uncaught_ones(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><link rel="icon" href="data:,"><script>console.error("bad panel");null.title;</script>'
    )
    errors = chromium.load(page.as_uri()).errors()
    assert any("console.error: bad panel" in e for e in errors), errors
    assert any(e.startswith("uncaught: TypeError") for e in errors), errors


def test_every_panel_draws_its_data_without_console_errors(chromium, tmp_path):
    logs = write_logstore(tmp_path / "logs", every_kind_of_record())
    out = tmp_path / "report.html"
    out.write_text(report.build(sls.read_logstore(logs), VIEWS, now=NOW))
    page = chromium.load(out.as_uri())
    panels = page.evaluate(PANELS_JS)
    assert page.errors() == []
    assert [p["title"] for p in panels] == TITLES
    assert [p["title"] for p in panels if not (p["drawn"] == "true" and p["rows"] > 0 and p["marks"] > 0)] == []


def test_after_the_demo_the_report_loads_without_console_errors_and_every_panel_shows_data(
    demo_run, demo_logs, chromium, tmp_path
):
    # GIVEN the Logstore `make demo` left; WHEN `make report` writes the page and Chromium loads it
    out = report.write(demo_logs, tmp_path / "report.html")
    page = chromium.load(out.as_uri())
    panels = page.evaluate(PANELS_JS)
    # THEN no console error, and each panel has rows and draws them
    assert page.errors() == []
    assert [p["title"] for p in panels] == TITLES
    empty = [p["title"] for p in panels if not (p["drawn"] == "true" and p["rows"] > 0 and p["marks"] > 0)]
    entries = sls.read_logstore(demo_logs)
    # The scheduled-reruns panel has data when the demo schedules a rerun (its scheduled step);
    # a demo that reruns everything at once has none to show.
    scheduled = any(e.record and e.record.get("decision") == "scheduled" for e in entries)
    # The storms panel has data when a storm opened; the demo's few failures open none.
    stormy = any(e.record and e.record.get("kind") == "storm" for e in entries)
    assert empty == [t for t in TITLES if (t == SCHEDULED and not scheduled) or (t == "Storms" and not stormy)]


# --- readable at 1,280 px, and true -----------------------------------------------------------------

# Per panel: does anything stick out sideways (a column out of sight), and do value labels overlap.
LAYOUT_JS = """Array.from(document.querySelectorAll('section.panel')).map(s => {
  const box = s.getBoundingClientRect();
  const cells = Array.from(s.querySelectorAll('th, td')).map(c => c.getBoundingClientRect());
  const labels = Array.from(s.querySelectorAll('svg text.value')).map(t => t.getBoundingClientRect());
  const overlaps = labels.some((a, i) => labels.slice(i + 1).some(b =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
  return {title: s.dataset.title, overflow: s.scrollWidth > s.clientWidth + 1,
          outside: cells.some(c => c.right > box.right + 1), overlaps: overlaps};
})"""


def at_1280(chromium, page_path):
    page = chromium.load(page_path.as_uri())
    chromium.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        session=page.session,
    )
    return page


def test_each_panel_says_what_it_counts_in_the_templates_words(tmp_path):
    logs = write_logstore(tmp_path / "logs", every_kind_of_record())
    notes = {p["title"]: p["note"] for p in embedded(report.build(sls.read_logstore(logs), VIEWS, now=NOW))}
    assert notes["Failures handled per hour, by first decision"].startswith(
        "Each failure once, by what was first decided"
    )
    assert "finishedTime" in notes["Time from failure to rerun (minutes)"]


def test_at_1280_px_every_panel_shows_every_column_and_no_label_covers_another(chromium, tmp_path):
    # GIVEN records whose figures are long: a failure a year before its rerun (525,600 minutes) and
    # the long ids and times of scheduled reruns
    year = 365 * 86400
    lines = [
        *every_kind_of_record(),
        instance_line(instance_id=1000012345678, finished_time=int((NOW - year) * 1000), rule="default"),
    ]
    out = tmp_path / "report.html"
    out.write_text(report.build(sls.read_logstore(write_logstore(tmp_path / "logs", lines)), VIEWS, now=NOW))
    # WHEN the page is drawn 1,280 px wide
    page = at_1280(chromium, out)
    layout = page.evaluate(LAYOUT_JS)
    # THEN nothing is out of sight and no value prints over another
    assert page.errors() == []
    assert [p["title"] for p in layout if p["overflow"] or p["outside"] or p["overlaps"]] == [], layout
    labels = page.evaluate(
        "Array.from(document.querySelectorAll('section[data-title^=\"Time from failure\"] svg text.value'))"
        ".map(t => t.textContent)"
    )
    assert any("," in label for label in labels), labels  # 262,800.5: grouped, as a reader reads it


def test_after_the_demo_the_report_is_readable_at_1280_px_and_its_times_are_real(
    demo_run, demo_logs, chromium, tmp_path
):
    out = report.write(demo_logs, tmp_path / "report.html")
    page = at_1280(chromium, out)
    layout = page.evaluate(LAYOUT_JS)
    assert [p["title"] for p in layout if p["overflow"] or p["outside"] or p["overlaps"]] == [], layout
    panels = {p["title"]: p["rows"] for p in embedded(out.read_text())}
    # the demo's failures ended a minute before it began: minutes from failure to rerun, not a year
    (minutes,) = panels["Time from failure to rerun (minutes)"]
    assert 0 < minutes["median"] <= minutes["p95"] < 60, minutes
    # the headline feature shows: a rule that skipped, beside the ones that reran
    rules = {row["rule"]: row for row in panels["Matched failure rules"]}
    assert rules["maxcompute-syntax-error"]["skipped"] == 1 and rules["shell-network-error"]["rerun or scheduled"] == 1
    states = {row["instanceId"]: row["state"] for row in panels[SCHEDULED]}
    assert set(states.values()) == {"ran"}  # every scheduled rerun of the demo ran before it ended
