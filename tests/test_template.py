"""template.yml: what Serverless Devs deploys is valid, least-privilege and wired to the right events.

The template is read the way the CLI reads it: YAML first, then `${...}` substituted (see
`render`). The optional last test compares `render` with the real CLI's `s preview` when `s` is
installed (it runs offline); CI does not need it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dwrerun import config, records, schema
from dwrerun.dataworks import ACTIONS
from dwrerun.function_compute import ACTIONS as INVOKE_ACTIONS
from dwrerun.function_compute import STORM_ACTIONS
from dwrerun.outcome import Origin, Outcome
from localcloud.eventbridge import matches

FC_ACTIONS = INVOKE_ACTIONS + STORM_ACTIONS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yml"
SIZING = ROOT / "docs" / "sizing.md"
SHARED = ROOT.parent / "shared"
SCHEMA = SHARED / "fc3" / "schema.json"
SAMPLES = SHARED / "samples"
FUNCTIONS = ("event", "http")
FAILURE_SAMPLES = {"dataworks-instance-failed.json", "dataworks-instance-failed-frozen.json"}
SLS_WRITE = "log:PostLogStoreLogs"

_WHOLE = re.compile(r"^\$\{([^{}]+)\}$")
_EMBEDDED = re.compile(r"\$\{([^{}]+)\}")
# The one conditional the template uses: ${(vars.a == 'x') ? vars.b : vars.c} (or `: []`)
_CONDITION = re.compile(r"^\(vars\.(\w+) == '([^']*)'\) \? vars\.(\w+) : (?:vars\.(\w+)|\[\])$")
# The deploying shell's environment, with a default: ${env('NAME', '')} (without one, `s` fails
# when NAME is unset; both seen with @serverless-devs/s 3.1.10 `s preview`).
_ENV = re.compile(r"^env\('(\w+)', '([^']*)'\)$")


def load() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def render(spec: dict, **overrides) -> dict:
    """The template after Serverless Devs' substitution, with `vars` overridden as given.

    A value that is a whole `${...}` keeps its type (a number stays a number, a list a list), as
    the CLI does; one embedded in text becomes text. `${resources.X.output.K}` is only known at
    deploy time: it becomes the placeholder string "resources.X.output.K".
    """
    spec = copy.deepcopy(spec)
    variables = {**spec["vars"], **overrides}

    def evaluate(expression: str):
        env = _ENV.match(expression)
        if env:
            return os.environ.get(env.group(1), env.group(2))
        condition = _CONDITION.match(expression)
        if condition:
            name, literal, chosen, otherwise = condition.groups()
            if variables[name] == literal:
                return resolve(variables[chosen])
            return resolve(variables[otherwise]) if otherwise else []
        if expression.startswith("vars."):
            value = variables
            for key in expression.split(".")[1:]:
                value = value[key]
            return resolve(value)
        if expression.startswith("resources."):
            return expression
        raise AssertionError(f"template.yml uses ${{{expression}}}, which this test cannot evaluate")

    def resolve(value):
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str):
            whole = _WHOLE.match(value)
            if whole:
                return evaluate(whole.group(1))
            return _EMBEDDED.sub(lambda m: str(evaluate(m.group(1))), value)
        return value

    spec["vars"] = variables
    spec["resources"] = resolve(spec["resources"])
    return spec


def props(spec: dict, name: str) -> dict:
    return spec["resources"][name]["props"]


def ros_template(spec: dict) -> dict:
    (infra,) = [r for r in spec["resources"].values() if r["component"] == "ros"]
    return infra["props"]["template"]


def role_statements(spec: dict, dataworks_actions: str = "listed") -> list[dict]:
    """The role's policy statements as ROS resolves them for vars.dataworksActions."""
    role = ros_template(spec)["Resources"]["FunctionRole"]["Properties"]
    (policy,) = role["Policies"]
    resolved = []
    for statement in policy["PolicyDocument"]["Statement"]:
        action = statement["Action"]
        if isinstance(action, dict) and "Fn::If" in action:
            condition, when_all, when_listed = action["Fn::If"]
            assert condition == "GrantAllDataWorks"
            action = when_all if dataworks_actions == "all" else when_listed
        resolved.append({**statement, "Action": action})
    return resolved


