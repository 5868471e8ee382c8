"""The reviewed record of each stack: tests/snapshots/<stack>.json must match the program.

Any infrastructure change fails here with a readable diff. When the change is intended, rewrite
the snapshots and commit them with it, so the change shows up in code review:

    python -m pytest tests/stacks/test_snapshots.py --update-snapshots
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from preflight.offline import ROOT, Plan, run_stack
from preflight.plan import REDACTED, snapshot

SNAPSHOTS = Path(__file__).resolve().parent.parent / "snapshots"
MAX_DIFF_LINES = 300


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def drift_report(stack: str, expected: str, current: str) -> str:
    """Which resources were added, removed or changed, then the unified diff."""

    def index(text: str) -> dict[tuple[str, str], Any]:
        return {(r["type"], r["name"]): r for r in json.loads(text)["resources"]}

    before, after = index(expected), index(current)
    lines = [f"tests/snapshots/{stack}.json is out of date with the program:"]
    lines += [f"  + {t} {n}" for t, n in sorted(after.keys() - before.keys())]
    lines += [f"  - {t} {n}" for t, n in sorted(before.keys() - after.keys())]
    lines += [
        f"  ~ {t} {n}"
        for t, n in sorted(before.keys() & after.keys())
        if before[t, n] != after[t, n]
    ]
    diff = list(
        difflib.unified_diff(
            expected.splitlines(),
            current.splitlines(),
            f"snapshots/{stack}.json",
            "program",
            lineterm="",
        )
    )
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more diff lines"]
    lines += ["", *diff, "", "Intended? python -m pytest tests/stacks --update-snapshots"]
    return "\n".join(lines)


@pytest.mark.parametrize("stack", ["dev", "prod", "digits"])
def test_snapshot_matches_the_program(stack: str, request: pytest.FixtureRequest) -> None:
    current = render(snapshot(request.getfixturevalue(f"{stack}_plan")))
    path = SNAPSHOTS / f"{stack}.json"
    if request.config.getoption("--update-snapshots"):
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(current)
        return
    assert path.exists(), f"{path} is missing: run python -m pytest --update-snapshots"
    expected = path.read_text()
    if current != expected:
        pytest.fail(drift_report(stack, expected, current), pytrace=False)


def test_snapshot_is_deterministic(dev_plan: Plan) -> None:
    assert render(snapshot(run_stack("dev"))) == render(snapshot(dev_plan))


def test_snapshot_redacts_secrets_and_machine_paths(plan: Plan) -> None:
    data = snapshot(plan)
    text = render(data)
    secret_inputs = [(r, k) for r in plan.resources for k in r.secret_inputs]
    assert secret_inputs, "the program marks the registry credentials secret"
    by_name = {(e["type"], e["name"]): e for e in data["resources"]}
    for resource, key in secret_inputs:
        assert by_name[resource.type, resource.name]["inputs"][key] == REDACTED
    assert "ecr-token-" not in text  # the mocked ECR password
    assert str(ROOT) not in text


def test_snapshot_lists_every_resource_once_with_its_parent(plan: Plan) -> None:
    entries = snapshot(plan)["resources"]
    assert sorted((e["type"], e["name"]) for e in entries) == sorted(
        (r.type, r.name) for r in plan.resources
    )
    names = {e["name"] for e in entries}
    assert all(e["parent"] is None or e["parent"] in names for e in entries)


def test_a_changed_setting_is_reported_by_name() -> None:
    base = {"stack": "dev", "monthly_cost_usd": 1, "resources": [_entry("svc", desiredCount=1)]}
    moved = {"stack": "dev", "monthly_cost_usd": 2, "resources": [_entry("svc", desiredCount=2)]}
    report = drift_report("dev", render(base), render(moved))
    assert "~ aws:ecs/service:Service svc" in report
    assert '-        "desiredCount": 1' in report
    assert '+        "desiredCount": 2' in report


def _entry(name: str, **inputs: Any) -> dict[str, Any]:
    return {"type": "aws:ecs/service:Service", "name": name, "parent": None, "inputs": inputs}
