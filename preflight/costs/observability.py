"""Observability: CloudWatch Logs (ingestion and storage per log group, from the container-hours
that write to it), metric alarms, dashboards, Container Insights and the custom metrics the model
monitor reports (Embedded Metric Format in its logs: 5 per stack and one per feature).

Prices (`preflight/prices.py`): `logs_ingest_gb`, `logs_storage_gb_month`, `alarm_month`,
`dashboard_month`, `custom_metric_month` (aws.amazon.com/cloudwatch/pricing; Container Insights
bills its metrics as custom metrics; no free tier applied). Assumptions:
`log_gb_per_container_hour`, `log_gb_per_unused_group`, `log_compression`,
`container_insights_metrics_per_cluster`, `container_insights_metrics_per_service`,
`model_monitor_features`. The container-hours come from the compute family
(`compute.TaskUsage.task_hours`).
"""

from __future__ import annotations

from collections.abc import Mapping

from components.documents.capture import CAPTURE_CONTAINER
from components.documents.model_monitor import STACK_METRICS
from components.documents.staging import COLLECT_TRAINING, STAGE_SERVING, STAGE_TRAINING
from mlops_contract import Env
from policy import checks
from preflight.costs.compute import SERVICE, TASK_DEFINITION, is_model_monitor
from preflight.costs.core import (
    MONTHS_PER_YEAR,
    Ledger,
    as_list,
    as_number,
    get_path,
    json_document,
    resources_of,
)
from preflight.offline import Plan

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CLUSTER = "aws:ecs/cluster:Cluster"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"

PRICED = frozenset({LOG_GROUP, CLUSTER, METRIC_ALARM, DASHBOARD})
FREE = frozenset({"aws:cloudwatch/logStream:LogStream"})

SHORT_CONTAINERS = frozenset({STAGE_TRAINING, STAGE_SERVING, COLLECT_TRAINING})
"""The platform's own containers that copy a run in or out and exit (components/documents/
staging.py): they log a few lines per task start, not for the task's hours, so their log lines
carry no container-hours. `dependsOn` alone cannot tell them from the workload's container
(ECS orders both with SUCCESS/COMPLETE conditions)."""


def log_groups(plan: Plan, ledger: Ledger, task_hours: Mapping[str, float]) -> None:
    """Ingestion from the container-hours that log to each group (`task_hours`: task definition
    URN -> task-hours a month), and storage for its retention, compressed."""
    definitions = resources_of(plan, TASK_DEFINITION)
    for group in resources_of(plan, LOG_GROUP):
        name = group.outputs.get("name") or group.inputs.get("name")
        container_hours = 0.0
        used = staged = False
        for td in definitions:
            for container in checks.containers(td.inputs):
                if get_path(container, "logConfiguration.options.awslogs-group") != name:
                    continue
                used = True
                if container.get("name") in SHORT_CONTAINERS:
                    staged = True  # seconds per task: a few lines, priced at none
                else:
                    container_hours += task_hours.get(td.urn, 0.0)
        if used:
            ingest = container_hours * ledger.assume("log_gb_per_container_hour")
            note = f"{container_hours:.1f} container-hours a month"
            if staged and not container_hours:
                note = "only the platform's staging containers, seconds per task start"
        else:
            ingest = ledger.assume("log_gb_per_unused_group")
            note = "no task definition logs here"
        ledger.add(group, "log ingestion", ingest, "logs_ingest_gb", note=note)
        days = as_number(group.inputs.get("retentionInDays"))
        kept_months = (days or 365) / (365 / MONTHS_PER_YEAR)
        stored = ingest * ledger.assume("log_compression") * kept_months
        ledger.add(
            group,
            "log storage",
            stored,
            "logs_storage_gb_month",
            note=f"{days:g} days kept" if days else "never expires: priced at one year",
        )


