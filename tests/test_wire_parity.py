"""The generic client puts the official DataWorks SDK's bytes on the wire.

The function calls DataWorks through `alibabacloud-tea-openapi` alone (half the SDK's import
cost). This proves the trade costs nothing on the wire: for the same call, both clients send the
same request line, headers and body, except the date, the nonce and the signature that depends
on them.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from alibabacloud_dataworks_public20240518 import models as sdk_models
from alibabacloud_dataworks_public20240518.client import Client as SdkClient
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions

from dwrerun.config import Settings
from dwrerun.dataworks import Credentials, DataWorks, DataWorksError

CREDS = Credentials("LTAIwireparity0001", "wire-parity-secret", "wire-parity-token")
VARYING = {"x-acs-date", "x-acs-signature-nonce", "authorization"}
ANSWERS = {
    "GetTaskInstance": {"RequestId": "r1", "TaskInstance": {"Id": 1000012345678, "Status": "Failure"}},
    "GetTask": {"RequestId": "r3", "Task": {"Id": 700000004417, "RerunTimes": 2, "RerunInterval": 60}},
    "RerunTaskInstances": {"RequestId": "r2", "SuccessInfo": {"1000012345678": {"Success": True, "Message": ""}}},
    "GetTaskInstanceLog": {"RequestId": "r3", "TaskInstanceLog": "Exit code of the Shell command 1\n"},
    "ListTaskInstances": {
        "RequestId": "r5",
        "PagingInfo": {"TaskInstances": [{"Id": 1000012345678}], "PageNumber": 2, "PageSize": 500, "TotalCount": 501},
    },
}


class Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _capture(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.requestline, list(self.headers.items()), body))
        if self.headers["x-acs-action"] == "InvokeFunction":  # FC accepts an async call with 202, no body
            self.send_response(202)
            self.send_header("x-fc-request-id", "1-fc-request")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = json.dumps(ANSWERS[self.headers["x-acs-action"]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _capture

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def sdk_client(endpoint):
    config = utils_models.Config(
        access_key_id=CREDS.access_key_id,
        access_key_secret=CREDS.access_key_secret,
        security_token=CREDS.security_token,
        endpoint=endpoint,
        protocol="http",
        region_id="cn-hangzhou",
    )
    return SdkClient(config)


def comparable(request):
    line, headers, body = request
    kept = [(k.lower(), v) for k, v in headers if k.lower() not in VARYING]
    return line, kept, body


def varying(request):
    return {k.lower() for k, _ in request[1]} & VARYING


def test_rerun_task_instances_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    ours = DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings())
    ours.rerun_task_instances([1000012345678, 1000012345679], "rerun after upstream fix", timeout=5)
    request = sdk_models.RerunTaskInstancesRequest(
        ids=[1000012345678, 1000012345679], comment="rerun after upstream fix"
    )
    sdk_client(endpoint).rerun_task_instances_with_options(request, RuntimeOptions())

    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert varying(mine) == varying(theirs) == VARYING
    assert b"Ids=%5B1000012345678%2C1000012345679%5D" in mine[2]  # a JSON string, not Ids.1=...


def test_use_latest_config_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    ours = DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings())
    ours.rerun_task_instances([1000012345678], "after a fix", timeout=5, use_latest_config=True)
    request = sdk_models.RerunTaskInstancesRequest(ids=[1000012345678], comment="after a fix", use_latest_config=True)
    sdk_client(endpoint).rerun_task_instances_with_options(request, RuntimeOptions())
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert b"UseLatestConfig=True" in mine[2]  # the form value, as FACTS section 2 says


def test_list_task_instances_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    ours = DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings())
    window = '{"finishedTimeStart":1790000000000,"finishedTimeEnd":1790003600000}'
    params = {
        "Bizdate": 1790000000000,
        "Filter": window,
        "PageNumber": 2,
        "PageSize": 500,
        "ProjectEnv": "Prod",
        "ProjectId": 48213,
        "SortBy": "Id Asc",
        "Status": "Failure",
        "TaskIds": [700000004417, 700000004418],
    }
    rows, total = ours.list_task_instances(params, timeout=5)
    assert (rows, total) == ([{"Id": 1000012345678}], 501)
    request = sdk_models.ListTaskInstancesRequest(
        bizdate=1790000000000,
        filter=window,
        page_number=2,
        page_size=500,
        project_env="Prod",
        project_id=48213,
        sort_by="Id Asc",
        status="Failure",
        task_ids=[700000004417, 700000004418],
    )
    sdk_client(endpoint).list_task_instances_with_options(request, RuntimeOptions())
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert b"TaskIds=%5B700000004417%2C700000004418%5D" in mine[2]  # a JSON string, as for Ids


def test_get_task_instance_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings()).get_task_instance(1000012345678, timeout=5)
    sdk_client(endpoint).get_task_instance_with_options(
        sdk_models.GetTaskInstanceRequest(id=1000012345678), RuntimeOptions()
    )
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert mine[0].startswith("GET /?Id=1000012345678 ")


def test_get_task_instance_log_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    ours = DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings())
    assert ours.get_task_instance_log(1000012345678, 2, timeout=5) == "Exit code of the Shell command 1\n"
    sdk_client(endpoint).get_task_instance_log_with_options(
        sdk_models.GetTaskInstanceLogRequest(id=1000012345678, run_number=2), RuntimeOptions()
    )
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert mine[0].startswith("GET /?Id=1000012345678&RunNumber=2 ")  # the failed run's number, always sent


@pytest.mark.parametrize(("log", "expected"), [(None, ""), ("", ""), (42, DataWorksError), ({"a": 1}, DataWorksError)])
def test_a_missing_log_reads_as_empty_and_a_log_that_is_not_text_as_a_malformed_answer(
    capture, monkeypatch, log, expected
):
    monkeypatch.setitem(ANSWERS, "GetTaskInstanceLog", {"RequestId": "r4", "TaskInstanceLog": log})
    ours = DataWorks(CREDS, f"127.0.0.1:{capture.server_port}", "http", "cn-hangzhou", Settings())
    if expected is DataWorksError:
        with pytest.raises(DataWorksError) as raised:
            ours.get_task_instance_log(1000012345678, 1, timeout=5)
        assert raised.value.code == "MalformedAnswer" and raised.value.transient
    else:
        assert ours.get_task_instance_log(1000012345678, 1, timeout=5) == expected


def test_get_task_bytes_equal_the_official_sdk(capture):
    endpoint = f"127.0.0.1:{capture.server_port}"
    DataWorks(CREDS, endpoint, "http", "cn-hangzhou", Settings()).get_task(700000004417, "Prod", timeout=5)
    sdk_client(endpoint).get_task_with_options(
        sdk_models.GetTaskRequest(id=700000004417, project_env="Prod"), RuntimeOptions()
    )
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert mine[0].startswith("GET /?Id=700000004417&ProjectEnv=Prod ")


def test_invoke_function_bytes_equal_the_official_fc_sdk(capture):
    # The FC SDK is a dev-only dependency, like the DataWorks one: the function never imports it.
    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client as FcClient

    from dwrerun.function_compute import FunctionCompute

    endpoint = f"127.0.0.1:{capture.server_port}"
    payload = b'{"scheduledRerun":{"instanceId":1000012345678}}'
    ours = FunctionCompute(CREDS, endpoint, "http", "cn-hangzhou", Settings())
    assert ours.invoke_async("dwrerun-event", payload, delay=90, task_id="dwrerun-1000012345678-run-1", timeout=5)
    config = utils_models.Config(
        access_key_id=CREDS.access_key_id,
        access_key_secret=CREDS.access_key_secret,
        security_token=CREDS.security_token,
        endpoint=endpoint,
        protocol="http",
        region_id="cn-hangzhou",
    )
    headers = fc_models.InvokeFunctionHeaders(
        common_headers={"x-fc-async-delay": "90"},
        x_fc_async_task_id="dwrerun-1000012345678-run-1",
        x_fc_invocation_type="Async",
    )
    FcClient(config).invoke_function_with_options(
        "dwrerun-event", fc_models.InvokeFunctionRequest(body=payload), headers, RuntimeOptions()
    )
    mine, theirs = capture.seen
    assert comparable(mine) == comparable(theirs)
    assert mine[0].startswith("POST /2023-03-30/functions/dwrerun-event/invocations ")
    sent = dict(comparable(mine)[1])
    assert sent["x-fc-invocation-type"] == "Async" and sent["x-fc-async-delay"] == "90"
    assert sent["x-fc-async-task-id"] == "dwrerun-1000012345678-run-1"
    assert mine[2] == payload
