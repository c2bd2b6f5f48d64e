"""A first deploy with template.yml's `vars` untouched decides and records, and reruns nothing.

Going live is one deliberate change: `dryRun: "false"`. Until then every record says dry-run.
"""

from __future__ import annotations

import yaml

from conftest import FAILED_ID, instance_records, make_function, reruns, sample_bytes, seed_failed
from dwrerun import config
from test_template import TEMPLATE, load, props, render


def deployed_environment(**variables) -> dict:
    """The event function's environment as a deploy with these `vars` gives it, endpoints left to the test."""
    environment = props(render(load(), **variables), "event")["environmentVariables"]
    return {k: v for k, v in environment.items() if k not in ("DATAWORKS_ENDPOINT", "FUNCTION_COMPUTE_ENDPOINT")}


def test_the_template_ships_dry_run_on():
    assert yaml.safe_load(TEMPLATE.read_text())["vars"]["dryRun"] == "true"
    assert config.Settings.from_env(deployed_environment()).dry_run is True


def test_going_live_is_one_change_of_vars():
    shipped, live = deployed_environment(), deployed_environment(dryRun="false")
    assert {k for k in shipped if shipped[k] != live[k]} == {"RERUN_DRY_RUN"}
    assert config.Settings.from_env(live).dry_run is False


def test_a_failure_under_the_untouched_vars_is_decided_and_recorded_and_not_rerun(dataworks, tmp_path):
    # GIVEN a failed instance the guards would rerun, and the event function with the shipped settings
    seed_failed(dataworks)
    with make_function(dataworks, tmp_path, **deployed_environment()) as fn:
        # WHEN its failure event arrives
        invocation = fn.invoke(sample_bytes("dataworks-instance-failed.json"))
    # THEN nothing is rerun, and the records say it was a dry run
    assert invocation.error is None
    assert reruns(dataworks) == []
    assert dataworks.backend.instance(FAILED_ID).status == "Failure"
    (record,) = instance_records(invocation)
    assert record["decision"] == "dry-run" and record["success"] is None
    summary = invocation.records[-1]
    assert summary["kind"] == "summary" and summary["dryRunMode"] is True and summary["rerun"] == 0
