"""The one place that reads configuration.

Every setting is an environment variable set in template.yml. `Settings.from_env()` reads them all
once, checks them, and fails with an error naming the variable, so a bad deploy fails on its first
invocation instead of rerunning the wrong thing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dwrerun.values import positive_int64

# The variables this function reads that a user sets (template.yml `environmentVariables`).
# tests/test_template.py checks that the template sets exactly these.
DATAWORKS_ENDPOINT = "DATAWORKS_ENDPOINT"
DATAWORKS_NETWORK = "DATAWORKS_NETWORK"
DATAWORKS_READ_QPS = "DATAWORKS_READ_QPS"
DATAWORKS_WRITE_QPS = "DATAWORKS_WRITE_QPS"
DATAWORKS_CONNECT_TIMEOUT = "DATAWORKS_CONNECT_TIMEOUT"
DATAWORKS_READ_TIMEOUT = "DATAWORKS_READ_TIMEOUT"
DATAWORKS_LOG_TIMEOUT = "DATAWORKS_LOG_TIMEOUT"
RERUN_MAX_RERUNS = "RERUN_MAX_RERUNS"
RERUN_PROJECT_ENV = "RERUN_PROJECT_ENV"
RERUN_PROJECT_IDS = "RERUN_PROJECT_IDS"
RERUN_EXCLUDE_TASK_IDS = "RERUN_EXCLUDE_TASK_IDS"
RERUN_DRY_RUN = "RERUN_DRY_RUN"
RERUN_CHUNK_SIZE = "RERUN_CHUNK_SIZE"
RERUN_HTTP_MAX_IDS = "RERUN_HTTP_MAX_IDS"
RERUN_READ_LOGS = "RERUN_READ_LOGS"
RERUN_RULES_FILE = "RERUN_RULES_FILE"
RERUN_RULES_DEFAULT = "RERUN_RULES_DEFAULT"
RERUN_BACKOFF_BASE_SECONDS = "RERUN_BACKOFF_BASE_SECONDS"
RERUN_BACKOFF_MAX_SECONDS = "RERUN_BACKOFF_MAX_SECONDS"
FUNCTION_COMPUTE_ENDPOINT = "FUNCTION_COMPUTE_ENDPOINT"
RERUN_PLAN_REQUIRED_ABOVE = "RERUN_PLAN_REQUIRED_ABOVE"
RERUN_PLAN_TTL_SECONDS = "RERUN_PLAN_TTL_SECONDS"
RERUN_SIGNING_KEY = "RERUN_SIGNING_KEY"  # noqa: S105 (a variable name)
RERUN_STORM_THRESHOLD = "RERUN_STORM_THRESHOLD"
RERUN_STORM_WINDOW_SECONDS = "RERUN_STORM_WINDOW_SECONDS"
RERUN_STORM_MAX_HOLD_SECONDS = "RERUN_STORM_MAX_HOLD_SECONDS"
RERUN_SWEEP_LOOKBACK_SECONDS = "RERUN_SWEEP_LOOKBACK_SECONDS"
RERUN_SWEEP_GRACE_SECONDS = "RERUN_SWEEP_GRACE_SECONDS"
RERUN_SWEEP_PROJECT_IDS = "RERUN_SWEEP_PROJECT_IDS"

USER_VARIABLES = (
    DATAWORKS_ENDPOINT,
    DATAWORKS_NETWORK,
    DATAWORKS_READ_QPS,
    DATAWORKS_WRITE_QPS,
    DATAWORKS_CONNECT_TIMEOUT,
    DATAWORKS_READ_TIMEOUT,
    DATAWORKS_LOG_TIMEOUT,
    RERUN_MAX_RERUNS,
    RERUN_PROJECT_ENV,
    RERUN_PROJECT_IDS,
    RERUN_EXCLUDE_TASK_IDS,
    RERUN_DRY_RUN,
    RERUN_CHUNK_SIZE,
    RERUN_HTTP_MAX_IDS,
    RERUN_READ_LOGS,
    RERUN_RULES_FILE,
    RERUN_RULES_DEFAULT,
    RERUN_BACKOFF_BASE_SECONDS,
    RERUN_BACKOFF_MAX_SECONDS,
    FUNCTION_COMPUTE_ENDPOINT,
    RERUN_PLAN_REQUIRED_ABOVE,
    RERUN_PLAN_TTL_SECONDS,
    RERUN_SIGNING_KEY,
    RERUN_STORM_THRESHOLD,
    RERUN_STORM_WINDOW_SECONDS,
    RERUN_STORM_MAX_HOLD_SECONDS,
    RERUN_SWEEP_LOOKBACK_SECONDS,
    RERUN_SWEEP_GRACE_SECONDS,
    RERUN_SWEEP_PROJECT_IDS,
)

# Injected by Function Compute itself (never set in the template: FC refuses names starting FC_).
FC_REGION = "FC_REGION"
FC_FUNCTION_NAME = "FC_FUNCTION_NAME"
FC_ACCOUNT_ID = "FC_ACCOUNT_ID"
ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 (a variable name)
SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 (a variable name)

PROJECT_ENVS = ("Prod", "Dev")
RULE_ACTIONS = ("rerun", "skip")  # what a failure rule (and RERUN_RULES_DEFAULT) may say
ANY_ENV = "any"
# x-fc-async-delay is documented as (0, 3600) seconds, open at both ends (FC 3.0's asynchronous
# invocation overview; FC 2.0 pages said [0, 3600]): 3599 is the longest whole delay both allow, and
# the longest the function ever asks for (docs/inferred-facts.md).
FC_MAX_ASYNC_DELAY = 3599
MIN_SIGNING_KEY_CHARS = 32  # RERUN_SIGNING_KEY: scripts/deploy generates 43 (32 random bytes, base64url)
PLAN_TTL_RANGE = (60, 86400)  # seconds a plan token stays good: a minute to a day


class ConfigError(ValueError):
    """A setting has a value the function cannot run with. The message names the variable."""


@dataclass(frozen=True)
class Settings:
    endpoint: str | None = None
    network: str = "public"
    # Calls per second of one instance (FC 3.0 runs one invocation per instance, each with its
    # own limiter). The template's defaults: its 10 instances at most use 45 reads/s and 18
    # writes/s, 90% of Enterprise's quota (docs/sizing.md).
    read_qps: float = 4.5
    write_qps: float = 1.8
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_reruns: int = 3
    project_env: str = "Prod"
    project_ids: frozenset[int] = field(default_factory=frozenset)
    exclude_task_ids: frozenset[int] = field(default_factory=frozenset)
    dry_run: bool = False
    chunk_size: int = 50
    http_max_ids: int = 100
    # Failure rules (dwrerun/rules.py): read the failed run's log and match it before a rerun.
    read_logs: bool = True
    rules_file: str | None = None  # None: the rules shipped in the code package
    rules_default: str = "rerun"  # when the log was read and no rule matched
    # GetTaskInstanceLog answers the whole log in one body, with no paging and no documented size
    # limit: it gets a longer read timeout of its own than the other calls.
    log_timeout: float = 30.0
    # Scheduled reruns (docs/retries-and-scheduling.md): 0 reruns at once, as before the feature.
    backoff_base: int = 120
    backoff_max: int = 1800
    function_compute_endpoint: str | None = None
    # Bulk reruns by filter (docs/http-api.md): a real rerun of more instances than this needs the
    # token of a dry run over the same filter, made in the last `plan_ttl` seconds.
    plan_required_above: int = 100
    plan_ttl: int = 900
    # Signs plan tokens and continuation payloads (dwrerun/signing.py). Never shown: not in repr.
    signing_key: str | None = field(default=None, repr=False)
    # The storm guard (dwrerun/storm.py, docs/storm-guard.md): this many failures of one cause in
    # the window open a storm; 0 turns the guard off. A held instance gives up after max_hold.
    storm_threshold: int = 20
    storm_window: int = 600
    storm_max_hold: int = 7200
    # The sweep (dwrerun/sweep.py, docs/sweep.md): failed runs that ended between now - lookback and
    # now - grace. The grace leaves newer failures to their events.
    sweep_lookback: int = 21600
    sweep_grace: int = 600
    # The workspaces the sweep lists; empty: RERUN_PROJECT_IDS (`sweep_projects`).
    sweep_project_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def sweep_projects(self) -> frozenset[int]:
        """The workspaces a sweep looks at: RERUN_SWEEP_PROJECT_IDS, else RERUN_PROJECT_IDS."""
        return self.sweep_project_ids or self.project_ids

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        defaults = cls()
        network = (get(DATAWORKS_NETWORK) or defaults.network).lower()
        if network not in ("public", "vpc"):
            raise ConfigError(f"{DATAWORKS_NETWORK} must be 'public' or 'vpc', got {network!r}")
        project_env = get(RERUN_PROJECT_ENV) or defaults.project_env
        if project_env.lower() == ANY_ENV:
            project_env = ANY_ENV
        elif project_env.capitalize() in PROJECT_ENVS:
            project_env = project_env.capitalize()
        else:
            raise ConfigError(f"{RERUN_PROJECT_ENV} must be 'Prod', 'Dev' or 'any', got {project_env!r}")
        rules_default = (get(RERUN_RULES_DEFAULT) or defaults.rules_default).lower()
        if rules_default not in RULE_ACTIONS:
            raise ConfigError(f"{RERUN_RULES_DEFAULT} must be 'rerun' or 'skip', got {rules_default!r}")
        endpoint = get(DATAWORKS_ENDPOINT)
        if endpoint is not None:
            parse_endpoint(endpoint)  # a bad form fails here, at start, not as a TransportError per call
        return cls(
            endpoint=endpoint,
            network=network,
            read_qps=_number(get, DATAWORKS_READ_QPS, defaults.read_qps, minimum=0.1),
            write_qps=_number(get, DATAWORKS_WRITE_QPS, defaults.write_qps, minimum=0.1),
            connect_timeout=_number(get, DATAWORKS_CONNECT_TIMEOUT, defaults.connect_timeout, minimum=0.1),
            read_timeout=_number(get, DATAWORKS_READ_TIMEOUT, defaults.read_timeout, minimum=0.1),
            max_reruns=int(_number(get, RERUN_MAX_RERUNS, defaults.max_reruns, minimum=0, integer=True)),
            project_env=project_env,
            project_ids=_id_set(get, RERUN_PROJECT_IDS),
            exclude_task_ids=_id_set(get, RERUN_EXCLUDE_TASK_IDS),
            dry_run=_boolean(get, RERUN_DRY_RUN),
            chunk_size=int(_number(get, RERUN_CHUNK_SIZE, defaults.chunk_size, minimum=1, integer=True)),
            http_max_ids=int(_number(get, RERUN_HTTP_MAX_IDS, defaults.http_max_ids, minimum=1, integer=True)),
            read_logs=_boolean(get, RERUN_READ_LOGS, default=True),
            rules_file=get(RERUN_RULES_FILE),
            rules_default=rules_default,
            log_timeout=_number(get, DATAWORKS_LOG_TIMEOUT, defaults.log_timeout, minimum=0.1),
            backoff_base=int(_number(get, RERUN_BACKOFF_BASE_SECONDS, defaults.backoff_base, minimum=0, integer=True)),
            backoff_max=_backoff_max(get, defaults.backoff_max),
            function_compute_endpoint=get(FUNCTION_COMPUTE_ENDPOINT),
            plan_required_above=int(
                _number(get, RERUN_PLAN_REQUIRED_ABOVE, defaults.plan_required_above, minimum=0, integer=True)
            ),
            plan_ttl=_plan_ttl(get, defaults.plan_ttl),
            signing_key=_signing_key(get),
            storm_threshold=int(_number(get, RERUN_STORM_THRESHOLD, defaults.storm_threshold, minimum=0, integer=True)),
            storm_window=_storm_window(get, defaults.storm_window),
            storm_max_hold=int(
                _number(get, RERUN_STORM_MAX_HOLD_SECONDS, defaults.storm_max_hold, minimum=60, integer=True)
            ),
            **_sweep_window(get, defaults),
        )


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_endpoint(raw: str) -> tuple[str, str]:
    """(host[:port], protocol) of a DATAWORKS_ENDPOINT value, or a ConfigError saying which form to use.

    `host[:port]` means https. A loopback host must be given as a URL, `http://127.0.0.1:PORT`:
    the local emulator speaks plain http, and `127.0.0.1:PORT` read as https made every call fail
    with a bare TransportError. Plain http is refused for any other host: it would carry the STS
    token in clear text.
    """
    has_scheme = "://" in raw
    parts = urlsplit(raw if has_scheme else f"https://{raw}")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    host = parts.hostname if parts else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or not (_HOST.fullmatch(host) or _is_ip(host))
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigError(
            f"{DATAWORKS_ENDPOINT} must be host[:port] (https) or an http(s) URL such as "
            f"https://dataworks-vpc.cn-hangzhou.aliyuncs.com, got {raw!r}"
        )
    if not has_scheme and is_loopback(host):
        raise ConfigError(
            f"{DATAWORKS_ENDPOINT} {raw!r} is a loopback address without a scheme, which would mean https; "
            f"the local DataWorks emulator speaks http: write it as http://{raw}"
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{DATAWORKS_ENDPOINT} may use http:// only for a loopback address (the local emulator), "
            f"got {raw!r}: use https://"
        )
    return parts.netloc, parts.scheme


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _number(get, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _backoff_max(get, default: int) -> int:
    value = int(_number(get, RERUN_BACKOFF_MAX_SECONDS, default, minimum=1, integer=True))
    if value > FC_MAX_ASYNC_DELAY:
        raise ConfigError(
            f"{RERUN_BACKOFF_MAX_SECONDS} must be at most {FC_MAX_ASYNC_DELAY} (FC delays an asynchronous "
            f"invocation by less than 3600 s), got {value}"
        )
    return value


def _storm_window(get, default: int) -> int:
    # The window is counted by tally tasks delayed by it (storm.py): FC delays by less than an hour.
    value = int(_number(get, RERUN_STORM_WINDOW_SECONDS, default, minimum=1, integer=True))
    if value > FC_MAX_ASYNC_DELAY:
        raise ConfigError(
            f"{RERUN_STORM_WINDOW_SECONDS} must be at most {FC_MAX_ASYNC_DELAY} (FC delays an asynchronous "
            f"invocation by less than 3600 s, and the window is counted by such delays), got {value}"
        )
    return value


def _plan_ttl(get, default: int) -> int:
    low, high = PLAN_TTL_RANGE
    value = int(_number(get, RERUN_PLAN_TTL_SECONDS, default, minimum=low, integer=True))
    if value > high:
        raise ConfigError(f"{RERUN_PLAN_TTL_SECONDS} must be at most {high} (a day), got {value}")
    return value


def _sweep_window(get, defaults: Settings) -> dict:
    lookback = int(_number(get, RERUN_SWEEP_LOOKBACK_SECONDS, defaults.sweep_lookback, minimum=60, integer=True))
    grace = int(_number(get, RERUN_SWEEP_GRACE_SECONDS, defaults.sweep_grace, minimum=0, integer=True))
    if grace >= lookback:
        raise ConfigError(
            f"{RERUN_SWEEP_GRACE_SECONDS} ({grace}) must be less than {RERUN_SWEEP_LOOKBACK_SECONDS} ({lookback}): "
            "the sweep looks at failures that ended between now - lookback and now - grace"
        )
    return {
        "sweep_lookback": lookback,
        "sweep_grace": grace,
        "sweep_project_ids": _id_set(get, RERUN_SWEEP_PROJECT_IDS),
    }


def _signing_key(get) -> str | None:
    key = get(RERUN_SIGNING_KEY)
    if key is not None and len(key) < MIN_SIGNING_KEY_CHARS:
        # The message gives the length, never the value: the key is a secret.
        raise ConfigError(
            f"{RERUN_SIGNING_KEY} must be at least {MIN_SIGNING_KEY_CHARS} characters (scripts/deploy generates "
            f"one), got {len(key)} characters"
        )
    return key


def _boolean(get, name: str, default: bool = False) -> bool:
    raw = (get(name) or str(default)).lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be 'true' or 'false', got {raw!r}")


def _id_set(get, name: str) -> frozenset[int]:
    raw = get(name)
    if raw is None:
        return frozenset()
    ids = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        number = positive_int64(part)
        if number is None:
            raise ConfigError(f"{name} must be a comma-separated list of positive integer ids, got {part!r}")
        ids.add(number)
    return frozenset(ids)
