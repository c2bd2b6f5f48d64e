"""The documentation cannot drift from the code it describes.

README.md is the front door and docs/ the reference. Each check here reads a page and the code
beside it: the settings tables against config.py and template.yml, the record fields against the
schema the record writer uses, the HTTP error codes against the handler, every link, every
`make` target and script a page names, every JSON request sample against the handler's fields,
and the Python samples' calls against the signatures of what they call. Figures must say which
command, machine and date produced them.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dwrerun import bulk, config, http_function, http_request, plan, schema
from dwrerun.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def page(name: str) -> str:
    return text(DOCS / name)


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The rows of every table whose first header cell is `first_header`, split into cells."""
    rows, inside = [], False
    for line in markdown.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not inside:
            inside = cells and cells[0] == first_header
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        rows.append(cells)
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", markdown, flags=re.S | re.M)


# --- links and names ---------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    for target in re.findall(r"\]\(([^)\s]+)\)", text(doc)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        assert resolved.exists(), f"{doc.name}: link to {target} does not resolve"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(text(resolved)), f"{doc.name}: no heading #{anchor} in {resolved.name}"


def test_every_reference_page_is_linked_from_the_readme():
    readme = text(README)
    for doc in DOCS.glob("*.md"):
        assert f"(docs/{doc.name})" in readme, f"README does not link docs/{doc.name}"


MAKE_TARGETS = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: p.name)
def test_every_make_target_and_repository_path_named_exists(doc):
    markdown = text(doc)
    for target in re.findall(r"`make ([a-z][\w-]*)", markdown) + re.findall(r"^make ([a-z][\w-]*)", markdown, re.M):
        assert target in MAKE_TARGETS, f"{doc.name}: `make {target}` is not a Makefile target"
    for path in re.findall(r"(?<![\w/.])((?:scripts|tests|function|docs)/[\w./-]+\w)", markdown):
        if "<" in path or "*" in path:
            continue
        assert (ROOT / path).exists(), f"{doc.name}: {path} does not exist"


# --- settings ----------------------------------------------------------------------------------


def test_the_settings_table_lists_exactly_the_variables_the_code_reads():
    rows = table_rows(page("configuration.md"), "variable")
    documented = [ticked(row[0])[0] for row in rows]
    assert sorted(documented) == sorted(config.USER_VARIABLES)


@pytest.mark.parametrize("row", table_rows(page("configuration.md"), "variable"), ids=lambda r: r[0].strip("`"))
def test_each_documented_default_is_the_codes_default(row):
    # Setting a variable to the default the page states must change nothing.
    name, default = ticked(row[0])[0], row[1]
    if not default.startswith("`"):  # "*(empty: all)*", "*(derived)*": no value to set
        assert Settings.from_env({name: ""}) == Settings.from_env({})
        return
    (value,) = ticked(default)
    assert Settings.from_env({name: value}) == Settings.from_env({}), f"{name}: the page says {value}"


def test_the_readme_settings_agree_with_the_reference():
    reference = {ticked(r[0])[0]: r[1] for r in table_rows(page("configuration.md"), "variable")}
    for row in table_rows(text(README), "variable"):
        names, defaults = ticked(row[0]), ticked(row[1]) or [row[1]]
        for name, default in zip(names, defaults * len(names) if len(defaults) == 1 else defaults, strict=True):
            assert name in reference, f"README names {name}, which docs/configuration.md does not"
            if default.startswith("*"):
                assert not reference[name].startswith("`"), f"{name}: README says no default value"
            else:
                assert ticked(reference[name]) == [default], f"{name}: README {default}, reference {reference[name]}"


def test_the_template_vars_table_matches_template_yml():
    template_vars = yaml.safe_load((ROOT / "template.yml").read_text())["vars"]
    for row in table_rows(page("configuration.md"), "var"):
        names, defaults = ticked(row[0]), ticked(row[1])
        assert len(names) == len(defaults), f"{row[0]}: one default per var"
        for name, default in zip(names, defaults, strict=True):
            assert name in template_vars, f"template.yml has no var {name}"
            assert str(template_vars[name]).lower() == default.strip('"').lower(), f"{name}: {default}"


# --- records -----------------------------------------------------------------------------------


def test_the_record_fields_table_is_the_schema():
    documented = []
    for row in table_rows(page("records.md"), "field"):
        documented += ticked(row[0])
    assert sorted(documented) == sorted(set(schema.INSTANCE_NAMES) - {"kind"})


def test_the_summary_fields_named_are_the_schema():
    paragraph = page("records.md").split('Summary record (`"kind": "summary"`)', 1)[1].split("\n\n", 1)[0]
    named = set(ticked(paragraph)) & set(schema.FIELDS)
    assert named == set(schema.SUMMARY_NAMES) - {"kind"}


# --- the HTTP API ------------------------------------------------------------------------------


def _codes_the_handler_answers() -> set[str]:
    """Every `Code` the HTTP function can answer: the constant codes its refusals are raised with
    (BadRequest, PlanError) and the `"Code"` of each answer, in the modules that build its answers."""
    codes = set()
    for module in (http_function, http_request, bulk, plan):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            name = _dotted(node.func) or "" if isinstance(node, ast.Call) else ""
            if name.endswith(("BadRequest", "PlanError")):
                at = 0 if name.endswith("PlanError") else 1  # BadRequest(status, code, ...), PlanError(code, ...)
                if len(node.args) > at and isinstance(node.args[at], ast.Constant):
                    codes.add(node.args[at].value)
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "Code":
                        branches = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
                        codes |= {b.value for b in branches if isinstance(b, ast.Constant)}
    return codes


