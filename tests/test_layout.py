"""The shape of function/: no import cycle, short functions and modules, the vocabulary from schema.py.

A function over MAX_FUNCTION_LINES or a module over MAX_MODULE_LINES is allowed only when
docs/layout.md lists it, with the reason, under "Longer than the rule"; a listed one that is no
longer long must leave the list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import FUNCTION_DIR
from dwrerun import schema

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
LAYOUT = Path(__file__).resolve().parent.parent / "docs" / "layout.md"
# Constants that spell a reason but are another vocabulary: failure.py's failure classes
# (the record's `failureClass`: retryable, not-retryable, unknown).
NOT_REASONS = {("dwrerun/failure.py", "NOT_RETRYABLE")}


def _modules() -> dict[str, Path]:
    """Every module of the code package, by dotted name."""
    found = {}
    for path in sorted(Path(FUNCTION_DIR).rglob("*.py")):
        parts = path.relative_to(FUNCTION_DIR).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, known) -> set[str]:
    """The package's modules `path` imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return stack[stack.index(imported) :] + [imported]
            if imported not in state:
                found = visit(imported)
                if found:
                    return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def _allowed_long() -> set[str]:
    """What docs/layout.md lists as longer than the rule: `module.py` or `module.py: function`."""
    section = LAYOUT.read_text().split("### Longer than the rule", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^- `([^`]+)`", section, re.MULTILINE))


def _long() -> set[str]:
    long = set()
    for path in _modules().values():
        source = path.read_text()
        name = path.name
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long.add(name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.add(f"{name}: {node.name}")
    return long


def test_a_cycle_is_found_where_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_code_package():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycle(graph) is None


def test_no_function_and_no_module_is_longer_than_the_rule_unless_the_layout_says_why():
    assert _long() == _allowed_long()


def test_reasons_and_summary_outcomes_are_the_schemas_constants_never_literals():
    # GIVEN every reason and every summary outcome schema.py defines
    words = set(schema.REASONS) | {v for k, v in vars(schema.Summary).items() if k.isupper()}
    found = []
    for path in _modules().values():
        where = path.relative_to(FUNCTION_DIR).as_posix()
        if where == "dwrerun/schema.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        named = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and (where, t.id) in NOT_REASONS for t in node.targets)
        }
        found += [
            f"{where}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and node.value in words
            and id(node) not in docstrings
            and id(node) not in named
        ]
    # THEN none is written out as a string: each is schema.Reason.* or schema.Summary.*
    assert found == []
