"""`make verify` against the local cloud: every link passes, and each broken link is named.

The local control plane (localcloud.controlplane) answers verify's calls the way EventBridge, FC
and SLS do on the wire (ACS3 signatures; SLS's own `LOG` signature), built from template.yml as
`s deploy` would make it; the event function runs in process and reads the DataWorks emulator
with its role's keys. Each test breaks one link and checks that verify names it and its fix.
"""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FUNCTION_DIR
from localcloud.acs3 import Credentials
from localcloud.controlplane import ControlPlane
from localcloud.dataworks import DataWorksEmulator
from localcloud.fc import FunctionCompute

ROOT = Path(__file__).resolve().parent.parent
ROLE = Credentials("STS.verifyrolekey01", "role-secret-do-not-log", "role-token-do-not-log")
SEED = ROOT / "scripts" / "localcloud" / "dataworks" / "seed.json"


def _script():
    loader = importlib.machinery.SourceFileLoader("verify_script", str(ROOT / "scripts" / "verify"))
    spec = importlib.util.spec_from_loader("verify_script", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["verify_script"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


VERIFY = _script()


def _template(**variables) -> dict:
    template = yaml.safe_load((ROOT / "template.yml").read_text(encoding="utf-8"))
    template = copy.deepcopy(template)
    template["vars"].update(variables)
    return template


class Cloud:
    def __init__(self, tmp_path: Path, template: dict):
        from demo import CREDENTIALS  # the deploying user's keys, locally

        self.user = CREDENTIALS
        self.tmp_path, self.template = tmp_path, template
        self.template_path = tmp_path / "template.yml"
        self.template_path.write_text(yaml.safe_dump(template), encoding="utf-8")
        self.logs = tmp_path / "logs"
        self.emu = DataWorksEmulator(credentials=[ROLE], port=0, seed=SEED)
        self.emu.__enter__()
        self.fn = FunctionCompute(
            handler="index.handle_event",
            code_dir=FUNCTION_DIR,  # src/ in mutmut's copy (conftest)
            function_name="dwrerun-event",
            env={"DATAWORKS_ENDPOINT": self.emu.url},
            credentials=ROLE,
            logstore=self.logs / "dwrerun-event.jsonl",
        )
        self.fn.__enter__()
        self.plane = ControlPlane.from_template(
            template, [self.user], logs=self.logs, functions={"dwrerun-event": self.fn}
        ).start()
        self.discovery = tmp_path / "cloud.json"
        self.plane.write_discovery(self.discovery)

    def verify(self, wait: float = 1) -> tuple[int, str]:
        out = io.StringIO()
        code = VERIFY.main(
            ["--local", "--discovery", str(self.discovery), "-t", str(self.template_path), "--wait", str(wait)], out=out
        )
        return code, out.getvalue()

    def close(self):
        self.plane.stop()
        self.fn.__exit__(None, None, None)
        self.emu.__exit__(None, None, None)


@pytest.fixture
def cloud(tmp_path):
    deployed = Cloud(tmp_path, _template(projectIds="48213"))
    yield deployed
    deployed.close()


def _line(output: str, number: int) -> str:
    (line,) = [x for x in output.splitlines() if x[2:].startswith(f"{number} ")]
    return line


def test_a_healthy_deployment_passes_every_link(cloud):
    code, output = cloud.verify()
    assert code == 0, output
    assert [line[0] for line in output.splitlines()] == ["✔"] * 4, output
    assert "dataworks:GetTaskInstance" in _line(output, 3) and "dataworks:ListTaskInstances" in _line(output, 3)
    # The verification read DataWorks and wrote nothing there.
    assert cloud.emu.journal.calls("RerunTaskInstances") == []
    assert {e.action for e in cloud.emu.journal.calls()} == {"GetTaskInstance", "ListTaskInstances"}
    # One kind: verify record, found by GetLogs.
    records = [r for r in cloud.fn.logstore_lines() if '"kind":"verify"' in r["message"]]
    assert len(records) == 1
    # and it says what the role read
    (record,) = [json.loads(r["message"]) for r in records]
    assert (record["success"], record["message"]) == (
        True,
        "the role read DataWorks: dataworks:GetTaskInstance, dataworks:ListTaskInstances",
    )


def test_no_key_token_or_secret_is_printed(cloud):
    cloud.emu.faults.set("GetTaskInstance", refuse=None)
    _, output = cloud.verify()
    for secret in (
        cloud.user.access_key_secret,
        cloud.user.security_token,
        ROLE.access_key_secret,
        ROLE.security_token,
    ):
        assert secret not in output
    for line in cloud.fn.logstore_lines():
        assert ROLE.access_key_secret not in line["message"] and ROLE.security_token not in line["message"]


# --- link 1 --------------------------------------------------------------------------------------


def test_link_1_names_async_task_mode_off(cloud):
    cloud.plane.fc.functions["dwrerun-event"].async_task = False
    code, output = cloud.verify()
    assert code == 1
    assert _line(output, 1).startswith("✘ 1 functions") and "async task mode is False" in _line(output, 1)
    assert "fix: run scripts/deploy" in output
    assert all(_line(output, n).startswith("✔") for n in (2, 3, 4)), output


def test_link_1_names_the_wrong_runtime_and_reserved_concurrency(cloud):
    cloud.plane.fc.functions["dwrerun-http"].runtime = "python3.9"
    cloud.plane.fc.functions["dwrerun-event"].reserved_concurrency = 50
    code, output = cloud.verify()
    assert code == 1
    assert "dwrerun-http runs python3.9" in _line(output, 1)
    assert "dwrerun-event reservedConcurrency is 50, template.yml says 9" in _line(output, 1)


def test_link_1_names_a_missing_function(cloud):
    del cloud.plane.fc.functions["dwrerun-http"]
    code, output = cloud.verify()
    assert code == 1 and "dwrerun-http FunctionNotFound" in _line(output, 1)


# --- link 2 --------------------------------------------------------------------------------------


def _rule(cloud):
    variables = cloud.template["vars"]
    return cloud.plane.eventbridge.rules[(variables["eventBusName"], variables["ruleName"])]


def test_link_2_names_a_disabled_rule(cloud):
    _rule(cloud)["Status"] = "DISABLE"
    code, output = cloud.verify()
    assert code == 1 and "is DISABLE" in _line(output, 2) and "enable it" in output
    assert _line(output, 1).startswith("✔") and _line(output, 3).startswith("✔")


def test_link_2_names_a_pattern_that_misses_the_failed_sample(cloud):
    _rule(cloud)["FilterPattern"] = {"source": ["acs.dataworks"], "data": {"status": [{"numeric": ["=", 6]}]}}
    code, output = cloud.verify()
    assert code == 1
    assert "does not match dataworks-instance-failed.json" in _line(output, 2)
    assert "matches dataworks-instance-succeeded.json" in _line(output, 2)


def test_link_2_names_an_undocumented_pattern(cloud):
    _rule(cloud)["FilterPattern"] = {"data": {"status": [5]}}  # a bare number: refused by the matcher
    code, output = cloud.verify()
    assert code == 1 and "EventPatternInvalid" in _line(output, 2)


def test_link_2_names_a_target_that_is_not_the_event_function(cloud):
    (target,) = _rule(cloud)["Targets"]
    target["Endpoint"] = target["Endpoint"].replace("dwrerun-event", "dwrerun-http")
    code, output = cloud.verify()
    assert code == 1 and "no target of rule dwrerun-instance-failed is the function dwrerun-event" in output


def test_link_2_names_a_missing_rule(tmp_path):
    deployed = Cloud(tmp_path, _template(eventBusName="another-bus"))
    try:
        deployed.plane.eventbridge.rules.clear()
        code, output = deployed.verify()
    finally:
        deployed.close()
    assert code == 1 and "EventRuleNotExisted" in _line(output, 2) and "vars.eventBusName" in output


# --- link 3 --------------------------------------------------------------------------------------


def test_link_3_names_the_ram_action_a_refused_read_needs(cloud):
    cloud.emu.faults.set("GetTaskInstance", refuse=None)  # 403 ResourceNotAuthorized.Api on every call
    code, output = cloud.verify()
    assert code == 1
    assert "dataworks:GetTaskInstance refused (ResourceNotAuthorized.Api)" in _line(output, 3)
    assert "grant dataworks:GetTaskInstance" in output and 'vars.dataworksActions to "all"' in output
    assert all(_line(output, n).startswith("✔") for n in (1, 2, 4)), output


def test_link_3_names_the_workspace_membership_a_refused_list_needs(cloud):
    cloud.emu.faults.set("ListTaskInstances", refuse=None)
    code, output = cloud.verify()
    assert code == 1 and "dataworks:ListTaskInstances refused" in _line(output, 3)


def test_link_3_names_a_record_that_never_reaches_sls(cloud):
    cloud.plane.sls.logs = cloud.tmp_path / "another-logstore"  # FC ships the lines elsewhere
    code, output = cloud.verify(wait=0)
    assert code == 1 and "is not in dwrerun-1877700012345678-cn-hangzhou/dwrerun after 0 s" in _line(output, 3)
    assert "log:PostLogStoreLogs" in output


def test_link_3_names_code_that_does_not_answer_verification(cloud):
    class Old:  # code deployed before the verification payload existed: it returns a summary
        def invoke(self, event):
            return cloud.fn.invoke(b'{"source": "acs.dataworks"}')

    cloud.plane.fc.functions["dwrerun-event"].target = Old()
    code, output = cloud.verify()
    assert code == 1 and "did not answer the verification" in _line(output, 3)


# --- link 4 --------------------------------------------------------------------------------------


def test_link_4_names_a_disabled_alert(cloud):
    cloud.plane.sls.alerts["dwrerun-cap-reached"]["state"] = "Disabled"
    code, output = cloud.verify()
    assert code == 1 and "alert dwrerun-cap-reached is Disabled" in _line(output, 4)


def test_link_4_names_a_missing_alert(cloud):
    del cloud.plane.sls.alerts["dwrerun-quota-exhausted"]
    code, output = cloud.verify()
    assert code == 1 and "alert dwrerun-quota-exhausted: JobNotExist" in _line(output, 4)


def test_link_4_names_an_action_policy_that_does_not_exist(tmp_path):
    deployed = Cloud(tmp_path, _template(alertChannel="dingtalk"))
    try:
        code, output = deployed.verify()
        assert code == 0, output
        assert "through action policy dwrerun-alerts" in _line(output, 4)
        del deployed.plane.sls.records[("sls.alert.action_policy", "dwrerun-alerts")]
        code, output = deployed.verify()
    finally:
        deployed.close()
    assert code == 1 and "action policy dwrerun-alerts: ResourceRecordNotExist" in _line(output, 4)
    assert "export DWRERUN_ALERT_WEBHOOK and run scripts/deploy" in output


def test_link_4_names_an_alert_without_the_action_policy(tmp_path):
    deployed = Cloud(tmp_path, _template(alertChannel="wecom"))
    try:
        deployed.plane.sls.alerts["dwrerun-config-error"]["configuration"]["policyConfiguration"].pop("actionPolicyId")
        code, output = deployed.verify()
    finally:
        deployed.close()
    assert code == 1 and "dwrerun-config-error names action policy none, expected dwrerun-alerts" in output


# --- scripts/deploy's action policy and webhook integration -----------------------------------

WEBHOOK = "https://oapi.dingtalk.example.invalid/robot/send?access_token=webhook-token-do-not-log"


def test_deploy_writes_the_action_policy_and_webhook_idempotently_and_never_shows_the_url(tmp_path, capsys):
    import json

    import deploy_alerts

    deployed = Cloud(tmp_path, _template(alertChannel="dingtalk"))
    try:
        deployed.plane.sls.records.clear()  # nothing written yet: verify names the missing policy
        assert deployed.verify()[0] == 1
        args = ["--local", "--discovery", str(deployed.discovery), "-t", str(deployed.template_path)]
        for expected in ("created", "updated"):  # a second deploy updates, never duplicates
            out = io.StringIO()
            assert deploy_alerts.main(args, out=out, environ={"DWRERUN_ALERT_WEBHOOK": WEBHOOK}) == 0
            assert out.getvalue().count(expected) == 2 and WEBHOOK not in out.getvalue()
        stored = deployed.plane.sls.records
        assert set(stored) == {
            ("sls.alert.action_webhook", "dwrerun-webhook"),
            ("sls.alert.action_policy", "dwrerun-alerts"),
        }
        webhook = json.loads(stored[("sls.alert.action_webhook", "dwrerun-webhook")]["value"])
        assert (webhook["type"], webhook["url"], webhook["method"]) == ("dingtalk", WEBHOOK, "POST")
        policy = json.loads(stored[("sls.alert.action_policy", "dwrerun-alerts")]["value"])
        assert policy["primary_policy_script"].startswith('fire(type="dingtalk", webhook_id="dwrerun-webhook"')
        code, output = deployed.verify()
        assert code == 0, output
    finally:
        deployed.close()
    captured = capsys.readouterr()
    assert "webhook-token-do-not-log" not in captured.out + captured.err


def test_deploy_refuses_a_channel_without_a_webhook_in_the_environment(tmp_path, capsys):
    import deploy_alerts

    path = tmp_path / "template.yml"
    path.write_text(yaml.safe_dump(_template(alertChannel="lark")), encoding="utf-8")
    assert deploy_alerts.main(["-t", str(path), "--local"], out=io.StringIO(), environ={}) == 2
    assert "export DWRERUN_ALERT_WEBHOOK" in capsys.readouterr().err


# --- the function side: dwrerun.verify ---------------------------------------------------------


def test_only_a_verification_payload_takes_the_verify_path():
    from dwrerun.verify import is_verify

    assert is_verify(b'{"dwrerunVerify": 1, "projectIds": [48213]}')
    for other in sorted((ROOT / "tests" / "events").glob("*.json")):
        assert not is_verify(other.read_bytes()), other.name
    for near in (b'{"dwrerunVerify": true}', b'{"dwrerunVerify": "1"}', b'["dwrerunVerify", 1]', b"dwrerunVerify"):
        assert not is_verify(near)


def test_a_refusal_names_the_ram_action_or_the_membership_and_nothing_else_is_a_refusal():
    from dwrerun.dataworks import DataWorksError
    from dwrerun.verify import refusal

    ram = DataWorksError("RerunTaskInstances", "Forbidden.RAM", "User not authorized", transient=False, status=403)
    assert "dataworks:RerunTaskInstances" in refusal("RerunTaskInstances", ram)
    member = DataWorksError(
        "ListTaskInstances", "Forbidden", "not a member of the workspace", transient=False, status=403
    )
    assert "to workspace 48213 as a member" in refusal("ListTaskInstances", member, 48213)
    throttled = DataWorksError("GetTaskInstance", "Throttling.User", "slow down", transient=True, status=429)
    assert refusal("GetTaskInstance", throttled) is None
