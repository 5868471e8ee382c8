"""Monitoring: the weekly ingest task, its schedule on Fargate Spot, and what it may do.

The settings, the documents (pure builders) and the component as `__main__.py` declares it under
the recording mocks.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.documents.common import (
    DRIFT_DETAIL_TYPE,
    DRIFT_SOURCE,
    ContainerSpec,
    render_containers,
    task_definition_arn_patterns,
)
from components.documents.monitoring import (
    MonitorThresholds,
    default_event_bus_arn,
    job_container,
    publish_drift_statements,
    run_scheduled_task_statements,
)
from components.settings.pipeline import MonitoringSettings
from components.settings.stack import parse
from components.settings.workload import JobSpec, SecuritySpec
from preflight.costs import estimate_cost
from preflight.offline import ACCOUNT, REGION, ROOT, Plan

RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
POLICY = "aws:iam/rolePolicy:RolePolicy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "a" * 64
ROLE_ARNS = [f"arn:aws:iam::{ACCOUNT}:role/exec", f"arn:aws:iam::{ACCOUNT}:role/task"]


@pytest.fixture
def plan(build) -> Plan:
    """Monitoring built alone on dev, with the network, store, cluster and images it is given."""
    return build("monitoring", "dev").plan


def document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def statements(plan: Plan, name: str) -> list[dict[str, Any]]:
    return document(plan.one(POLICY, name).inputs["policy"])["Statement"]


# --- settings ----------------------------------------------------------------------------------


def test_monitoring_defaults_are_a_weekly_job():
    settings = parse({}).monitoring
    assert settings == MonitoringSettings()
    assert settings.ingest_schedule == "cron(0 6 ? * MON *)"
    assert (settings.error_tolerance, settings.drift_p_value) == (2.5, 0.001)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("ingest_schedule", "cron(0 6 * * MON *)", "exactly one of day-of-month"),
        ("ingest_schedule", "weekly", "cron("),
        ("error_tolerance", 0.5, "at least 1.0"),
        ("drift_p_value", 0.9, "below 0.5"),
        ("cooldown_weeks", 1000, "from 0 to 520"),
        ("cooldown_weeks", 2.5, "integer"),
    ],
)
def test_bad_monitoring_value_is_refused_naming_key_value_and_allowed(key, value, words):
    with pytest.raises(pulumi.RunError) as refused:
        parse({"monitoring": {key: value}})
    message = str(refused.value)
    assert message.startswith(f"mlops:monitoring.{key}: {value!r} is not allowed")
    assert words in message


def test_unknown_monitoring_key_suggests_the_nearest_name():
    with pytest.raises(pulumi.RunError, match="did you mean `ingest_schedule`"):
        parse({"monitoring": {"ingest_shedule": ""}})


def test_empty_ingest_schedule_is_allowed():
    assert parse({"monitoring": {"ingest_schedule": ""}}).monitoring.ingest_schedule == ""


# --- documents ---------------------------------------------------------------------------------


def _rendered(spec: ContainerSpec) -> dict:
    (container,) = render_containers([spec], REGION, {spec.name: "logs"})
    return container


def test_the_reference_job_runs_ingest_then_monitor_publishing_to_eventbridge():
    job = parse({}).workload.job
    container = _rendered(
        job_container(
            IMAGE, "eu-west-1", job=job, thresholds=MonitorThresholds(), security=SecuritySpec()
        )
    )
    assert container["command"] == ["ingest", "--monitor"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    # app/loop/ingest.py's default source and app/loop/monitor.py's variable names.
    assert environment["INGEST_SOURCE"] in (ROOT / "app" / "loop" / "ingest.py").read_text()
    assert environment["MONITOR_ON_DRIFT"] == "eventbridge"
    assert environment["EVENT_BUS_NAME"] == "default"
    assert environment["AWS_REGION"] == "eu-west-1"
    assert environment["MONITOR_DRIFT_P_VALUE"] == "0.001"
    assert container["readonlyRootFilesystem"] and container["user"] == "10001:10001"


def test_a_job_that_emits_no_drift_gets_no_event_bus():
    job = JobSpec(command=("refresh",), environment={"SOURCE": "https://example.org"})
    container = _rendered(
        job_container(
            IMAGE, REGION, job=job, thresholds=MonitorThresholds(), security=SecuritySpec()
        )
    )
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert container["command"] == ["refresh"] and environment["SOURCE"] == "https://example.org"
    assert "EVENT_BUS_NAME" not in environment


def test_the_task_may_put_only_drift_events_on_the_default_bus():
    bus = default_event_bus_arn(REGION, ACCOUNT)
    assert bus == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    (statement,) = publish_drift_statements(bus)
    assert statement["Action"] == "events:PutEvents" and statement["Resource"] == bus
    assert statement["Condition"]["StringEquals"] == {
        "events:source": DRIFT_SOURCE,
        "events:detail-type": DRIFT_DETAIL_TYPE,
    }
    with pytest.raises(ValueError, match="not a default event bus ARN"):
        publish_drift_statements(f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/other")
    with pytest.raises(ValueError, match="not an AWS account id"):
        default_event_bus_arn(REGION, "me")


def test_the_schedule_may_run_only_the_ingest_family_on_this_cluster():
    run, pass_role = run_scheduled_task_statements(
        region=REGION, account=ACCOUNT, cluster_name="c", family="f", pass_role_arns=ROLE_ARNS
    )
    assert run["Action"] == "ecs:RunTask"
    assert run["Resource"] == task_definition_arn_patterns(REGION, ACCOUNT, "f")
    assert run["Condition"]["ArnEquals"]["ecs:cluster"].endswith(":cluster/c")
    assert pass_role["Resource"] == sorted(ROLE_ARNS)
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        run_scheduled_task_statements(
            region=REGION, account=ACCOUNT, cluster_name="c", family="f", pass_role_arns=["x"]
        )


# --- the component -----------------------------------------------------------------------------


def test_the_task_role_may_put_events_on_the_default_bus_arn_only(plan):
    (statement,) = statements(plan, "monitoring-task-events")
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    every_action = [
        action
        for policy in plan.of_type(POLICY)
        if policy.name.startswith("monitoring-task")
        for s in document(policy.inputs["policy"])["Statement"]
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert [a for a in every_action if a.startswith("events:")] == ["events:PutEvents"]


def test_the_schedule_runs_the_ingest_task_weekly_on_fargate_spot(plan):
    rule = plan.one(RULE, "monitoring-schedule")
    assert rule.inputs["scheduleExpression"] == "cron(0 6 ? * MON *)"
    target = plan.one(TARGET, "monitoring-schedule-target")
    ecs = target.inputs["ecsTarget"]
    task = plan.one(TASK_DEFINITION, "monitoring-ingest")
    assert ecs["taskDefinitionArn"] == task.outputs["arn"]
    assert ecs["capacityProviderStrategies"] == [
        {"base": 0, "capacityProvider": "FARGATE_SPOT", "weight": 1}
    ]
    assert "launchType" not in ecs
    assert target.inputs["arn"].endswith(":cluster/" + plan.one(
        "aws:ecs/cluster:Cluster").outputs["name"])  # fmt: skip
    (run, _) = statements(plan, "monitoring-events-policy")
    assert run["Resource"] == task_definition_arn_patterns(REGION, ACCOUNT, task.inputs["family"])


def test_the_task_gets_https_out_and_the_store_nothing_else(dev_plan: Plan):
    plan = dev_plan  # the whole program: __main__.py authorizes the store's clients
    egress = [
        r
        for r in plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.name.startswith("monitoring-")
    ]
    assert [(r.inputs["fromPort"], r.inputs["toPort"]) for r in egress] == [(443, 443)]
    assert not [
        r
        for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.startswith("monitoring-")
    ]
    policy = document(plan.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"])
    role = plan.one("aws:iam/role:Role", "monitoring-task-role").outputs["arn"]
    assert role in json.dumps(policy)


def test_the_ingest_task_is_small_and_priced_as_fargate_spot(plan):
    task = plan.one(TASK_DEFINITION, "monitoring-ingest")
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("256", "1024")
    lines = [line for line in estimate_cost(plan).lines if line.resource == "monitoring-ingest"]
    assert {line.item.split(": ", 1)[1] for line in lines} == {
        "Fargate Spot vCPU",
        "Fargate Spot memory",
    }
    assert all(line.monthly_usd is not None and line.monthly_usd > 0 for line in lines)


def test_no_schedule_no_rule_but_the_task_definition_stays(build):
    plan = build("monitoring", "dev", {"monitoring": {"ingest_schedule": ""}})
    assert not [r for r in plan.of_type(RULE) if r.name.startswith("monitoring-")]
    assert plan.one(TASK_DEFINITION, "monitoring-ingest")
