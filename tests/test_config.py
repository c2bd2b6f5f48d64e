"""Settings: defaults, parsing, and errors that name the variable."""

import pytest

from dwrerun import rules
from dwrerun.config import USER_VARIABLES, ConfigError, Settings, is_loopback, parse_endpoint


def test_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.max_reruns, settings.project_env, settings.dry_run, settings.http_max_ids) == (
        3,
        "Prod",
        False,
        100,
    )
    # Failure rules: logs are read, the shipped rules apply, an unmatched failure is rerun.
    assert (settings.read_logs, settings.rules_file, settings.rules_default, settings.log_timeout) == (
        True,
        None,
        "rerun",
        30.0,
    )


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "RERUN_MAX_RERUNS": "5",
            "RERUN_PROJECT_ENV": "any",
            "RERUN_PROJECT_IDS": "48213, 1,",
            "RERUN_EXCLUDE_TASK_IDS": "7",
            "RERUN_DRY_RUN": "true",
            "RERUN_CHUNK_SIZE": "10",
            "DATAWORKS_NETWORK": "VPC",
            "DATAWORKS_READ_QPS": "2.5",
            "RERUN_READ_LOGS": "false",
            "RERUN_RULES_FILE": "my-rules.json",
            "RERUN_RULES_DEFAULT": "SKIP",
            "DATAWORKS_LOG_TIMEOUT": "60",
        }
    )
    assert settings.max_reruns == 5 and settings.project_env == "any" and settings.dry_run
    assert settings.project_ids == {48213, 1} and settings.exclude_task_ids == {7}
    assert (settings.chunk_size, settings.network, settings.read_qps) == (10, "vpc", 2.5)
    assert not settings.read_logs and settings.rules_file == "my-rules.json"
    assert (settings.rules_default, settings.log_timeout) == ("skip", 60.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RERUN_MAX_RERUNS", "three"),
        ("RERUN_MAX_RERUNS", "-1"),
        ("RERUN_PROJECT_ENV", "Staging"),
        ("RERUN_PROJECT_IDS", "48213,abc"),
        ("RERUN_EXCLUDE_TASK_IDS", "0"),
        ("RERUN_DRY_RUN", "maybe"),
        ("RERUN_CHUNK_SIZE", "0"),
        ("RERUN_HTTP_MAX_IDS", "1.5"),
        ("DATAWORKS_NETWORK", "internal"),
        ("DATAWORKS_READ_QPS", "nan"),
        ("DATAWORKS_WRITE_QPS", "0"),
        ("DATAWORKS_READ_TIMEOUT", "soon"),
        ("DATAWORKS_LOG_TIMEOUT", "0"),
        ("RERUN_READ_LOGS", "sometimes"),
        ("RERUN_RULES_DEFAULT", "retry"),
        ("RERUN_BACKOFF_BASE_SECONDS", "-1"),
        ("RERUN_BACKOFF_BASE_SECONDS", "1.5"),
        ("RERUN_BACKOFF_MAX_SECONDS", "0"),
        ("RERUN_BACKOFF_MAX_SECONDS", "3601"),
    ],
)
def test_a_bad_value_fails_with_an_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_every_user_variable_is_read():
    # Each variable, set to a bad value, must change the outcome: none is listed but ignored.
    for name in USER_VARIABLES:
        if name == "DATAWORKS_ENDPOINT":
            assert Settings.from_env({name: "http://127.0.0.1:1"}).endpoint == "http://127.0.0.1:1"
            continue
        if name == "FUNCTION_COMPUTE_ENDPOINT":  # checked where it is used (tests/test_function_compute.py)
            assert Settings.from_env({name: "127.0.0.1:1"}).function_compute_endpoint == "127.0.0.1:1"
            continue
        if name == "RERUN_RULES_FILE":  # a path: the rules loader reads and checks it, naming the variable
            with pytest.raises(ConfigError, match=name):
                rules.load(Settings.from_env({name: "!"}).rules_file)
            continue
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "!"})


