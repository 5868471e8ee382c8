"""Shared fixtures: the whole program evaluated offline per stack (see components/offline.py)."""

from __future__ import annotations

import pytest

from components.offline import Plan, run_stack


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
