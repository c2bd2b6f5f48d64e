"""Every command README.md and docs/ show in a code block runs, as written, on the local cloud.

A newcomer copies these into a terminal. Each `curl`, client, `jq`, `python3` and explain command
is run here against `make serve`'s stand-ins (`scripts/demo.py --serve`, on a free port instead
of 8780) in the order its page gives them; the `jq`/`python3` queries of the records run on the
Logstore `make demo` leaves. A command that needs a deployment (`s …`, `scripts/deploy`, the
client against an https URL or an aliyun profile) is checked against the template and the
client's own argument parser instead; one that starts a server is checked against its `--help`.
`make serve`'s own list of commands to try runs too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rerun_client
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SIGNING_KEY = "local-signing-key-never-shown-" + "x" * 16  # what the serve's functions sign plans with
DOCUMENTED_PORT = "8780"  # make serve's HTTP function, as the pages name it
COMMAND = re.compile(r"^(curl|\.venv/bin/python|python3?|jq|s|scripts/deploy|PYTHONPATH=\S+)\s")


def commands(page: Path) -> list[str]:
    """The shell commands of a page's code blocks (sh, bash or unlabelled), continuations joined,
    trailing comments cut."""
    found = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        if language not in ("", "sh", "bash", "shell"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()
            if COMMAND.match(line):
                found.append(line)
    # and the Serverless Devs commands written inline in the prose, with their options
    found += [span for span in re.findall(r"`(s [^`]+)`", page.read_text()) if " -" in span]
    return found


def kind(command: str) -> str:
    """How a command is tested: run on the local cloud, checked as a deployment command, or as a server."""
    if command.startswith(("s ", "scripts/deploy")):
        return "deployment"
    if "-m localcloud.dataworks" in command:
        return "server"
    if "rerun_client.py" in command and ("https://" in command or "--profile" in command):
        return "deployment"
    if command.startswith(("curl", ".venv/bin/python", "jq", "python3")):
        return "local"
    return "unknown"


SAMPLES = [(page, command) for page in PAGES for command in commands(page)]


def test_the_pages_have_the_commands_a_newcomer_runs_and_each_is_run_or_checked():
    by_kind = {}
    for page, command in SAMPLES:
        by_kind.setdefault(kind(command), []).append(f"{page.name}: {command}")
    assert "unknown" not in by_kind, by_kind.get("unknown")
    readme = [c for p, c in SAMPLES if p.name == "README.md"]
    # the README leads a newcomer to a rerun by filter on the local cloud: plan, then apply
    assert any("--bizdate yesterday" in c and "--plan" in c for c in readme)
    assert any("--apply" in c for c in readme)


# --- the local cloud -------------------------------------------------------------------------------


class Serve:
    """`make serve` (scripts/demo.py --serve) in a process of its own, and what it printed."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.process = subprocess.Popen(
            [sys.executable, "scripts/demo.py", "--serve", "--port", "0", "--logs", str(logs)],
            cwd=ROOT,
            env={**os.environ, "DWRERUN_SIGNING_KEY": SIGNING_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines = []
        for line in self.process.stdout:  # the banner ends with the list of commands and a blank line
            self.lines.append(line.rstrip("\n"))
            if self.lines[-1] == "" and any(x.startswith("Try") for x in self.lines):
                break
        banner = "\n".join(self.lines)
        self.url = re.search(r"HTTP function \(gateway\)\s+(\S+)", banner).group(1)
        self.dataworks = re.search(r"DataWorks OpenAPI emulator\s+(\S+)", banner).group(1)
        self.credentials = dict(re.findall(r"(ALIBABA_CLOUD_\w+)=(\S+)", banner))

    def tries(self) -> list[str]:
        return [
            line.strip()
            for line in self.lines[self.lines.index(next(x for x in self.lines if x.startswith("Try"))) + 1 :]
            if line.strip()
        ]

    def close(self):
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def serve(tmp_path):
    running = Serve(tmp_path / "logs")
    yield running
    running.close()


def run(command: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(  # noqa: S602 - the documented command, as a newcomer pastes it
        command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    if command.startswith("curl"):
        answer = json.loads(done.stdout)
        assert not (isinstance(answer, dict) and "Code" in answer), f"{command}\nanswered {answer}"
    return done


def localised(command: str, serve: Serve, scratch: Path) -> str:
    """The command as run here: the serve's own port, the scratch directory for files it writes,
    this interpreter for .venv/bin/python, absolute paths into the repository."""
    command = command.replace(f"http://127.0.0.1:{DOCUMENTED_PORT}", serve.url).replace("<url>", serve.url)
    command = command.replace(".localcloud/plan.json", "plan.json")
    command = command.replace(".venv/bin/python ", f"{sys.executable} ")
    return re.sub(r"(?<![\w/.])scripts/", f"{ROOT}/scripts/", command)


def local_commands(name: str) -> list[str]:
    return [c for p, c in SAMPLES if p.name == name and kind(c) == "local" and ".localcloud/logs" not in c]


@pytest.mark.parametrize(
    "name", sorted({p.name for p, c in SAMPLES if kind(c) == "local" and ".localcloud/logs" not in c})
)
def test_each_pages_commands_run_in_order_on_make_serve(name, serve, tmp_path):
    # what the explain command reads: a saved log and a copy of the rules, as its page says
    shutil.copy(ROOT / "tests" / "logs" / "shell_network_error.log", tmp_path / "saved.log")
    shutil.copy(ROOT / "function" / "dwrerun" / "failure_rules.json", tmp_path / "my-rules.json")
    env = {**serve.credentials, "DATAWORKS_ENDPOINT": serve.dataworks}
    for command in local_commands(name):
        done = run(localised(command, serve, tmp_path), tmp_path, env)
        if "--apply" in command:
            assert re.search(r"^rerun: 10000123456\d\d", done.stdout, re.M), done.stdout


def test_the_readme_leads_to_a_rerun_by_filter_that_reruns_yesterdays_failures(serve, tmp_path):
    outputs = [run(localised(c, serve, tmp_path), tmp_path).stdout for c in local_commands("README.md")]
    plan, applied = outputs[-2], outputs[-1]
    assert "held back 1000012345684: rule maxcompute-syntax-error" in plan
    assert re.search(r"dry-run\s+4\s+1000012345678, 1000012345685, 1000012345686, 1000012345687", plan), plan
    assert "rerun: 1000012345678, 1000012345685, 1000012345686, 1000012345687" in applied
    # the signing key the local functions hold is in no answer, output or record
    shown = "\n".join([*serve.lines, *outputs, *(path.read_text() for path in serve.logs.glob("*.jsonl"))])
    assert SIGNING_KEY not in shown and "RERUN_SIGNING_KEY=" not in shown


def test_make_serves_own_list_of_commands_runs(serve, tmp_path):
    tries = serve.tries()
    assert any('"ProjectId": 48213' in t for t in tries) and any("--apply" in t for t in tries)
    for command in tries:
        run(localised(command, serve, tmp_path), ROOT if "@tests/" in command else tmp_path)


def test_the_record_queries_run_on_the_demos_logstore(demo_run, demo_logs):
    queries = [c for p, c in SAMPLES if ".localcloud/logs" in c]
    assert queries
    for command in queries:
        if command.startswith("jq") and shutil.which("jq") is None:
            continue
        done = run(command.replace(".localcloud/logs", str(demo_logs)), ROOT)
        assert [json.loads(line)["decision"] for line in done.stdout.splitlines()] != []


# --- what needs a deployment ---------------------------------------------------------------------


TEMPLATE = yaml.safe_load((ROOT / "template.yml").read_text())


@pytest.mark.parametrize("command", [c for _, c in SAMPLES if kind(c) == "deployment"], ids=lambda c: c[:60])
def test_each_deployment_command_names_what_exists(command):
    words = shlex.split(command)
    if words[0] == "scripts/deploy":
        # its arguments go to `s deploy`: only an access here
        assert (ROOT / "scripts" / "deploy").exists() and set(words[1:]) <= {"-a", "prod", "--access"}
        return
    if words[0] == "s":
        if words[1] == "config":  # a command of the CLI itself: its own help lists the options
            usage = s_help("config", words[2], "-h")
            for option in (w for w in words[2:] if w.startswith("--")):
                assert usage is None or option in usage, f"{command}: `s config` has no {option}"
            return
        # `s <resource> <command>` runs the component of that resource in template.yml; `s <command>`
        # (deploy, remove, invoke) runs it for every resource
        if words[1] in TEMPLATE["resources"]:
            options = words[3:]
        else:
            assert not re.fullmatch(r"[a-z]+", words[2] if len(words) > 2 else "-"), (
                f"{command}: no resource {words[1]}"
            )
            options = words[2:]
        for flag, value in zip(options, [*options[1:], None], strict=True):
            if flag in ("-t", "--template", "-f", "--event-file") and value:  # (a mention may name no file)
                assert (ROOT / value).exists(), f"{command}: {value} does not exist"
            if flag in ("-t", "-a"):  # the CLI's global options
                usage = s_help("-h")
                assert usage is None or flag in usage, f"{command}: the CLI has no global option {flag}"
        return
    # the client against a deployment: its own parser takes the arguments
    arguments = [w for w in words[2:]]
    rerun_client._parser().parse_args(arguments)


def s_help(*arguments: str) -> str | None:
    """The Serverless Devs CLI's own help (its global commands: a component's help needs its download);
    None without the CLI (npm install -g @serverless-devs/s): then only the template is checked."""
    if shutil.which("s") is None:
        return None
    return subprocess.run(["s", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False).stdout


@pytest.mark.parametrize("command", [c for _, c in SAMPLES if kind(c) == "server"], ids=lambda c: c[:60])
def test_each_server_command_uses_options_its_help_lists(command):
    usage = subprocess.run(
        [sys.executable, "-m", "localcloud.dataworks", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "scripts"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for option in re.findall(r"\s(--[\w-]+)", command):
        assert option in usage, f"{command}: no option {option}"
