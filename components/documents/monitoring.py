"""Monitoring: the workload's scheduled job and what it may do."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.documents.common import (
    DRIFT_DETAIL_TYPE,
    DRIFT_SOURCE,
    STEP_ENVIRONMENT,
    ContainerSpec,
    task_definition_arn_patterns,
    workload_container,
)
from components.settings.workload import JobSpec, SecuritySpec
from mlops_contract import Env

JOB_CONTAINER = "ingest"
"""The scheduled job's container (its name predates `workload.job`)."""
JOB_CPU = 256
JOB_MEMORY = 1024
"""Fargate size of the scheduled job (MiB)."""
DEFAULT_EVENT_BUS = "default"


@dataclass(frozen=True)
class MonitorThresholds:
    """`mlops:monitoring`'s checks, handed to the job as `MONITOR_*` variables."""

    error_tolerance: float = 2.5
    drift_p_value: float = 0.001
    cooldown_weeks: int = 8


def job_container(
    image: Any,
    region: str,
    *,
    job: JobSpec,
    thresholds: MonitorThresholds,
    security: SecuritySpec,
    store: bool = True,
) -> ContainerSpec:
    """The scheduled job's one container (`workload.job`).

    With `emits_drift` the job may publish `DataDriftDetected` to the default bus: it gets
    `EVENT_BUS_NAME` and `AWS_REGION` (botocore resolves the EventBridge endpoint from it), and
    its role `events:PutEvents` (publish_drift_statements).
    """
    environment = {
        **STEP_ENVIRONMENT,
        "MONITOR_ERROR_TOLERANCE": str(thresholds.error_tolerance),
        "MONITOR_DRIFT_P_VALUE": str(thresholds.drift_p_value),
        "MONITOR_COOLDOWN_WEEKS": str(thresholds.cooldown_weeks),
    }
    if job.emits_drift:
        environment |= {Env.EVENT_BUS_NAME: DEFAULT_EVENT_BUS, Env.AWS_REGION: region}
    return workload_container(
        JOB_CONTAINER,
        image,
        job,
        security=security,
        store=store,
        platform_environment=environment,
    )


def default_event_bus_arn(region: str, account: str) -> str:
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"{account!r} is not an AWS account id")
    return f"arn:aws:events:{region}:{account}:event-bus/{DEFAULT_EVENT_BUS}"


def publish_drift_statements(event_bus_arn: str) -> list[dict[str, Any]]:
    """The ingest task's role: put `DataDriftDetected` events from `mlops.monitoring` on this bus.

    PutEvents takes the event bus as its resource, and the `events:source` and
    `events:detail-type` condition keys narrow it to this one kind of event (EventBridge User
    Guide, "Using IAM policy conditions in Amazon EventBridge"; Service Authorization Reference,
    Amazon EventBridge).
    """
    if not re.fullmatch(
        r"arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/default", event_bus_arn
    ):
        raise ValueError(f"{event_bus_arn!r} is not a default event bus ARN")
    return [
        {
            "Sid": "PublishDriftEvents",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": event_bus_arn,
            "Condition": {
                "StringEquals": {
                    "events:source": DRIFT_SOURCE,
                    "events:detail-type": DRIFT_DETAIL_TYPE,
                }
            },
        }
    ]


def run_scheduled_task_statements(
    *,
    region: str,
    account: str,
    cluster_name: str,
    family: str,
    pass_role_arns: Sequence[str],
    task: str = "Ingest",
) -> list[dict[str, Any]]:
    """EventBridge's role for a scheduled task (`task`, in the statement ids: the ingest task,
    the model monitor): run this task family on this cluster.

    The ECS target needs `ecs:RunTask` and `iam:PassRole` for the task's roles (EventBridge User
    Guide, "Amazon ECS targets": the managed `AmazonEC2ContainerServiceEventsRole` grants both on
    "*"; here they name the family, the cluster and the two roles).
    """
    for role in pass_role_arns:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")
    return [
        {
            "Sid": f"Run{task}Task",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": task_definition_arn_patterns(region, account, family),
            "Condition": {
                "ArnEquals": {
                    "ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster_name}"
                }
            },
        },
        {
            "Sid": f"Pass{task}TaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted(set(pass_role_arns)),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
    ]