def test_template_is_serverless_devs_3_with_a_ros_stack_and_two_fc3_functions():
    spec = load()
    assert spec["edition"] == "3.0.0"
    components = {name: r["component"] for name, r in spec["resources"].items()}
    assert components == {"infra": "ros", "event": "fc3", "http": "fc3"}


@pytest.mark.parametrize("event_source", ["custom-bus", "default-bus"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_props_are_valid_against_the_fc3_schema(name, event_source):
    if not SCHEMA.exists():
        pytest.skip(f"no fc3 schema at {SCHEMA} (the shared folder beside the repository is absent)")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(props(render(load(), eventSource=event_source), name), schema)


def test_both_functions_share_one_code_package_and_run_on_a_supported_python():
    spec = render(load())
    for name in FUNCTIONS:
        assert props(spec, name)["code"] == "./build/code"
        assert props(spec, name)["runtime"] in ("python3.10", "python3.12")
    assert props(spec, "event")["handler"] == "index.handle_event"
    assert props(spec, "http")["handler"] == "index.handle_http"


def test_http_function_has_exactly_one_trigger_an_authenticated_http_trigger():
    (trigger,) = props(render(load()), "http")["triggers"]
    assert trigger["triggerType"] == "http"
    assert trigger["triggerConfig"]["authType"] == "function"
    assert sorted(trigger["triggerConfig"]["methods"]) == ["GET", "POST"]


def test_no_setting_of_the_template_makes_the_http_trigger_anonymous():
    assert "anonymous" not in TEMPLATE.read_text()


@pytest.mark.parametrize("event_source", ["custom-bus", "default-bus"])
def test_event_function_has_no_http_trigger(event_source):
    triggers = props(render(load(), eventSource=event_source), "event")["triggers"]
    assert all(t["triggerType"] != "http" for t in triggers)


def test_event_source_picks_either_the_custom_bus_rule_or_the_fc_trigger():
    # GIVEN the rule on the custom bus exists only under the ROS condition UseCustomBus
    spec = load()
    template = ros_template(spec)
    assert template["Resources"]["FailureRule"]["Condition"] == "UseCustomBus"
    assert template["Conditions"]["UseCustomBus"] == {"Fn::Equals": [{"Ref": "EventSource"}, "custom-bus"]}
    # THEN custom-bus (and polling mode, none): only the sweep's timer; default-bus: FC's eventbridge trigger too
    for source in ("custom-bus", "none"):
        assert [t["triggerType"] for t in props(render(spec, eventSource=source), "event")["triggers"]] == ["timer"]
    (trigger, _timer) = props(render(spec, eventSource="default-bus"), "event")["triggers"]
    assert trigger["triggerType"] == "eventbridge"
    config_ = trigger["triggerConfig"]
    assert config_["eventSourceConfig"]["eventSourceType"] == "Default"
    assert config_["eventSinkConfig"]["deliveryOption"]["eventSchema"] == "CloudEvents"
    assert props(render(spec), "infra")["parameters"]["EventSource"] == spec["vars"]["eventSource"]


def test_default_bus_trigger_invokes_the_event_function_asynchronously():
    # On an FC 3.0 eventbridge trigger, asyncInvocationType false means asynchronous (the current
    # FC 3.0 trigger page and the fc20230330 SDK's model docs; older pages said the opposite).
    # Asynchronous is what lets FC queue the events and retry a raising handler.
    (trigger, _timer) = props(render(load(), eventSource="default-bus"), "event")["triggers"]
    assert trigger["triggerConfig"]["asyncInvocationType"] is False


def test_fc_trigger_and_custom_bus_rule_filter_the_same_events():
    spec = render(load(), eventSource="default-bus")
    (trigger, _timer) = props(spec, "event")["triggers"]
    rule = ros_template(spec)["Resources"]["FailureRule"]["Properties"]
    assert json.loads(trigger["triggerConfig"]["eventRuleFilterPattern"]) == rule["FilterPattern"]


@pytest.mark.parametrize("event_source", ["custom-bus", "default-bus", "none"])
def test_the_sweeps_timer_trigger_invokes_the_event_function_with_its_payload(event_source):
    from dwrerun import sweep

    spec = render(load(), eventSource=event_source)
    (timer,) = [t for t in props(spec, "event")["triggers"] if t["triggerType"] == "timer"]
    assert timer["triggerConfig"] == {"cronExpression": "@every 10m", "enable": True, "payload": sweep.PAYLOAD}
    off = render(load(), eventSource=event_source, sweepEnabled=False)
    (timer,) = [t for t in props(off, "event")["triggers"] if t["triggerType"] == "timer"]
    assert timer["triggerConfig"]["enable"] is False
    # Polling mode makes no EventBridge rule: the rule exists only under UseCustomBus.
    assert props(spec, "infra")["parameters"]["EventSource"] == event_source


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_is_exactly_the_user_variables(name):
    environment = props(render(load()), name)["environmentVariables"]
    assert set(environment) == set(config.USER_VARIABLES)
    assert not [k for k in environment if k.startswith(("FC_", "ALIBABA_CLOUD_"))]
    assert all(isinstance(v, str) for v in environment.values()), "FC takes strings only"


def test_default_settings_are_ones_the_function_accepts_and_match_the_codes_defaults():
    # One set of defaults: docs/configuration.md describes both (tests/test_docs.py checks it). But
    # the template ships dryRun "true", so that a first deploy reruns nothing
    # (tests/test_safe_by_default.py), while the code's default stays a live run; and it sets each
    # function's own QPS limits, its share of the quota (the sizing tests below).
    for name in FUNCTIONS:
        settings = config.Settings.from_env(props(render(load()), name)["environmentVariables"])
        rates = {"read_qps": settings.read_qps, "write_qps": settings.write_qps}
        assert settings == dataclasses.replace(config.Settings(), dry_run=True, **rates), name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_serves_one_invocation_per_instance(name):
    # FC 3.0's standard runtimes have no instance concurrency: the sizing counts one invocation,
    # and one limiter, per instance.
    assert props(render(load()), name)["instanceConcurrency"] == 1


def test_no_instance_concurrency_above_one_anywhere_in_the_template():
    values = re.findall(r"instanceConcurrency:\s*(\S+)", TEMPLATE.read_text())
    assert values and set(values) == {"1"}


ENTERPRISE = {"read": 50.0, "write": 20.0}  # DataWorks' quota per account and region (docs/sizing.md)
HEADROOM = 0.9  # the deployment uses at most this share of it
RATE_VARS = {"read": config.DATAWORKS_READ_QPS, "write": config.DATAWORKS_WRITE_QPS}


def _sizing_table() -> dict[str, dict]:
    """docs/sizing.md: its table, by edition."""
    section = SIZING.read_text()
    lines = section.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("| "))
    end = next((n for n in range(start, len(lines)) if not lines[n].startswith("|")), len(lines))
    rows = [line.strip("|").split("|") for line in lines[start:end] if line.startswith("| ")]  # the first table
    header = [cell.strip().strip("`") for cell in rows[0]]
    table = {}
    for row in rows[1:]:
        cells = dict(zip(header, (cell.strip() for cell in row), strict=True))
        table[cells["edition"]] = {
            "quota": [float(n) for n in re.findall(r"[\d.]+", cells["quota"])],
            "instances": {name: int(cells[f"{name}ReservedConcurrency"]) for name in FUNCTIONS},
            "rates": {
                name: {kind: float(cells[f"{name}{kind.title()}Qps"]) for kind in RATE_VARS} for name in FUNCTIONS
            },
            "total": [float(n) for n in re.findall(r"[\d.]+", cells["whole deployment at most"])],
        }
    return table


def _deployed(spec: dict) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """(instances, per-instance rates) of each function as the template deploys them."""
    instances = {name: props(spec, name)["concurrencyConfig"]["reservedConcurrency"] for name in FUNCTIONS}
    environment = {name: props(spec, name)["environmentVariables"] for name in FUNCTIONS}
    rates = {name: {kind: float(environment[name][var]) for kind, var in RATE_VARS.items()} for name in FUNCTIONS}
    return instances, rates


def test_each_functions_rates_times_its_instances_stay_within_90_percent_of_the_quota():
    # GIVEN the template as deployed: each function with its own reservedConcurrency and QPS limits
    instances, rates = _deployed(render(load()))
    # THEN, for reads and writes separately, the sum over both functions of instances x per-instance
    # rate stays within 90% of Enterprise's quota: the most the whole deployment can call
    for kind, quota in ENTERPRISE.items():
        used = sum(instances[name] * rates[name][kind] for name in FUNCTIONS)
        assert used <= HEADROOM * quota + 1e-9, f"{kind}: {used}/s of {quota}/s"
    # AND the event function, which bursts, has the bigger write share per instance
    assert rates["event"]["write"] > rates["http"]["write"]


def test_a_setting_over_the_quota_fails_the_sizing_check():
    # The check above is arithmetic on the rendered template: one more write per second for the
    # http instance takes the deployment past 18 writes/s.
    spec = load()
    instances, rates = _deployed(render(spec, httpWriteQps=str(float(spec["vars"]["httpWriteQps"]) + 1)))
    assert sum(instances[name] * rates[name]["write"] for name in FUNCTIONS) > HEADROOM * ENTERPRISE["write"]


def test_the_codes_default_rates_are_safe_whichever_function_runs_them():
    # A function deployed without the QPS variables runs at the code's defaults: the deployment stays
    # within the quota even if every instance of both functions did.
    instances, _ = _deployed(render(load()))
    count = sum(instances.values())
    defaults = config.Settings()
    assert count * defaults.read_qps <= HEADROOM * ENTERPRISE["read"] + 1e-9
    assert count * defaults.write_qps <= HEADROOM * ENTERPRISE["write"] + 1e-9


def test_quota_sizing_is_the_same_in_the_template_and_the_readme_and_within_90_percent():
    # GIVEN the defaults two places state: template vars and docs/sizing.md
    spec = render(load())
    instances, rates = _deployed(spec)
    table = _sizing_table()
    (default,) = [row for edition, row in table.items() if "the defaults" in edition]
    # THEN they agree, function by function
    assert default["instances"] == instances
    assert default["rates"] == rates
    # AND every row keeps the sum over both functions of instances x rate within 90% of its quota
    for edition, row in table.items():
        count, rate = row["instances"], row["rates"]
        if len(row["quota"]) == 2:  # reads and writes metered apart (Enterprise: 50 and 20)
            expected = [sum(count[name] * rate[name][kind] for name in FUNCTIONS) for kind in RATE_VARS]
        else:  # one limit for both kinds of call (5 calls/s)
            expected = [sum(count[name] * (rate[name]["read"] + rate[name]["write"]) for name in FUNCTIONS)]
        assert all(used <= HEADROOM * quota + 1e-9 for used, quota in zip(expected, row["quota"], strict=True)), edition
        assert row["total"] == pytest.approx(expected), f"{edition}: the stated total is not the arithmetic"
    assert [50, 20] in [row["quota"] for row in table.values()] and [5] in [row["quota"] for row in table.values()]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_run_with_the_stack_role_and_log_to_its_logstore(name):
    spec = render(load())
    function = props(spec, name)
    assert function["role"] == "resources.infra.output.RoleArn"
    assert function["logConfig"]["project"] == "resources.infra.output.LogProject"
    assert function["logConfig"]["logstore"] == "resources.infra.output.Logstore"
    assert set(ros_template(spec)["Outputs"]) >= {"RoleArn", "LogProject", "Logstore"}


def test_role_is_assumed_by_function_compute_only():
    role = ros_template(load())["Resources"]["FunctionRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"Service": ["fc.aliyuncs.com"]}


def test_role_policy_grants_exactly_the_dataworks_actions_the_code_calls_and_sls_write():
    statements = role_statements(load())
    assert all(s["Effect"] == "Allow" for s in statements)
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {f"dataworks:{a}" for a in ACTIONS} | {f"fc:{a}" for a in FC_ACTIONS} | {SLS_WRITE}


def test_dataworks_actions_all_grants_dataworks_star_and_nothing_else_changes():
    spec = load()
    assert spec["vars"]["dataworksActions"] == "listed"  # least privilege by default
    conditions = ros_template(spec)["Conditions"]
    assert conditions["GrantAllDataWorks"] == {"Fn::Equals": [{"Ref": "DataWorksActions"}, "all"]}
    widened = {a for s in role_statements(spec, "all") for a in s["Action"]}
    assert widened == {"dataworks:*"} | {f"fc:{a}" for a in FC_ACTIONS} | {SLS_WRITE}


def test_the_storm_guards_reads_of_async_tasks_are_granted_on_all_resources_as_fc_authorises_them():
    (statement,) = [s for s in role_statements(load()) if "fc:ListAsyncTasks" in s["Action"]]
    assert statement["Action"] == [f"fc:{a}" for a in STORM_ACTIONS] and statement["Resource"] == ["*"]


def test_invoke_function_is_granted_on_the_event_function_alone_as_a_list():
    spec = render(load())
    (fc,) = [s for s in role_statements(load()) if "fc:InvokeFunction" in s["Action"]]
    assert isinstance(fc["Resource"], list) and len(fc["Resource"]) == 1  # never "*"
    parts = fc["Resource"][0]["Fn::Join"][1]
    assert parts[0] == "acs:fc:" and parts[-2:] == [":functions/", {"Ref": "EventFunctionName"}]
    assert props(spec, "infra")["parameters"]["EventFunctionName"] == props(spec, "event")["functionName"]


def test_the_event_function_has_async_task_mode_on():
    # FC refuses a repeated x-fc-async-task-id with 409 only in async task mode.
    spec = render(load())
    assert props(spec, "event")["asyncInvokeConfig"]["asyncTask"] is True


def test_every_policy_statement_gives_action_and_resource_as_lists():
    # ROS types a RAM policy statement's Action and Resource as lists: a bare string is refused
    # (tests/test_ros_spec.py checks the same against the ROS resource specification).
    for statement in role_statements(load()):
        assert isinstance(statement["Action"], list)
        assert isinstance(statement["Resource"], list)


def test_sls_write_is_scoped_to_the_functions_logstore():
    (sls,) = [s for s in role_statements(load()) if SLS_WRITE in s["Action"]]
    (arn,) = sls["Resource"]
    parts = arn["Fn::Join"][1]
    assert parts[0] == "acs:log:"
    assert {"Ref": "ALIYUN::Region"} in parts and {"Ref": "ALIYUN::AccountId"} in parts
    assert parts[-2:] == ["/logstore/", {"Ref": "LogstoreName"}]


def test_inline_ros_template_holds_no_serverless_devs_expression():
    # Serverless Devs evaluates every ${...} in the YAML, inside the ROS template too (an Fn::Sub
    # with ${ALIYUN::Region} breaks every command), so the template takes its values as ROS
    # parameters and builds ARNs with Fn::Join: it needs no ${...} at all.
    spec = load()
    assert "${" not in json.dumps(ros_template(spec))
    assert "Fn::Sub" not in json.dumps(ros_template(spec))


def test_ros_parameters_passed_are_exactly_the_ones_declared():
    spec = render(load())
    declared = ros_template(spec)["Parameters"]
    passed = props(spec, "infra")["parameters"]
    assert set(passed) == set(declared)
    # ROS parameter values travel as text. One is a number on purpose: vars.asyncRetries, which fc3
    # needs as a number too. The ros component hands each value to CreateStack's ParameterValue and
    # the OpenAPI client flattens the query with toString() (devsapp/ros src/impl/ros.ts;
    # darabonba-openapi-util ts/src/client.ts, query/flatMap), so 3 arrives as "3".
    numbers = {"AsyncRetries"}
    assert all(isinstance(v, str) for k, v in passed.items() if k not in numbers), "ROS parameter values are text"
    assert all(
        isinstance(passed[k], int) and re.fullmatch(declared[k]["AllowedPattern"], str(passed[k])) for k in numbers
    )
    assert passed["AsyncRetries"] == props(spec, "event")["asyncInvokeConfig"]["maxAsyncRetryAttempts"]
    assert passed["EventFunctionName"] == props(spec, "event")["functionName"]
    assert passed["LogRetentionDays"].isdigit()


def test_ros_references_name_parameters_resources_or_pseudo_parameters():
    template = ros_template(load())
    known = set(template["Parameters"]) | set(template["Resources"])

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref":
                    yield value
                elif key == "Fn::GetAtt":
                    yield value[0]
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    unknown = {r for r in refs(template) if r not in known and not r.startswith("ALIYUN::")}
    assert not unknown


def test_logstore_index_covers_the_record_fields():
    index = ros_template(load())["Resources"]["Index"]["Properties"]
    (message,) = [k for k in index["KeyIndices"] if k["Name"] == "message"]
    assert message["Type"] == "json"
    types = {k["Name"]: k["Type"] for k in message["JsonKeyIndices"]}
    for field in ("instanceId", "runNumber", "projectId", "taskId"):
        assert types[field] == "long"
    for field in ("decision", "success", "message", "trigger", "requestId", "eventId", "taskName"):
        assert types[field] == "text"
    assert types["errorCode"] == types["kind"] == "text"
    assert types["rule"] == types["failureClass"] == types["matchedLine"] == "text"
    assert set(types.values()) <= {"text", "long", "double"}  # what SLS json keys support
    aliases = [k["Alias"] for k in message["JsonKeyIndices"] if "Alias" in k]
    assert len(aliases) == len(set(aliases))
    assert not {"message", "functionName"} & set(aliases), "an alias may not shadow a field of the entry"


def test_every_record_field_the_code_writes_is_indexed():
    index = ros_template(load())["Resources"]["Index"]["Properties"]
    (message,) = [k for k in index["KeyIndices"] if k["Name"] == "message"]
    indexed = {k["Name"] for k in message["JsonKeyIndices"]}
    outcome, origin = Outcome(1, schema.RERUN, schema.Reason.ELIGIBLE, "", True), Origin(schema.HTTP, "")
    instance = records.instance_record(outcome, origin)
    summary = records.summary_record(origin, [outcome], 1.0, dryRunMode=False, outcome="done")
    assert set(instance) - indexed == set()
    assert set(summary) - indexed == set()


def test_rule_targets_the_event_function_asynchronously():
    rule = ros_template(load())["Resources"]["FailureRule"]["Properties"]
    (target,) = rule["Targets"]
    assert target["Type"] == "acs.fc.function"
    assert target["Endpoint"]["Fn::Join"][1][-2:] == [":functions/", {"Ref": "EventFunctionName"}]
    params = {p["ResourceKey"]: p for p in target["ParamList"]}
    assert params["InvocationType"]["Value"] == "Async"
    assert params["Body"]["Form"] == "ORIGINAL"
    # DataFormat is a required FC-target parameter (EventBridge's event-target page): Object
    # delivers each event as one JSON object, the shape the function parses.
    assert params["DataFormat"] == {"ResourceKey": "DataFormat", "Form": "CONSTANT", "Value": "Object"}
    assert target["PushRetryStrategy"] == {"Ref": "PushRetryStrategy"}
    assert isinstance(rule["FilterPattern"], dict), "ROS wants the pattern as an object"


def _samples() -> list[Path]:
    if not SAMPLES.is_dir():
        pytest.skip(f"no samples at {SAMPLES} (the shared folder beside the repository is absent)")
    return sorted(SAMPLES.glob("*.json"))


def test_rule_matches_both_failure_samples_and_no_other_sample():
    pattern = ros_template(load())["Resources"]["FailureRule"]["Properties"]["FilterPattern"]
    samples = _samples()
    matched = {p.name for p in samples if matches(pattern, json.loads(p.read_text()))}
    assert matched == FAILURE_SAMPLES
    assert len(samples) > len(FAILURE_SAMPLES)


S_CLI = shutil.which("s")


@pytest.mark.skipif(S_CLI is None, reason="the Serverless Devs CLI `s` is not installed (optional)")
@pytest.mark.parametrize("event_source", ["custom-bus", "default-bus"])
def test_render_agrees_with_the_serverless_devs_cli(tmp_path, event_source):
    # GIVEN the template with eventSource set, rendered offline by `s preview`
    text = TEMPLATE.read_text().replace("  eventSource: custom-bus", f"  eventSource: {event_source}", 1)
    (tmp_path / "template.yml").write_text(text)
    env = {**os.environ, "serverless_devs_config_home": str(tmp_path)}
    result = subprocess.run(
        [S_CLI, "preview", "-t", "template.yml", "-o", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout[result.stdout.index("{") :])["resources"]
    # THEN it equals this test's rendering (the CLI leaves resource outputs as written)
    cli = json.loads(re.sub(r'"\$\{(resources\.[^"{}]+)\}"', r'"\1"', json.dumps(cli)))
    assert cli == render(load(), eventSource=event_source)["resources"]