def test_scheduled_rerun_settings():
    assert (Settings().backoff_base, Settings().backoff_max) == (120, 1800)
    settings = Settings.from_env({"RERUN_BACKOFF_BASE_SECONDS": "0", "RERUN_BACKOFF_MAX_SECONDS": "3599"})
    assert (settings.backoff_base, settings.backoff_max) == (0, 3599)  # 0: rerun at once, as before


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.1"])
def test_a_loopback_endpoint_without_a_scheme_is_refused_with_the_form_to_use(endpoint):
    # Before: "127.0.0.1:8080" meant https, so every call to the local emulator (plain http)
    # failed with a bare TransportError, invocation after invocation.
    with pytest.raises(ConfigError, match=r"DATAWORKS_ENDPOINT .*write it as http://") as caught:
        Settings.from_env({"DATAWORKS_ENDPOINT": endpoint})
    assert f"http://{endpoint}" in str(caught.value)


@pytest.mark.parametrize(
    "endpoint", ["!", "https://x/path", "ftp://x", "http://10.0.0.1:80", "dw.example.com:port", "https://"]
)
def test_a_malformed_or_unsafe_endpoint_is_refused_at_start(endpoint):
    with pytest.raises(ConfigError, match="DATAWORKS_ENDPOINT"):
        Settings.from_env({"DATAWORKS_ENDPOINT": endpoint})


@pytest.mark.parametrize(
    "endpoint", ["dataworks.example.internal:8443", "dataworks-vpc.cn-hangzhou.aliyuncs.com", "http://127.0.0.1:9"]
)
def test_a_remote_host_port_or_a_loopback_url_is_accepted(endpoint):
    assert Settings.from_env({"DATAWORKS_ENDPOINT": endpoint}).endpoint == endpoint


# --- every variable, parsed and refused, with the whole message an operator reads ----------------


def test_every_variable_is_parsed_into_its_setting():
    key = "k" * 32
    settings = Settings.from_env(
        {
            "DATAWORKS_ENDPOINT": "  dw.example.com:8443  ",  # values are stripped
            "DATAWORKS_NETWORK": "Vpc",
            "DATAWORKS_READ_QPS": "0.1",
            "DATAWORKS_WRITE_QPS": "0.2",
            "DATAWORKS_CONNECT_TIMEOUT": "0.3",
            "DATAWORKS_READ_TIMEOUT": "0.4",
            "DATAWORKS_LOG_TIMEOUT": "0.5",
            "RERUN_MAX_RERUNS": "0",
            "RERUN_PROJECT_ENV": "dev",
            "RERUN_PROJECT_IDS": " 9223372036854775807 ,, 1",
            "RERUN_EXCLUDE_TASK_IDS": "2,3",
            "RERUN_DRY_RUN": "YES",
            "RERUN_CHUNK_SIZE": "1",
            "RERUN_HTTP_MAX_IDS": "1",
            "RERUN_READ_LOGS": "0",
            "RERUN_RULES_FILE": " rules.json ",
            "RERUN_RULES_DEFAULT": "Skip",
            "RERUN_BACKOFF_BASE_SECONDS": "0",
            "RERUN_BACKOFF_MAX_SECONDS": "1",
            "FUNCTION_COMPUTE_ENDPOINT": "fc.example.com",
            "RERUN_PLAN_REQUIRED_ABOVE": "0",
            "RERUN_PLAN_TTL_SECONDS": "60",
            "RERUN_SIGNING_KEY": key,
        }
    )
    assert settings == Settings(
        endpoint="dw.example.com:8443",
        network="vpc",
        read_qps=0.1,
        write_qps=0.2,
        connect_timeout=0.3,
        read_timeout=0.4,
        log_timeout=0.5,
        max_reruns=0,
        project_env="Dev",
        project_ids=frozenset({2**63 - 1, 1}),
        exclude_task_ids=frozenset({2, 3}),
        dry_run=True,
        chunk_size=1,
        http_max_ids=1,
        read_logs=False,
        rules_file="rules.json",
        rules_default="skip",
        backoff_base=0,
        backoff_max=1,
        function_compute_endpoint="fc.example.com",
        plan_required_above=0,
        plan_ttl=60,
        signing_key=key,
    )
    assert key not in repr(settings)  # compared by ==, never shown


