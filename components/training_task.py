"""TrainingTask: the retraining pipeline: ECS task definitions, a Step Functions state machine and
the EventBridge triggers that start it.

Creates, as children of the component:

- `<name>-logs`: the tasks' log group (one stream prefix per step), with the stack's retention;
- `<name>-execution-role` (+ `-execution-policy`): pulls this repository's images and writes
  that log group, nothing else; `<name>-task-role` (+ `-task-store`): mounts and writes the
  shared store through its access point;
- `<name>-task-sg` (+ `-https-out`): the tasks' group, HTTPS out only (ECR, CloudWatch); the
  tasks also attach the store's client group for NFS;
- `<name>-train`, and `<name>-validate`, `<name>-gate` where the workload has those steps: task
  definitions running the workload's commands, all from the same image digest, as the workload's
  user, `/tmp` scratch and the store volume. validate and gate are small Fargate tasks on the cpu
  image; train runs on Fargate (cpu image, `training.cpu`/`.memory`) or, with `gpu-ec2`, on the
  GPU instances (gpu image, EC2-only, reserving `training.gpus` GPUs);
- `<name>-sfn-logs`, `<name>-sfn-role` (+ `-sfn-policy`), `<name>-pipeline`: the state machine
  (documents/training.py), logging ALL with execution data and traced with X-Ray;
- `<name>-events-role` (+ `-events-policy`), `<name>-dlq` (+ `-dlq-policy`) and per enabled
  trigger `<name>-on-<push|schedule|drift>` with its target: an ECR push of a release image, the
  `training.schedule`, a `DataDriftDetected` event.

The ECS RunTask API cannot override a container's image, so a run always uses the task
definitions' image: `pulumi up` builds and pushes the image (after `image_triggers` exist, so the
very first push of a new stack starts the first run) and registers new task definition revisions;
the push-triggered run's AwaitImage step (the workload's `await_image` command) retries until
its task runs the pushed digest (`TRIGGER_IMAGE_DIGEST`), so it never records a digest it did not
run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alarm_topic import AlarmTopic
from components.cluster import Cluster
from components.documents.common import (
    STORE_VOLUME,
    assume_role_policy,
    policy_document,
    scratch_volume,
)
from components.documents.staging import (
    TRAINING_CONTAINERS,
    ml_volume,
    platform_gate_container,
    roll_service_state,
    training_containers,
)
from components.documents.training import (
    FARGATE,
    FARGATE_SPOT,
    TRAINING_STEPS,
    ContainerSecurity,
    PipelineSpec,
    state_machine_role_statements,
    training_container,
    training_state_machine,
)
from components.image_repo import ImageRepo
from components.network import Network, allow_https_out
from components.settings.pipeline import Capacity, TrainingSettings
from components.settings.workload import Objective, SecuritySpec, StepSpec, TrainingSpec
from components.shared_store import SharedStore
from components.task_roles import TaskRoleSpec, ecs_task_roles
from components.training_triggers import TriggerSpec, declare_triggers

STEP_CPU = 512
STEP_MEMORY = 1024
"""validate and gate: a small Fargate size (MiB); the dataset is a few thousand rows."""


@dataclass
class TrainingTaskArgs:
    stack: str
    region: str
    training: TrainingSettings
    """`mlops:training`: capacity, sizes, schedule, triggers, promote margin."""
    gpu: bool
    """The train step runs on the cluster's GPU EC2 capacity (`Settings.training_gpu`)."""
    log_retention_days: int
    """`observability.log_retention_days`."""
    network: Network
    """Where tasks run (`task_subnet_ids`) and whether they need a public IP."""
    cluster: Cluster
    """The ECS cluster; its GPU capacity provider with `gpu-ec2`."""
    store: SharedStore
    """The shared EFS store every step mounts."""
    image_repo: ImageRepo
    """The image (`image_ref("cpu"|"gpu")`) and the repository whose pushes trigger retraining."""
    alarm_topic: AlarmTopic
    """The stack's alarm topic failed runs are reported to (and its key, when it has one)."""
    # `workload.training`, `.steps`, `.security`; ECR repositories (None: the image repo's).
    train: TrainingSpec = field(default_factory=TrainingSpec)
    steps: Mapping[str, StepSpec] = field(default_factory=dict)
    security: SecuritySpec = field(default_factory=SecuritySpec)
    repository_arns: Sequence[pulumi.Input[str]] | None = None
    store_mounted: bool = True
    staging: Staging | None = None
    """The `sagemaker` contract: the platform image around train, its gate, the rollout."""


@dataclass
class Staging:
    platform_image: pulumi.Input[str]
    """The platform image (`platform/`) by digest: stage-training, collect-training, gate."""
    staged: bool
    """The `sagemaker` contract: the train task is stage-training, train, collect-training."""
    objective: Objective | None
    """The platform gate's objective; None when the workload has its own gate step."""
    rolled_service: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    """(cluster ARN, service name) rolled after the gate; None for a training-only workload."""
    service_arn: pulumi.Input[str] = ""


