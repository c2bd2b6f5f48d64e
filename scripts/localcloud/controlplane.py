"""The local cloud's control plane: what `make verify` asks a deployment, on one loopback port.

One HTTP server answers three services, each as the real one does on the wire:
- EventBridge OpenAPI 2020-04-01 (RPC, ACS3-HMAC-SHA256): GetRule, ListTargets, TestEventPattern
  (localcloud.eventbridge.RuleBackend);
- Function Compute OpenAPI 2023-03-30 (ROA under /2023-03-30/, ACS3 with FC's query
  canonicalisation): GetFunction, GetConcurrencyConfig, GetAsyncInvokeConfig, ListTriggers, and a
  synchronous InvokeFunction (localcloud.fc.management.FcBackend);
- SLS (its own `LOG <key id>:<signature>` scheme, the project as the Host header's first label):
  GetLogsV2, GetAlert, alert resource records (localcloud.sls.SlsBackend).

A real deployment has three endpoints; here one URL stands for all three. `from_template()` builds
the three backends from template.yml as `s deploy` would have made them, so every link verify
checks starts out healthy and a test breaks one at a time.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from localcloud import acs3
from localcloud.eventbridge import EventBridgeApiError, RuleBackend
from localcloud.fc.management import FcApiError, FcBackend, FunctionConfig
from localcloud.sls import Index, SlsApiError, SlsBackend, verify_signature

ACCOUNT_ID = "1877700012345678"


class ControlPlane:
    def __init__(self, credentials, eventbridge: RuleBackend, fc: FcBackend, sls: SlsBackend, account_id=ACCOUNT_ID):
        self.credentials = list(credentials)
        self.eventbridge, self.fc, self.sls = eventbridge, fc, sls
        self.account_id = account_id
        self.nonces = acs3.NonceCache()
        self.calls: list[tuple[str, str, int]] = []  # (service, action or path, status)
        self._server: ThreadingHTTPServer | None = None
        self._discovery: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                plane._serve(self)

            do_POST = do_PUT = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._discovery is not None:  # a stopped plane is no longer there to be found
            self._discovery.unlink(missing_ok=True)
            self._discovery = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def write_discovery(self, path: str | Path) -> None:
        """Where `make verify` finds this plane: its URL and the account; never a key."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"url": self.url, "accountId": self.account_id}) + "\n", encoding="utf-8")
        self._discovery = path

    # -- the template's deployment ----------------------------------------------------------------
    @classmethod
    def from_template(cls, template: dict, credentials, *, logs, functions: dict, account_id: str = ACCOUNT_ID):
        """The deployment `s deploy` makes from `template` (a loaded template.yml), with `functions`
        (name -> local function with invoke()) as the code behind each FC function."""
        variables = template["vars"]
        infra = template["resources"]["infra"]["props"]
        ros = infra["template"]["Resources"]
        prefix, region = variables["namePrefix"], variables["region"]
        event_name = f"{prefix}-event"

        rules = RuleBackend()
        if variables["eventSource"] == "custom-bus":
            rule = ros["FailureRule"]["Properties"]
            endpoint = f"acs:fc:{region}:{account_id}:functions/{event_name}"
            (target,) = rule["Targets"]
            params = [
                {**p, "Value": event_name} if p.get("ResourceKey") == "functionName" else dict(p)
                for p in target["ParamList"]
            ]
            rules.put_rule(
                variables["eventBusName"],
                variables["ruleName"],
                rule["FilterPattern"],
                [
                    {
                        "Id": target["Id"],
                        "Type": target["Type"],
                        "Endpoint": endpoint,
                        "PushRetryStrategy": variables["pushRetryStrategy"],
                        "ParamList": params,
                    }
                ],
            )

        fc = FcBackend()
        for name, key in (("event", "eventReservedConcurrency"), ("http", "httpReservedConcurrency")):
            props = template["resources"][name]["props"]
            fn_name = f"{prefix}-{name}"
            triggers = [{"triggerName": "http", "triggerType": "http"}] if name == "http" else []
            fc.add(
                FunctionConfig(
                    name=fn_name,
                    runtime=variables["runtime"],
                    handler=props["handler"],
                    reserved_concurrency=int(variables[key]),
                    async_task=bool(props.get("asyncInvokeConfig", {}).get("asyncTask", False)),
                    max_async_retry_attempts=int(variables["asyncRetries"]),
                    triggers=triggers,
                    target=functions.get(fn_name),
                )
            )

        (key_index,) = [k for k in ros["Index"]["Properties"]["KeyIndices"] if k["Name"] == "message"]
        sls = SlsBackend(f"{prefix}-{account_id}-{region}", prefix, logs, Index(key_index["JsonKeyIndices"]))
        # As template.yml's Fn::If: the user's own policy, else <prefix>-alerts with a channel, else none.
        policy_id = variables.get("alertActionPolicyId") or (
            f"{prefix}-alerts" if variables.get("alertChannel", "none") != "none" else None
        )
        for logical, resource in ros.items():
            if resource.get("Type") != "ALIYUN::SLS::Alert":
                continue
            switch = "alert" + logical[: -len("Alert")]
            if str(variables.get(switch, "true")) != "true":
                continue
            alert_name = f"{prefix}-{resource['Properties']['Detail']['Name']['Fn::Join'][1][1]}"
            sls.alerts[alert_name] = {
                "name": alert_name,
                "state": "Enabled",
                "configuration": {
                    "version": "2.0",
                    "policyConfiguration": {"alertPolicyId": "sls.builtin.dynamic"}
                    | ({"actionPolicyId": policy_id} if policy_id else {}),
                },
            }
        if policy_id:  # what scripts/deploy writes (deploy_alerts.py)
            sls.records[("sls.alert.action_policy", policy_id)] = {
                "id": policy_id,
                "tag": policy_id,
                "value": json.dumps({"action_policy_id": policy_id, "primary_policy_script": 'fire(type="dingtalk")'}),
            }
        return cls(credentials, rules, fc, sls, account_id=account_id)

    # -- one request ------------------------------------------------------------------------------
    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        body = http.rfile.read(int(http.headers.get("Content-Length") or 0))
        split = urlsplit(http.path)
        path, raw_query = unquote(split.path), split.query
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in http.headers.items()}
        authorization = headers.get("authorization", "")
        try:
            if authorization.startswith("LOG "):
                status, extra, data = self._sls(http.command, path, query, headers, body)
            elif path.startswith("/2023-03-30/"):
                status, extra, data = self._fc(http.command, path, raw_query, query, headers, body)
            else:
                status, extra, data = self._eventbridge(http.command, path, query, headers, body)
        except acs3.SignatureError as exc:
            status, extra = exc.status, {}
            data = json.dumps({"Code": exc.code, "Message": exc.message, "RequestId": _rid()}).encode()
        except (EventBridgeApiError, FcApiError) as exc:
            status, extra = exc.status, {}
            data = json.dumps({"Code": exc.code, "Message": exc.message, "RequestId": _rid()}).encode()
        except SlsApiError as exc:
            status, extra = exc.status, {"x-log-requestid": _rid()}
            data = json.dumps({"errorCode": exc.code, "errorMessage": exc.message}).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)

    def _eventbridge(self, method, path, query, headers, body):
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()} if body else {}
        acs3.verify(method, path, query, headers, body, self.credentials, nonces=self.nonces)
        action = headers.get("x-acs-action", "")
        if headers.get("x-acs-version") != "2020-04-01":
            raise EventBridgeApiError(400, "InvalidVersion", "this endpoint serves EventBridge 2020-04-01")
        answer = self.eventbridge.handle(action, {**query, **form})
        self.calls.append(("eventbridge", action, 200))
        return 200, {}, json.dumps({**answer, "RequestId": _rid()}).encode()

    def _fc(self, method, path, raw_query, query, headers, body):
        from localcloud.fc import auth as fcauth

        acs3.verify(
            method,
            path,
            query,
            headers,
            body,
            self.credentials,
            nonces=self.nonces,
            canonical_query_string=fcauth.canonical_query(raw_query),
        )
        status, extra, data = self.fc.handle(method, path, query, body)
        self.calls.append(("fc", f"{method} {path}", status))
        return status, {**extra, "x-fc-request-id": extra.get("x-fc-request-id", _rid())}, data

    def _sls(self, method, path, query, headers, body):
        verify_signature(method, path, query, headers, body, self.credentials)
        host = headers.get("host", "")
        project = host.split(".", 1)[0] if host and not host[0].isdigit() else None
        status, answer = self.sls.handle(method, path, project, query, body)
        self.calls.append(("sls", f"{method} {path}", status))
        data = b"" if answer is None else json.dumps(answer).encode()
        return status, {"x-log-requestid": _rid()}, data


def _rid() -> str:
    return str(uuid.uuid4()).upper()
