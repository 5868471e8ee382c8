"""Shared fixtures: the whole program evaluated offline per stack (see preflight/offline.py)."""

from __future__ import annotations

import pytest

from preflight.offline import Plan, run_stack


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        default=False,
        help="rewrite tests/snapshots/<stack>.json from the current program instead of comparing",
    )


@pytest.fixture(scope="session")
def dev_plan() -> Plan:
    return run_stack("dev")


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return run_stack("prod")


@pytest.fixture(params=["dev", "prod"])
def plan(request, dev_plan: Plan, prod_plan: Plan) -> Plan:
    """Each stack in turn, for assertions that hold on both."""
    return dev_plan if request.param == "dev" else prod_plan
