"""The whole program, evaluated offline for each stack file."""

from __future__ import annotations

import re

import pytest

from preflight.offline import run_stack


def test_both_stacks_declare_resources(plan):
    assert len(plan.resources) > 1
    assert plan.exports


def test_exports_are_plain_keys(plan):
    for key in plan.exports:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key


def test_components_use_the_project_token_and_own_their_children(plan):
    components = [r for r in plan.resources if r.type.startswith("mlops:")]
    assert components
    stack_urn_suffix = "pulumi:pulumi:Stack::mlops-" + plan.stack
    for component in components:
        assert re.fullmatch(r"mlops:index:[A-Z][A-Za-z]+", component.type), component.type
        assert plan.children_of(component.urn), f"{component.name} has no children"
    for resource in plan.resources:
        if resource.type.startswith("mlops:"):
            continue
        # Every cloud resource lives inside a component: nothing hangs off the stack directly.
        assert not resource.parent.endswith(stack_urn_suffix), resource.name


def test_child_names_are_prefixed_with_their_component(plan):
    for component in (r for r in plan.resources if r.type.startswith("mlops:")):
        for child in plan.children_of(component.urn):
            # Or the component's own name, for the one resource it wraps (AlarmTopic's topic).
            assert child.name == component.name or child.name.startswith(component.name + "-"), (
                component.name,
                child.name,
            )


def test_logical_names_are_unique_per_type(plan):
    seen = [(r.type, r.name) for r in plan.resources]
    assert len(seen) == len(set(seen))


def test_unknown_stack_file_is_reported():
    with pytest.raises(FileNotFoundError, match=r"Pulumi\.staging\.yaml"):
        run_stack("staging")
