"""The platform's model monitor on AWS (`monitoring.model_monitor`): its settings, the decision
that declares it, its container, what it may do, its schedule, its dashboard widgets and what
the plan says it costs.

What a user relies on: it exists only where a service captures requests; it runs the platform
image's `monitor` as the platform's non-root user with the store it reads and cleans; it may put
the drift event only when the stack retrains on it, and only on the default bus; every bad value
is refused naming the key.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.documents.common import ContainerSpec, render_containers
from components.documents.inference import service_dashboard
from components.documents.model_monitor import (
    feature_drift_search,
    model_monitor_container,
    model_monitor_widgets,
)
from components.settings.decisions import ModelMonitor, decide
from components.settings.model_monitor import ModelMonitorSettings, MonitorOutput
from components.settings.stack import parse
from components.settings.workload import Direction, Objective
from preflight.costs import estimate_cost
from preflight.offline import ACCOUNT, REGION, Plan, run_stack
from preflight.plan import reviewable
from tests.components.conftest import settings_for

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
POLICY = "aws:iam/rolePolicy:RolePolicy"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-platform@sha256:" + "b" * 64
CAPTURE = {"inference": {"capture": {"percent": 10}}}
PUBLISHING = {**CAPTURE, "training": {"on_drift_event": True}}


@pytest.fixture(scope="module")
def publishing() -> Plan:
    """digits capturing 10 % of its requests, retraining on drift, with the dashboard."""
    return run_stack("digits", {**PUBLISHING, "observability": {"cloudwatch_dashboard": True}})


@pytest.fixture(scope="module")
def reporting() -> Plan:
    """digits capturing, as shipped otherwise: `training.on_drift_event: false`."""
    return run_stack("digits", CAPTURE)


def document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def containers_of(plan: Plan, name: str) -> dict[str, dict[str, Any]]:
    task = plan.one(TASK_DEFINITION, name)
    return {c["name"]: c for c in document(task.inputs["containerDefinitions"])}


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


def model_monitor_actions(plan: Plan) -> list[str]:
    return [
        action
        for policy in plan.of_type(POLICY)
        if policy.name.startswith("model-monitor-task")
        for s in document(policy.inputs["policy"])["Statement"]
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]


# --- settings ----------------------------------------------------------------------------------


def test_the_defaults_watch_hourly_and_keep_a_month_of_capture():
    settings = parse({})
    monitor = settings.monitoring.model_monitor
    assert monitor == ModelMonitorSettings()
    assert (monitor.schedule, monitor.channel, monitor.threshold) == ("rate(1 hour)", "", 0.1)
    assert (monitor.min_rows, monitor.output, monitor.thresholds) == (200, None, {})
    assert (monitor.quality_margin, monitor.cooldown_hours) == (0.05, 24)
    assert settings.inference.capture.retention_days == 30


def test_every_key_is_read():
    monitor = parse(
        {
            "monitoring": {
                "model_monitor": {
                    "schedule": "cron(15 * * * ? *)",
                    "threshold": 0.2,
                    "thresholds": {"pixel_3": 0.5, "_c0": 1},
                    "min_rows": 20,
                    "output": {"field": "predictions", "baseline": "label"},
                    "quality_margin": 0,
                    "cooldown_hours": 0,
                }
            },
            "inference": {"capture": {"retention_days": 0}},
        }
    )
    settings = monitor.monitoring.model_monitor
    assert settings.schedule == "cron(15 * * * ? *)" and settings.threshold == 0.2
    assert settings.thresholds == {"pixel_3": 0.5, "_c0": 1.0}
    assert settings.output == MonitorOutput(field="predictions", baseline="label")
    assert (settings.min_rows, settings.quality_margin, settings.cooldown_hours) == (20, 0.0, 0)
    assert monitor.inference.capture.retention_days == 0


@pytest.mark.parametrize(
    ("raw", "key", "value", "words"),
    [
        ({"schedule": "hourly"}, "schedule", "hourly", "cron("),
        ({"schedule": "cron(0 * * * MON *)"}, "schedule", "cron(0 * * * MON *)", "day-of-month"),
        ({"schedule": 60}, "schedule", 60, "a string"),
        ({"channel": 1}, "channel", 1, "a string"),
        ({"threshold": 0}, "threshold", 0, "above 0 and at most 1"),
        ({"threshold": 1.5}, "threshold", 1.5, "above 0 and at most 1"),
        ({"threshold": "0.1"}, "threshold", "0.1", "a number"),
        ({"threshold": True}, "threshold", True, "a number"),
        ({"thresholds": [0.2]}, "thresholds", [0.2], "a map"),
        ({"thresholds": {"x": 0}}, "thresholds.x", 0, "above 0 and at most 1"),
        ({"thresholds": {"x": 2}}, "thresholds.x", 2, "above 0 and at most 1"),
        ({"thresholds": {3: 0.2}}, "thresholds.3", 3, "quote a number"),
        ({"min_rows": 19}, "min_rows", 19, "from 20 up"),
        ({"min_rows": 200.5}, "min_rows", 200.5, "an integer"),
        ({"output": "label"}, "output", "label", "a map of keys"),
        ({"output": {"field": "", "baseline": "y"}}, "output.field", "", "non-empty string"),
        ({"output": {"field": "p"}}, "output.baseline", None, "non-empty string"),
        ({"output": {"field": "p", "baseline": 7}}, "output.baseline", 7, "non-empty string"),
        ({"quality_margin": -0.1}, "quality_margin", -0.1, "from 0 to 1"),
        ({"quality_margin": 1.5}, "quality_margin", 1.5, "from 0 to 1"),
        ({"cooldown_hours": 721}, "cooldown_hours", 721, "from 0 to 720"),
        ({"cooldown_hours": -1}, "cooldown_hours", -1, "from 0 to 720"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key_the_value_and_what_is_allowed(
    raw, key, value, words
):
    with pytest.raises(pulumi.RunError) as refused:
        parse({"monitoring": {"model_monitor": raw}})
    message = str(refused.value)
    assert message.startswith(f"mlops:monitoring.model_monitor.{key}: {value!r} is not allowed")
    assert words in message


@pytest.mark.parametrize(
    ("raw", "nearest"),
    [
        ({"treshold": 0.2}, "threshold"),
        ({"output": {"field": "p", "baseline": "y", "feld": 1}}, "field"),
    ],
)
def test_an_unknown_key_is_refused_with_the_nearest_name(raw, nearest):
    with pytest.raises(pulumi.RunError, match=f"did you mean `{nearest}`"):
        parse({"monitoring": {"model_monitor": raw}})


@pytest.mark.parametrize("days", [-1, 3651, 1.5, True, "30"])
def test_a_bad_capture_retention_is_refused(days):
    with pytest.raises(pulumi.RunError) as refused:
        parse({"inference": {"capture": {"retention_days": days}}})
    message = str(refused.value)
    assert message.startswith(f"mlops:inference.capture.retention_days: {days!r} is not allowed")
    assert "0 (keep forever)" in message and "3650" in message


def test_the_channel_must_be_one_the_workload_trains_on():
    digits = settings_for("digits", {"monitoring": {"model_monitor": {"channel": "train"}}})
    assert digits.monitoring.model_monitor.channel == "train"
    with pytest.raises(pulumi.RunError) as refused:
        settings_for("digits", {"monitoring": {"model_monitor": {"channel": "validation"}}})
    assert str(refused.value).startswith(
        "mlops:monitoring.model_monitor.channel: 'validation' is not allowed"
    )
    assert "workload.training.channels (train)" in str(refused.value)
    with pytest.raises(pulumi.RunError, match=r"declares no workload\.training\.channels"):
        settings_for("dev", {"monitoring": {"model_monitor": {"channel": "train"}}})


# --- the decision ------------------------------------------------------------------------------


def test_it_is_declared_only_where_a_service_captures_on_a_schedule():
    assert decide(settings_for("digits")).model_monitor is None  # capture off
    monitor = decide(settings_for("digits", CAPTURE)).model_monitor
    assert monitor is not None and monitor.settings == ModelMonitorSettings()
    assert monitor.retention_days == 30 and not monitor.publishes  # on_drift_event: false
    assert monitor.objective is not None and monitor.objective.key == "accuracy"
    assert decide(settings_for("digits", PUBLISHING)).model_monitor.publishes
    no_schedule = {**CAPTURE, "monitoring": {"model_monitor": {"schedule": ""}}}
    assert decide(settings_for("digits", no_schedule)).model_monitor is None
    training_only = {**CAPTURE, "workload": {"serving": None}}
    assert decide(settings_for("digits", training_only)).model_monitor is None


# --- documents ---------------------------------------------------------------------------------


def _rendered(spec: ContainerSpec) -> dict[str, Any]:
    (container,) = render_containers([spec], REGION, {spec.name: "logs"})
    return container


def test_the_container_passes_every_setting_the_monitor_reads():
    monitor = ModelMonitor(
        settings=ModelMonitorSettings(
            channel="train",
            threshold=0.2,
            thresholds={"b": 0.3, "a": 0.5},
            min_rows=50,
            output=MonitorOutput(field="predictions", baseline="label"),
            quality_margin=0.1,
            cooldown_hours=6,
        ),
        retention_days=7,
        publishes=True,
        objective=Objective(file="metrics.json", key="auc", direction=Direction.MAXIMIZE),
    )
    container = _rendered(model_monitor_container(IMAGE, "eu-west-1", "prod", monitor))
    assert container["command"] == ["monitor"] and container["image"] == IMAGE
    assert container["user"] == "10001:10001" and container["readonlyRootFilesystem"] is True
    assert environment(container) == {
        "STORE_DIR": "/mnt/store",
        "MLOPS_STACK": "prod",
        "MLOPS_CAPTURE_NAME": "inference",
        "MLOPS_CAPTURE_RETENTION_DAYS": "7",
        "MLOPS_MONITOR_CHANNEL": "train",
        "MLOPS_MONITOR_THRESHOLD": "0.2",
        "MLOPS_MONITOR_THRESHOLDS": '{"a": 0.5, "b": 0.3}',
        "MLOPS_MONITOR_MIN_ROWS": "50",
        "MLOPS_MONITOR_OUTPUT": '{"baseline": "label", "field": "predictions"}',
        "MLOPS_MONITOR_QUALITY_MARGIN": "0.1",
        "MLOPS_MONITOR_COOLDOWN_HOURS": "6",
        "MLOPS_MONITOR_EVENTS": "eventbridge",
        "MLOPS_OBJECTIVE_FILE": "metrics.json",
        "MLOPS_OBJECTIVE_KEY": "auc",
        "MLOPS_OBJECTIVE_DIRECTION": "maximize",
        "EVENT_BUS_NAME": "default",
        "AWS_REGION": "eu-west-1",
    }


def test_unset_options_are_left_to_the_monitors_defaults():
    monitor = ModelMonitor(
        settings=ModelMonitorSettings(), retention_days=30, publishes=False, objective=None
    )
    env = environment(_rendered(model_monitor_container(IMAGE, REGION, "dev", monitor)))
    for name in ("MONITOR_CHANNEL", "MONITOR_OUTPUT", "MONITOR_EVENTS", "OBJECTIVE_KEY"):
        assert f"MLOPS_{name}" not in env
    assert env["MLOPS_MONITOR_THRESHOLDS"] == "{}" and env["MLOPS_MONITOR_THRESHOLD"] == "0.1"


def test_the_drift_widget_searches_every_feature_of_this_stack():
    assert feature_drift_search("digits") == (
        'SEARCH(\'{mlops/ModelMonitor,Stack,Feature} MetricName="BaselineDrift" '
        "Stack=\"digits\"', 'Maximum', 3600)"
    )
    with pytest.raises(ValueError, match="not a stack name"):
        feature_drift_search("it's")
    drift, rows, drifted, output = model_monitor_widgets(REGION, "digits", 18)
    (search,) = drift["properties"]["metrics"][0]
    assert search["expression"] == feature_drift_search("digits") and search["id"] == "drift"
    summary = {
        m[1]: m[2:4]
        for w in (rows, drifted, output)
        for m in w["properties"]["metrics"]
    }  # fmt: skip
    names = ["RowsChecked", "DriftedFeatures", "DriftEvents", "OutputDrift", "LiveObjective"]
    assert summary == {name: ["Stack", "digits"] for name in names}
    assert all(w["properties"]["metrics"][0][0] == "mlops/ModelMonitor" for w in (rows, output))
    assert [(w["x"], w["y"]) for w in (drift, rows, drifted, output)] == [
        (0, 18), (12, 18), (0, 24), (12, 24)
    ]  # fmt: skip


def test_the_monitor_widgets_go_below_the_services_and_the_gpu_ones():
    args = ("us-east-1", "app/alb/1", "targetgroup/tg/2", "cluster", "service")
    plain = service_dashboard(*args)["widgets"]
    both = service_dashboard(*args, gpu=("group", "provider"), model_monitor_stack="s")["widgets"]
    assert both[: len(plain)] == plain
    gpu, monitor = both[len(plain) : len(plain) + 3], both[len(plain) + 3 :]
    assert {w["y"] for w in gpu} == {max(w["y"] + w["height"] for w in plain)}
    assert min(w["y"] for w in monitor) == max(w["y"] + w["height"] for w in gpu)
    assert "SEARCH(" in json.dumps(monitor)


# --- the component, in the whole program ---------------------------------------------------------


def test_the_task_runs_the_platform_images_monitor_as_its_user_on_fargate(publishing: Plan):
    task = publishing.one(TASK_DEFINITION, "model-monitor-monitor")
    assert task.inputs["family"] == "mlops-digits-model-monitor"
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("256", "512")
    assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
    (container,) = containers_of(publishing, "model-monitor-monitor").values()
    proxy = containers_of(publishing, "inference-task")["capture"]
    assert container["image"] == proxy["image"]  # the platform image, by digest
    assert "@sha256:" in container["image"] and "-platform@" in container["image"]
    assert container["command"] == ["monitor"]
    assert container["user"] == "10001:10001" and container["readonlyRootFilesystem"] is True
    env = environment(container)
    # It reads the directory the proxy writes, and reports under this stack's name.
    assert env["MLOPS_CAPTURE_NAME"] == environment(proxy)["MLOPS_CAPTURE_NAME"]
    assert env["MLOPS_STACK"] == "digits" and env["STORE_DIR"] == "/mnt/store"
    assert env["MLOPS_MONITOR_EVENTS"] == "eventbridge" and env["EVENT_BUS_NAME"] == "default"
    assert env["AWS_REGION"] == REGION and env["MLOPS_CAPTURE_RETENTION_DAYS"] == "30"
    assert env["MLOPS_OBJECTIVE_KEY"] == "accuracy"
    assert env["MLOPS_OBJECTIVE_DIRECTION"] == "maximize"
    assert publishing.exports["model_monitor_task_definition_arn"] == task.outputs["arn"]


def test_it_reads_and_writes_the_store_through_its_main_access_point(publishing: Plan):
    task = publishing.one(TASK_DEFINITION, "model-monitor-monitor")
    (container,) = containers_of(publishing, "model-monitor-monitor").values()
    mounts = {m["sourceVolume"]: m for m in container["mountPoints"]}
    assert mounts["store"] == {
        "sourceVolume": "store",
        "containerPath": "/mnt/store",
        "readOnly": False,
    }
    volume = next(v for v in task.inputs["volumes"] if v["name"] == "store")
    points = {r.name: r for r in publishing.of_type(ACCESS_POINT)}
    efs = volume["efsVolumeConfiguration"]
    assert efs["authorizationConfig"]["accessPointId"] == points["store-ap"].id
    assert efs["transitEncryption"] == "ENABLED" and efs["authorizationConfig"]["iam"] == "ENABLED"
    # Its role mounts and writes through that access point, and the file system lets it.
    (store,) = document(publishing.one(POLICY, "model-monitor-task-store").inputs["policy"])[
        "Statement"
    ]
    assert "elasticfilesystem:ClientWrite" in store["Action"]
    assert (
        store["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"]
        == (points["store-ap"].outputs["arn"])
    )
    role = publishing.one("aws:iam/role:Role", "model-monitor-task-role").outputs["arn"]
    statements = document(
        publishing.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"]
    )["Statement"]
    (writers,) = [s for s in statements if s.get("Sid") == "AllowClientsThroughAccessPoint"]
    assert role in writers["Principal"]["AWS"]  # fmt: skip


def test_it_may_put_the_drift_event_on_the_default_bus_only_when_the_stack_retrains_on_it(
    publishing: Plan, reporting: Plan
):
    (statement,) = document(publishing.one(POLICY, "model-monitor-task-events").inputs["policy"])[
        "Statement"
    ]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    assert statement["Condition"]["StringEquals"] == {
        "events:source": "mlops.monitoring",
        "events:detail-type": "DataDriftDetected",
    }
    assert [a for a in model_monitor_actions(publishing) if a.startswith("events:")] == [
        "events:PutEvents"
    ]
    # The pipeline's drift rule is what it feeds.
    assert publishing.one(RULE, "training-on-drift")
    assert not [p for p in reporting.of_type(POLICY) if p.name == "model-monitor-task-events"]
    assert not [a for a in model_monitor_actions(reporting) if a.startswith("events:")]
    (container,) = containers_of(reporting, "model-monitor-monitor").values()
    assert "MLOPS_MONITOR_EVENTS" not in environment(container)


def test_it_pulls_the_platform_image_only_and_sends_https_out_only(publishing: Plan):
    pulls = [
        s
        for s in document(
            publishing.one(POLICY, "model-monitor-execution-policy").inputs["policy"]
        )["Statement"]
        if s["Sid"] == "PullImages"
    ]
    assert (
        pulls[0]["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlops-digits-platform"
    )
    egress = [
        r
        for r in publishing.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.name.startswith("model-monitor-")
    ]
    assert [(r.inputs["fromPort"], r.inputs["toPort"]) for r in egress] == [(443, 443)]
    assert not [
        r
        for r in publishing.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.startswith("model-monitor-")
    ]


def test_the_schedule_runs_it_hourly_on_fargate_spot(publishing: Plan):
    rule = publishing.one(RULE, "model-monitor-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 hour)"
    target = publishing.one(TARGET, "model-monitor-schedule-target")
    task = publishing.one(TASK_DEFINITION, "model-monitor-monitor")
    ecs = target.inputs["ecsTarget"]
    assert ecs["taskDefinitionArn"] == task.outputs["arn"] and ecs["taskCount"] == 1
    assert ecs["capacityProviderStrategies"] == [
        {"base": 0, "capacityProvider": "FARGATE_SPOT", "weight": 1}
    ]
    groups = ecs["networkConfiguration"]["securityGroups"]
    assert (
        publishing.one("aws:ec2/securityGroup:SecurityGroup", "model-monitor-task-sg").id in groups
    )
    run, passes = document(publishing.one(POLICY, "model-monitor-events-policy").inputs["policy"])[
        "Statement"
    ]
    assert (run["Sid"], passes["Sid"]) == ("RunMonitorTask", "PassMonitorTaskRoles")
    assert run["Resource"] == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/mlops-digits-model-monitor",
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/mlops-digits-model-monitor:*",
    ]


def test_a_stack_without_capture_or_schedule_declares_none_of_it(digits_plan: Plan):
    assert not [r for r in digits_plan.resources if r.name.startswith("model-monitor")]
    assert "model_monitor_task_definition_arn" not in digits_plan.exports
    plan = run_stack("digits", {**CAPTURE, "monitoring": {"model_monitor": {"schedule": ""}}})
    assert not [r for r in plan.resources if r.name.startswith("model-monitor")]


def test_the_dashboard_shows_the_monitors_metrics(publishing: Plan):
    body = document(publishing.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    expressions = [
        m[0]["expression"]
        for w in body["widgets"]
        for m in w["properties"]["metrics"]
        if isinstance(m[0], dict)
    ]
    assert expressions == [feature_drift_search("digits")]


def test_the_plan_prices_a_minute_a_run_and_its_metrics(publishing: Plan):
    estimate = estimate_cost(publishing)
    lines = {line.item: line for line in estimate.lines if line.resource == "model-monitor-monitor"}
    runs = "730.0 scheduled runs x 1 min"
    assert set(lines) == {
        f"{runs}: Fargate Spot vCPU",
        f"{runs}: Fargate Spot memory",
        "model monitor metrics, per stack",
        "model monitor metrics, per feature",
    }
    vcpu = lines[f"{runs}: Fargate Spot vCPU"]
    assert vcpu.quantity == pytest.approx(730 / 60 * 0.25)
    assert lines["model monitor metrics, per stack"].quantity == 5
    assert lines["model monitor metrics, per feature"].quantity == 10
    assert lines["model monitor metrics, per feature"].unit_usd == 0.30
    assert {"model_monitor_minutes_per_run", "model_monitor_features"} <= set(estimate.assumptions)


def test_a_plan_without_it_assumes_nothing_about_it(dev_plan: Plan):
    assumptions = estimate_cost(dev_plan).assumptions
    assert not [key for key in assumptions if key.startswith("model_monitor")]


def test_built_alone_it_is_the_programs(publishing: Plan, build):
    overrides = {**PUBLISHING, "observability": {"cloudwatch_dashboard": True}}
    alone = build("model_monitor", "digits", overrides)
    whole = publishing.one("mlops:index:Monitoring", "model-monitor")

    def children(plan: Plan, urn: str) -> dict[tuple[str, str], Any]:
        # Image digests, which the mock registry numbers in push order, normalised.
        return {(r.type, r.name): reviewable(r.inputs) for r in plan.children_of(urn)}

    assert children(alone.plan, alone.component.urn) == children(publishing, whole.urn)
