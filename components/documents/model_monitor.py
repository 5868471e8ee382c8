"""The platform's model monitor (`monitoring.model_monitor`): its container, and the dashboard
widgets of the metrics it reports.

`python -m mlops_platform monitor` (platform/mlops_platform/monitor.py) reads `capture/` through
the store's main access point, compares it with the promoted model's baseline, writes
`monitoring/model/`, deletes capture hours past `inference.capture.retention_days`, and prints
its metrics as CloudWatch Embedded Metric Format lines on stdout. The awslogs driver ships them
to its log group and CloudWatch extracts the metrics: no `cloudwatch:PutMetricData`, no IAM
("Using the PutLogEvents API to send manually-created embedded metric format logs",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Generation_PutLogEvents.html:
the `x-amzn-logs-format` header is optional).
"""

from __future__ import annotations

import json
from typing import Any

from components.documents.capture import CAPTURE_NAME
from components.documents.common import ContainerSpec
from components.documents.monitoring import DEFAULT_EVENT_BUS
from components.settings.decisions import ModelMonitor
from mlops_contract import Env

MODEL_MONITOR_CONTAINER = "model-monitor"
MONITOR_COMMAND = "monitor"
MONITOR_CPU = 256
MONITOR_MEMORY = 512
"""Fargate size (MiB): a Python script reading JSON lines, one hour of capture at a time."""
PUBLISH_TO_EVENTBRIDGE = "eventbridge"
"""`MLOPS_MONITOR_EVENTS`: put the drift event on the bus; unset, report only."""

METRICS_NAMESPACE = "mlops/ModelMonitor"
FEATURE_METRIC = "BaselineDrift"
"""One metric per feature, dimensions [Stack, Feature]: its distance from the baseline."""
STACK_METRICS = ("RowsChecked", "DriftedFeatures", "OutputDrift", "LiveObjective", "DriftEvents")
"""The summary of each check, dimensions [Stack]."""
METRICS_PERIOD = 3600
"""Seconds: the monitor reports once a run, hourly by default."""


def _number(value: float) -> str:
    return f"{value:g}"


def model_monitor_container(
    platform_image: Any, region: str, stack: str, monitor: ModelMonitor
) -> ContainerSpec:
    """The monitor: the platform image's `monitor`, as its non-root user (10001) on a read-only
    root, the store mounted read-write at /mnt/store (it writes `monitoring/model/` and deletes
    old capture hours). Optional settings left empty are not set: the command reads an unset
    variable as its default (no channel: the first; no output: outputs counted only)."""
    settings = monitor.settings
    environment = {
        Env.STACK: stack,
        Env.CAPTURE_NAME: CAPTURE_NAME,
        Env.CAPTURE_RETENTION_DAYS: str(monitor.retention_days),
        Env.MONITOR_THRESHOLD: _number(settings.threshold),
        Env.MONITOR_THRESHOLDS: json.dumps(dict(settings.thresholds), sort_keys=True),
        Env.MONITOR_MIN_ROWS: str(settings.min_rows),
        Env.MONITOR_QUALITY_MARGIN: _number(settings.quality_margin),
        Env.MONITOR_COOLDOWN_HOURS: str(settings.cooldown_hours),
        Env.EVENT_BUS_NAME: DEFAULT_EVENT_BUS,
        # botocore resolves the EventBridge endpoint from it.
        Env.AWS_REGION: region,
    }
    if settings.channel:
        environment[Env.MONITOR_CHANNEL] = settings.channel
    if settings.output is not None:
        output = {"field": settings.output.field, "baseline": settings.output.baseline}
        environment[Env.MONITOR_OUTPUT] = json.dumps(output, sort_keys=True)
    if monitor.objective is not None:
        environment |= {
            Env.OBJECTIVE_FILE: monitor.objective.file,
            Env.OBJECTIVE_KEY: monitor.objective.key,
            Env.OBJECTIVE_DIRECTION: monitor.objective.direction.value,
        }
    if monitor.publishes:
        environment[Env.MONITOR_EVENTS] = PUBLISH_TO_EVENTBRIDGE
    return ContainerSpec(
        name=MODEL_MONITOR_CONTAINER,
        image=platform_image,
        command=[MONITOR_COMMAND],
        environment=environment,
    )


def feature_drift_search(stack: str) -> str:
    """Every feature's `BaselineDrift` of this stack, however many the baseline has: a search
    expression (CloudWatch User Guide, "CloudWatch search expression syntax":
    `SEARCH('{Namespace, DimensionName, ...} SearchTerm', 'Statistic', Period)`; a value in
    double quotes is an exact match; the namespace's `/` needs no quotes, as in AWS's own
    `{AWS/EC2,InstanceId}`). It finds metrics that reported in the last two weeks."""
    if not stack or any(c in stack for c in "'\"\\"):
        raise ValueError(f"{stack!r} is not a stack name")
    return (
        f'SEARCH(\'{{{METRICS_NAMESPACE},Stack,Feature}} MetricName="{FEATURE_METRIC}" '
        f"Stack=\"{stack}\"', 'Maximum', {METRICS_PERIOD})"
    )


def model_monitor_widgets(region: str, stack: str, y: int) -> list[dict[str, Any]]:
    """Dashboard widgets for the monitor's metrics, placed from row `y` down: drift per feature,
    the rows it checked (how much capture there was), drifted features and drift events, the
    output's drift and the live objective.

    A search expression goes into a metric widget's `metrics` as an object with `expression`,
    `id` and `label` (CloudWatch API Reference, "Dashboard Body Structure and Syntax", the
    metric widget's `metrics` array)."""
    by_stack = ["Stack", stack]

    def widget(title: str, metrics: list[list[Any]], x: int, row: int) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": row,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "view": "timeSeries",
                "stat": "Maximum",
                "period": METRICS_PERIOD,
                "metrics": metrics,
            },
        }

    def metric(name: str, stat: str, label: str) -> list[Any]:
        return [METRICS_NAMESPACE, name, *by_stack, {"stat": stat, "label": label}]

    search = {"expression": feature_drift_search(stack), "id": "drift", "label": ""}
    return [
        widget("Model monitor: drift from the baseline, per feature", [[search]], 0, y),
        widget(
            "Model monitor: captured rows checked",
            [metric("RowsChecked", "Sum", "rows")],
            12,
            y,
        ),
        widget(
            "Model monitor: drifted features / drift events",
            [
                metric("DriftedFeatures", "Maximum", "drifted features"),
                metric("DriftEvents", "Sum", "drift events"),
            ],
            0,
            y + 6,
        ),
        widget(
            "Model monitor: output drift / live objective",
            [
                metric("OutputDrift", "Maximum", "output drift"),
                metric("LiveObjective", "Average", "live objective"),
            ],
            12,
            y + 6,
        ),
    ]
