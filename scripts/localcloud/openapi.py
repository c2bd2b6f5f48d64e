"""The generic OpenAPI client, set up the way the function sets it up, for callers other than it.

The emulator's tests and the benchmarks' floor need a DataWorks caller that is not the function
(the floor must not even import it): this is that caller, in one place. Its requests are the
function's and the official SDK's (tests/test_wire_parity.py), with the emulator's
`protocol="http"`.
"""

from __future__ import annotations

VERSION = "2024-05-18"


def client(endpoint: str, credentials, *, read_timeout_ms: int = 10_000, region: str | None = "cn-hangzhou"):
    """A tea-openapi Client for `endpoint` (host:port) with explicit credentials (STS when a token is set)."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_tea_openapi import utils_models
    from alibabacloud_tea_openapi.client import Client

    credential = CredentialClient(
        CredentialConfig(
            type="sts" if credentials.security_token else "access_key",
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
        )
    )
    config = utils_models.Config(
        credential=credential, endpoint=endpoint, protocol="http", region_id=region, read_timeout=read_timeout_ms
    )
    return Client(config)


def call(api_client, action: str, method: str = "POST", version: str = VERSION, **params) -> dict:
    """One RPC call with the DataWorks SDK's Params: `params` go in the query for GET, else in a
    form body (values as strings, `Ids` already a JSON string). Returns the client's answer:
    {"body", "headers", "statusCode"}."""
    from alibabacloud_tea_openapi import utils_models
    from darabonba.runtime import RuntimeOptions

    api = utils_models.Params(
        action=action,
        version=version,
        protocol="HTTPS",
        pathname="/",
        method=method,
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    values = {key: str(value) for key, value in params.items()}
    request = utils_models.OpenApiRequest(query=values) if method == "GET" else utils_models.OpenApiRequest(body=values)
    return api_client.call_api(api, request, RuntimeOptions())
