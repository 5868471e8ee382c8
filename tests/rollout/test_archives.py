"""What Pulumi ships: each of the rollout's modules is its Lambda function's whole archive."""

from __future__ import annotations

import ast
import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROLLOUT = Path(__file__).resolve().parents[2] / "rollout"


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.partition(".")[0] if node.level == 0 and node.module else ".")
    return found - {"__future__"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("sample_check.py", set()), ("deploy.py", {"boto3", "botocore"})],
)
def test_each_function_is_one_file_of_the_standard_library_and_its_runtime(module, allowed):
    """Each file is its function's whole archive: nothing from this repository."""
    imports = _top_level_imports(ROLLOUT / module)
    assert imports - allowed <= set(sys.stdlib_module_names)
    assert imports & allowed == allowed


@pytest.mark.parametrize("module", ["deploy", "sample_check"])
def test_each_handler_takes_what_the_python_runtime_passes(module):
    """The functions' handlers are `deploy.handler` and `sample_check.handler`: Lambda's Python
    runtime calls them with the event and the context."""
    handler = importlib.import_module(f"rollout.{module}").handler
    assert list(inspect.signature(handler).parameters) == ["event", "context"]


@pytest.mark.parametrize("module", ["deploy", "sample_check"])
def test_each_file_imports_alone(module, tmp_path):
    """The file copied on its own, as the function's archive holds it, imports and has its
    handler, with nothing of this repository on the path (-I: no PYTHONPATH, no cwd)."""
    shutil.copy(ROLLOUT / f"{module}.py", tmp_path)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import {module}; {module}.handler"
    subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, check=True, timeout=120)