def test_the_defaults_of_every_setting():
    assert Settings.from_env({name: "  " for name in USER_VARIABLES}) == Settings(
        endpoint=None,
        network="public",
        read_qps=4.5,
        write_qps=1.8,
        connect_timeout=5.0,
        read_timeout=10.0,
        log_timeout=30.0,
        max_reruns=3,
        project_env="Prod",
        project_ids=frozenset(),
        exclude_task_ids=frozenset(),
        dry_run=False,
        chunk_size=50,
        http_max_ids=100,
        read_logs=True,
        rules_file=None,
        rules_default="rerun",
        backoff_base=120,
        backoff_max=1800,
        function_compute_endpoint=None,
        plan_required_above=100,
        plan_ttl=900,
        signing_key=None,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATAWORKS_NETWORK", "Internal", "DATAWORKS_NETWORK must be 'public' or 'vpc', got 'internal'"),
        ("RERUN_PROJECT_ENV", "Staging", "RERUN_PROJECT_ENV must be 'Prod', 'Dev' or 'any', got 'Staging'"),
        ("RERUN_RULES_DEFAULT", "Retry", "RERUN_RULES_DEFAULT must be 'rerun' or 'skip', got 'retry'"),
        ("DATAWORKS_READ_QPS", "fast", "DATAWORKS_READ_QPS must be a number, got 'fast'"),
        ("DATAWORKS_READ_QPS", "0.09", "DATAWORKS_READ_QPS must be at least 0.1, got '0.09'"),
        ("DATAWORKS_READ_QPS", "nan", "DATAWORKS_READ_QPS must be at least 0.1, got 'nan'"),
        ("DATAWORKS_WRITE_QPS", "0.09", "DATAWORKS_WRITE_QPS must be at least 0.1, got '0.09'"),
        ("DATAWORKS_CONNECT_TIMEOUT", "0.09", "DATAWORKS_CONNECT_TIMEOUT must be at least 0.1, got '0.09'"),
        ("DATAWORKS_READ_TIMEOUT", "0.09", "DATAWORKS_READ_TIMEOUT must be at least 0.1, got '0.09'"),
        ("DATAWORKS_LOG_TIMEOUT", "0.09", "DATAWORKS_LOG_TIMEOUT must be at least 0.1, got '0.09'"),
        ("RERUN_MAX_RERUNS", "1.0", "RERUN_MAX_RERUNS must be an integer, got '1.0'"),
        ("RERUN_MAX_RERUNS", "-1", "RERUN_MAX_RERUNS must be at least 0, got '-1'"),
        ("RERUN_CHUNK_SIZE", "0", "RERUN_CHUNK_SIZE must be at least 1, got '0'"),
        ("RERUN_HTTP_MAX_IDS", "0", "RERUN_HTTP_MAX_IDS must be at least 1, got '0'"),
        ("RERUN_BACKOFF_BASE_SECONDS", "-1", "RERUN_BACKOFF_BASE_SECONDS must be at least 0, got '-1'"),
        ("RERUN_BACKOFF_MAX_SECONDS", "0", "RERUN_BACKOFF_MAX_SECONDS must be at least 1, got '0'"),
        (
            "RERUN_BACKOFF_MAX_SECONDS",
            "3600",
            "RERUN_BACKOFF_MAX_SECONDS must be at most 3599 (FC delays an asynchronous invocation by less "
            "than 3600 s), got 3600",
        ),
        (
            "RERUN_STORM_WINDOW_SECONDS",
            "3600",
            "RERUN_STORM_WINDOW_SECONDS must be at most 3599 (FC delays an asynchronous invocation by less "
            "than 3600 s, and the window is counted by such delays), got 3600",
        ),
        ("RERUN_PLAN_REQUIRED_ABOVE", "-1", "RERUN_PLAN_REQUIRED_ABOVE must be at least 0, got '-1'"),
        ("RERUN_PLAN_TTL_SECONDS", "59", "RERUN_PLAN_TTL_SECONDS must be at least 60, got '59'"),
        ("RERUN_PLAN_TTL_SECONDS", "86401", "RERUN_PLAN_TTL_SECONDS must be at most 86400 (a day), got 86401"),
        (
            "RERUN_SIGNING_KEY",
            "s" * 31,
            "RERUN_SIGNING_KEY must be at least 32 characters (scripts/deploy generates one), got 31 characters",
        ),
        ("RERUN_DRY_RUN", "Maybe", "RERUN_DRY_RUN must be 'true' or 'false', got 'maybe'"),
        ("RERUN_READ_LOGS", "on", "RERUN_READ_LOGS must be 'true' or 'false', got 'on'"),
        (
            "RERUN_PROJECT_IDS",
            "1, 2x",
            "RERUN_PROJECT_IDS must be a comma-separated list of positive integer ids, got '2x'",
        ),
        (
            "RERUN_EXCLUDE_TASK_IDS",
            "0",
            "RERUN_EXCLUDE_TASK_IDS must be a comma-separated list of positive integer ids, got '0'",
        ),
        (
            "RERUN_PROJECT_IDS",
            "9223372036854775808",
            "RERUN_PROJECT_IDS must be a comma-separated list of positive integer ids, got '9223372036854775808'",
        ),
        (
            "RERUN_PROJECT_IDS",
            "\u0661\u0662",  # Arabic-Indic digits: isdigit() says yes, an id they are not
            "RERUN_PROJECT_IDS must be a comma-separated list of positive integer ids, got '\u0661\u0662'",
        ),
    ],
)
def test_a_bad_value_is_refused_with_the_whole_message(name, value, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("RERUN_BACKOFF_MAX_SECONDS", "3599", "backoff_max", 3599),
        ("RERUN_PLAN_TTL_SECONDS", "86400", "plan_ttl", 86400),
        ("RERUN_SIGNING_KEY", "s" * 32, "signing_key", "s" * 32),
        ("RERUN_PROJECT_ENV", "ANY", "project_env", "any"),
        ("RERUN_PROJECT_ENV", "PROD", "project_env", "Prod"),
        ("DATAWORKS_NETWORK", "PUBLIC", "network", "public"),
    ],
)
def test_the_limits_themselves_are_accepted(name, value, attribute, expected):
    assert getattr(Settings.from_env({name: value}), attribute) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("Yes", True), ("FALSE", False), ("0", False), ("no", False)]
)
def test_a_boolean_is_true_1_yes_or_false_0_no_in_any_case(value, expected):
    settings = Settings.from_env({"RERUN_DRY_RUN": value, "RERUN_READ_LOGS": value})
    assert (settings.dry_run, settings.read_logs) == (expected, expected)


