"""Build an inline ROS template's resources with the official ROS CDK packages (a checker script).

Run by tests/test_ros_spec.py with the interpreter of .venv/ros, where requirements-ros.txt is
installed (the packages cannot share the main environment: see that file). It reads a JSON list
of cases `{"name", "template", "parameters"}` on stdin and prints, per name,
`{"resources": {logical id: rendered Properties}, "error": null | "what is wrong"}`.

The packages (jsii over Node) carry every resource type's property specification:

- jsii checks each property's type as a resource is built (string, number, boolean, list,
  object, the nested structs, required keys), so a statement's `Resource: "*"` fails as ROS
  would refuse it;
- rendering the stack runs the packages' validators (lengths, ranges, required properties);
- the rendered Properties must equal the template's: the packages drop a key their
  specification does not know, so a misspelt or invented property fails too.

Not checkable offline: the type of an `Fn::GetAtt` value (only that the resource type has that
attribute), and what ROS resolves at deploy time (account, region, an existing bus).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

# jsii prints a banner on every start while the machine's Node is past its end of life; this
# value is the acknowledgement jsii asks for, and only silences that banner.
os.environ.setdefault(
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION",
    "Node14 is now end of life (EOL) as of April 30, 2023. Support of EOL runtimes are only guaranteed "
    "for 30 days after EOL. By silencing this warning you acknowledge that you are using an EOL version "
    "of Node and will upgrade to a supported version as soon as possible.",
)

import ros_cdk_core as core  # noqa: E402 (after the environment jsii reads at start)
import ros_cdk_eventbridge  # noqa: E402
import ros_cdk_ram  # noqa: E402
import ros_cdk_sls  # noqa: E402

MODULES = (ros_cdk_ram, ros_cdk_sls, ros_cdk_eventbridge)

# In the packages' generated code each ROS property is rendered from its JavaScript name:
#   'RoleName': ros.stringToRosTemplate(properties.roleName),   'Id': ...(properties.identity)
_RENDERED_FROM = re.compile(r"'(\w+)': [\w.]+(?:\([\w.]*\))?\(properties\.(\w+)\)")


def resource_classes() -> dict[str, type]:
    """ROS type name (ALIYUN::RAM::Role) -> its class (ros_cdk_ram.RosRole)."""
    classes = {}
    for module in MODULES:
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.startswith("Ros") and issubclass(cls, core.RosResource) and cls is not core.RosResource:
                classes[cls.ROS_RESOURCE_TYPE_NAME] = cls
    return classes


def property_names() -> dict[str, str]:
    """ROS property name -> the packages' name for it (RoleName -> roleName, TTL -> ttl, Id -> identity)."""
    names: dict[str, set[str]] = {}
    for module in MODULES:
        (bundle,) = (Path(module.__file__).parent / "_jsii").glob("*.jsii.tgz")
        with tarfile.open(bundle) as archive:
            for member in archive.getmembers():
                if member.name.endswith(".generated.js"):
                    code = archive.extractfile(member).read().decode()
                    for ros_name, js_name in _RENDERED_FROM.findall(code):
                        names.setdefault(ros_name, set()).add(js_name)
    ambiguous = {k: v for k, v in names.items() if len(v) > 1}
    if ambiguous:
        raise RuntimeError(f"ROS property names rendered from several names: {ambiguous}")
    return {k: v.pop() for k, v in names.items()}


