"""One cold process for the cold-start and health benchmarks (cold_start.py, health.py): handle one thing end to end, print one BENCH line, exit.

    python coldstart_child.py ours   <instance id>   the event function on one failure event
    python coldstart_child.py floor  <instance id>   the generic client's two calls, nothing else
    python coldstart_child.py peer   <instance id>   the official DataWorks SDK's two calls
    python coldstart_child.py health                 the HTTP function's GET /health

The emulator runs in the parent; everything else (endpoint, credentials, FC_REGION, limiter
settings) comes in the environment, as FC gives it. Kept tiny on purpose: what this file imports
before the measured work is paid by every variant alike.
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402 - after the clock starts, like everything the variants import
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
sys.path.insert(1, str(ROOT / "scripts"))  # localcloud, for the floor; after this folder, as a script's own


class _Function:
    name = "dwrerun-event"
    handler = "index.handle_event"
    memory = 256
    timeout = 60


class _Context:
    """The python3.12 context's shape: no credentials (they are in the environment)."""

    request_id = "1-bench-cold-start"
    function = _Function()
    region = os.environ.get("FC_REGION")
    log_project = "localcloud"
    log_store = "dwrerun-event"


def ours(instance_id: int) -> dict:
    event = json.loads((EVENTS / "dataworks-instance-failed.json").read_text())
    event["id"] = f"bench-cold-{instance_id}"
    event["data"]["taskId"] = instance_id
    sys.path.insert(0, str(ROOT / "function"))
    import index

    summary = index.handle_event(json.dumps(event).encode(), _Context())
    (outcome,) = summary["outcomes"]
    return {"rerun": outcome["decision"] == "rerun" and outcome["success"] is True}


def floor(instance_id: int) -> dict:
    call = bare_call(os.environ)
    call("GetTaskInstance", "GET", query={"Id": str(instance_id)})
    body = call("RerunTaskInstances", "POST", body={"Ids": f"[{instance_id}]", "Comment": "bench floor"})
    return {"rerun": body["SuccessInfo"][str(instance_id)]["Success"] is True}


def bare_call(environ):
    """call(action, method, query=None, body=None) -> the answer's body: the generic client with the
    function's Params and the FC-like environment's credentials and endpoint, and nothing else.
    The floor every benchmark compares the function with (here, in the burst profile, and manual_rerun.py)."""
    from types import SimpleNamespace

    from localcloud import openapi

    credentials = SimpleNamespace(
        access_key_id=environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        security_token=environ["ALIBABA_CLOUD_SECURITY_TOKEN"],
    )
    endpoint = environ["DATAWORKS_ENDPOINT"].split("://", 1)[1]
    client = openapi.client(endpoint, credentials, region=environ.get("FC_REGION"))

    def call(action, method, query=None, body=None):
        return openapi.call(client, action, method, **(query or body or {}))["body"]

    return call


def peer(instance_id: int) -> dict:
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_dataworks_public20240518 import models
    from alibabacloud_dataworks_public20240518.client import Client
    from alibabacloud_tea_openapi import utils_models

    client = Client(
        utils_models.Config(
            credential=_credential(os.environ, CredentialClient, CredentialConfig), **_endpoint(os.environ)
        )
    )
    client.get_task_instance(models.GetTaskInstanceRequest(id=instance_id))
    answer = client.rerun_task_instances(models.RerunTaskInstancesRequest(ids=[instance_id], comment="bench peer"))
    return {"rerun": answer.body.success_info[str(instance_id)].success is True}


def health() -> dict:
    sys.path.insert(0, str(ROOT / "function"))
    import index

    response = index.handle_http((EVENTS / "fc-http-health-request.json").read_bytes(), _Context())
    return {
        "status": response["statusCode"],
        # The point of the lazy imports: a health check never loads the SDK.
        "sdk_loaded": "alibabacloud_tea_openapi" in sys.modules,
    }


def _credential(environ, client_class, config_class):
    return client_class(
        config_class(
            type="sts",
            access_key_id=environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            access_key_secret=environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
            security_token=environ["ALIBABA_CLOUD_SECURITY_TOKEN"],
        )
    )


def _endpoint(environ) -> dict:
    url = environ["DATAWORKS_ENDPOINT"]
    return {"endpoint": url.split("://", 1)[1], "protocol": "http", "region_id": environ.get("FC_REGION")}


def main() -> None:
    mode = sys.argv[1]
    if mode == "health":
        result = health()
    else:
        result = {"ours": ours, "floor": floor, "peer": peer}[mode](int(sys.argv[2]))
    result["in_process_s"] = time.perf_counter() - STARTED
    # Records went to stdout before this line; the parent reads the last line only.
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
