"""Monitoring: a scheduled task that closes the loop, one of two kinds (`MonitoringArgs.job`):

- the workload's own job (`workload.job`, the instance `monitoring`): declared only when the
  workload has one; on `monitoring.ingest_schedule` it runs the job's command (the reference
  workload's ingests new observations into the store and checks its predictions and inputs for
  drift) from the workload's cpu image, as the workload's user;
- the platform's model monitor (`monitoring.model_monitor`, the instance `model-monitor`):
  declared only when the service captures requests (components/settings/decisions.py); on its
  schedule the platform image's `monitor` compares the capture with the promoted model's
  baseline and reports its metrics (components/documents/model_monitor.py).

Either may put a `DataDriftDetected` event (source `mlops.monitoring`) on the default event bus,
where the TrainingTask's drift rule starts the pipeline: a job with `emits_drift`, the model
monitor with `training.on_drift_event`.

Creates, as children of the component:

- through the task block (components/task_block.py): `<name>-logs`, `<name>-execution-role`,
  `<name>-task-role` (+ their policies: the store read-write through its main access point),
  `<name>-task-sg` (+ `-https-out`: HTTPS out only, to the job's data sources, ECR, CloudWatch
  Logs and EventBridge; security groups filter addresses, not host names, so "egress to the
  source" is HTTPS out), and the task definition: `<name>-ingest` (family
  `<project>-<stack>-<name>-ingest`; 0.25 vCPU / 1 GB) for the job, `<name>-monitor` (family
  `<project>-<stack>-<name>`; 0.25 vCPU / 512 MiB, the platform's user 10001) for the monitor;
- when it may publish, `<name>-task-events` on the task role: `events:PutEvents` on the default
  bus ARN only, for that one source and detail type;
- `<name>-events-role` (+ `-events-policy`), `<name>-schedule` (+ `-schedule-target`): the
  EventBridge schedule that runs the task on FARGATE_SPOT, when its schedule is set. A Spot
  interruption loses one run; the next one catches up (the job ingests the weeks it missed, the
  monitor reads the capture since its last check).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.documents.common import assume_role_policy, policy_document
from components.documents.model_monitor import (
    MONITOR_CPU,
    MONITOR_MEMORY,
    model_monitor_container,
)
from components.documents.monitoring import (
    JOB_CPU,
    JOB_MEMORY,
    MonitorThresholds,
    default_event_bus_arn,
    job_container,
    publish_drift_statements,
    run_scheduled_task_statements,
)
from components.network import Network
from components.settings.decisions import SPOT, ModelMonitor
from components.settings.pipeline import MonitoringSettings
from components.settings.workload import JobSpec, SecuritySpec
from components.shared_store import SharedStore
from components.task_block import Egress, TaskBlock, TaskBlockArgs, TaskSpec

EVENT_MAX_AGE_SECONDS = 3600
"""EventBridge retries a failed RunTask for an hour; the next week's run catches up after that."""
EVENT_MAX_RETRIES = 10


@dataclass(frozen=True)
class _Kind:
    """What tells the two kinds of scheduled task apart in names and descriptions."""

    suffix: str
    """The task definition is `<name>-<suffix>`; the task's name in IAM statement ids."""
    family_suffix: str
    """The family is `<project>-<stack>-<name><family_suffix>`."""
    execution: str
    task: str
    egress: str
    destinations: str
    events_role: str
    rule: str


_JOB = _Kind(
    suffix="ingest",
    family_suffix="-ingest",
    execution="Pulls the app image and writes the ingest task's logs",
    task="What the ingest task may do: write the store, report data drift",
    egress="Ingest task: HTTPS out to the data source and AWS APIs, nothing in",
    destinations="The job's data sources, ECR, CloudWatch Logs and EventBridge",
    events_role="Lets the ingest schedule run the ingest task",
    rule="Run the workload's scheduled job (workload.job)",
)
_MODEL_MONITOR = _Kind(
    suffix="monitor",
    # The instance's name (`model-monitor`) already says what the family holds.
    family_suffix="",
    execution="Pulls the platform image and writes the model monitor's logs",
    task="What the model monitor may do: read capture and write its records, report data drift",
    egress="Model monitor: HTTPS out to AWS APIs, nothing in",
    destinations="ECR, CloudWatch Logs and EventBridge",
    events_role="Lets the model monitor's schedule run it",
    rule="Run the platform's model monitor (monitoring.model_monitor)",
)


@dataclass
class MonitoringArgs:
    stack: str
    region: str
    monitoring: MonitoringSettings
    """`mlops:monitoring`: the job's schedule and thresholds."""
    log_retention_days: int
    """`observability.log_retention_days`."""
    network: Network
    """Where the task runs (`task_subnet_ids`) and whether it needs a public IP."""
    cluster: Cluster
    """The ECS cluster the task runs in (its FARGATE_SPOT capacity provider)."""
    store: SharedStore
    """The shared EFS store the job reads and writes."""
    image_ref: pulumi.Input[str]
    """The image by digest: the workload's cpu image for its job, the platform image for the
    model monitor."""
    job: JobSpec | ModelMonitor
    """What runs: `workload.job` (its command, environment and whether it may emit the drift
    event) or the platform's model monitor (the wiring's decision: its settings, whether it
    publishes)."""
    security: SecuritySpec = field(default_factory=SecuritySpec)
    """`workload.security` (the job's container)."""
    repository_arns: Sequence[pulumi.Input[str]] = ()
    """The ECR repositories the execution role may pull from (none for another registry)."""
    store_mounted: bool = True
    """The workload uses the shared store itself (contract `platform`; the job's container)."""

    @property
    def schedule(self) -> str:
        if isinstance(self.job, ModelMonitor):
            return self.job.settings.schedule
        return self.monitoring.ingest_schedule

    @property
    def publishes_drift(self) -> bool:
        if isinstance(self.job, ModelMonitor):
            return self.job.publishes
        return self.job.emits_drift


