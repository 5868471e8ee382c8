"""The service's rollout as each stack declares it, checked against botocore's ECS service model
(the request shapes ECS accepts, their enums) and the ECS API Reference's bounds, not against the
program's own constants: what `pulumi up` sends is what UpdateService would accept."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from preflight.offline import Plan

SERVICE = "aws:ecs/service:Service"
ECS = botocore.session.get_session().get_service_model("ecs")


def _enum(shape: str) -> list[str]:
    return list(ECS.shape_for(shape).enum)


def _as_api(value: Any, shape: Any) -> Any:
    """A pulumi-aws input (camelCase, numbers as the provider types them) as the API value of
    `shape`: integers from their strings, a JSON document from its string."""
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _as_api(v, shape.members[k]) for k, v in value.items() if v is not None}
    if shape.type_name == "list" and isinstance(value, list):
        return [_as_api(v, shape.member) for v in value]
    if shape.type_name == "integer" and isinstance(value, str | float):
        return int(float(value))
    if shape.type_name == "double":
        return float(value)
    if shape.name == "HookDetails" or (shape.type_name == "structure" and shape.is_document_type):
        return json.loads(value) if isinstance(value, str) else value
    return value


def _update_service_request(plan: Plan) -> dict[str, Any]:
    service = plan.one(SERVICE).inputs
    request_shape = ECS.operation_model("UpdateService").input_shape
    members = request_shape.members
    deployment = dict(service["deploymentConfiguration"])
    # pulumi-aws puts the alarms and the circuit breaker beside deploymentConfiguration; the API
    # nests them in it ("DeploymentConfiguration": alarms, deploymentCircuitBreaker).
    deployment["alarms"] = service["alarms"]
    if service.get("deploymentCircuitBreaker"):
        deployment["deploymentCircuitBreaker"] = service["deploymentCircuitBreaker"]
    deployment["minimumHealthyPercent"] = service["deploymentMinimumHealthyPercent"]
    deployment["maximumPercent"] = service["deploymentMaximumPercent"]
    balancers = [
        {k: v for k, v in lb.items() if k != "elbName"} for lb in service["loadBalancers"]
    ]
    return {
        "cluster": service["cluster"],
        "service": plan.one(SERVICE).outputs["name"],
        "deploymentConfiguration": _as_api(deployment, members["deploymentConfiguration"]),
        "loadBalancers": _as_api(balancers, members["loadBalancers"]),
    }


@pytest.mark.parametrize("stack", ["dev", "prod", "digits"])
def test_the_service_rollout_is_a_request_ecs_accepts(stack, request):
    plan: Plan = request.getfixturevalue(f"{stack}_plan")
    body = _update_service_request(plan)
    report = ParamValidator().validate(body, ECS.operation_model("UpdateService").input_shape)
    assert not report.has_errors(), report.generate_report()
    deployment = body["deploymentConfiguration"]
    assert deployment["strategy"] in _enum("DeploymentStrategy")
    for hook in deployment.get("lifecycleHooks", []):
        assert set(hook["lifecycleStages"]) <= set(_enum("DeploymentLifecycleHookStage"))
        assert hook["hookTargetArn"].startswith("arn:aws:lambda:")
    # ECS API Reference, "DeploymentConfiguration": bakeTimeInMinutes is required with
    # BLUE_GREEN; "CanaryConfiguration": canaryPercent 0.1-100 in tenths, bake 0-1440 minutes.
    if deployment["strategy"] != "ROLLING":
        assert 0 <= deployment["bakeTimeInMinutes"] <= 1440
        for lb in body["loadBalancers"]:
            assert set(lb["advancedConfiguration"]) == set(
                ECS.shape_for("AdvancedConfiguration").members
            )
    assert deployment["alarms"]["rollback"] is True and deployment["alarms"]["alarmNames"]


def test_prod_rolls_out_by_canary_with_a_bake_alarms_and_the_sample_check(prod_plan: Plan):
    deployment = _update_service_request(prod_plan)["deploymentConfiguration"]
    assert deployment["strategy"] == "CANARY"
    canary = deployment["canaryConfiguration"]
    assert 0.1 <= canary["canaryPercent"] <= 100 and canary["canaryBakeTimeInMinutes"] > 0
    assert deployment["bakeTimeInMinutes"] > 0
    (hook,) = deployment["lifecycleHooks"]
    assert hook["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert hook["hookDetails"]["samples"]
    assert len(deployment["alarms"]["alarmNames"]) == 6


@pytest.mark.parametrize("stack", ["dev", "digits"])
def test_dev_and_digits_roll_back_on_alarms_without_paying_for_a_bake(stack, request):
    plan: Plan = request.getfixturevalue(f"{stack}_plan")
    deployment = _update_service_request(plan)["deploymentConfiguration"]
    assert deployment["strategy"] == "BLUE_GREEN" and deployment["bakeTimeInMinutes"] == 0
    assert deployment["alarms"] == {
        "alarmNames": deployment["alarms"]["alarmNames"],
        "enable": True,
        "rollback": True,
    }
