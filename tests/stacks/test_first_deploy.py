"""A new stack's first `pulumi up`, walked over the declared resources and the real app.

The sequence on an empty account: the push trigger exists, then the image is pushed (its event
starts the first training run), then the service starts tasks that have no model yet. The load
balancer keeps them in rotation (`/health` is 200 without a model), `/predict` answers 503 with
Retry-After, no deployment alarm can fire, and once the run promotes a model the tasks
hot-reload it. AWS behaviour the walk relies on is cited where it is used.
"""

from __future__ import annotations

import json

import httpx
import pytest

from preflight.offline import Plan, Resource
from preflight.run_local.rollout import load_function
from tests.app.helpers import ServerProcess, predict_body, run_app

IMAGE = "docker:index/image:Image"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def ancestors(plan: Plan, resource: Resource) -> set[str]:
    """Every URN `resource` waits for: explicit dependsOn and inputs, transitively."""
    seen: set[str] = set()
    todo = list(resource.depends_on)
    while todo:
        urn = todo.pop()
        if urn in seen:
            continue
        seen.add(urn)
        found = [r for r in plan.resources if r.urn == urn]
        if found:
            todo.extend(found[0].depends_on)
    return seen


def api_health_check(plan: Plan) -> dict:
    return plan.one(TARGET_GROUP, "inference-api").inputs["healthCheck"]


def test_the_push_trigger_exists_before_the_first_image_is_pushed(plan: Plan):
    """EventBridge delivers an event only to the rules that exist when it arrives, so the rule
    and its target must precede the push (EventBridge User Guide, "Rules")."""
    rule = plan.one("aws:cloudwatch/eventRule:EventRule", "training-on-push")
    target = plan.one("aws:cloudwatch/eventTarget:EventTarget", "training-on-push")
    machine = plan.one("aws:sfn/stateMachine:StateMachine", "training-pipeline")
    releases = [i for i in plan.of_type(IMAGE) if not i.name.endswith("-cache")]
    assert releases
    for image in releases:
        before = ancestors(plan, image)
        assert {rule.urn, target.urn, machine.urn} <= before, image.name
    # And the service and task definitions run what was pushed.
    definitions = plan.of_type("aws:ecs/taskDefinition:TaskDefinition")
    for definition in definitions:
        assert any(i.urn in ancestors(plan, definition) for i in releases), definition.name


def test_tasks_without_a_model_stay_in_rotation(plan: Plan):
    check = api_health_check(plan)
    assert check["path"] == "/health" and check["matcher"] == "200"
    service = plan.one(SERVICE).inputs
    # The grace period covers the container's start (store wait, imports).
    assert service["healthCheckGracePeriodSeconds"] >= 120
    # Judged by its alarms and the sample check; the circuit breaker judges rolling updates only.
    assert service["alarms"]["rollback"] is True
    containers = json.loads(
        plan.one("aws:ecs/taskDefinition:TaskDefinition", "inference").inputs[
            "containerDefinitions"
        ]
    )
    api = next(c for c in containers if c["name"] == "api")
    assert "/health" in api["healthCheck"]["command"][-1]


def test_no_deployment_alarm_watches_something_a_model_less_task_trips(plan: Plan):
    """The deployment alarms are UnHealthyHostCount (0 while /health answers), target 5xx and
    p99 TargetResponseTime (a model-less task answers at once). ALB health checks are not
    requests: they never count in HTTPCode_Target_5XX_Count or TargetResponseTime (ELB User
    Guide, "CloudWatch metrics for your Application Load Balancer": request metrics)."""
    service = plan.one(SERVICE).inputs
    names = set(service["alarms"]["alarmNames"])
    watched = {a.inputs["metricName"] for a in plan.of_type(ALARM) if a.outputs["name"] in names}
    assert watched == {"UnHealthyHostCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime"}


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["dev"])
def test_a_new_stack_serves_503_then_hot_reloads_its_first_model(stack, tmp_path, request):
    """The real app on an empty store, probed on the path the target group checks."""
    plan = request.getfixturevalue(f"{stack}_plan")
    path = api_health_check(plan)["path"]
    store = tmp_path / "store"
    store.mkdir()
    with ServerProcess(store) as server:
        server.wait_ready(path)  # in rotation without a model
        assert httpx.get(server.url + "/ready").status_code == 503
        # The stack's sample check passes without a model, so a new stack's first deployment
        # is not rolled back for lacking one (rollout/sample_check.py, the stack's samples).
        samples = json.loads(
            plan.one(SERVICE).inputs["deploymentConfiguration"]["lifecycleHooks"][0]["hookDetails"]
        )
        problems = load_function("sample_check").check(
            server.url,
            samples["header"],
            samples["header_value"],
            samples["samples"],
            samples["latency_budget_ms"],
            samples["timeout_seconds"],
        )
        assert problems == []
        waiting = httpx.post(server.url + "/predict", json=predict_body())
        assert waiting.status_code == 503
        assert int(waiting.headers["Retry-After"]) > 0
        assert "no model is promoted yet" in waiting.json()["detail"]
        # The first training run: validate, train, gate (the state machine's steps).
        for step in ("validate", "train", "gate"):
            result = run_app(step, store_root=store, timeout=300, RUN_ID="first")
            assert result.returncode == 0, result.stderr
        server.wait_ready("/ready")  # hot-reloaded, no restart
        served = httpx.post(server.url + "/predict", json=predict_body())
        assert served.status_code == 200 and served.json()["model"] == "first"
        assert httpx.get(server.url + path).status_code == 200
