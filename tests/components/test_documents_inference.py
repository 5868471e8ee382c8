"""documents/inference.py: containers, capacity strategy, alarms, dashboard."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from app.settings import AppSettings
from components.documents.common import STORE_WAIT_SECONDS, looks_secret, render_containers
from components.documents.inference import (
    ALARM_SCOPES,
    capacity_provider_strategy,
    inference_alarms,
    inference_containers,
    inference_dashboard,
)
from components.settings.stack import parse
from components.settings.workload import SecuritySpec, ServingSpec
from preflight.offline import ROOT

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "a" * 64
FORECASTER = yaml.safe_load((ROOT / "workloads" / "forecaster.yaml").read_text())
GROUPS = {"api": "/mlops/api", "dashboard": "/mlops/dashboard", "forecaster": "/mlops/forecaster"}
ACCOUNT = "123456789012"
ALB = "app/inference-alb-1234/50dc6c495c0c9188"
TG = "targetgroup/inference-api-1234/6d0ecf831eec9f09"


def _reference(dashboard: bool = True, interval: int = 10) -> dict:
    """The reference workload's serving parts, as a stack with these settings deploys them."""
    workload = copy.deepcopy(FORECASTER)
    workload["sidecars"][1]["environment"]["FORECAST_INTERVAL_SECONDS"] = str(interval)
    settings = parse({"workload": workload, "inference": {"dashboard": dashboard}})
    return {
        "serving": settings.workload.serving,
        "sidecars": settings.sidecars,
        "security": settings.workload.security,
    }


def _containers(dashboard: bool = True, interval: int = 10) -> dict[str, dict]:
    definitions = render_containers(
        inference_containers(IMAGE, **_reference(dashboard, interval)), "us-east-1", GROUPS
    )
    return {d["name"]: d for d in json.loads(json.dumps(definitions))}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


# ---------------------------------------------------------------------------- containers


def test_containers_are_api_dashboard_and_forecaster_running_their_commands():
    containers = _containers()
    assert list(containers) == ["api", "dashboard", "forecaster"]
    assert {n: c["command"] for n, c in containers.items()} == {
        "api": ["serve"],
        "dashboard": ["dashboard"],
        "forecaster": ["forecast"],
    }
    # 8081: /metrics and /model, inside the VPC only (the app's INTERNAL_PORT)
    assert [p["containerPort"] for p in containers["api"]["portMappings"]] == [8080, 8081]
    assert _env(containers["api"])["INTERNAL_PORT"] == "8081"
    assert [p["containerPort"] for p in containers["dashboard"]["portMappings"]] == [8050]
    assert "portMappings" not in containers["forecaster"]


def test_without_the_dashboard_only_api_and_forecaster_run():
    assert list(_containers(dashboard=False)) == ["api", "forecaster"]


def test_every_container_is_hardened_and_logs_to_its_own_group():
    for name, container in _containers().items():
        assert container["image"] == IMAGE
        assert container["user"] == "10001:10001"
        assert container["readonlyRootFilesystem"] is True
        assert container["stopTimeout"] == 120
        mounts = {m["containerPath"]: m["sourceVolume"] for m in container["mountPoints"]}
        assert mounts == {"/mnt/store": "store", "/tmp": "scratch"}
        log = container["logConfiguration"]
        assert log["logDriver"] == "awslogs"
        assert log["options"]["awslogs-group"] == GROUPS[name]
        assert log["options"]["awslogs-region"] == "us-east-1"


def test_only_the_api_is_essential_and_sidecars_restart_in_place():
    containers = _containers()
    assert containers["api"]["essential"] is True
    assert "restartPolicy" not in containers["api"]
    for name in ("dashboard", "forecaster"):
        assert containers[name]["essential"] is False
        policy = containers[name]["restartPolicy"]
        assert policy["enabled"] is True
        assert 60 <= policy["restartAttemptPeriod"] <= 1800


def test_api_health_check_is_liveness_and_covers_the_store_wait_and_model_load():
    api = _containers()["api"]["healthCheck"]
    assert "http://127.0.0.1:8080/health" in api["command"][-1]
    assert "/ready" not in api["command"][-1]
    assert api["startPeriod"] > STORE_WAIT_SECONDS
    assert api["startPeriod"] <= 300  # the ECS maximum


def test_dashboard_health_check_probes_its_path_and_the_forecaster_has_none():
    containers = _containers()
    assert (
        "http://127.0.0.1:8050/dashboard/" in containers["dashboard"]["healthCheck"]["command"][-1]
    )
    assert "healthCheck" not in containers["forecaster"]


def test_environment_sets_what_the_app_reads_and_nothing_secret():
    containers = _containers(interval=30)
    assert _env(containers["api"])["PORT"] == "8080"
    assert _env(containers["dashboard"])["DASHBOARD_PORT"] == "8050"
    assert _env(containers["forecaster"])["FORECAST_INTERVAL_SECONDS"] == "30"
    app_fields = {name.upper() for name in AppSettings.model_fields}
    for container in containers.values():
        env = _env(container)
        assert env["STORE_DIR"] == "/mnt/store"
        assert env["STORE_WAIT_SECONDS"] == str(STORE_WAIT_SECONDS)
        assert env["LOG_LEVEL"] == "INFO"
        assert set(env) <= app_fields, set(env) - app_fields
        assert not any(looks_secret(k, v) for k, v in env.items())


