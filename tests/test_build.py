"""scripts/build: the code package imports and answers on its own, built for the right CPython.

The package is run in a fresh interpreter with nothing but the package and the standard library
on sys.path (-I -S: no site-packages, no PYTHON* variables), the way FC runs /code. The build
downloads wheels from PyPI the first time; pip caches them under ~/.cache/pip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build"
EVENTS = Path(__file__).parent / "events"

# Runs inside the package directory: argv = [package, result file, health event, ignored event].
SMOKE = r"""
import json, sys, types

package, result_file, health_event, ignored_event = sys.argv[1:]
sys.path.insert(0, package)
assert not [p for p in sys.path if "-packages" in p], sys.path

class Context:
    # FC's python3.12 context (the 3.10 one has credentials and service instead of log_*).
    request_id = "1-smoke-test"
    account_id = "1877700012345678"
    region = "cn-hangzhou"
    log_project = "dwrerun-logs"
    log_store = "dwrerun"
    function = types.SimpleNamespace(name="dwrerun-event", handler="index.handle_event", memory=512,
                                     timeout=120, qualifier="LATEST", version_id="1")
    def getLogger(self):
        import logging
        return logging.getLogger("fc")

import index
health = index.handle_http(open(health_event, "rb").read(), Context())
summary = index.handle_event(open(ignored_event, "rb").read(), Context())
modules = {name: getattr(sys.modules.get(name), "__file__", None) for name in ("index", "dwrerun")}
with open(result_file, "w") as f:
    json.dump({"health": health, "summary": summary, "modules": modules}, f)
"""

# What FC injects; no DATAWORKS_* or RERUN_*: the defaults must run.
FC_ENVIRONMENT = {
    "FC_REGION": "cn-hangzhou",
    "FC_ACCOUNT_ID": "1877700012345678",
    "FC_FUNCTION_NAME": "dwrerun-event",
    "FC_FUNCTION_HANDLER": "index.handle_event",
    "FC_FUNCTION_MEMORY_SIZE": "512",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.smoke-test-key-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "smoke-test-secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "smoke-test-token",
}


def load_build_script():
    loader = SourceFileLoader("dwrerun_build", str(BUILD))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def build(out: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"scripts/build {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def smoke(interpreter: str, package: Path, tmp_path: Path) -> dict:
    result_file = tmp_path / "result.json"
    argv = [str(package), str(result_file)]
    argv += [str(EVENTS / "fc-http-health-request.json"), str(EVENTS / "dataworks-instance-running.json")]
    result = subprocess.run(
        [interpreter, "-I", "-S", "-c", SMOKE, *argv],
        cwd=package,
        env=FC_ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"the package failed in a fresh interpreter:\n{result.stderr}"
    return json.loads(result_file.read_text())


@pytest.fixture(scope="module")
def host_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("host") / "code"
    out.mkdir()
    (out / "stale.py").write_text("left over from an earlier build\n")
    output = build(out, "--host")
    assert "MiB unzipped" in output and "MiB zipped" in output
    return out


def test_package_holds_the_function_and_no_tests_or_scripts(host_package):
    assert (host_package / "index.py").is_file()
    assert (host_package / "dwrerun" / "config.py").is_file()
    assert (host_package / "dwrerun" / "failure_rules.json").is_file()  # the shipped failure rules
    assert (host_package / "alibabacloud_tea_openapi").is_dir()
    assert not (host_package / "bin").exists()
    assert not [p for p in host_package.rglob("*") if p.is_dir() and p.name in ("tests", "test")]


def test_build_starts_from_an_empty_directory(host_package):
    assert not (host_package / "stale.py").exists()


def test_build_refuses_to_empty_the_repository():
    build_script = load_build_script()
    with pytest.raises(build_script.BuildError, match="refusing"):
        build_script.build(ROOT, None)


def test_package_answers_health_and_ignores_a_non_failure_event_in_a_fresh_interpreter(host_package, tmp_path):
    result = smoke(sys.executable, host_package, tmp_path)
    # THEN both handlers came from the package, not from the repository
    assert all(path.startswith(str(host_package)) for path in result["modules"].values()), result["modules"]
    assert result["health"]["statusCode"] == 200
    # AND the ignored event gives a summary and reruns nothing
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary.get("rerun", 0) == 0


@pytest.mark.parametrize("python", ["3.12", "3.10"])
def test_target_build_ships_only_wheels_for_that_cpython(python, tmp_path):
    out = tmp_path / "code"
    build(out, "--python", python)
    tag = "cp" + python.replace(".", "")
    # Every wheel installed is pure Python, stable-ABI, or for this CPython on manylinux x86_64.
    for wheel in out.glob("*.dist-info/WHEEL"):
        for line in wheel.read_text().splitlines():
            if not line.startswith("Tag:"):
                continue
            interpreter, abi, platform = line.split(":", 1)[1].strip().split("-")
            assert abi in (tag, "abi3", "none"), f"{wheel.parent.name}: {line}"
            assert interpreter.startswith(("py3", "py2.py3")) or tag in interpreter or abi == "abi3", line
            assert platform == "any" or ("manylinux" in platform and platform.endswith("x86_64")), line
    extensions = list(out.rglob("*.so"))
    assert extensions, "the pins include compiled packages (aiohttp, multidict, cryptography...)"
    version_tag = f"cpython-{tag[2:]}-x86_64-linux-gnu"
    wrong = [p.name for p in extensions if version_tag not in p.name and ".abi3." not in p.name]
    assert not wrong, f"extensions for another Python: {wrong}"
    # .pyc files, when there are any, are for the target version only
    assert not [p.name for p in out.rglob("*.pyc") if f"cpython-{tag[2:]}" not in p.name]

    # AND when this machine has that Python, the package runs on it like on FC
    interpreter = load_build_script().interpreter_for(python)
    if interpreter is not None:
        result = smoke(interpreter, out, tmp_path)
        assert result["health"]["statusCode"] == 200
