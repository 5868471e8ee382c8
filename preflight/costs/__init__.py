"""The monthly cost model behind `python -m preflight.plan`: what a plan costs to run.

`estimate_cost(plan)` reads what the program declares and prices it with `preflight/prices.py`,
one resource family at a time; each module says what it prices and from which price source:

- `compute`: ECS services, training runs and the scheduled tasks on Fargate and Fargate Spot;
- `ec2`: the GPU instances of Auto Scaling groups under ECS capacity providers, their volumes;
- `network`: NAT gateways, public IPv4 addresses, VPC endpoints, the load balancer, WAF;
- `storage`: EFS and its backups, ECR images, S3 buckets;
- `s3`: the reads of S3 training channels, and the artifact bucket of exported models;
- `observability`: CloudWatch Logs, alarms, dashboards, Container Insights, the model monitor's
  metrics;
- `orchestration`: Step Functions transitions, the runs a month triggers start, SQS;
- `security`: KMS keys and Secrets Manager secrets;
- `core` (the cost line, the estimate, the ledger every family writes to, the verdict on each
  resource) and `schedules` (cron and rate expressions played over a reference year), shared.

Every usage figure no program can know is a named assumption, reported with the estimate. A
resource type no family prices or knows to be free is reported as unknown, never as $0.
"""

from __future__ import annotations

from collections.abc import Mapping

from preflight import prices
from preflight.costs import (
    compute,
    ec2,
    network,
    observability,
    orchestration,
    rollout,
    s3,
    security,
    storage,
)
from preflight.costs.compute import (
    CLUSTER_PROVIDERS,
    SCALING_TARGET,
    SCHEDULED_ACTION,
    SERVICE,
    TASK_DEFINITION,
    Provider,
    split_tasks,
)
from preflight.costs.core import (
    COMPONENT_PREFIXES,
    CostLine,
    Estimate,
    Ledger,
    as_list,
    as_number,
    get_path,
    json_document,
    verdicts,
)
from preflight.costs.ec2 import ASG, LAUNCH_TEMPLATE, ebs_gb, instance_types
from preflight.costs.network import LOAD_BALANCERS, VPC
from preflight.costs.observability import CLUSTER, LOG_GROUP
from preflight.costs.orchestration import EVENT_RULE, STATE_MACHINE, main_path_states
from preflight.costs.schedules import schedule_fires
from preflight.costs.storage import (
    ECR_LIFECYCLE,
    ECR_REPOSITORY,
    EFS,
    EFS_BACKUP,
    kept_images,
)
from preflight.offline import Plan

__all__ = [
    "ASG",
    "CLUSTER",
    "CLUSTER_PROVIDERS",
    "COMPONENT_PREFIXES",
    "ECR_LIFECYCLE",
    "ECR_REPOSITORY",
    "EFS",
    "EFS_BACKUP",
    "EVENT_RULE",
    "FREE_TYPES",
    "LAUNCH_TEMPLATE",
    "LOAD_BALANCERS",
    "LOG_GROUP",
    "PRICED_TYPES",
    "SCALING_TARGET",
    "SCHEDULED_ACTION",
    "SERVICE",
    "STATE_MACHINE",
    "TASK_DEFINITION",
    "VPC",
    "CostLine",
    "Estimate",
    "Provider",
    "as_list",
    "as_number",
    "ebs_gb",
    "estimate_cost",
    "get_path",
    "instance_types",
    "json_document",
    "kept_images",
    "main_path_states",
    "schedule_fires",
    "split_tasks",
]

FAMILIES = (compute, ec2, network, storage, observability, orchestration, security, rollout, s3)

PRICED_TYPES = frozenset().union(*(family.PRICED for family in FAMILIES))
"""Types a family prices: a resource of one that comes to no line (a VPC without NAT) is free."""
FREE_TYPES = frozenset().union(*(family.FREE for family in FAMILIES))
"""Types with no charge of their own: compute, storage and requests are priced where they occur
(a task definition's runs on its service or state machine, a launch template's instances on its
Auto Scaling group, SNS alarm e-mails within the free tier)."""


def estimate_cost(plan: Plan, overrides: Mapping[str, float] | None = None) -> Estimate:
    """The monthly cost of a plan, itemised, with the assumptions it used.

    `overrides` replaces assumption values by name (keys of `prices.ASSUMPTIONS`).
    """
    unknown = set(overrides or {}) - prices.ASSUMPTIONS.keys()
    if unknown:
        raise KeyError(f"no assumption {', '.join(sorted(unknown))}")
    ledger = Ledger(dict(overrides or {}))
    ledger.assume("fargate_spot_discount")  # always stated: it decides what Spot is worth
    # The estimate's lines come out in this order (the plan prints them as they come).
    network.nat_and_addresses(plan, ledger)
    usage = compute.tasks(plan, ledger)
    rollout.rollouts(plan, ledger, usage)
    ec2.auto_scaling_groups(plan, ledger, usage)
    network.load_balancers(plan, ledger, usage.serving_fraction)
    observability.log_groups(plan, ledger, usage.task_hours)
    storage.file_systems(plan, ledger)
    storage.repositories(plan, ledger)
    storage.buckets(plan, ledger, s3.artifact_bucket_names(plan))
    s3.artifact_buckets(plan, ledger)
    s3.channels(plan, ledger)
    observability.container_insights(plan, ledger)
    security.kms_keys(plan, ledger)
    orchestration.queues(plan, ledger)
    security.secrets(plan, ledger)
    network.waf(plan, ledger)
    observability.alarms(plan, ledger)
    observability.dashboards(plan, ledger)
    observability.model_monitor_metrics(plan, ledger)
    observability.capture_records(plan, ledger)
    pricing = verdicts(plan, ledger, PRICED_TYPES, FREE_TYPES)
    return Estimate(ledger.lines, dict(sorted(ledger.assumptions.items())), pricing)
