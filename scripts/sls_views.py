"""The SLS alert rules, dashboard charts and the functions' RAM policy, as template.yml defines
them: read, never rewritten.

template.yml is the one definition of the alerts and the dashboard. `make demo` (scripts/alerts.py)
and `make report` (scripts/report.py) evaluate what this module reads from it with the local SLS
(localcloud.sls): the same query strings, time ranges, grouping, conditions and annotations.

Reading needs what ROS would resolve: the stack's parameter values (the `infra` resource's
`parameters`, with `${vars.<name>}` (whole or embedded in text) and `${env('NAME', 'default')}`
taken as Serverless Devs takes them, or the parameter's Default) and the intrinsic functions the alerts and charts use (`Ref`
to a parameter, `Fn::Join`, `Fn::GetAtt` as the placeholder `<resource>.<attribute>`, and the
`Fn::Equals` / `Fn::Not` of a rule's Condition).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yml"

_VAR = re.compile(r"^\$\{vars\.(\w+)\}$")
_ENV = re.compile(r"^\$\{env\('(\w+)', '([^']*)'\)\}$")
_COLUMN = re.compile(r"\$\{([\w.]+)\}")


@dataclass(frozen=True)
class AlertRule:
    """One ALIYUN::SLS::Alert, resolved."""

    logical_id: str
    name: str  # Detail.Name
    title: str  # Detail.DisplayName
    switch: str  # the ROS parameter that turns it on (its `vars` switch, capitalised)
    enabled: bool
    query: str
    start: str
    end: str
    group_fields: tuple[str, ...]
    severity: int
    count_condition: str  # e.g. "__count__ > 0"
    annotations: dict[str, str] = field(default_factory=dict)  # key -> template with ${column}


@dataclass(frozen=True)
class Chart:
    """One chart of the ALIYUN::SLS::Dashboard, resolved."""

    title: str
    type: str  # line | number | table | pie
    query: str
    start: str
    end: str
    display: dict
    note: str = ""  # template.yml's comment above the chart: what it counts


@dataclass(frozen=True)
class Views:
    alerts: list[AlertRule]
    charts: list[Chart]
    json_key_indices: list[dict]  # the Logstore index on `message` (localcloud.sls.Index)
    parameters: dict[str, str]


def load(path: str | Path = TEMPLATE, **variables) -> Views:
    """The alerts, charts and index of template.yml, with `vars` overridden as given."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    infra = spec["resources"]["infra"]["props"]
    template = infra["template"]
    values = {**spec["vars"], **variables}
    parameters = {}
    for name, declared in template["Parameters"].items():
        passed = infra["parameters"].get(name)
        value = _serverless_devs_value(passed, values) if passed is not None else declared.get("Default")
        parameters[name] = "" if value is None else str(value)
    resolver = _Resolver(template, parameters)
    resources = template["Resources"]
    alerts = [
        _alert(logical_id, resource, resolver)
        for logical_id, resource in resources.items()
        if resource["Type"] == "ALIYUN::SLS::Alert"
    ]
    charts = []
    notes = _chart_notes(Path(path).read_text(encoding="utf-8"))
    for resource in resources.values():
        if resource["Type"] == "ALIYUN::SLS::Dashboard":
            for chart in resource["Properties"]["Charts"]:
                search = resolver.value(chart["search"])
                charts.append(
                    Chart(
                        chart["title"],
                        chart["type"],
                        search["query"],
                        search["start"],
                        search["end"],
                        chart["display"],
                        notes.get(chart["title"], ""),
                    )
                )
    (message,) = [k for k in resources["Index"]["Properties"]["KeyIndices"] if k["Name"] == "message"]
    return Views(alerts, charts, message["JsonKeyIndices"], parameters)


# How the policy names what only a deploy knows (ROS pseudo parameters).
_PSEUDO = {"ALIYUN::Region": "<region>", "ALIYUN::AccountId": "<account>"}


