"""The inference section of documents.py: containers, strategy, policies, alarms, dashboard."""

from __future__ import annotations

import json

import pytest

from app.settings import AppSettings
from components.documents.alerts import (
    alarm_publisher_statements,
    alarm_topic_key_policy,
    alarm_topic_policy,
)
from components.documents.common import STORE_WAIT_SECONDS, looks_secret
from components.documents.inference import (
    ALARM_SCOPES,
    capacity_provider_strategy,
    inference_alarms,
    inference_containers,
    inference_dashboard,
)
from components.documents.load_balancer import alb_access_log_bucket_policy

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "a" * 64
GROUPS = {"api": "/mlops/api", "dashboard": "/mlops/dashboard", "forecaster": "/mlops/forecaster"}
ACCOUNT = "123456789012"
BUCKET_ARN = "arn:aws:s3:::inference-access-logs-1234"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:inference-alarms-1234"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0f4b4c2e-8a35-4c1e-9d59-6c1d1b2a7e10"
ALB = "app/inference-alb-1234/50dc6c495c0c9188"
TG = "targetgroup/inference-api-1234/6d0ecf831eec9f09"


def _containers(dashboard: bool = True, interval: int = 10) -> dict[str, dict]:
    definitions = inference_containers(
        IMAGE, GROUPS, "us-east-1", dashboard=dashboard, forecast_interval_seconds=interval
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
        inference_containers(
            IMAGE,
            {"api": "/a", "forecaster": "/f"},
            "us-east-1",
            dashboard=True,
            forecast_interval_seconds=10,
        )


def test_a_mutable_image_tag_is_refused():
    with pytest.raises(ValueError, match="sha256"):
        inference_containers(
            "repo:latest", GROUPS, "us-east-1", dashboard=True, forecast_interval_seconds=10
        )


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


# -------------------------------------------------------------------------- access logs


# AWS facts, from the ELB User Guide, "Enable access logs for your Application Load Balancer"
# (step "Attach a policy to your S3 bucket"): Regions available before August 2022 grant their
# Elastic Load Balancing account (us-east-1: 127311923021, eu-west-1: 156460612806); Regions
# available since (Zurich eu-central-2, Nov 2022; Tel Aviv il-central-1, Aug 2023) grant the
# log delivery service principal.
OLD_REGIONS = {"us-east-1": "127311923021", "eu-west-1": "156460612806"}
NEW_REGIONS = ("eu-central-2", "il-central-1")
LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def _check_log_policy(policy: dict, principal: dict) -> None:
    allow, deny = policy["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == principal
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == f"{BUCKET_ARN}/alb/AWSLogs/{ACCOUNT}/*"
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]


@pytest.mark.parametrize(("region", "elb_account"), sorted(OLD_REGIONS.items()))
def test_access_log_policy_grants_the_elb_account_in_regions_before_august_2022(
    region, elb_account
):
    policy = alb_access_log_bucket_policy(BUCKET_ARN, ACCOUNT, region)
    _check_log_policy(policy, {"AWS": f"arn:aws:iam::{elb_account}:root"})


@pytest.mark.parametrize("region", NEW_REGIONS)
def test_access_log_policy_grants_the_log_delivery_service_in_newer_regions(region):
    policy = alb_access_log_bucket_policy(BUCKET_ARN, ACCOUNT, region)
    _check_log_policy(policy, {"Service": LOG_DELIVERY_SERVICE})


@pytest.mark.parametrize(
    ("bucket", "account", "region", "prefix"),
    [
        ("inference-logs", ACCOUNT, "us-east-1", "alb"),
        (BUCKET_ARN, "1234", "us-east-1", "alb"),
        (BUCKET_ARN, ACCOUNT, "arn:aws:iam::127311923021:root", "alb"),
        (BUCKET_ARN, ACCOUNT, "us-east-1", "AWSLogs"),
        (BUCKET_ARN, ACCOUNT, "us-east-1", "alb/"),
    ],
)
def test_access_log_policy_refuses_bad_input(bucket, account, region, prefix):
    with pytest.raises(ValueError):
        alb_access_log_bucket_policy(bucket, account, region, prefix)


# ------------------------------------------------------------------------ alarm topic


def test_key_policy_lets_cloudwatch_encrypt_and_delegates_to_iam():
    statements = {s["Sid"]: s for s in alarm_topic_key_policy(ACCOUNT)["Statement"]}
    root = statements["AccountAdministersAndDelegatesThroughIam"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    cloudwatch = statements["CloudWatchAlarmsEncryptNotifications"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_topic_policy_lets_only_this_accounts_alarms_publish_over_tls():
    allow, deny = alarm_topic_policy(TOPIC, ACCOUNT)["Statement"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert (allow["Action"], allow["Resource"]) == ("sns:Publish", TOPIC)
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert deny["Effect"] == "Deny" and deny["Resource"] == TOPIC


def test_publisher_statements_name_the_topic_and_its_key():
    publish, encrypt = alarm_publisher_statements(TOPIC, KEY)
    assert (publish["Action"], publish["Resource"]) == ("sns:Publish", TOPIC)
    assert set(encrypt["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert encrypt["Resource"] == KEY


@pytest.mark.parametrize(
    "build",
    [
        lambda: alarm_topic_key_policy("not-an-account"),
        lambda: alarm_topic_policy("arn:aws:sqs:us-east-1:123456789012:q", ACCOUNT),
        lambda: alarm_publisher_statements(KEY, TOPIC),
    ],
)
def test_alarm_topic_documents_refuse_bad_input(build):
    with pytest.raises(ValueError):
        build()


# -------------------------------------------------------------------------------- alarms


def test_four_alarms_without_a_minimum_and_two_of_them_guard_deployments():
    alarms = {a.role: a for a in inference_alarms(0)}
    assert set(alarms) == {"target-5xx", "unhealthy-hosts", "p99-latency", "cpu-high"}
    assert {r for r, a in alarms.items() if a.deployment} == {"target-5xx", "unhealthy-hosts"}
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