def test_the_process_environment_is_read_when_none_is_given(monkeypatch):
    monkeypatch.setenv("RERUN_MAX_RERUNS", "7")
    assert Settings.from_env().max_reruns == 7


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            "dw.example.com/path",
            "DATAWORKS_ENDPOINT must be host[:port] (https) or an http(s) URL such as "
            "https://dataworks-vpc.cn-hangzhou.aliyuncs.com, got 'dw.example.com/path'",
        ),
        (
            "127.0.0.1:8080",
            "DATAWORKS_ENDPOINT '127.0.0.1:8080' is a loopback address without a scheme, which would mean https; "
            "the local DataWorks emulator speaks http: write it as http://127.0.0.1:8080",
        ),
        (
            "http://dw.example.com",
            "DATAWORKS_ENDPOINT may use http:// only for a loopback address (the local emulator), "
            "got 'http://dw.example.com': use https://",
        ),
    ],
)
def test_a_bad_endpoint_is_refused_with_the_whole_message(endpoint, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATAWORKS_ENDPOINT": endpoint})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://dw.example.com?x=1",
        "https://dw.example.com#frag",
        "https://user@dw.example.com",
        "https://-dw.example.com",
        "https://dw_example.com",
        "dw.example.com:99999999999",
        "https:///path",
    ],
)
def test_an_endpoint_with_anything_but_a_host_and_port_is_refused(endpoint):
    with pytest.raises(ConfigError, match="must be host\\[:port\\]"):
        parse_endpoint(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("dw.example.com", ("dw.example.com", "https")),
        ("https://dw.example.com/", ("dw.example.com", "https")),
        ("http://localhost:9000", ("localhost:9000", "http")),
        ("http://[::1]:9000", ("[::1]:9000", "http")),
        ("http://127.0.0.2:9000", ("127.0.0.2:9000", "http")),
        ("https://10.0.0.1:443", ("10.0.0.1:443", "https")),  # an IP is a host too
        ("a:1", ("a:1", "https")),
    ],
)
def test_an_endpoint_gives_its_host_port_and_protocol(endpoint, expected):
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("10.0.0.1", False),
     ("localhost.example.com", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "name",
    [
        "RERUN_MAX_RERUNS",
        "RERUN_CHUNK_SIZE",
        "RERUN_HTTP_MAX_IDS",
        "RERUN_BACKOFF_BASE_SECONDS",
        "RERUN_BACKOFF_MAX_SECONDS",
        "RERUN_PLAN_REQUIRED_ABOVE",
        "RERUN_PLAN_TTL_SECONDS",
    ],
)
def test_a_count_or_a_whole_number_of_seconds_must_be_an_integer(name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: "120.5"})
    assert str(caught.value) == f"{name} must be an integer, got '120.5'"
