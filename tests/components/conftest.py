"""Component tests: `build` declares ONE component with the neighbours its args name
(tests/components/neighbours.py) under the recording mocks, not the whole program."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from preflight.offline import Plan, Resource, run_program
from tests.components.neighbours import BUILDERS, settings_for


@dataclass
class Built:
    """One component's plan: the component, what it declared, and its neighbours' resources."""

    plan: Plan
    component: Resource

    @property
    def children(self) -> list[Resource]:
        return self.plan.children_of(self.component.urn)

    def one(self, type_: str, name_contains: str = "") -> Resource:
        """The one child of this component of `type_` whose name contains `name_contains`."""
        found = [r for r in self.children if r.type == type_ and name_contains in r.name]
        assert len(found) == 1, f"{len(found)} {type_} children named *{name_contains}*"
        return found[0]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.children if r.type == type_]


_BUILT: dict[str, Built] = {}


def _build(
    component: str, stack: str = "dev", overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Built:
    key = json.dumps([component, stack, overrides], sort_keys=True)
    if key not in _BUILT:
        type_, name, declare = BUILDERS[component]
        settings = settings_for(stack, overrides)
        plan = run_program(lambda: declare(settings), stack)
        _BUILT[key] = Built(plan=plan, component=plan.one(type_, name))
    return _BUILT[key]


@pytest.fixture
def build() -> Callable[..., Built]:
    """`build("load_balancer", "prod", {"inference": {"waf": False}})`: that component alone,
    with its neighbours, from the stack's config plus overrides; cached per arguments."""
    return _build