class Monitoring(pulumi.ComponentResource):
    task_definition_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    schedule_rule_arn: pulumi.Output[str] | None
    """None when its schedule is "" (the job's `monitoring.ingest_schedule`)."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:Monitoring", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        kind = self._kind = _MODEL_MONITOR if isinstance(args.job, ModelMonitor) else _JOB
        self._family = f"{pulumi.get_project()}-{args.stack}-{name}{kind.family_suffix}"

        block = TaskBlock(
            name,
            TaskBlockArgs(
                region=args.region,
                account=self._account,
                store=args.store,
                repository_arns=args.repository_arns,
                log_retention_days=args.log_retention_days,
                tasks=[self._task(args)],
                execution_description=kind.execution,
                task_description=kind.task,
                egress=Egress(
                    vpc_id=args.network.vpc_id,
                    description=kind.egress,
                    destinations=kind.destinations,
                ),
            ),
            self._child,
        )
        execution_role, task_role = block.execution_role, block.task_role
        if args.publishes_drift:
            self._may_publish_drift(args, task_role)
        definition = block.task_definitions[kind.suffix]
        assert block.security_group is not None
        task_group = block.security_group
        rule = None
        if args.schedule:
            rule = self._schedule(args, definition, task_group, execution_role, task_role)

        self.task_definition_arn = definition.arn
        self.task_role_arn = task_role.arn
        self.schedule_rule_arn = rule.arn if rule is not None else None
        self.register_outputs(
            {
                "task_definition_arn": self.task_definition_arn,
                "task_role_arn": self.task_role_arn,
                "schedule_rule_arn": self.schedule_rule_arn,
            }
        )

    def _trust(self, service: str) -> pulumi.Output[str]:
        return self._account.apply(lambda account: json.dumps(assume_role_policy(service, account)))

    def _may_publish_drift(self, args: MonitoringArgs, task_role: aws.iam.Role) -> None:
        region = args.region
        aws.iam.RolePolicy(
            f"{self._name}-task-events",
            role=task_role.id,
            policy=self._account.apply(
                lambda account: json.dumps(
                    policy_document(
                        publish_drift_statements(default_event_bus_arn(region, account))
                    )
                )
            ),
            opts=self._child,
        )

    def _task(self, args: MonitoringArgs) -> TaskSpec:
        if isinstance(args.job, ModelMonitor):
            container = model_monitor_container(args.image_ref, args.region, args.stack, args.job)
            return TaskSpec(
                suffix=self._kind.suffix,
                family=self._family,
                cpu=MONITOR_CPU,
                memory=MONITOR_MEMORY,
                placement=SPOT,
                containers=[container],
            )
        monitoring = args.monitoring
        thresholds = MonitorThresholds(
            error_tolerance=monitoring.error_tolerance,
            drift_p_value=monitoring.drift_p_value,
            cooldown_weeks=monitoring.cooldown_weeks,
        )
        return TaskSpec(
            suffix="ingest",
            family=self._family,
            cpu=JOB_CPU,
            memory=JOB_MEMORY,
            placement=SPOT,
            containers=[
                job_container(
                    args.image_ref,
                    args.region,
                    job=args.job,
                    thresholds=thresholds,
                    security=args.security,
                    store=args.store_mounted,
                )
            ],
        )

    def _schedule(
        self,
        args: MonitoringArgs,
        definition: aws.ecs.TaskDefinition,
        task_group: aws.ec2.SecurityGroup,
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
    ) -> aws.cloudwatch.EventRule:
        name = self._name
        role = aws.iam.Role(
            f"{name}-events-role",
            assume_role_policy=self._trust("events.amazonaws.com"),
            description=self._kind.events_role,
            opts=self._child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-events-policy",
            role=role.id,
            policy=pulumi.Output.all(
                self._account, args.cluster.cluster_name, execution_role.arn, task_role.arn
            ).apply(
                lambda v: json.dumps(
                    policy_document(
                        run_scheduled_task_statements(
                            region=args.region,
                            account=v[0],
                            cluster_name=v[1],
                            family=self._family,
                            pass_role_arns=[v[2], v[3]],
                            task=self._kind.suffix.title(),
                        )
                    )
                )
            ),
            opts=self._child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-schedule",
            description=self._kind.rule,
            schedule_expression=args.schedule,
            # A run mounts the store: its mount targets must exist before the first one.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.store.mount_targets)),
        )
        aws.cloudwatch.EventTarget(
            f"{name}-schedule-target",
            rule=rule.name,
            arn=args.cluster.cluster_arn,
            role_arn=role.arn,
            ecs_target={
                "task_definition_arn": definition.arn,
                "task_count": 1,
                # A capacity provider strategy replaces the launch type (EventBridge API
                # reference, "EcsParameters").
                "capacity_provider_strategies": [
                    {"capacity_provider": SPOT.fargate_provider, "weight": 1, "base": 0}
                ],
                "network_configuration": {
                    "subnets": args.network.task_subnet_ids,
                    "security_groups": [task_group.id, args.store.client_security_group_id],
                    "assign_public_ip": args.network.assign_public_ip,
                },
                "platform_version": "LATEST",
            },
            retry_policy={
                "maximum_event_age_in_seconds": EVENT_MAX_AGE_SECONDS,
                "maximum_retry_attempts": EVENT_MAX_RETRIES,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return rule