def test_a_container_without_a_log_group_is_refused():
    with pytest.raises(ValueError, match="dashboard"):
        render_containers(
            inference_containers(IMAGE, **_reference()),
            "us-east-1",
            {"api": "/a", "forecaster": "/f"},
        )


def test_a_mutable_image_tag_is_refused():
    with pytest.raises(ValueError, match="sha256"):
        render_containers(inference_containers("repo:latest", **_reference()), "us-east-1", GROUPS)


def test_a_byoc_server_gets_no_container_health_check_and_runs_as_given():
    """SageMaker BYOC images need not ship python or curl: the load balancer checks /ping, and
    no container health check is invented. Root is the documented opt-out."""
    (server,) = render_containers(
        inference_containers(
            IMAGE,
            serving=ServingSpec(),
            sidecars=(),
            security=SecuritySpec(user="0", read_only_root=False, run_as_root=True),
            store=False,
        ),
        "us-east-1",
        {"api": "/a"},
    )
    assert server["command"] == ["serve"] and "healthCheck" not in server
    assert [p["containerPort"] for p in server["portMappings"]] == [8080]
    assert server["user"] == "0:0" and server["readonlyRootFilesystem"] is False
    assert "/mnt/store" not in [m["containerPath"] for m in server["mountPoints"]]
    assert "STORE_DIR" not in {e["name"] for e in server["environment"]}


# ---------------------------------------------------------------------- capacity strategy


def test_spot_only_strategy_leaves_fargate_out():
    assert capacity_provider_strategy(0, 0, 1) == [
        {"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": 1}
    ]


def test_on_demand_base_and_spot_burst():
    assert capacity_provider_strategy(2, 1, 3) == [
        {"capacity_provider": "FARGATE", "base": 2, "weight": 1},
        {"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": 3},
    ]


def test_a_base_keeps_a_zero_weight_on_demand_provider():
    strategy = capacity_provider_strategy(1, 0, 1)
    assert strategy[0] == {"capacity_provider": "FARGATE", "base": 1, "weight": 0}


def test_on_demand_only_drops_spot():
    assert [s["capacity_provider"] for s in capacity_provider_strategy(0, 1, 0)] == ["FARGATE"]


@pytest.mark.parametrize("values", [(0, 0, 0), (2, 0, 0), (-1, 1, 1)])
def test_an_unplaceable_strategy_is_refused(values):
    with pytest.raises(ValueError):
        capacity_provider_strategy(*values)


# -------------------------------------------------------------------------------- alarms


def test_four_alarms_without_a_minimum_and_three_of_them_guard_deployments():
    alarms = {a.role: a for a in inference_alarms(0)}
    assert set(alarms) == {"target-5xx", "unhealthy-hosts", "p99-latency", "cpu-high"}
    assert {r for r, a in alarms.items() if a.deployment} == {
        "target-5xx",
        "unhealthy-hosts",
        "p99-latency",
    }
    assert alarms["unhealthy-hosts"].args()["threshold"] == 0
    assert alarms["unhealthy-hosts"].args()["comparison_operator"] == "GreaterThanThreshold"
    assert alarms["p99-latency"].args()["extended_statistic"] == "p99"
    assert "statistic" not in alarms["p99-latency"].args()
    assert all(a.scope in ALARM_SCOPES for a in alarms.values())


def test_running_tasks_below_a_positive_minimum_alarm_even_without_data():
    below = next(a for a in inference_alarms(2) if a.role == "tasks-below-min")
    args = below.args()
    assert (args["metric_name"], args["namespace"]) == ("RunningTaskCount", "ECS/ContainerInsights")
    assert (args["comparison_operator"], args["threshold"]) == ("LessThanThreshold", 2)
    assert args["treat_missing_data"] == "breaching"
    assert below.scope == "service"


# ----------------------------------------------------------------------------- dashboard


def test_dashboard_shows_requests_latency_errors_resources_and_tasks():
    body = inference_dashboard("us-east-1", ALB, TG, "cluster-1", "service-1")
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == [
        "Requests",
        "Latency p50 / p99 (s)",
        "5xx",
        "CPU / memory (%)",
        "Tasks",
    ]
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    names = {m[1] for m in metrics}
    assert {
        "RequestCount",
        "TargetResponseTime",
        "HTTPCode_Target_5XX_Count",
        "CPUUtilization",
        "MemoryUtilization",
        "RunningTaskCount",
    } <= names
    stats = {m[-1].get("stat") for m in metrics if m[1] == "TargetResponseTime"}
    assert stats == {"p50", "p99"}
    assert all(ALB in m for m in metrics if m[0] == "AWS/ApplicationELB")
    assert all("service-1" in m for m in metrics if m[0] in ("AWS/ECS", "ECS/ContainerInsights"))
    assert json.loads(json.dumps(body)) == body


def test_dashboard_refuses_full_arns_for_dimensions():
    with pytest.raises(ValueError):
        inference_dashboard("us-east-1", f"arn:aws:elasticloadbalancing:{ALB}", TG, "c", "s")
