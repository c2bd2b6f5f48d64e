"""Same records before and after (issue 21): the records of `make demo` and of the fault matrix
are those of tests/golden/, apart from times and request ids.

The fault matrix's half runs inside its own scenarios (tests/same_records.py, which also says how
records are normalised and ordered); here: the demo's records, compared on the demo run that
tests/test_demo.py already makes (the `demo_run` fixture, so this test joins the xdist group
"demo"), that the golden file has an entry for every scenario and none for a scenario that is
gone, and that the comparison masks only what it should and names what differs.
"""

import json

import pytest

import same_records
from same_records import DEMO_GOLDEN, FAULTS_GOLDEN, FAULTS_MODULE

DEMO_FILES = ("dwrerun-event.jsonl", "dwrerun-http.jsonl")


def demo_records(demo_logs) -> dict:
    """The demo's Logstore files: per file, its invocations' normalised records, sorted (the demo
    delivers a burst of events to three instance processes at once: their order is thread timing)."""
    return {
        name: same_records.normalised(
            same_records.logstore_invocations(same_records.read_logstore(demo_logs / name)), ordered=False, jitter=True
        )
        for name in DEMO_FILES
    }


def test_the_demo_writes_the_same_records(demo_run, demo_logs, request):
    actual = demo_records(demo_logs)
    assert all(actual.values()), "the demo wrote no records"
    if same_records.updating(request.config):
        for name, groups in actual.items():
            same_records.record_update(request.config, DEMO_GOLDEN, name, groups)
        return
    golden = same_records.load(DEMO_GOLDEN)
    for name in DEMO_FILES:
        assert name in golden, f"no records for {name} in {DEMO_GOLDEN.name}: run pytest --update-golden"
        same_records.compare(golden[name], actual[name], f"make demo ({name})", DEMO_GOLDEN)


def test_the_golden_records_name_every_fault_scenario_and_no_other(request):
    config = request.config
    selected = [item for item in request.session.items if item.module.__name__ == FAULTS_MODULE]
    if not selected:
        pytest.skip("tests/test_faults.py is not collected in this run")
    golden = same_records.load(FAULTS_GOLDEN)
    missing = sorted({same_records.scenario_key(item) for item in selected} - set(golden))
    assert config.getoption("update_golden") or missing == [], f"no golden records for {missing}"
    # Stale entries: against every scenario collected, the deselected (-k, --lf) ones included.
    deselected = {
        nodeid.split("::", 1)[1]
        for nodeid in config.stash.get(same_records.deselected_key, set())
        if nodeid.startswith(selected[0].nodeid.split("::")[0] + "::")
    }
    known = {same_records.scenario_key(item) for item in selected} | {n.split("@")[0] for n in deselected}
    assert sorted(set(golden) - known) == [], "golden records of scenarios that no longer exist"
    assert sorted(set(same_records.RACES) - known) == [], "same_records.RACES names scenarios that no longer exist"


RECORD = {
    "kind": "instance",
    "instanceId": 1000012345678,
    "decision": "scheduled",
    "message": "run 1 failed: rerun as run 2 in 3 s, at about 2026-12-07T15:20:03Z (FC async task dwrerun-1000012345678-run-1)",
    "requestId": "1-6935a2f1-0123456789abcdef01234567",
    "dataworksRequestId": "5F2E9B1C-1A2B-4C3D-8E9F-0A1B2C3D4E5F",
    "runNumber": 1,
    "finishedTime": 1765120800000,
    "attempts": 3,
    "lookupMs": 12.3,
    "rerunMs": None,
    "delaySeconds": 3,
    "dueAt": "2026-12-07T15:20:03Z",
}


def test_the_normalisation_masks_times_request_ids_and_the_demos_jitter_only():
    masked = same_records.normalise(RECORD, jitter=True)
    assert masked == {
        **RECORD,
        "message": "run 1 failed: rerun as run 2 in <delay> s, at about <time> (FC async task dwrerun-1000012345678-run-1)",
        "requestId": "<fc-request-id>",
        "dataworksRequestId": "<dataworks-request-id>",
        "finishedTime": "<time>",
        "attempts": "<n>",
        "lookupMs": "<ms>",
        "delaySeconds": "<delay>",
        "dueAt": "<time>",
    }
    assert list(masked) == list(RECORD)  # the field order is compared too
    # Without the demo's jitter the delay is exact; with a patched clock, so are the times.
    exact = same_records.normalise(RECORD, fixed_clock=True)
    assert (exact["delaySeconds"], exact["dueAt"]) == (3, RECORD["dueAt"])
    assert exact["message"] == RECORD["message"]
    assert same_records.normalise({**RECORD, "attempts": 0})["attempts"] == 0  # no call at all stays exact


def test_a_difference_is_named_by_its_scenario_invocation_record_and_field():
    golden = [[same_records.normalise(RECORD)]]
    changed = [[same_records.normalise({**RECORD, "message": RECORD["message"].replace("failed", "broke")})]]
    with pytest.raises(pytest.fail.Exception) as failed:
        same_records.compare(golden, changed, "test_x[throttled-reads]", FAULTS_GOLDEN)
    text = str(failed.value)
    assert "records of test_x[throttled-reads] differ from tests/golden/faults.json" in text
    assert "invocation 1, record 1 (instance, instance 1000012345678), field 'message'" in text
    assert "run 1 broke: rerun" in text and json.dumps(golden[0][0]["message"]) in text
    more = golden + [[{"kind": "summary"}]]
    assert same_records.differences(more, golden) == [
        "2 invocations in the golden, 1 now",
        'invocation 2 only in the golden: [{"kind": "summary"}]',
    ]
