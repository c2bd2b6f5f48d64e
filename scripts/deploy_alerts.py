"""Write the alerts' action policy and webhook integration (run by scripts/deploy after `s deploy`).

Version 2.0 SLS alerts notify through an action policy (PolicyConfiguration.ActionPolicyId; with
the dynamic alert policy `sls.builtin.dynamic`, the one each rule names: SLS "Dynamic action
policy mechanism"). Action policies and webhook integrations are SLS alert resource records,
`sls.alert.action_policy` and `sls.alert.action_webhook` (SLS "Data structure of alert resource
data", doc 433030); ROS has no resource type for them (ros-cdk-sls 1.15, the newest on PyPI, has
none), so they are written here through the SLS API, idempotently: read, then update or create.
Alibaba's landing-zone Terraform writes the same records with `alicloud_log_resource_record`.

With `vars.alertChannel` dingtalk, lark, wecom or webhook (and no `alertActionPolicyId` of your
own): the webhook integration `<namePrefix>-webhook` with the URL from the environment's
DWRERUN_ALERT_WEBHOOK (never from a file, never printed), and the action policy
`<namePrefix>-alerts`, which every alert names (template.yml). The policy script's `fire(...)`
arguments for a webhook channel are inferred from the console's policies (docs/inferred-facts.md).

    python scripts/deploy_alerts.py [-a ACCESS] [--local]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

from cloudapi import DISCOVERY_FILE, ApiError, SlsClient, local_target, real_target  # noqa: E402

WEBHOOK_ENV = "DWRERUN_ALERT_WEBHOOK"
# alertChannel -> the webhook integration's `type` (doc 433030: dingtalk, lark, wechat, slack, custom)
WEBHOOK_TYPES = {"dingtalk": "dingtalk", "lark": "lark", "wecom": "wechat", "webhook": "custom"}
CONTENT_TEMPLATE = "sls.builtin.cn"  # SLS's built-in content template, as Alibaba's own policies use it


def records(prefix: str, channel: str, url: str) -> list[tuple[str, str, str, dict]]:
    """(resource name, record id, tag, value) of the webhook integration and the action policy."""
    webhook_id, policy_id = f"{prefix}-webhook", f"{prefix}-alerts"
    kind = WEBHOOK_TYPES[channel]
    headers = [{"key": "Content-Type", "value": "application/json"}] if kind == "custom" else []
    webhook = {"id": webhook_id, "name": webhook_id, "type": kind, "url": url, "method": "POST", "headers": headers}
    script = f'fire(type="{kind}", webhook_id="{webhook_id}", template_id="{CONTENT_TEMPLATE}", period="any")'
    policy = {
        "action_policy_id": policy_id,
        "action_policy_name": f"{prefix} alerts",
        "labels": {},
        "is_default": False,
        "primary_policy_script": script,
    }
    return [
        ("sls.alert.action_webhook", webhook_id, webhook_id, webhook),
        ("sls.alert.action_policy", policy_id, policy["action_policy_name"], policy),
    ]


def upsert(sls: SlsClient, resource: str, record_id: str, tag: str, value: dict) -> str:
    """Create the record, or update it if it exists; returns "created" or "updated"."""
    body = {"tag": tag, "value": json.dumps(value, separators=(",", ":"))}
    try:
        sls.call("GetResourceRecord", "GET", f"/resources/{resource}/records/{record_id}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        sls.call("CreateResourceRecord", "POST", f"/resources/{resource}/records", body={"id": record_id, **body})
        return "created"
    sls.call("UpdateResourceRecord", "PUT", f"/resources/{resource}/records/{record_id}", body=body)
    return "updated"


def main(argv: list[str] | None = None, out=sys.stdout, environ=os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-t", "--template", type=Path, default=HERE.parent / "template.yml")
    parser.add_argument("-a", "--access", default="default")
    parser.add_argument("--local", action="store_true")
    parser.add_argument("--discovery", type=Path, default=DISCOVERY_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    variables = yaml.safe_load(args.template.read_text(encoding="utf-8"))["vars"]
    prefix, channel = variables["namePrefix"], variables.get("alertChannel", "none")
    if variables.get("alertActionPolicyId"):
        print(
            f"alerts: through your action policy {variables['alertActionPolicyId']} (vars.alertActionPolicyId)",
            file=out,
        )
        return 0
    if channel == "none":
        print("alerts: alertChannel none, no action policy written (the alerts notify nobody)", file=out)
        return 0
    if channel not in WEBHOOK_TYPES:
        print(f"alerts: alertChannel {channel!r} is not one of none, {', '.join(WEBHOOK_TYPES)}", file=sys.stderr)
        return 2
    url = environ.get(WEBHOOK_ENV, "")
    if not url.startswith(("https://", "http://")):
        print(
            f"alerts: alertChannel is {channel}, but {WEBHOOK_ENV} is not set to the robot's URL: "
            f"export {WEBHOOK_ENV}='https://…' and run scripts/deploy again",
            file=sys.stderr,
        )
        return 2
    target = local_target(args.discovery) if args.local else real_target(variables["region"], args.access)
    sls = SlsClient(target.sls_endpoint, target.credentials, target.protocol)
    try:
        for resource, record_id, tag, value in records(prefix, channel, url):
            done = upsert(sls, resource, record_id, tag, value)
            print(f"alerts: {resource} {record_id} {done}", file=out)
    except ApiError as exc:  # the code only: the request (and the URL in it) is never shown
        print(f"alerts: {exc.action} {exc.code} ({exc.status})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
