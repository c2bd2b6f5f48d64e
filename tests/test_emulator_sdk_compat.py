"""The official DataWorks SDK talks to the emulator and parses every answer into its models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alibabacloud_credentials.client import Client as CredClient
from alibabacloud_credentials.models import Config as CredConfig
from alibabacloud_dataworks_public20240518 import models as dw_models
from alibabacloud_dataworks_public20240518.client import Client as DataWorksClient
from alibabacloud_tea_openapi import utils_models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException

from localcloud.acs3 import Credentials
from localcloud.dataworks import DataWorksEmulator

CREDS = Credentials("LTAItestkeyid0001", "test-secret-do-not-log", "test-sts-token-do-not-log")
SEED = Path(__file__).resolve().parents[1] / "scripts" / "localcloud" / "dataworks" / "seed.json"
FAILED, SUCCEEDED = 1000012345678, 1000012345679
BIZDATE = 1764172800000
SEED_NOW = 1764270120  # the seed's own "now", 2025-11-28T03:02:00+08:00: its dates as written


@pytest.fixture
def emu():
    with DataWorksEmulator(credentials=[CREDS], seed=SEED, seed_now=SEED_NOW) as emu:
        yield emu


@pytest.fixture
def sdk(emu) -> DataWorksClient:
    cred = CredClient(
        CredConfig(
            type="sts",
            access_key_id=CREDS.access_key_id,
            access_key_secret=CREDS.access_key_secret,
            security_token=CREDS.security_token,
        )
    )
    return DataWorksClient(
        open_api_models.Config(credential=cred, endpoint=emu.endpoint, protocol="http", region_id="cn-hangzhou")
    )


def test_get_task_instance(sdk):
    body = sdk.get_task_instance(dw_models.GetTaskInstanceRequest(id=FAILED)).body
    inst = body.task_instance
    assert body.request_id
    assert (inst.id, inst.task_id, inst.project_id, inst.project_env) == (FAILED, 700000004417, 48213, "Prod")
    assert (inst.status, inst.run_number, inst.rerun_mode) == ("Failure", 1, "FailureAllowed")
    assert (inst.trigger_type, inst.trigger_recurrence, inst.task_name) == ("Scheduler", "Normal", "ods_orders_di")
    assert inst.bizdate == BIZDATE and inst.finished_time == 1764270065000
    assert inst.runtime_resource.resource_group_id.startswith("Serverless_res_group_")
    assert inst.tags == [] and inst.workflow_instance_type == "Normal"


def test_rerun_task_instances(sdk, emu):
    request = dw_models.RerunTaskInstancesRequest(ids=[FAILED, 42], comment="sdk rerun", use_latest_config=False)
    body = sdk.rerun_task_instances(request).body
    assert body.success_info[str(FAILED)].success is True
    assert body.success_info["42"].success is False
    assert body.success_info["42"].message == "The instance does not exist."
    params = emu.journal.calls("RerunTaskInstances")[0].params
    assert params == {"Ids": f"[{FAILED},42]", "Comment": "sdk rerun", "UseLatestConfig": "False"}


def test_list_task_instances(sdk):
    request = dw_models.ListTaskInstancesRequest(
        project_id=48213, bizdate=BIZDATE, ids=[FAILED, SUCCEEDED], page_number=1, page_size=1, project_env="Prod"
    )
    paging = sdk.list_task_instances(request).body.paging_info
    assert (paging.page_number, paging.page_size, paging.total_count) == (1, 1, 2)
    (first,) = paging.task_instances
    assert first.id == SUCCEEDED and first.task_name == "dim_customer_df" and first.runtime.process_id  # Id Desc


def test_get_task_instance_log(sdk):
    body = sdk.get_task_instance_log(dw_models.GetTaskInstanceLogRequest(id=FAILED, run_number=1)).body
    assert "Exit code of the Shell command 1" in body.task_instance_log


def test_sdk_errors_carry_the_real_code(sdk):
    with pytest.raises(ClientException) as err:
        sdk.get_task_instance(dw_models.GetTaskInstanceRequest(id=1))
    assert err.value.code == "InvalidTaskInstance.NotFound"
    assert err.value.request_id and err.value.data["RequestId"] == err.value.request_id
