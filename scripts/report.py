#!/usr/bin/env python3
"""`make report`: the SLS dashboard's panels, computed from the local Logstore, as one HTML page.

The panels are template.yml's dashboard charts (scripts/sls_views.py reads them): each chart's
query runs over its time range on the local Logstore (localcloud.sls), and the page draws the
rows the way the chart's type and display say (line: x axis and series; number; table; pie).
The page is self-contained: the rows are embedded as JSON and drawn by inline script into SVG
and tables; it loads nothing else, so it opens from disk, offline.

    python scripts/report.py [--logs .localcloud/logs] [--out .localcloud/report.html]
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sls_views  # noqa: E402
from localcloud import sls  # noqa: E402

LOGS = HERE.parent / ".localcloud" / "logs"
OUT = HERE.parent / ".localcloud" / "report.html"


def panels(entries: list[sls.Entry], views: sls_views.Views, now: float) -> list[dict]:
    """Each chart with the rows its query gives over the entries."""
    index = sls.Index(views.json_key_indices)
    out = []
    for chart in views.charts:
        rows = sls.query(entries, chart.query, index, start=chart.start, end=chart.end, now=now)
        out.append(
            {
                "title": chart.title,
                "note": chart.note,
                "type": chart.type,
                "display": chart.display,
                "query": chart.query,
                "start": chart.start,
                "rows": rows,
            }
        )
    return out


def build(entries: list[sls.Entry], views: sls_views.Views | None = None, now: float | None = None) -> str:
    """The page, as text."""
    views = views or sls_views.load()
    now = time.time() if now is None else now
    data = panels(entries, views, now)
    generated = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    # Inside <script>, "</" would end the element: JSON escapes it as <\/, which JSON reads back.
    embedded = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    records = sum(1 for e in entries if e.record is not None)
    return _PAGE.format(
        generated=html.escape(generated),
        records=records,
        entries=len(entries),
        panels=embedded,
    )


def write(logs: str | Path = LOGS, out: str | Path = OUT, now: float | None = None) -> Path:
    entries = sls.read_logstore(logs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build(entries, now=now), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(LOGS), help="the local Logstore directory (*.jsonl)")
    parser.add_argument("--out", default=str(OUT), help="where to write the page")
    args = parser.parse_args(argv)
    if not any(Path(args.logs).glob("*.jsonl")):
        print(f"No records in {args.logs}: run `make demo` first; the page will show empty panels.", file=sys.stderr)
    path = write(args.logs, args.out)
    print(f"Wrote {path} (open it in a browser)")
    return 0


_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>DataWorks reruns - local dashboard</title>
<link rel="icon" href="data:,">
<style>
  body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1f2328; background: #f6f8fa; }}
  h1 {{ font-size: 20px; margin: 0 0 4px; }}
  .meta {{ color: #57606a; margin-bottom: 12px; }}
  .grid {{ display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: 38px; gap: 8px; }}
  .panel {{ background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; overflow: auto; }}
  .panel h2 {{ font-size: 14px; margin: 0 0 6px; }}
  .panel .note {{ color: #57606a; font-size: 11px; margin: -2px 0 6px; }}
  .panel details {{ color: #57606a; font-size: 11px; margin-top: 6px; }}
  .panel code {{ white-space: pre-wrap; word-break: break-all; }}
  .number {{ font-size: 40px; font-weight: 600; text-align: center; margin-top: 24px; }}
  .empty {{ color: #57606a; font-style: italic; }}
  /* A table fits its panel at any width: a long id or time breaks rather than pushing columns out of sight. */
  table {{ border-collapse: collapse; font-size: 12px; width: 100%; }}
  th, td {{ border-bottom: 1px solid #eaeef2; padding: 2px 4px; text-align: left; overflow-wrap: anywhere; }}
  th {{ overflow-wrap: normal; font-size: 11px; }}
  .legend span {{ display: inline-block; margin-right: 10px; font-size: 12px; }}
  .legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
  svg text {{ font-size: 10px; fill: #57606a; }}
</style>
</head>
<body>
<h1>DataWorks reruns</h1>
<div class="meta">The SLS dashboard of template.yml, computed from the local Logstore ({records} records in
{entries} log lines) at {generated}. Each panel runs the dashboard chart's own query.</div>
<div class="grid" id="grid"></div>
<script type="application/json" id="panels">{panels}</script>
<script>
"use strict";
const COLORS = ["#0969da", "#1a7f37", "#bf8700", "#cf222e", "#8250df", "#1b7c83", "#bc4c00", "#57606a"];
const SVG = "http://www.w3.org/2000/svg";

function element(tag, attributes, text) {{
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {{}})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}}

function shown(value) {{
  if (value === null || value === undefined) return "-";
  // A measure with a fraction reads with thousands grouped (539,792.5); an integer may be an id: as it is.
  if (typeof value === "number" && !Number.isInteger(value)) return value.toLocaleString("en-US", {{maximumFractionDigits: 1}});
  return String(value);
}}

function measure(value) {{
  // A chart's figure, grouped as a reader reads it (525,600); a table may hold ids, shown as they are.
  return typeof value === "number" ? value.toLocaleString("en-US", {{maximumFractionDigits: 1}}) : shown(value);
}}

function hourLabel(value) {{
  return typeof value === "number" ? new Date(value * 1000).toISOString().slice(5, 16).replace("T", " ") : String(value);
}}

function legend(names) {{
  const box = element("div", {{class: "legend"}});
  names.forEach((name, i) => {{
    const item = element("span");
    item.append(element("i", {{style: "background:" + COLORS[i % COLORS.length]}}), name);
    box.append(item);
  }});
  return box;
}}

function lineChart(panel) {{
  const x = panel.display.xAxis[0], series = panel.display.yAxis;
  const width = 460, height = 200, left = 40, bottom = 30;
  const values = panel.rows.flatMap(row => series.map(name => Number(row[name]) || 0));
  const top = Math.max(1, ...values);
  const step = (width - left - 10) / Math.max(1, panel.rows.length - 1);
  const svg = element("svg:svg", {{viewBox: `0 0 ${{width}} ${{height}}`, style: "width: 100%; height: 200px"}});
  const pad = 12 + 11 * (series.length - 1);  // room above the tallest bar for staggered value labels
  const y = value => height - bottom - (value / top) * (height - bottom - pad);
  svg.append(element("svg:line", {{x1: left, y1: y(0), x2: width - 5, y2: y(0), stroke: "#d0d7de"}}));
  svg.append(element("svg:text", {{x: 2, y: y(top) + 4}}, measure(top)));
  svg.append(element("svg:text", {{x: 2, y: y(0)}}, "0"));
  if (panel.rows.length < 3) {{
    // A line needs points to join: a few hours are drawn as bars, one group per hour.
    const group = (width - left - 10) / panel.rows.length, bar = Math.min(40, (group - 10) / series.length);
    panel.rows.forEach((row, i) => {{
      const start = left + i * group + 5;
      svg.append(element("svg:text", {{x: start, y: height - 8}}, hourLabel(row[x])));
      series.forEach((name, s) => {{
        const value = Number(row[name]) || 0, top = y(value);
        const rect = element("svg:rect", {{x: start + s * bar, y: top, width: bar - 2, height: y(0) - top,
          fill: COLORS[s % COLORS.length]}});
        rect.append(element("svg:title", {{}}, `${{name}}: ${{shown(row[name])}}`));
        // Each value centred over its own bar; a label wider than its bar goes a line higher for
        // each series before it, so neighbouring values never print over each other.
        const label = measure(row[name]), wide = label.length * 6 > bar - 2;
        svg.append(rect, element("svg:text", {{x: start + s * bar + (bar - 2) / 2, y: top - 2 - (wide ? s * 11 : 0),
          "text-anchor": "middle", class: "value"}}, label));
      }});
    }});
    return [svg, legend(series)];
  }}
  panel.rows.forEach((row, i) => {{
    svg.append(element("svg:text", {{x: left + i * step, y: height - 8}}, hourLabel(row[x])));
  }});
  series.forEach((name, s) => {{
    const color = COLORS[s % COLORS.length];
    const points = panel.rows.map((row, i) => [left + i * step, y(Number(row[name]) || 0)]);
    svg.append(element("svg:polyline", {{points: points.map(p => p.join(",")).join(" "), fill: "none", stroke: color, "stroke-width": 2}}));
    points.forEach(([px, py], i) => {{
      const dot = element("svg:circle", {{cx: px, cy: py, r: 3, fill: color}});
      dot.append(element("svg:title", {{}}, `${{name}}: ${{shown(panel.rows[i][name])}}`));
      svg.append(dot);
    }});
  }});
  return [svg, legend(series)];
}}

function numberChart(panel) {{
  const name = panel.display.yAxis[0];
  return [element("div", {{class: "number"}}, measure(panel.rows[0][name]))];
}}

function tableChart(panel) {{
  const table = element("table"), columns = Object.keys(panel.rows[0]);
  const head = element("tr");
  columns.forEach(c => head.append(element("th", {{}}, c)));
  table.append(head);
  panel.rows.forEach(row => {{
    const line = element("tr");
    columns.forEach(c => line.append(element("td", {{}}, shown(row[c]))));
    table.append(line);
  }});
  return [table];
}}

function pieChart(panel) {{
  const label = panel.display.xAxis[0], name = panel.display.yAxis[0];
  const total = panel.rows.reduce((sum, row) => sum + (Number(row[name]) || 0), 0) || 1;
  const svg = element("svg:svg", {{viewBox: "-1.1 -1.1 2.2 2.2", width: "160", height: "160"}});
  let angle = -Math.PI / 2;
  panel.rows.forEach((row, i) => {{
    const share = (Number(row[name]) || 0) / total, next = angle + share * 2 * Math.PI;
    const large = share > 0.5 ? 1 : 0;
    const d = share >= 0.9999
      ? "M 0 -1 A 1 1 0 1 1 -0.0001 -1 Z"
      : `M 0 0 L ${{Math.cos(angle)}} ${{Math.sin(angle)}} A 1 1 0 ${{large}} 1 ${{Math.cos(next)}} ${{Math.sin(next)}} Z`;
    const slice = element("svg:path", {{d: d, fill: COLORS[i % COLORS.length]}});
    slice.append(element("svg:title", {{}}, `${{row[label]}}: ${{row[name]}}`));
    svg.append(slice);
    angle = next;
  }});
  return [svg, legend(panel.rows.map(row => `${{shown(row[label])}} (${{shown(row[name])}})`))];
}}

function span(start) {{
  // "-604800s" -> "7 days": the chart's time range, as SLS's relative start says it
  const match = /^-(\d+)([smhd])$/.exec(start);
  if (!match) return start;
  const seconds = Number(match[1]) * {{s: 1, m: 60, h: 3600, d: 86400}}[match[2]];
  for (const [unit, size] of [["days", 86400], ["hours", 3600], ["minutes", 60]]) {{
    if (seconds % size === 0 && seconds >= size) return `${{seconds / size}} ${{unit}}`;
  }}
  return `${{seconds}} seconds`;
}}

const DRAW = {{line: lineChart, number: numberChart, table: tableChart, pie: pieChart}};

function render(panel) {{
  const d = panel.display;
  const section = element("section", {{class: "panel", "data-title": panel.title, "data-type": panel.type}});
  section.style.gridColumn = `${{d.xPos + 1}} / span ${{d.width}}`;
  section.style.gridRow = `${{d.yPos + 1}} / span ${{d.height}}`;
  section.append(element("h2", {{}}, panel.title));
  if (panel.note) section.append(element("div", {{class: "note"}}, panel.note));
  const draw = DRAW[panel.type];
  if (!draw) throw new Error(`chart type ${{panel.type}} is not drawn here`);
  const rows = panel.rows.filter(row => Object.values(row).some(v => v !== null));
  if (rows.length === 0) {{
    section.append(element("div", {{class: "empty"}}, `No data in the last ${{span(panel.start)}}`));
  }} else {{
    section.append(...draw({{...panel, rows: rows}}));
  }}
  const query = element("details");
  query.append(element("summary", {{}}, "query"), element("code", {{}}, panel.query));
  section.append(query);
  section.dataset.rows = String(rows.length);
  section.dataset.drawn = "true";
  return section;
}}

const grid = document.getElementById("grid");
for (const panel of JSON.parse(document.getElementById("panels").textContent)) grid.append(render(panel));
document.body.dataset.panels = String(grid.children.length);
</script>
</body>
</html>
"""


if __name__ == "__main__":
    sys.exit(main())
