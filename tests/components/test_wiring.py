"""The wiring (components/wiring.py) is the program's and the tests': a component built alone
through it declares exactly what the whole program declares for it, on every stack, the
SageMaker-contract digits stack included; and the decisions that span sections are made once
(components/settings/decisions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings.decisions import Gatekeeper, decide
from components.settings.pipeline import Capacity
from preflight.offline import Plan, Resource
from preflight.plan import reviewable
from tests.components.conftest import COMPONENTS, settings_for

# What `finish()` does with what it finds declared: a component built alone has fewer clients
# of the store (the file-system policy) and nothing its image push waits for.
ALONE_DIFFERS = {"store-policy"}


def _children(plan: Plan, component: Resource) -> dict[tuple[str, str], Any]:
    """The component's children as the reviewed snapshot shows them (image digests, which the
    mock registry numbers in push order, normalised)."""
    return {
        (r.type, r.name): reviewable(r.inputs)
        for r in plan.children_of(component.urn)
        if r.name not in ALONE_DIFFERS
    }


@pytest.mark.parametrize("stack", ["dev", "prod", "digits"])
@pytest.mark.parametrize(
    "component",
    [
        "network",
        "store",
        "cluster",
        "image_repo",
        "platform_image",
        "alarm_topic",
        "load_balancer",
        "inference_service",
        "training_task",
        "monitoring",
        "boundary",
        "model_artifacts",
    ],
)
def test_a_component_built_alone_is_the_programs(
    component: str, stack: str, build, request: pytest.FixtureRequest
) -> None:
    whole: Plan = request.getfixturevalue(f"{stack}_plan")
    type_, name, _ = COMPONENTS[component]
    in_program = [r for r in whole.of_type(type_) if r.name == name]
    if not in_program:
        with pytest.raises(AssertionError, match="declares no"):
            build(component, stack)
        return
    alone = build(component, stack)
    assert _children(alone.plan, alone.component) == _children(whole, in_program[0])


def test_the_sagemaker_contract_is_decided_once():
    digits = decide(settings_for("digits"))
    assert digits.staged and not digits.store_mounted and digits.platform_image
    assert digits.gatekeeper is Gatekeeper.PLATFORM and digits.objective.key == "accuracy"
    assert digits.pipeline_steps == ("train", "gate")
    dev = decide(settings_for("dev"))
    assert not dev.staged and dev.store_mounted and not dev.platform_image
    assert dev.gatekeeper is Gatekeeper.WORKLOAD and dev.objective is None
    assert dev.pipeline_steps == ("validate", "train", "gate")


def test_where_each_task_runs_is_decided_once():
    dev = decide(settings_for("dev"))
    assert dev.train.capacity is Capacity.FARGATE_SPOT and dev.train.flavour == "cpu"
    assert dev.train.fargate_provider == "FARGATE_SPOT"
    assert dev.serving.flavour == "cpu" and not dev.serving.on_ec2
    gpu = decide(
        settings_for(
            "prod",
            {
                "training": {"capacity": "gpu-ec2", "gpus": 1},
                "inference": {"capacity": "gpu-ec2", "cpu": 2048, "memory": 8192},
            },
        )
    )
    assert gpu.train.on_ec2 and gpu.train.gpus == 1 and gpu.train.flavour == "gpu"
    assert gpu.serving.on_ec2 and gpu.serving.gpus == 1
    with pytest.raises(ValueError, match="own capacity provider"):
        _ = gpu.train.fargate_provider


def test_a_training_only_workload_has_no_serving_placement():
    assert decide(settings_for("digits", {"workload": {"serving": None}})).serving is None
