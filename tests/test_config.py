"""Settings: defaults, parsing, and errors that name the variable."""

import pytest

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
        }
    )
    assert settings.max_reruns == 5 and settings.project_env == "any" and settings.dry_run
    assert settings.project_ids == {48213, 1} and settings.exclude_task_ids == {7}
    assert (settings.chunk_size, settings.network, settings.read_qps) == (10, "vpc", 2.5)


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
            assert Settings.from_env({name: "127.0.0.1:1"}).endpoint == "127.0.0.1:1"
            continue
        if name == "FUNCTION_COMPUTE_ENDPOINT":  # checked where it is used (tests/test_function_compute.py)
            assert Settings.from_env({name: "127.0.0.1:1"}).function_compute_endpoint == "127.0.0.1:1"
            continue
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "!"})


def test_scheduled_rerun_settings():
    assert (Settings().backoff_base, Settings().backoff_max) == (120, 1800)
    settings = Settings.from_env({"RERUN_BACKOFF_BASE_SECONDS": "0", "RERUN_BACKOFF_MAX_SECONDS": "3600"})
    assert (settings.backoff_base, settings.backoff_max) == (0, 3600)  # 0: rerun at once, as before
