"""The layout a newcomer walks into: no import circles in components/ and app/, no file in
components/ over 500 lines, and no component args taking the whole stack `Settings`."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from components.settings.stack import Settings

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str) -> set[str]:
    """Every module of `package` that `path` imports, at any depth (a function's lazy import or a
    TYPE_CHECKING one is still a dependency a reader must follow)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from components.settings import stack` imports the module `...settings.stack`.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == package or name.startswith(package + ".")}


def _cycles(package: str) -> list[list[str]]:
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {
        name: {m for m in _imports(path, package) if m in files and m != name}
        for name, path in files.items()
    }
    # A package's __init__ is imported with every module under it; that edge is no circle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.mark.parametrize("package", ["components", "app"])
def test_no_import_circles(package: str):
    assert _cycles(package) == []


def test_the_cycle_finder_finds_one(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other are reported."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from pkg.a import f\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert _cycles("pkg") == [["pkg.a", "pkg.b", "pkg.a"]]


def test_every_module_in_components_is_at_most_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "components").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _args_classes() -> list[type]:
    found = []
    for path in sorted((ROOT / "components").rglob("*.py")):
        module = importlib.import_module(_module_name(path))
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and value.__name__.endswith("Args")
                and dataclasses.is_dataclass(value)
            ):
                found.append(value)
    return found


def _names_in(cls: type, annotation: object) -> list[object]:
    """What each (dotted) name in a field's annotation is in the class's module: annotations are
    strings here (`from __future__ import annotations`), so `stack.Settings` or an alias of it is
    resolved the way the module sees it."""
    if not isinstance(annotation, str):
        return [annotation]
    namespace = vars(importlib.import_module(cls.__module__))
    found = []
    for dotted in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", annotation):
        head, *rest = dotted.split(".")
        value = namespace.get(head)
        for attr in rest:
            value = getattr(value, attr, None)
        found.append(value)
    return found


def test_no_component_args_take_the_whole_settings():
    classes = _args_classes()
    # Every component's args, found: the check is not vacuous.
    assert {c.__name__ for c in classes} >= {
        "AlarmTopicArgs",
        "CiTrustArgs",
        "ClusterArgs",
        "GpuCapacityArgs",
        "ImageRepoArgs",
        "InferenceServiceArgs",
        "LoadBalancerArgs",
        "MonitoringArgs",
        "NetworkArgs",
        "SharedStoreArgs",
        "TrainingTaskArgs",
    }
    takes_settings = [
        f"{c.__name__}.{field.name}"
        for c in classes
        for field in dataclasses.fields(c)
        if Settings in _names_in(c, field.type)
    ]
    assert takes_settings == []


WORKLOAD_WORDS = re.compile(r"co2|ppm|noaa|forecast", re.IGNORECASE)


def test_nothing_in_components_names_the_reference_workload():
    """The infrastructure knows workloads only through `mlops:workload`: the forecaster's
    commands, URL and thresholds live in workloads/forecaster.yaml, never in components/."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "components").rglob("*"))
        if path.is_file() and path.suffix in (".py", ".yaml", ".json", ".md")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WORKLOAD_WORDS.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_reference_workload_file_does_name_it():
    # The check above can fail: the same words are in the reference workload's own file.
    assert WORKLOAD_WORDS.search((ROOT / "workloads" / "forecaster.yaml").read_text())
