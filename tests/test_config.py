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
    ],
)
def test_a_bad_value_fails_with_an_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_every_user_variable_is_read():
    # Each variable, set to a bad value, must change the outcome: none is listed but ignored.
    for name in USER_VARIABLES:
        if name == "DATAWORKS_ENDPOINT":
            assert Settings.from_env({name: "127.0.0.1:1"}).endpoint == "127.0.0.1:1"
            continue
        if name == "RERUN_RULES_FILE":  # a path: the rules loader reads and checks it, naming the variable
            with pytest.raises(ConfigError, match=name):
                rules.load(Settings.from_env({name: "!"}).rules_file)
            continue
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "!"})
