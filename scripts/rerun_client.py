#!/usr/bin/env python3
"""Rerun DataWorks task instances through the deployed HTTP function, and print what happened.

    scripts/rerun_client.py URL --ids 1000012345678 1000012345679 --comment "rerun after upstream fix"
    scripts/rerun_client.py URL --ids 1000012345678 --dry-run --json

The HTTP trigger's authType is `function`: FC's gateway accepts only requests signed with an
AccessKey allowed `fc:InvokeFunction` on the function. The client signs with the credentials in
ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET (/ ALIBABA_CLOUD_SECURITY_TOKEN),
or with a profile of the aliyun CLI's ~/.aliyun/config.json (--profile). Against the local
gateway (a loopback URL) it needs none and sends the request unsigned when it has none.

Exit status: 0 when the function answered 200, 1 when it refused or failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcloud import fcauth  # noqa: E402 - the one implementation of FC's HTTP-trigger signature

PROFILE_FILE = Path.home() / ".aliyun" / "config.json"


def main(argv: list[str] | None = None, out=sys.stdout, environ=None) -> int:
    args = _parser().parse_args(argv)
    url = args.url.rstrip("/") + "/rerun" if urlsplit(args.url).path in ("", "/") else args.url
    body = {"Ids": args.ids, "DryRun": args.dry_run, "Force": args.force}
    if args.comment:
        body["Comment"] = args.comment
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    try:
        credentials = _credentials(args.profile, os.environ if environ is None else environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if credentials is not None:
        headers.update(fcauth.sign("POST", url, credentials, data))
    elif not _is_loopback(url):
        print(
            "error: no credentials to sign with: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or pass --profile",
            file=sys.stderr,
        )
        return 2
    status, answer = _post(url, data, headers, args.timeout)
    if args.json:
        print(json.dumps({"status": status, **answer}, indent=2, ensure_ascii=False), file=out)
    else:
        _print_table(status, answer, out)
    return 0 if status == 200 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the HTTP trigger's URL (…/rerun is added when the path is empty)")
    parser.add_argument("--ids", nargs="+", type=int, required=True, metavar="ID", help="task instance ids")
    parser.add_argument("--comment", help="why: kept in DataWorks' operation log and in the SLS records")
    parser.add_argument("--dry-run", action="store_true", help="decide and record, rerun nothing")
    parser.add_argument("--force", action="store_true", help="lift the RERUN_MAX_RERUNS cap (only that)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON instead of a table")
    parser.add_argument("--profile", help="an aliyun CLI profile name in ~/.aliyun/config.json")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the answer")
    return parser


def _credentials(profile: str | None, environ):
    if profile:
        try:
            config = json.loads(PROFILE_FILE.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {PROFILE_FILE}: {exc}") from None
        for entry in config.get("profiles", []):
            if entry.get("name") == profile:
                return SimpleNamespace(
                    access_key_id=entry.get("access_key_id"),
                    access_key_secret=entry.get("access_key_secret"),
                    security_token=entry.get("sts_token") or None,
                )
        raise ValueError(f"no profile {profile!r} in {PROFILE_FILE}")
    key_id = environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not (key_id and secret):
        return None
    return SimpleNamespace(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None,
    )


def _post(url: str, data: bytes, headers: dict, timeout: float) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        return 0, {"Code": "ConnectionFailed", "Message": str(getattr(error, "reason", error))}
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"Code": "NotJSON", "Message": raw[:200].decode("utf-8", "replace")}
    return status, answer if isinstance(answer, dict) else {"Answer": answer}


def _print_table(status: int, answer: dict, out) -> None:
    if "Code" in answer:
        print(f"HTTP {status} {answer.get('Code')}: {answer.get('Message')}", file=out)
    rows = [("instance", "result", "message")]
    for instance_id, info in answer.get("SuccessInfo", {}).items():
        rows.append((instance_id, "rerun" if info.get("Success") else "failed", info.get("Message") or ""))
    for instance_id, reason in answer.get("Skipped", {}).items():
        rows.append((instance_id, "skipped", reason))
    if len(rows) > 1:
        widths = [max(len(str(row[n])) for row in rows) for n in range(2)]
        for row in rows:
            print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}", file=out)
    if answer.get("RequestId"):
        print(f"request {answer['RequestId']}" + (" (dry run)" if answer.get("DryRun") else ""), file=out)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