def test_the_http_error_table_is_what_the_handler_answers():
    documented = set()
    for row in table_rows(page("http-api.md"), "status"):
        codes = re.sub(r"\([^)]*\)", "", row[1])  # "(with `Allow`)" names a header, not a code
        documented |= {c for c in ticked(codes) if re.fullmatch(r"[A-Z]\w+", c)}
    assert documented == _codes_the_handler_answers()


def test_the_http_body_fields_are_the_handlers():
    documented = set()
    for row in table_rows(page("http-api.md"), "field"):
        documented |= set(ticked(row[0]))
    assert documented == set(http_request.FIELDS)


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: p.name)
def test_every_json_request_sample_uses_only_the_handlers_fields(doc):
    for language, body in code_blocks(text(doc)):
        if language != "json":
            continue
        try:
            value = json.loads(body)
        except ValueError:
            continue  # an answer shortened with "…": checked below by its keys
        if isinstance(value, dict) and ("Ids" in value or "ProjectId" in value):
            unknown = set(value) - set(http_request.FIELDS)
            assert not unknown, f"{doc.name}: a request sample has fields the handler refuses: {unknown}"


# --- samples that call the code ----------------------------------------------------------------

# What the Python samples' variables are, page by page (the samples say so in their first lines).
SAMPLE_OBJECTS = {
    "emu": "localcloud.dataworks.DataWorksEmulator",
    "emu.faults": "localcloud.dataworks.faults.Faults",
    "emu.backend": "localcloud.dataworks.models.DataWorksBackend",
    "fn": "localcloud.fc.Function",
    "api": "localcloud.fc.FunctionComputeApi",
    "bridge": "localcloud.eventbridge.EventBridge",
    "gw": "localcloud.gateway.HttpGateway",
}


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _check_call(where: str, target, keywords: list[str]) -> None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    for keyword in keywords:
        assert keyword in signature.parameters, f"{where}: {target.__qualname__} takes no {keyword}="


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: p.name)
def test_python_samples_call_what_exists_with_arguments_it_takes(doc):
    for language, body in code_blocks(text(doc)):
        if language != "python":
            continue
        tree = ast.parse(body)
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for call in _calls(tree):
            name = _dotted(call.func)
            if name is None:
                continue
            keywords = [k.arg for k in call.keywords if k.arg]
            if name in imported:
                _check_call(doc.name, _resolve(imported[name]), keywords)
                continue
            owner, _, method = name.rpartition(".")
            if owner in SAMPLE_OBJECTS:
                cls = _resolve(SAMPLE_OBJECTS[owner])
                assert hasattr(cls, method), f"{doc.name}: {cls.__name__} has no {method}()"
                _check_call(doc.name, getattr(cls, method), keywords)


def test_the_explain_command_samples_use_its_options():
    usage = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "explain_rule.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for _language, body in code_blocks(page("failure-rules.md")):
        for line in body.splitlines():
            if "explain_rule.py" not in line:
                continue
            for word in shlex.split(line.split("#", 1)[0]):
                if word.startswith("--"):
                    assert word.split("=", 1)[0] in usage, f"explain_rule.py has no option {word}"


# --- figures -----------------------------------------------------------------------------------


def test_every_figure_table_says_what_produced_it():
    # Each results table follows a line naming the command, the machine and the date.
    for doc in (DOCS / "performance.md", DOCS / "failure-rules.md"):
        sections = re.split(r"^#{2,3} ", text(doc), flags=re.M)
        for section in sections:
            if not re.search(r"^\| [^|]*\| *[\d.]+ *(ms|s|MiB|%)", section, flags=re.M):
                continue
            assert re.search(r"`(make bench|scripts/[\w./]+\.py|python [^`]+)`", section), f"{doc.name}: no command"
            assert re.search(r"\b20\d\d-\d\d-\d\d\b", section), f"{doc.name}: figures without a date"
            assert re.search(r"\b\d+-core\b|\bcores?\b", section), f"{doc.name}: figures without the machine"


def test_pages_that_state_an_inferred_fact_are_indexed():
    index = page("inferred-facts.md")
    for doc in DOCS.glob("*.md"):
        if doc.name != "inferred-facts.md" and re.search(r"\binferred\b", text(doc), flags=re.I):
            assert f"({doc.name}" in index, f"docs/inferred-facts.md does not point to {doc.name}"


# --- the deployment's policy -------------------------------------------------------------------


def test_the_deploy_pages_policy_is_the_one_template_yml_grants():
    import sls_views

    section = page("deploy.md").split("## Why the policy reads as it does", 1)[1]
    (_language, block), *_ = code_blocks(section)
    assert block.strip() == sls_views.policy_text(sls_views.policy()), "regenerate it: sls_views.policy_text()"


def test_every_action_the_deploy_page_names_is_one_the_template_grants():
    import sls_views

    # Either choice of vars.dataworksActions; the page's "Why the policy reads as it does" section
    # is about the role (make verify's own section names what the deploying user needs).
    granted = {a for choice in ("listed", "all") for s in sls_views.policy(dataworksActions=choice) for a in s.actions}
    section = page("deploy.md").split("## Why the policy reads as it does", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b(?:dataworks|fc|log|ram|sts):[A-Z]\w+", section))
    assert named <= granted, f"docs/deploy.md names actions the template does not grant: {named - granted}"