@dataclass(frozen=True)
class Statement:
    """One statement of the functions' role policy, resolved."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


def policy(path: str | Path = TEMPLATE, **variables) -> list[Statement]:
    """The statements of the role's inline policy (FunctionRole), with `vars` overridden as given:
    parameters take their values, the account and region stay `<account>` and `<region>`, and a
    resource's Name attribute is that resource's own Name."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    template = spec["resources"]["infra"]["props"]["template"]
    parameters = load(path, **variables).parameters
    resources = template["Resources"]

    def value(node):
        if isinstance(node, list):
            return [value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            return _PSEUDO.get(name) or parameters.get(name) or f"<{name}>"
        if set(node) == {"Fn::Join"}:
            delimiter, parts = node["Fn::Join"]
            return delimiter.join(str(value(p)) for p in parts)
        if set(node) == {"Fn::If"}:  # a condition of the template's, on the vars given
            condition, then, otherwise = node["Fn::If"]
            return value(then if holds(template["Conditions"][condition]) else otherwise)
        if set(node) == {"Fn::GetAtt"}:
            resource, attribute = node["Fn::GetAtt"]
            own = resources.get(resource, {}).get("Properties", {}).get(attribute)
            return value(own) if own is not None else f"<{resource}.{attribute}>"
        return {k: value(v) for k, v in node.items()}

    def holds(condition) -> bool:
        ((function, arguments),) = condition.items()
        if function == "Fn::Equals":
            return value(arguments[0]) == value(arguments[1])
        if function == "Fn::Not":
            return not holds(arguments[0])
        if function in ("Fn::And", "Fn::Or"):
            results = [holds(a) for a in arguments]
            return all(results) if function == "Fn::And" else any(results)
        if set(condition) == {"Condition"}:
            return holds(template["Conditions"][condition["Condition"]])
        raise ValueError(f"a condition sls_views cannot evaluate: {condition}")

    (role,) = [r for r in resources.values() if r["Type"] == "ALIYUN::RAM::Role"]
    (document,) = [p["PolicyDocument"] for p in role["Properties"]["Policies"]]
    statements = []
    for raw in document["Statement"]:
        resolved = value(raw)
        actions, targets = resolved["Action"], resolved["Resource"]
        statements.append(
            Statement(
                resolved["Effect"],
                tuple([actions] if isinstance(actions, str) else actions),
                tuple([targets] if isinstance(targets, str) else targets),
            )
        )
    return statements


def policy_text(statements: list[Statement]) -> str:
    """The policy as docs/deploy.md shows it: one line per statement, its actions, then its resources."""
    return "\n".join(
        f"{'' if s.effect == 'Allow' else s.effect + ' '}{', '.join(s.actions)}\n    on  {', '.join(s.resources)}"
        for s in statements
    )


def _chart_notes(text: str) -> dict[str, str]:
    """Each chart's title -> the comment lines right above its `- title:` line, joined."""
    notes, comment = {}, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        title = re.match(r"- title: (.+)$", stripped)
        if title and comment:
            notes[title.group(1).strip().strip("\"'")] = " ".join(comment)
        comment = []
    return notes


def annotate(text: str, row: dict) -> str:
    """An annotation with each `${column}` replaced by the row's value (an unknown one is kept)."""

    def value(match):
        key = match.group(1)
        return str(row[key]) if key in row and row[key] is not None else match.group(0)

    return _COLUMN.sub(value, text)


def _serverless_devs_value(value, variables: dict):
    """A `parameters` value after Serverless Devs' substitution (the forms template.yml uses)."""
    if not isinstance(value, str):
        return value
    var = _VAR.match(value)
    if var:
        return _serverless_devs_value(variables[var.group(1)], variables)
    env = _ENV.match(value)
    if env:
        return os.environ.get(env.group(1), env.group(2))
    # Embedded in text, each ${vars.<name>} becomes text.
    value = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(_serverless_devs_value(variables[m.group(1)], variables)), value)
    if "${" in value:
        raise ValueError(f"template.yml passes {value!r} to ROS, which this reader cannot evaluate")
    return value


def _alert(logical_id: str, resource: dict, resolver: _Resolver) -> AlertRule:
    detail = resolver.value(resource["Properties"]["Detail"])
    configuration = detail["Configuration"]
    (item,) = configuration["QueryList"]
    (severity,) = configuration["SeverityConfigurations"]
    condition = resource.get("Condition")
    switch = resolver.template["Conditions"][condition]["Fn::Equals"][0]["Ref"] if condition else ""
    return AlertRule(
        logical_id=logical_id,
        name=detail["Name"],
        title=detail["DisplayName"],
        switch=switch,
        enabled=resolver.condition(condition) if condition else True,
        query=item["Query"],
        start=item["Start"],
        end=item["End"],
        group_fields=tuple(configuration["GroupConfiguration"]["Fields"]),
        severity=severity["Severity"],
        count_condition=severity["EvalCondition"]["CountCondition"],
        annotations={a["Key"]: a["Value"] for a in configuration["Annotations"]},
    )


class _Resolver:
    """ROS's intrinsic functions, as far as the alerts and charts use them."""

    def __init__(self, template: dict, parameters: dict[str, str]):
        self.template = template
        self.parameters = parameters

    def value(self, node):
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            if name in self.parameters:
                return self.parameters[name]
            return f"<{name}>"  # a pseudo parameter or a resource: known at deploy time only
        if set(node) == {"Fn::Join"}:
            delimiter, parts = node["Fn::Join"]
            return delimiter.join(str(self.value(p)) for p in parts)
        if set(node) == {"Fn::GetAtt"}:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{resource}.{attribute}>"
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return self.value(when_true if self.condition(condition) else when_false)
        return {k: self.value(v) for k, v in node.items()}

    def condition(self, name: str) -> bool:
        return self._holds(self.template["Conditions"][name])

    def _holds(self, expression: dict) -> bool:
        ((function, args),) = expression.items()
        if function == "Fn::Equals":
            return self.value(args[0]) == self.value(args[1])
        if function == "Fn::Not":
            return not self._holds(args[0])
        raise ValueError(f"condition function {function} is not handled here")
