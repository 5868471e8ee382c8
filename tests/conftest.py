"""Shared fixtures: the whole program evaluated offline per stack (see preflight/offline.py), and
the run's workers sharing what is expensive to build.

The quick suite runs in parallel (`-n auto --dist worksteal`, pyproject.toml); each pytest-xdist
worker is its own session, so a session fixture alone would be built once per worker. What is
expensive (a trained store, a stack's evaluated plan) is built once per run by whichever worker
asks first, under a file lock in the directory that run's workers share, and read by the rest.
The container and end-to-end groups run in one process: they start Docker tasks and servers on
fixed ports and time them, and running them side by side would measure the machine, not the code.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

# Before anything loads libgomp (XGBoost): OpenMP threads that finish a parallel region sleep
# instead of spinning for the next one. Spinning threads of one worker would steal the cores the
# other workers and the servers under test need, and make every timeout in the suite a race.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from preflight.offline import Plan, run_stack

SINGLE_PROCESS_MARKERS = ("containers", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        default=False,
        help="rewrite tests/snapshots/<stack>.json from the current program instead of comparing",
    )


def _selects_any(markexpr: str, markers: tuple[str, ...]) -> bool:
    """Whether the `-m` expression selects a test carrying one of `markers` (alone)."""
    from _pytest.mark.expression import Expression

    if not markexpr:
        return False
    expression = Expression.compile(markexpr)
    return any(expression.evaluate(lambda name, m=marker, **_: name == m) for marker in markers)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """`-m "... containers ..."` or `e2e`: run in this one process (xdist's distributed session
    is set up later, in its own trylast `pytest_configure`, from these options)."""
    if _selects_any(config.option.markexpr, SINGLE_PROCESS_MARKERS) and hasattr(
        config.option, "numprocesses"
    ):
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []


@pytest.fixture(scope="session")
def build_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable], Path]:
    """`build_once(name, build)`: the directory `name`, filled by `build(directory)` once per
    test run, whichever worker asks first; the others wait on the lock and reuse it. A build
    that raised is retried by the next caller (its directory is emptied first)."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is `<run dir>/popen-gwN`: their parent is the run's own.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    shared.mkdir(exist_ok=True)

    def once(name: str, build: Callable[[Path], None]) -> Path:
        directory = shared / name
        done = shared / f"{name}.done"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir()
                build(directory)
                done.touch()
        return directory

    return once


def _shared_plan(build_once: Callable[[str, Callable], Path], stack: str) -> Plan:
    """The stack's plan evaluated once per run; each worker unpickles its own copy."""

    def build(directory: Path) -> None:
        (directory / "plan.pickle").write_bytes(pickle.dumps(run_stack(stack)))

    return pickle.loads((build_once(f"plan-{stack}", build) / "plan.pickle").read_bytes())


@pytest.fixture(scope="session")
def dev_plan(build_once) -> Plan:
    return _shared_plan(build_once, "dev")


@pytest.fixture(scope="session")
def prod_plan(build_once) -> Plan:
    return _shared_plan(build_once, "prod")


@pytest.fixture(scope="session")
def digits_plan(build_once) -> Plan:
    return _shared_plan(build_once, "digits")


@pytest.fixture(params=["dev", "prod"])
def plan(request, dev_plan: Plan, prod_plan: Plan) -> Plan:
    """Each stack in turn, for assertions that hold on both."""
    return dev_plan if request.param == "dev" else prod_plan
