"""template.yml's inline ROS template, checked against the ROS resource specification offline.

Development only. tests/ros_spec.py builds each resource with the official ROS CDK packages
(requirements-ros.txt, installed by `make test` into .venv/ros; jsii, so they need Node.js), for
the parameters template.yml passes. One run checks every case below (one jsii start, ~2 s).
The copies with a deliberate mistake prove that the check can fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_template import load, render, ros_template

ROOT = Path(__file__).resolve().parents[1]
CHECKER = Path(__file__).with_name("ros_spec.py")
# Where `make test` installs requirements-ros.txt; ROS_CDK_PYTHON names another interpreter.
ROS_PYTHON = Path(os.environ.get("ROS_CDK_PYTHON", ROOT / ".venv" / "ros" / "bin" / "python"))
DEAD_LETTER_QUEUE = "acs:mns:cn-hangzhou:123456789012:/queues/dwrerun-dlq/messages"
ALERTS = {
    "CapReachedAlert": "alertCapReached",
    "NotRetryableAlert": "alertNotRetryable",
    "RerunRefusedAlert": "alertRerunRefused",
    "QuotaExhaustedAlert": "alertQuotaExhausted",
    "ConfigErrorAlert": "alertConfigError",
    "RetriesExhaustedAlert": "alertRetriesExhausted",
    "StormAlert": "alertStorm",
    "EventsMissingAlert": "alertEventsMissing",
}
# Together these take every ROS condition and Fn::If branch of the template.
SCENARIOS = {
    "custom-bus": {"eventSource": "custom-bus"},
    "custom-bus-with-dead-letter-queue": {"eventSource": "custom-bus", "deadLetterQueueArn": DEAD_LETTER_QUEUE},
    "default-bus": {"eventSource": "default-bus"},
    "alerts-to-dingtalk": {"alertChannel": "dingtalk"},
    "alerts-to-lark": {"alertChannel": "lark"},
    "alerts-to-wecom": {"alertChannel": "wecom"},
    "alerts-to-a-custom-webhook": {"alertChannel": "webhook"},
    "dataworks-actions-all": {"dataworksActions": "all"},
    "one-alert-through-an-action-policy": {
        **{switch: "false" for switch in ALERTS.values()},
        "alertQuotaExhausted": "true",
        "alertActionPolicyId": "dwrerun-oncall",
    },
}


def _statements(spec: dict) -> list[dict]:
    (policy,) = ros_template(spec)["Resources"]["FunctionRole"]["Properties"]["Policies"]
    return policy["PolicyDocument"]["Statement"]


def _resource_as_string(spec: dict) -> dict:
    _statements(spec)[0]["Resource"] = "*"
    return spec


def _join_as_resource(spec: dict) -> dict:
    statement = _statements(spec)[-1]
    (statement["Resource"],) = statement["Resource"]
    return spec


def _misspelt_property(spec: dict) -> dict:
    ros_template(spec)["Resources"]["Logstore"]["Properties"]["ShardsCount"] = 2
    return spec


def _missing_required_property(spec: dict) -> dict:
    del ros_template(spec)["Resources"]["FailureRule"]["Properties"]["FilterPattern"]
    return spec


def _parameter_named_like_a_resource(spec: dict) -> dict:
    # a Ref to a name that is both a parameter and a resource is ambiguous
    props = spec["resources"]["infra"]["props"]
    props["parameters"]["Logstore"] = props["parameters"].pop("LogstoreName")
    text = json.dumps(props["template"]).replace('{"Ref": "LogstoreName"}', '{"Ref": "Logstore"}')
    props["template"] = json.loads(text)
    props["template"]["Parameters"]["Logstore"] = props["template"]["Parameters"].pop("LogstoreName")
    return spec


MISTAKES = {
    "policy-resource-a-string": _resource_as_string,
    "policy-resource-a-join": _join_as_resource,
    "misspelt-property": _misspelt_property,
    "missing-required-property": _missing_required_property,
    "parameter-named-like-a-resource": _parameter_named_like_a_resource,
}


def _case(name: str, spec: dict, variables: dict) -> dict:
    rendered = render(spec, **variables)
    parameters = rendered["resources"]["infra"]["props"]["parameters"]
    return {"name": name, "template": ros_template(rendered), "parameters": {k: str(v) for k, v in parameters.items()}}


@pytest.fixture(scope="module")
def results() -> dict:
    """Every case checked in one run of the checker (starting jsii and Node once)."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the ROS CDK packages (jsii) need it")
    if not ROS_PYTHON.exists():
        pytest.skip(f"no {ROS_PYTHON}: `make test` installs requirements-ros.txt there (or set ROS_CDK_PYTHON)")
    cases = [_case(name, load(), variables) for name, variables in SCENARIOS.items()]
    cases += [_case(name, mistake(copy.deepcopy(load())), {}) for name, mistake in MISTAKES.items()]
    run = subprocess.run(
        [str(ROS_PYTHON), str(CHECKER)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_ros_resource_satisfies_the_ros_resource_specification(results, scenario):
    result = results[scenario]
    variables = {**load()["vars"], **SCENARIOS[scenario]}
    assert result["error"] is None, result["error"]
    built = result["resources"]
    expected = {"LogProject", "Logstore", "Index", "FunctionRole", "Dashboard"}
    expected |= {"FailureRule"} if variables["eventSource"] == "custom-bus" else set()
    expected |= {alert for alert, switch in ALERTS.items() if variables[switch] == "true"}
    assert set(built) == expected
    if "deadLetterQueueArn" in SCENARIOS[scenario]:
        (target,) = built["FailureRule"]["Targets"]
        assert target["DeadLetterQueue"] == {"Arn": {"Ref": "DeadLetterQueueArn"}}
    for alert in expected & set(ALERTS):
        configuration = built[alert]["Detail"]["Configuration"]
        # Version 2.0 alerts notify through an action policy only: NotificationList is 1.0's.
        assert "NotificationList" not in configuration
        policy = configuration["PolicyConfiguration"]
        if variables["alertActionPolicyId"]:
            expected_policy = {"Ref": "AlertActionPolicyId"}
        elif variables["alertChannel"] != "none":
            expected_policy = {"Fn::Join": ["-", [{"Ref": "NamePrefix"}, "alerts"]]}
        else:
            expected_policy = None
        assert policy.get("ActionPolicyId") == expected_policy


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        # RAM policy statements type Resource as a list: "*" and an Fn::Join (a string) both fail
        ("policy-resource-a-string", r"FunctionRole \(ALIYUN::RAM::Role\).*Key 'resource'.*not an array"),
        ("policy-resource-a-join", r"FunctionRole \(ALIYUN::RAM::Role\).*Key 'resource'.*not an array"),
        # the packages drop a key they do not know; the rendered properties then differ
        ("misspelt-property", r"Logstore: the specification dropped or changed a key"),
        ("missing-required-property", r"FailureRule .*filterPattern"),
        ("parameter-named-like-a-resource", r"already a Construct with name 'Logstore'"),
    ],
)
def test_a_template_that_breaks_the_specification_fails(results, mistake, message):
    error = results[mistake]["error"]
    assert error is not None, f"{mistake} was accepted"
    assert re.search(message, error, flags=re.S), error
