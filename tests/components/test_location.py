"""An image built elsewhere (`workload.image.location`) is first-class: the stack declares no
repository of its own, builds and pushes nothing, has no push rule, and runs exactly that digest
(pulled with rights on exactly its ECR repository)."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest

from preflight.offline import ROOT, Plan, run_program, stack_config

DIGEST = "sha256:" + "ab" * 32
LOCATION = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/digits@{DIGEST}"


def _digits_with(location: str) -> Plan:
    """The whole program (__main__.py) for the digits stack with its image named by location."""
    config: dict[str, Any] = stack_config("digits")
    config["mlops:workload"] = {**config["mlops:workload"], "image": {"location": location}}
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    )
    return run_program(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"), "digits"
    )


@pytest.fixture(scope="module")
def plan() -> Plan:
    return _digits_with(LOCATION)


def test_nothing_of_its_own_is_built_pushed_or_watched(plan: Plan):
    repositories = {r.inputs["name"] for r in plan.of_type("aws:ecr/repository:Repository")}
    # Only the platform's own image (stage, collect, gate) is built here.
    assert repositories == {"mlops-digits-platform", "mlops-digits-platform-build-cache"}
    built = {r.name for r in plan.of_type("docker:index/image:Image")}
    assert built == {"platform-image-cpu", "platform-image-cpu-cache"}
    rules = {r.name for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert "training-on-push" not in rules and "training-on-schedule" in rules


def test_the_tasks_run_exactly_that_digest_pulled_from_exactly_its_repository(plan: Plan):
    train = json.loads(
        plan.one("aws:ecs/taskDefinition:TaskDefinition", "training-train").inputs[
            "containerDefinitions"
        ]
    )
    assert {c["name"]: c["image"] for c in train}["train"] == LOCATION
    policy = json.loads(
        plan.one("aws:iam/rolePolicy:RolePolicy", "training-execution").inputs["policy"]
    )
    pulls = next(s for s in policy["Statement"] if s["Sid"] == "PullImages")
    assert "arn:aws:ecr:us-east-1:123456789012:repository/team/digits" in pulls["Resource"]
    assert plan.exports["image_ref"] == LOCATION and "repository_url" not in plan.exports


def test_another_registry_needs_no_pull_rights():
    plan = _digits_with(f"ghcr.io/someone/digits@{DIGEST}")
    policy = json.loads(
        plan.one("aws:iam/rolePolicy:RolePolicy", "training-execution").inputs["policy"]
    )
    pulls = next(s for s in policy["Statement"] if s["Sid"] == "PullImages")
    # Only the platform's own repository: the workload's registry needs no IAM.
    assert (
        pulls["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/mlops-digits-platform"
    )
