"""TaskBlock: the one way this program builds an ECS task, for the inference service, the training
pipeline and the scheduled job alike.

A workload component describes its tasks (`TaskSpec`: family, size, where it runs, containers as
`ContainerSpec`s, extra task volumes) and what it adds; the block declares, as children of that
component and under the names the component has always given them:

- its log groups, with the stack's retention: one for the block (`<name>-logs`, one stream prefix
  per container) or one per container (`<name>-logs-<container>`);
- `<name>-execution-role` (+ `-execution-policy`): what ECS does for the task: pull from exactly
  the repositories named, write exactly these log groups, and read exactly the secrets the
  containers name, decrypting with exactly the keys those secrets name (documents/execution.py);
- `<name>-task-role` (+ `-task-store`): what the containers may do: the shared store's client
  statements through its access point. The component attaches its own further inline policies;
- for a task that may do what the block's other tasks may not (`TaskSpec.own_role`: the
  pipeline's gate, which exports models), `<name>-<suffix>-task-role` (+ `-task-store`) instead:
  every container of a task can use its role, so a permission given to the shared role would
  reach the workload's own containers in the other tasks too;
- optionally `<name>-task-sg` (+ `-https-out`): the tasks' group, HTTPS out only, nothing in (the
  tasks attach the store's client group for NFS beside it);
- per task, `<name>-<suffix>`: the task definition: awsvpc, the containers rendered by
  `container_definition` with this block's log groups and Region, the store volume, a `/tmp`
  scratch volume and the task's own volumes, on Fargate (x86_64) or EC2 when it reserves GPUs.

Both roles trust only `ecs-tasks.amazonaws.com` from this account (`aws:SourceAccount`) and carry
the stack's permissions boundary (PermissionsBoundary.attach_to_every_role). Modelled on
pulumi-awsx's `FargateTaskDefinition`, which the Fargate service composes, and on
ol-infrastructure's task definition config reused by its ALB and Fargate services.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import (
    STORE_VOLUME,
    ContainerSpec,
    assume_role_policy,
    policy_document,
    render_containers,
    scratch_volume,
)
from components.documents.execution import execution_role_statements, secret_read_statements
from components.network import allow_https_out
from components.settings.decisions import Placement
from components.settings.secrets import SecretRef
from components.shared_store import SharedStore


@dataclass(frozen=True)
class TaskSpec:
    """One task definition of the block."""

    suffix: str
    """The child's name is `<block name>-<suffix>`."""
    family: str
    cpu: int
    memory: int
    placement: Placement
    containers: Sequence[ContainerSpec]
    volumes: Sequence[str | Mapping[str, Any]] = ()
    """Volumes beside the store and /tmp: a name (task-scoped, no host path: it lives with the
    task) or a whole volume (an EFS one, such as the store's capture access point)."""
    own_role: str = ""
    """The description of a task role of its own (`<block>-<suffix>-task-role`), for a task
    that may do more than the block's others; "" shares the block's task role."""


@dataclass(frozen=True)
class Egress:
    """The block's own security group: HTTPS out only, for these reasons."""

    vpc_id: pulumi.Input[str]
    description: str
    """The group's description."""
    destinations: str
    """What the HTTPS-out rule is for (its description)."""


@dataclass
class TaskBlockArgs:
    region: str
    account: pulumi.Input[str]
    store: SharedStore
    repository_arns: Sequence[pulumi.Input[str]]
    """The ECR repositories the tasks pull from: none for an image in another registry."""
    log_retention_days: int
    tasks: Sequence[TaskSpec]
    execution_description: str
    task_description: str
    log_group_per_container: bool = False
    egress: Egress | None = None
    """None: the tasks use a group the component gets elsewhere (the load balancer's)."""
    store_write: bool = True
    """The task role may write the store (`ClientWrite`); False: mount it only, read-only."""


