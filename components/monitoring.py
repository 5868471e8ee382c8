"""Monitoring: the workload's scheduled job (`workload.job`), which closes the loop.

Declared only when the workload has a job. On `monitoring.ingest_schedule` a small Fargate Spot
task runs the job's command (the reference workload's ingests new observations into the store
and checks its predictions and inputs for drift). A job with `emits_drift` may put a
`DataDriftDetected` event (source `mlops.monitoring`) on the default event bus, where the
TrainingTask's drift rule starts the pipeline.

Creates, as children of the component:

- through the task block (components/task_block.py): `<name>-logs`, `<name>-execution-role`,
  `<name>-task-role` (+ their policies), `<name>-task-sg` (+ `-https-out`: HTTPS out only, to
  the job's data sources, ECR, CloudWatch Logs and EventBridge; security groups filter
  addresses, not host names, so "egress to the source" is HTTPS out), and `<name>-ingest`, the
  task definition (cpu image, 0.25 vCPU / 1 GB, the workload's user);
- with `emits_drift`, `<name>-task-events` on the task role: `events:PutEvents` on the default
  bus ARN only, for that one source and detail type;
- `<name>-events-role` (+ `-events-policy`), `<name>-schedule` (+ `-schedule-target`): the
  EventBridge schedule that runs the task on FARGATE_SPOT, when `ingest_schedule` is set. A Spot
  interruption loses one weekly run; the next one ingests the weeks it missed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.documents.common import assume_role_policy, policy_document
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
from components.settings.decisions import SPOT
from components.settings.pipeline import MonitoringSettings
from components.settings.workload import JobSpec, SecuritySpec
from components.shared_store import SharedStore
from components.task_block import Egress, TaskBlock, TaskBlockArgs, TaskSpec

EVENT_MAX_AGE_SECONDS = 3600
"""EventBridge retries a failed RunTask for an hour; the next week's run catches up after that."""
EVENT_MAX_RETRIES = 10


@dataclass
class MonitoringArgs:
    stack: str
    region: str
    monitoring: MonitoringSettings
    """`mlops:monitoring`: the job's schedule, the monitor's thresholds."""
    log_retention_days: int
    """`observability.log_retention_days`."""
    network: Network
    """Where the task runs (`task_subnet_ids`) and whether it needs a public IP."""
    cluster: Cluster
    """The ECS cluster the task runs in (its FARGATE_SPOT capacity provider)."""
    store: SharedStore
    """The shared EFS store the job reads and writes."""
    image_ref: pulumi.Input[str]
    """The workload's cpu image by digest."""
    job: JobSpec
    """`workload.job`: its command, environment and whether it may emit the drift event."""
    security: SecuritySpec = field(default_factory=SecuritySpec)
    """`workload.security`."""
    repository_arns: Sequence[pulumi.Input[str]] = ()
    """The ECR repositories the execution role may pull from (none for another registry)."""
    store_mounted: bool = True
    """The workload uses the shared store itself (contract `platform`)."""


class Monitoring(pulumi.ComponentResource):
    task_definition_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]
    schedule_rule_arn: pulumi.Output[str] | None
    """None when `monitoring.ingest_schedule` is ""."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:Monitoring", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        self._family = f"{pulumi.get_project()}-{args.stack}-{name}-ingest"

        block = TaskBlock(
            name,
            TaskBlockArgs(
                region=args.region,
                account=self._account,
                store=args.store,
                repository_arns=args.repository_arns,
                log_retention_days=args.log_retention_days,
                tasks=[self._task(args)],
                execution_description="Pulls the app image and writes the ingest task's logs",
                task_description="What the ingest task may do: write the store, report data drift",
                egress=Egress(
                    vpc_id=args.network.vpc_id,
                    description=(
                        "Ingest task: HTTPS out to the data source and AWS APIs, nothing in"
                    ),
                    destinations="The job's data sources, ECR, CloudWatch Logs and EventBridge",
                ),
            ),
            self._child,
        )
        execution_role, task_role = block.execution_role, block.task_role
        if args.job.emits_drift:
            self._may_publish_drift(args, task_role)
        definition = block.task_definitions["ingest"]
        assert block.security_group is not None
        task_group = block.security_group
        rule = None
        if args.monitoring.ingest_schedule:
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
            description="Lets the ingest schedule run the ingest task",
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
                        )
                    )
                )
            ),
            opts=self._child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-schedule",
            description="Run the workload's scheduled job (workload.job)",
            schedule_expression=args.monitoring.ingest_schedule,
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
