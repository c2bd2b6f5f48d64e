"""The calls scripts/verify and scripts/deploy make to EventBridge, Function Compute and SLS.

EventBridge (2020-04-01, RPC) and FC (2023-03-30, ROA) go through the generic tea-openapi client
the function already ships, with the Params of the official alibabacloud_eventbridge20200401 and
alibabacloud_fc20230330 SDKs, so no further SDK is needed. SLS signs its own way (`LOG <key
id>:<signature>`, HMAC-SHA256, the project as the Host header's first label): `SlsClient` does
that, as the official alibabacloud_sls20201230 SDK's gateway does (signature version 1).

`endpoint` is host[:port]; the local cloud (localcloud.controlplane) serves all three on one.
Nothing here logs a key, a token or a request's headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import yaml

DISCOVERY_FILE = Path(__file__).resolve().parent.parent / ".localcloud" / "cloud.json"


@dataclass
class Creds:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        return f"Creds(access_key_id={self.access_key_id!r}, access_key_secret=***, security_token=***)"


@dataclass
class Target:
    """Where the deployment is: one endpoint per service, the credentials, the account."""

    credentials: Creds
    account_id: str
    protocol: str
    fc_endpoint: str
    eventbridge_endpoint: str
    sls_endpoint: str


def local_target(discovery: Path) -> Target:
    if not discovery.is_file():
        raise SystemExit(f"no local cloud: {discovery} is absent. Start it with `make serve` in another shell.")
    found = json.loads(discovery.read_text(encoding="utf-8"))
    from demo import CREDENTIALS  # the local cloud's own, local-only keys

    endpoint = found["url"].removeprefix("http://")
    creds = Creds(CREDENTIALS.access_key_id, CREDENTIALS.access_key_secret, CREDENTIALS.security_token)
    return Target(creds, found["accountId"], "http", endpoint, endpoint, endpoint)


def real_target(region: str, access: str) -> Target:
    env = os.environ
    key_id, secret = env.get("AccessKeyID"), env.get("AccessKeySecret")
    account = env.get("AccountID")
    token = env.get("SecurityToken") or None
    if not (key_id and secret and account):
        found = _s_access(access)
        key_id, secret, account = found.get("AccessKeyID"), found.get("AccessKeySecret"), found.get("AccountID")
        token = found.get("SecurityToken") or None
    if not (key_id and secret and account):
        raise SystemExit(
            f"no credentials: set AccessKeyID, AccessKeySecret and AccountID (as `s` takes them), or add the "
            f"access with `s config add ... -a {access}`"
        )
    creds = Creds(str(key_id), str(secret), token)
    return Target(
        creds,
        str(account),
        "https",
        f"{account}.{region}.fc.aliyuncs.com",
        f"eventbridge.{region}.aliyuncs.com",
        f"{region}.log.aliyuncs.com",
    )


def _s_access(access: str) -> dict:
    home = Path(os.environ.get("serverless_devs_config_home") or Path.home() / ".s")
    path = home / "access.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}
    entry = data.get(access) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) else {}


class ApiError(Exception):
    """A call the service refused, with its code (never the request)."""

    def __init__(self, service: str, action: str, status: int | None, code: str, message: str):
        super().__init__(f"{service} {action}: {status} {code}: {message}")
        self.service, self.action, self.status, self.code, self.message = service, action, status, code, message


def acs_client(endpoint: str, credentials, protocol: str = "https", region: str | None = None, timeout_ms=15_000):
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
        credential=credential,
        endpoint=endpoint,
        protocol=protocol,
        region_id=region,
        read_timeout=timeout_ms,
        connect_timeout=5000,
    )
    return Client(config)


def eventbridge(client, action: str, *, query: dict | None = None, form: dict | None = None) -> dict:
    """One EventBridge 2020-04-01 call, as the official SDK sends it (query or form body)."""
    from alibabacloud_tea_openapi import utils_models

    params = utils_models.Params(
        action=action,
        version="2020-04-01",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = utils_models.OpenApiRequest(query=query or None, body=form or None)
    return _call(client, "eventbridge", action, params, request)["body"]


def fc(client, action: str, method: str, path: str, *, body: bytes | None = None, headers=None) -> dict:
    """One FC 2023-03-30 ROA call; returns {"body", "headers", "statusCode"} (body parsed or bytes)."""
    from alibabacloud_tea_openapi import utils_models
    from darabonba.runtime import RuntimeOptions  # noqa: F401 - imported by _call

    binary = action == "InvokeFunction"
    params = utils_models.Params(
        action=action,
        version="2023-03-30",
        protocol="HTTPS",
        pathname=path,
        method=method,
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="binary" if binary else "json",
    )
    request = utils_models.OpenApiRequest(headers=headers or {}, body=body, stream=body) if binary else None
    request = request or utils_models.OpenApiRequest(headers=headers or {})
    answer = _call(client, "fc", action, params, request)
    if binary and hasattr(answer.get("body"), "read"):
        answer["body"] = answer["body"].read()
    return answer


def _call(client, service, action, params, request):
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from darabonba.runtime import RuntimeOptions

    try:
        return client.call_api(params, request, RuntimeOptions())
    except AlibabaCloudException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("Message") or exc.message or "")[:300]
        raise ApiError(service, action, exc.status_code, str(exc.code or "Unknown"), message) from None
    except Exception as exc:  # transport errors: only the type, never the request
        raise ApiError(service, action, None, "TransportError", type(exc).__name__) from None


class SlsClient:
    """SLS's REST API with signature version 1 (`LOG <key id>:<base64 HMAC-SHA256>`)."""

    def __init__(self, endpoint: str, credentials, protocol: str = "https", timeout: float = 15):
        self.endpoint, self.credentials, self.protocol, self.timeout = endpoint, credentials, protocol, timeout

    def call(self, action: str, method: str, path: str, *, project: str | None = None, body=None) -> object:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "date": formatdate(usegmt=True),
            "x-log-apiversion": "0.6.0",
            "x-log-bodyrawsize": str(len(data)),
            "x-log-signaturemethod": "hmac-sha256",
            "accept": "application/json",
        }
        if data:
            headers["content-md5"] = hashlib.md5(data).hexdigest().upper()  # noqa: S324 - SLS's own scheme
        if self.credentials.security_token:
            headers["x-acs-security-token"] = self.credentials.security_token
        signature = _sls_signature(self.credentials.access_key_secret, method, path, headers)
        headers["authorization"] = f"LOG {self.credentials.access_key_id}:{signature}"
        headers["host"] = f"{project}.{self.endpoint}" if project else self.endpoint
        host, _, port = self.endpoint.partition(":")
        kind = http.client.HTTPSConnection if self.protocol == "https" else http.client.HTTPConnection
        # Locally (http) one loopback address serves every project: only the Host header names it.
        address = host if not project or self.protocol == "http" else f"{project}.{host}"
        connection = kind(address, int(port or 0) or None, timeout=self.timeout)
        try:
            connection.request(method, quote(path), body=data or None, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        except OSError as exc:
            raise ApiError("sls", action, None, "TransportError", type(exc).__name__) from None
        finally:
            connection.close()
        parsed = json.loads(payload) if payload else None
        if answer.status >= 400:
            parsed = parsed if isinstance(parsed, dict) else {}
            raise ApiError(
                "sls", action, answer.status, parsed.get("errorCode", "Unknown"), parsed.get("errorMessage", "")
            )
        return parsed


def _sls_signature(secret: str, method: str, path: str, headers: dict) -> str:
    lines = [method, headers.get("content-md5", ""), headers.get("content-type", ""), headers["date"]]
    logged = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith(("x-log-", "x-acs-")))
    text = "\n".join(lines) + "\n" + logged + path
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()