class TrainingTask(pulumi.ComponentResource):
    state_machine_arn: pulumi.Output[str]
    task_definition_arns: dict[str, pulumi.Output[str]]
    """Per step the workload has (validate, train, gate): the registered revision's ARN."""
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    dead_letter_queue_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: TrainingTaskArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:TrainingTask", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        if args.gpu and args.cluster.gpu_capacity_provider_name is None:
            raise ValueError(f"TrainingTask {name}: gpu-ec2 needs the cluster's GPU capacity")
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        platform_gate = args.staging is not None and args.staging.objective is not None
        self._steps = [
            s
            for s in TRAINING_STEPS
            if s == "train" or s in args.steps or (s == "gate" and platform_gate)
        ]
        self._families = {
            step: f"{pulumi.get_project()}-{args.stack}-{name}-{step}" for step in self._steps
        }

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            retention_in_days=args.log_retention_days,
            opts=self._child,
        )
        execution_role, task_role = self._task_roles(args, log_group)
        task_group = self._task_security_group(args)
        definitions = {
            step: self._task_definition(args, step, log_group, execution_role, task_role)
            for step in self._steps
        }
        state_machine = self._state_machine(args, task_group, execution_role, task_role)
        dead_letter_queue, self._push_trigger = declare_triggers(
            TriggerSpec(
                name=name,
                training=args.training,
                gpu=args.gpu,
                repository_name=args.image_repo.repository_name,
                trust=self._trust("events.amazonaws.com"),
            ),
            state_machine,
            self._child,
        )

        self.image_triggers: list[pulumi.Resource] = list(self._push_trigger)
        """What must exist before a release image is pushed: the push rule and its target (an
        event reaches only the rules that exist when it is sent). Pass to `ImageRepo.release`."""
        self.state_machine_arn = state_machine.arn
        self.task_definition_arns = {step: td.arn for step, td in definitions.items()}
        self.task_role_arn = task_role.arn
        self.execution_role_arn = execution_role.arn
        self.dead_letter_queue_url = dead_letter_queue.url
        self.register_outputs(
            {
                "state_machine_arn": self.state_machine_arn,
                "task_definition_arns": dict(self.task_definition_arns),
                "task_role_arn": self.task_role_arn,
                "execution_role_arn": self.execution_role_arn,
                "dead_letter_queue_url": self.dead_letter_queue_url,
            }
        )

    # ------------------------------------------------------------------------------ pieces

    def _trust(self, service: str) -> pulumi.Output[str]:
        return self._account.apply(lambda account: json.dumps(assume_role_policy(service, account)))

    def _task_roles(
        self, args: TrainingTaskArgs, log_group: aws.cloudwatch.LogGroup
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        return ecs_task_roles(
            TaskRoleSpec(
                name=self._name,
                account=self._account,
                repository_arns=(
                    [args.image_repo.repository_arn]
                    if args.repository_arns is None
                    else list(args.repository_arns)
                ),
                log_group_arns=[log_group.arn],
                store=args.store,
                execution_description="Pulls the training image and writes the training task logs",
                task_description="What the training steps may do: mount and write the shared store",
            ),
            self._child,
        )

    def _task_security_group(self, args: TrainingTaskArgs) -> aws.ec2.SecurityGroup:
        group = aws.ec2.SecurityGroup(
            f"{self._name}-task-sg",
            vpc_id=args.network.vpc_id,
            description="Training tasks: HTTPS out to ECR and CloudWatch, nothing in",
            opts=self._child,
        )
        allow_https_out(
            f"{self._name}-https-out",
            group,
            "ECR, S3 (image layers) and CloudWatch Logs",
            self._child,
        )
        return group

    def _task_definition(
        self,
        args: TrainingTaskArgs,
        step: str,
        log_group: aws.cloudwatch.LogGroup,
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
    ) -> aws.ecs.TaskDefinition:
        training = args.training
        on_gpu = step == "train" and args.gpu
        is_train = step == "train"
        image = args.image_repo.image_ref("gpu" if on_gpu else "cpu")
        staging = args.staging
        platform_image = staging.platform_image if staging else image
        own = step in args.steps or is_train
        command = args.train.command if is_train else args.steps[step].command if own else ()
        security = ContainerSecurity(
            user=args.security.container_user,
            read_only_root=args.security.read_only_root,
            store=args.store_mounted,
            run_as_root=args.security.run_as_root,
        )

        def build(values: list[Any]) -> str:
            if staging is not None and staging.staged and is_train:
                return json.dumps(
                    training_containers(
                        values[2],
                        values[0],
                        values[1],
                        args.region,
                        training=args.train,
                        security=args.security,
                        gpus=training.gpus if on_gpu else 0,
                    )
                )
            if staging is not None and not own:
                return json.dumps(
                    [platform_gate_container(values[2], values[1], args.region, staging.objective)]
                )
            definition = training_container(
                step,
                values[0],
                values[1],
                args.region,
                command=command,
                environment=args.train.environment if is_train else None,
                promote_margin=training.promote_margin,
                gpus=training.gpus if on_gpu else 0,
                security=security,
            )
            return json.dumps([definition])

        containers = pulumi.Output.all(image, log_group.name, platform_image).apply(build)
        placement: dict[str, Any] = (
            # GPUs exist only on EC2 capacity: the GPU instances of the cluster's provider.
            {"requires_compatibilities": ["EC2"]}
            if on_gpu
            else {
                "requires_compatibilities": ["FARGATE"],
                "runtime_platform": {
                    "operating_system_family": "LINUX",
                    "cpu_architecture": "X86_64",
                },
            }
        )
        return aws.ecs.TaskDefinition(
            f"{self._name}-{step}",
            # `family` is required; one per project, stack, component and step.
            family=self._families[step],
            network_mode="awsvpc",
            cpu=str(training.cpu if is_train else STEP_CPU),
            memory=str(training.memory if is_train else STEP_MEMORY),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=containers,
            volumes=[
                args.store.volume(STORE_VOLUME),
                scratch_volume(),
                *([ml_volume()] if staging is not None and staging.staged and is_train else []),
            ],
            **placement,
            opts=self._child,
        )

    def _state_machine(
        self,
        args: TrainingTaskArgs,
        task_group: aws.ec2.SecurityGroup,
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
    ) -> aws.sfn.StateMachine:
        name = self._name
        train_capacity = self._train_capacity(args)
        # The `/aws/vendedlogs/` prefix keeps the account's CloudWatch Logs resource policy under
        # its 5,120-character limit (Step Functions Developer Guide, "Avoiding Amazon CloudWatch
        # Logs resource policy size restrictions"); a prefix needs an explicit name.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-sfn-logs",
            name=f"/aws/vendedlogs/states/{pulumi.get_project()}-{args.stack}-{name}",
            retention_in_days=args.log_retention_days,
            opts=self._child,
        )
        role = aws.iam.Role(
            f"{name}-sfn-role",
            assume_role_policy=self._trust("states.amazonaws.com"),
            description="Runs the training tasks, reports failures, delivers logs and traces",
            opts=self._child,
        )
        rolled = args.staging.rolled_service if args.staging else None
        policy = aws.iam.RolePolicy(
            f"{name}-sfn-policy",
            role=role.id,
            policy=pulumi.Output.all(
                self._account,
                args.cluster.cluster_name,
                execution_role.arn,
                task_role.arn,
                args.alarm_topic.topic_arn,
                args.alarm_topic.key_arn,
                args.staging.service_arn if rolled else "",
            ).apply(
                lambda v: json.dumps(
                    policy_document(
                        state_machine_role_statements(
                            region=args.region,
                            account=v[0],
                            cluster_name=v[1],
                            families=list(self._families.values()),
                            pass_role_arns=[v[2], v[3]],
                            topic_arn=v[4],
                            topic_key_arn=v[5],
                            rolled_service_arn=v[6],
                        )
                    )
                )
            ),
            opts=self._child,
        )
        definition = pulumi.Output.all(
            args.cluster.cluster_arn,
            args.network.task_subnet_ids,
            task_group.id,
            args.store.client_security_group_id,
            train_capacity,
            args.alarm_topic.topic_arn,
            *(rolled or ("", "")),
        ).apply(
            lambda v: json.dumps(
                training_state_machine(
                    PipelineSpec(
                        cluster_arn=v[0],
                        families=self._families,
                        subnets=v[1],
                        security_groups=[v[2], v[3]],
                        assign_public_ip=args.network.assign_public_ip,
                        train_capacity=v[4],
                        gpu_train=args.gpu,
                        topic_arn=v[5],
                        await_command=(
                            args.steps["await_image"].command if "await_image" in args.steps else ()
                        ),
                        train_timeout_seconds=args.train.timeout_minutes * 60,
                        companions=(
                            {"train": [c for c in TRAINING_CONTAINERS if c != "train"]}
                            if args.staging and args.staging.staged
                            else {}
                        ),
                        rollout=roll_service_state(v[6], v[7]) if rolled else None,
                    )
                )
            )
        )
        return aws.sfn.StateMachine(
            f"{name}-pipeline",
            role_arn=role.arn,
            definition=definition,
            type="STANDARD",  # .sync integrations and runs of hours need a Standard workflow
            logging_configuration={
                "level": "ALL",
                "include_execution_data": True,
                "log_destination": log_group.arn.apply(lambda arn: f"{arn}:*"),
            },
            tracing_configuration={"enabled": True},
            # Creating the state machine checks the role can deliver logs, so the policy comes
            # first; runs mount the store, so its mount targets must exist before any run.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[policy, *args.store.mount_targets]
            ),
        )

    @staticmethod
    def _train_capacity(args: TrainingTaskArgs) -> pulumi.Input[str]:
        """The capacity provider of the first Train attempt."""
        if args.gpu and args.cluster.gpu_capacity_provider_name is not None:
            # Resolves once the provider is attached: no run can ask for it before.
            return args.cluster.gpu_capacity_provider_name
        if args.training.capacity is Capacity.FARGATE_SPOT:
            return FARGATE_SPOT
        return FARGATE