def container_insights(plan: Plan, ledger: Ledger) -> None:
    """Container Insights metrics of each cluster that turns it on, per cluster and service."""
    services = len(resources_of(plan, SERVICE))
    for cluster in resources_of(plan, CLUSTER):
        insights = {
            get_path(s, "value")
            for s in as_list(cluster.inputs.get("settings"))
            if get_path(s, "name") == "containerInsights"
        }
        if insights & {"enabled", "enhanced"}:
            metrics = ledger.assume("container_insights_metrics_per_cluster")
            metrics += services * ledger.assume("container_insights_metrics_per_service")
            ledger.add(
                cluster,
                "Container Insights metrics",
                metrics,
                "custom_metric_month",
                note=f"{services} service(s); enhanced observability would cost more",
            )


def alarms(plan: Plan, ledger: Ledger) -> None:
    for alarm in resources_of(plan, METRIC_ALARM):
        ledger.add(alarm, "metric alarm", 1, "alarm_month")


def dashboards(plan: Plan, ledger: Ledger) -> None:
    for dashboard in resources_of(plan, DASHBOARD):
        ledger.add(dashboard, "dashboard", 1, "dashboard_month", note="free tier not applied")


def model_monitor_metrics(plan: Plan, ledger: Ledger) -> None:
    """The custom metrics CloudWatch extracts from the model monitor's Embedded Metric Format
    lines, priced on its task definition: its summary metrics by stack, and `BaselineDrift` per
    feature of the channel it compares (unknown at plan time: `model_monitor_features`)."""
    for td in resources_of(plan, TASK_DEFINITION):
        if not is_model_monitor(td):
            continue
        ledger.add(
            td,
            "model monitor metrics, per stack",
            len(STACK_METRICS),
            "custom_metric_month",
            note=", ".join(STACK_METRICS),
        )
        features = ledger.assume("model_monitor_features")
        ledger.add(
            td,
            "model monitor metrics, per feature",
            features,
            "custom_metric_month",
            note=f"BaselineDrift: one metric per feature, {features:g} assumed",
        )


def capture_records(plan: Plan, ledger: Ledger) -> None:
    """What data capture keeps on the store (EFS Standard), priced on the serving task that
    captures: a month's records are `invocations_million_per_month` x the captured percent x
    `capture_record_kib` (both bodies and the metadata), kept `retention_days` (the model
    monitor deletes older hours; without a monitor nothing does, priced as a year's growth), and
    written once through Elastic Throughput."""
    definitions = resources_of(plan, TASK_DEFINITION)
    retention = None
    for td in definitions:
        for container in as_list(json_document(td.inputs.get("containerDefinitions"))):
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            if Env.CAPTURE_RETENTION_DAYS in env:
                retention = float(env[Env.CAPTURE_RETENTION_DAYS])
    elastic = any(
        fs.inputs.get("throughputMode") == "elastic"
        for fs in resources_of(plan, "aws:efs/fileSystem:FileSystem")
    )
    for td in definitions:
        containers = as_list(json_document(td.inputs.get("containerDefinitions")))
        proxy = [c for c in containers if c.get("name") == CAPTURE_CONTAINER]
        if not proxy:
            continue
        env = {e["name"]: e["value"] for e in proxy[0].get("environment", [])}
        percent = float(env.get(Env.CAPTURE_PERCENT, 0))
        requests = ledger.assume("invocations_million_per_month") * 1e6
        record_kib = ledger.assume("capture_record_kib")
        monthly_gb = requests * percent / 100 * record_kib / 1024**2
        months = retention / (365 / MONTHS_PER_YEAR) if retention else MONTHS_PER_YEAR
        kept = (
            f"{retention:g} days kept (the model monitor's retention)"
            if retention
            else "nothing deletes it: a year's growth"
        )
        ledger.add(
            td,
            "data capture records on EFS Standard",
            monthly_gb * months,
            "efs_standard_gb_month",
            note=f"{percent:g} % of requests captured, {monthly_gb:.3g} GB a month, {kept}",
        )
        if elastic:
            ledger.add(
                td,
                "data capture writes (EFS Elastic Throughput)",
                monthly_gb,
                "efs_elastic_write_gb",
            )