def snake(key: str) -> str:
    """AccountId -> account_id, LogstoreName -> logstore_name (the Python names of attributes)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key[:1].lower() + key[1:]).lower()


class TemplateError(Exception):
    """The template breaks the specification, or uses something this checker cannot evaluate."""


class _NoValue:
    """ALIYUN::NoValue: the property is left out."""


NO_VALUE = _NoValue()


class Stack:
    """One ROS stack built from an inline template for one set of parameter values."""

    def __init__(self, template: dict, parameters: dict[str, str], classes: dict, names: dict, outdir: str):
        self.template = template
        self.classes = classes
        self.names = names
        self.values = {name: self._parameter_value(name, parameters) for name in template.get("Parameters", {})}
        self.conditions = {name: self._condition(expr) for name, expr in template.get("Conditions", {}).items()}
        self.app = core.App(outdir=outdir)  # the synthesised files; default: a new temp dir each time
        self.stack = core.Stack(self.app, "infra")
        kinds = {
            "String": core.RosParameterType.STRING,
            "Number": core.RosParameterType.NUMBER,
            "CommaDelimitedList": core.RosParameterType.COMMA_DELIMITED_LIST,
        }
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if spec["Type"] not in kinds:
                raise TemplateError(f"parameter {name}: type {spec['Type']} is not handled by this checker")
            self.parameters[name] = core.RosParameter(self.stack, name, type=kinds[spec["Type"]])
        self.built: dict[str, object] = {}
        self.expected: dict[str, dict] = {}

    def _parameter_value(self, name: str, passed: dict[str, str]):
        spec = self.template["Parameters"][name]
        value = passed.get(name, spec.get("Default"))
        if value is None:
            raise TemplateError(f"parameter {name} has no value and no default")
        if "AllowedValues" in spec and value not in spec["AllowedValues"]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.search(spec["AllowedPattern"], value):
            raise TemplateError(f"parameter {name}={value!r} does not match {spec['AllowedPattern']}")
        if spec["Type"] == "Number":
            value = float(value)
            if not spec.get("MinValue", value) <= value <= spec.get("MaxValue", value):
                raise TemplateError(f"parameter {name}={value} is out of its range")
        return value

    def _condition(self, expr):
        (function, args), *rest = expr.items()
        if rest:
            raise TemplateError(f"a condition has one function, got {expr}")
        if function == "Fn::Equals":
            return self._plain(args[0]) == self._plain(args[1])
        if function == "Fn::Not":
            return not self._condition(args[0])
        if function in ("Fn::And", "Fn::Or"):
            results = [self._condition(a) for a in args]
            return all(results) if function == "Fn::And" else any(results)
        if function == "Condition":
            return self._condition(self.template["Conditions"][args])
        raise TemplateError(f"condition function {function} is not handled by this checker")

    def _plain(self, node):
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return self.values[node["Ref"]]
        return node

    def build(self) -> dict[str, dict]:
        """Build every resource whose condition holds; the rendered Properties by logical id."""
        for logical_id in self.template["Resources"]:
            self._resource(logical_id)
        try:
            rendered = self.app.synth().get_stack_by_name("infra").template["Resources"]
        except Exception as exc:  # the packages' validators, run as the stack renders
            raise TemplateError(str(exc)) from None
        result = {logical_id: rendered[logical_id].get("Properties", {}) for logical_id in self.built}
        for logical_id, properties in result.items():
            if properties != self.expected[logical_id]:
                raise TemplateError(
                    f"{logical_id}: the specification dropped or changed a key: "
                    f"rendered {json.dumps(properties, sort_keys=True)}, "
                    f"template {json.dumps(self.expected[logical_id], sort_keys=True)}"
                )
        return result

    def _resource(self, logical_id: str):
        if logical_id in self.built:
            return self.built[logical_id]
        spec = self.template["Resources"][logical_id]
        if "Condition" in spec and not self.conditions[spec["Condition"]]:
            return None
        cls = self.classes.get(spec["Type"])
        if cls is None:
            raise TemplateError(f"{logical_id}: no ROS CDK class for {spec['Type']} in {[m.__name__ for m in MODULES]}")
        properties = spec.get("Properties", {})
        try:
            resource = cls(self.stack, logical_id, self._cdk(properties), True)
        except TemplateError:
            raise
        except Exception as exc:  # jsii reports a type mismatch with the path to the property
            raise TemplateError(f"{logical_id} ({spec['Type']}): {exc}") from None
        self.built[logical_id] = resource
        self.expected[logical_id] = self._rendered(properties)
        return resource

    def _cdk(self, node):
        """A template value as the packages take it: intrinsic functions become their tokens."""
        if isinstance(node, list):
            return [v for v in (self._cdk(v) for v in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return self._ref(node["Ref"])
        if set(node) == {"Fn::GetAtt"}:
            logical_id, attribute = node["Fn::GetAtt"]
            resource = self._resource(logical_id)
            if resource is None:
                raise TemplateError(f"Fn::GetAtt of {logical_id}, which is not created with these parameters")
            token = getattr(resource, f"attr_{snake(attribute)}", None)
            if token is None:
                raise TemplateError(
                    f"Fn::GetAtt: {logical_id} ({type(resource).__name__}) has no attribute {attribute}"
                )
            return token
        if set(node) == {"Fn::Join"}:
            delimiter, parts = node["Fn::Join"]
            return core.Fn.join(delimiter, self._cdk(parts))
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return self._cdk(when_true if self.conditions[condition] else when_false)
        functions = [k for k in node if k.startswith("Fn::")]
        if functions:
            raise TemplateError(f"{functions} is not handled by this checker")
        # A key the packages do not know (a free-form map's, or a misspelt one) is passed as it is.
        converted = ((self.names.get(k, k), self._cdk(v)) for k, v in node.items())
        return {k: v for k, v in converted if v is not NO_VALUE}

    def _ref(self, name: str):
        if name == "ALIYUN::NoValue":
            return NO_VALUE
        if name.startswith("ALIYUN::"):
            return getattr(core.RosPseudo, snake(name.removeprefix("ALIYUN::")))
        if name in self.parameters:
            parameter = self.parameters[name]
            kind = self.template["Parameters"][name]["Type"]
            if kind == "Number":
                return parameter.value_as_number
            return parameter.value_as_list if kind == "CommaDelimitedList" else parameter.value_as_string
        resource = self._resource(name)
        if resource is None:
            raise TemplateError(f"Ref to {name}, which is not created with these parameters")
        return resource.ref

    def _rendered(self, node):
        """A template value as ROS should receive it: Fn::If taken, NoValue left out."""
        if isinstance(node, list):
            return [v for v in (self._rendered(v) for v in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if node == {"Ref": "ALIYUN::NoValue"}:
            return NO_VALUE
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return self._rendered(when_true if self.conditions[condition] else when_false)
        if set(node) == {"Fn::Join"}:
            delimiter, parts = node["Fn::Join"]
            parts = self._rendered(parts)
            if all(isinstance(part, str) for part in parts):
                return delimiter.join(parts)  # the packages join literals themselves, as ROS would
            return {"Fn::Join": [delimiter, parts]}
        return {k: v for k, v in ((k, self._rendered(v)) for k, v in node.items()) if v is not NO_VALUE}


def main() -> None:
    cases = json.load(sys.stdin)
    classes, names = resource_classes(), property_names()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ros-spec-") as outdir:
        for number, case in enumerate(cases):
            try:
                stack = Stack(case["template"], case["parameters"], classes, names, f"{outdir}/{number}")
                results[case["name"]] = {"resources": stack.build(), "error": None}
            except TemplateError as exc:
                results[case["name"]] = {"resources": None, "error": str(exc)}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