class TaskBlock:
    """Declares the block's resources as children of `opts.parent`; see the module docstring."""

    def __init__(self, name: str, args: TaskBlockArgs, opts: pulumi.ResourceOptions):
        self._name = name
        self._args = args
        self._opts = opts
        containers = list(dict.fromkeys(c.name for t in args.tasks for c in t.containers))
        if args.log_group_per_container:
            self.log_groups = {
                container: self._log_group(f"{name}-logs-{container}") for container in containers
            }
        else:
            shared = self._log_group(f"{name}-logs")
            self.log_groups = dict.fromkeys(containers, shared)
        self.execution_role, self.task_role = self._roles()
        self.task_roles = {
            task.suffix: self._task_role(f"{name}-{task.suffix}", task.own_role)
            for task in args.tasks
            if task.own_role
        }
        """The roles of the tasks with a role of their own, by suffix."""
        self.security_group = self._security_group(args.egress) if args.egress else None
        self.task_definitions = {task.suffix: self._task_definition(task) for task in args.tasks}

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        """Every secret a container of the block names, once each."""
        refs = [ref for t in self._args.tasks for c in t.containers for ref in c.secrets.values()]
        return tuple(dict.fromkeys(refs))

    def _log_group(self, name: str) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            name, retention_in_days=self._args.log_retention_days, opts=self._opts
        )

    def _roles(self) -> tuple[aws.iam.Role, aws.iam.Role]:
        name, args = self._name, self._args
        trust = pulumi.Output.from_input(args.account).apply(
            lambda account: json.dumps(assume_role_policy("ecs-tasks.amazonaws.com", account))
        )
        execution_role = aws.iam.Role(
            f"{name}-execution-role",
            assume_role_policy=trust,
            description=args.execution_description,
            opts=self._opts,
        )
        groups = list(dict.fromkeys(self.log_groups.values()))
        secrets = self.secrets
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution_role.id,
            policy=pulumi.Output.all(
                pulumi.Output.all(*args.repository_arns), *(group.arn for group in groups)
            ).apply(
                lambda arns: json.dumps(
                    policy_document(
                        [
                            *execution_role_statements(list(arns[0]), arns[1:]),
                            *secret_read_statements(secrets),
                        ]
                    )
                )
            ),
            opts=self._opts,
        )
        return execution_role, self._task_role(name, args.task_description)

    def _task_role(self, name: str, description: str) -> aws.iam.Role:
        """`<name>-task-role`, trusted by ECS tasks of this account, and its store access."""
        trust = pulumi.Output.from_input(self._args.account).apply(
            lambda account: json.dumps(assume_role_policy("ecs-tasks.amazonaws.com", account))
        )
        task_role = aws.iam.Role(
            f"{name}-task-role", assume_role_policy=trust, description=description, opts=self._opts
        )
        aws.iam.RolePolicy(
            f"{name}-task-store",
            role=task_role.id,
            policy=self._args.store.client_policy(write=self._args.store_write),
            opts=self._opts,
        )
        return task_role

    def _security_group(self, egress: Egress) -> aws.ec2.SecurityGroup:
        group = aws.ec2.SecurityGroup(
            f"{self._name}-task-sg",
            vpc_id=egress.vpc_id,
            description=egress.description,
            opts=self._opts,
        )
        allow_https_out(f"{self._name}-https-out", group, egress.destinations, self._opts)
        return group

    def _task_definition(self, task: TaskSpec) -> aws.ecs.TaskDefinition:
        specs = list(task.containers)
        region = self._args.region

        def render(values: list[Any]) -> str:
            count = len(specs)
            images, groups, environments = (
                values[:count],
                values[count : 2 * count],
                values[2 * count :],
            )
            return json.dumps(
                render_containers(
                    [
                        replace(spec, image=image, environment=environment)
                        for spec, image, environment in zip(
                            specs, images, environments, strict=True
                        )
                    ],
                    region,
                    {spec.name: group for spec, group in zip(specs, groups, strict=True)},
                )
            )

        # A variable's value may be another resource's output (the artifact bucket's name).
        containers = pulumi.Output.all(
            *(spec.image for spec in specs),
            *(self.log_groups[spec.name].name for spec in specs),
            *(pulumi.Output.from_input(dict(spec.environment)) for spec in specs),
        ).apply(render)
        return aws.ecs.TaskDefinition(
            f"{self._name}-{task.suffix}",
            # `family` is required: one per project, stack, component and task.
            family=task.family,
            # awsvpc everywhere, EC2 included: each task gets its own ENI, security group and
            # private IP, target groups stay `ip`, and the agent can block the instance metadata
            # service (ECS_AWSVPC_BLOCK_IMDS).
            network_mode="awsvpc",
            cpu=str(task.cpu),
            memory=str(task.memory),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_roles.get(task.suffix, self.task_role).arn,
            container_definitions=containers,
            volumes=[
                self._args.store.volume(STORE_VOLUME),
                scratch_volume(),
                *({"name": v} if isinstance(v, str) else dict(v) for v in task.volumes),
            ],
            **placement_args(task.placement),
            opts=self._opts,
        )


def placement_args(placement: Placement) -> Mapping[str, Any]:
    """The task definition's compatibility: GPUs exist only on EC2 capacity (the cluster's GPU
    instances); everything else is a Fargate task on x86_64 (the images are linux/amd64)."""
    if placement.on_ec2:
        return {"requires_compatibilities": ["EC2"]}
    return {
        "requires_compatibilities": ["FARGATE"],
        "runtime_platform": {"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
    }
