"""Settings: defaults, parsing, and errors that name the variable."""

import pytest

from dwrerun import rules
from dwrerun.config import USER_VARIABLES, ConfigError, Settings


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
    settings = Settings.from_env({"RERUN_BACKOFF_BASE_SECONDS": "0", "RERUN_BACKOFF_MAX_SECONDS": "3600"})
    assert (settings.backoff_base, settings.backoff_max) == (0, 3600)  # 0: rerun at once, as before


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
