"""`make bench` cannot rot: a tiny run exits 0 and writes every figure with sane types.

No timing is asserted (machines are shared and noisy): only that each figure was measured, is a
finite non-negative number where it is a number, and that the correctness checks the benchmark
makes along the way (every instance rerun exactly once, no throttling) held.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "bench.py"), "--events", "12", "--rounds", "1", "--quick"]
        + ["--manual-rounds", "1", "--failures", "8", "--instances", "2", "--schedule-speed", "30", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Figures written to {out}" in done.stdout  # outside the repository: the path as given
    return json.loads(out.read_text()), done.stdout, done.stderr


def seconds(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value >= 0


def test_machine_is_described(results):
    machine = results[0]["machine"]
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1
    assert machine["python"].count(".") == 2
    assert machine["packages"]["alibabacloud-tea-openapi"]
    assert machine["packages"]["alibabacloud-dataworks-public20240518"]


def test_cold_start_and_health_figures(results):
    figures = results[0]["figures"]
    cold, health = figures["cold_start"], figures["health"]
    for variant in ("ours", "floor", "peer"):
        assert seconds(cold[variant]["wall_s"]) and seconds(cold[variant]["in_process_s"])
        assert len(cold[variant]["samples"]) == 1
    for key in ("ratio_ours_floor", "ratio_peer_floor", "ratio_ours_floor_in_process"):
        assert seconds(cold[key])
    for variant in ("ours", "python_pass", "python_import_json"):
        assert seconds(health[variant]["wall_s"])
    assert seconds(health["ratio_ours_pass"]) and seconds(health["ratio_ours_import_json"])
    assert health["sdk_loaded"] is False


def test_burst_figures(results):
    data = results[0]
    burst, template = data["figures"]["burst"], data["settings"]["template"]["event"]
    ours, naive = burst["ours"], burst["naive_peer"]
    assert burst["events"] == 12 and burst["rounds"] == 1
    for key in ("quota_bound_s", "pacing_bound_s", "ratio_ours_quota_bound", "ratio_ours_pacing_bound"):
        assert seconds(burst[key]), key
    assert seconds(ours["wall_s"])
    # The process model: instances, cold starts, no more than allowed (--instances 2 here).
    assert 1 <= ours["instances_started"] <= template["reserved_concurrency"] == 2
    assert ours["cold_starts"] == ours["instances_started"] == len(ours["peak_rss_mib_per_instance"])
    assert sum(ours["invocations_per_instance"]) == ours["attempts"] == 12
    # Correctness, not speed: every instance rerun once, nothing throttled, one record each.
    assert ours["throttled"] == 0 and (ours["lost"], ours["double"]) == (0, 0)
    assert ours["all_rerun_exactly_once"] is True and ours["instances_rerun"] == 12
    # As deployed: the failed run's log is read (RERUN_READ_LOGS=true), GetTask once per instance or so.
    calls = ours["calls_per_action"]
    assert calls["GetTaskInstance 200 OK"] == calls["GetTaskInstanceLog 200 OK"] == ours["writes"] == 12
    assert ours["reads"] == 24 + calls.get("GetTask 200 OK", 0)
    assert ours["instance_records"] == ours["summary_records"] == ours["rerun_records"] == 12
    assert ours["invocations_failed"] == 0 and ours["fc_retries"] == 0
    assert all(isinstance(v, int) for v in ours["calls_per_action"].values())
    assert seconds(naive["wall_s"]) and isinstance(naive["throttled"], int)
    assert 0 <= naive["instances_rerun"] <= 12


def test_burst_with_a_neighbour_loses_nothing_and_reruns_nothing_twice(results):
    near = results[0]["figures"]["neighbour"]
    ours = near["ours"]
    assert (near["neighbour_share"], near["reads_left"], near["writes_left"]) == (0.6, 20, 8)
    assert seconds(ours["wall_s"]) and seconds(near["quota_bound_s"]) and isinstance(ours["throttled"], int)
    assert (ours["lost"], ours["double"]) == (0, 0) and ours["instances_rerun"] == 12


def test_memory_and_cpu_figures(results):
    memory = results[0]["figures"]["memory_cpu"]
    for key in (
        "peak_rss_mib",
        "cpu_ms_per_event",
        "dispatcher_cpu_ms_per_event",
        "handler_alone_cpu_ms_per_event",
        "sdk_floor_cpu_ms_per_event",
    ):
        assert seconds(memory[key]), key
    assert isinstance(memory["function_own_cpu_ms_per_event"], float)  # a difference: may dip below 0
    assert memory["memory_mib"] == 512 and all(seconds(p) for p in memory["peak_rss_mib_per_instance"])
    assert seconds(memory["harness_alone"]["peak_rss_mib"]) and memory["harness_alone"]["invocations"] == 12
    profile = memory["profile"]
    assert profile["events"] == 10 and profile["top_functions"]
    assert "function (dwrerun)" in profile["by_area"]
    assert math.isclose(sum(a["share"] for a in profile["by_area"].values()), 1.0, rel_tol=0.05)


def test_manual_rerun_figures(results):
    manual = results[0]["figures"]["manual_rerun"]
    assert manual["ids"] == 10 and manual["rounds"] == 1 and manual["read_qps"] == 4.5
    assert seconds(manual["ours"]["wall_s"]) and seconds(manual["serial_floor"]["wall_s"])
    assert seconds(manual["ratio_ours_serial_floor"]) and seconds(manual["ratio_ours_share_bound"])


def test_schedule_figures(results):
    plan, stdout = results[0]["figures"]["schedule"], results[1]
    later, now = plan["scheduled"], plan["immediate"]
    assert (plan["failures"], plan["backoff_base_s"], plan["write_quota"]) == (8, 120, 20)
    # The template's default schedule: the first rerun waits 60-120 s, FC holds each that long.
    assert later["decisions"] == {"scheduled eligible": 8} and later["invoke_function_calls"] == {"202": 8}
    assert len(later["due_s"]) == 8 and 60 <= later["due_s"][0] <= later["due_s"][-1] <= 120
    assert sum(row["count"] for row in later["histogram"]) == 8 and "s  #" in stdout
    assert later["delayed_invocations_failed"] == 0 and plan["clock_speed"] == 30
    for figures in (later, now):
        assert (figures["lost"], figures["double"], figures["throttled"]) == (0, 0, 0)
        assert figures["all_rerun_exactly_once"] is True and 1 <= figures["peak_writes_per_s"] <= 8
        assert sum(figures["writes_per_second"]) == 8 and 0 <= figures["busy_seconds"] <= 8
    assert seconds(plan["ratio_peak_immediate_scheduled"]) and seconds(plan["ratio_busy_seconds_immediate_scheduled"])


def test_table_is_printed_and_saved(results):
    data, stdout, _ = results
    assert len(data["table"]) >= 20
    for row in data["table"]:
        assert set(row) == {"figure", "ours", "comparison", "ratio", "target", "met"}
        assert row["met"] in (True, False, None)
        assert row["figure"] in stdout
    # The same on any terminal: plain ASCII, no markdown emphasis.
    assert stdout.isascii() and "**" not in stdout


def test_progress_goes_to_stderr_per_benchmark(results):
    data, _, stderr = results
    for number, name in enumerate(data["settings"]["benchmarks"], 1):
        assert f"[{number}/{len(data['settings']['benchmarks'])}] {name} done in" in stderr


def test_failure_rules_figures(results):
    # The classification cost: CPU per event with a log read and matched against without, the
    # matching alone, the rules' cold load, and the API calls per failure event (at most 3).
    figures = results[0]["figures"]["failure_rules"]
    for key in (
        "with_log_cpu_ms_per_event",
        "without_log_cpu_ms_per_event",
        "match_cpu_ms",
        "rules_load_cpu_ms",
        "ratio_with_without_log",
        "match_share_of_event",
    ):
        assert seconds(figures[key]), key
    assert figures["events"] == 10 and figures["log_chars"] > figures["tail_chars"] == 64 * 1024
    assert figures["matched_rule"] == "default" and figures["patterns"] > 0  # every pattern tried
    assert figures["calls_per_failure_event"]["mean"] == figures["calls_per_failure_event"]["max"] == 3
