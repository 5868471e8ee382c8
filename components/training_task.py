"""TrainingTask: the retraining pipeline: ECS task definitions, a Step Functions state machine and
the EventBridge triggers that start it.

Creates, as children of the component:

- through the task block (components/task_block.py): `<name>-logs` (one stream prefix per
  container), `<name>-execution-role`, `<name>-task-role` (+ their policies), `<name>-task-sg`
  (+ `-https-out`: ECR, CloudWatch; the tasks also attach the store's client group for NFS), and
  the task definitions `<name>-train`, and `<name>-validate`, `<name>-gate` where the pipeline
  has those steps: the workload's commands (or the platform's staging and gate containers), all
  from the same image digest. validate and gate are small Fargate tasks on the cpu image; train
  runs where the wiring placed it: Fargate or Fargate Spot (cpu image, `training.cpu`/`.memory`)
  or the GPU instances (gpu image, EC2-only, reserving `training.gpus` GPUs);
- with S3 channels, `<name>-task-channels`: the task role lists and reads exactly their prefixes;
  with an artifact bucket, the gate task runs as `<name>-gate-task-role` of its own (+
  `-gate-task-store`, `-gate-export`: it writes the bucket's models/), so the workload's train
  task never can (components/training_s3.py);
- `<name>-sfn-logs`, `<name>-sfn-role` (+ `-sfn-policy`), `<name>-pipeline`: the state machine
  (documents/training.py), logging ALL with execution data and traced with X-Ray;
- with a sweep (`workload.training.sweep`, documents/sweep.py), `<name>-sfn-sweep-policy` (its
  Distributed Map starts and follows this state machine's child executions) and, on the gate
  task's own `<name>-gate-task-role`, `<name>-gate-task-sweep` (pick-trial's callback); the gate
  task definition carries the planned trials;
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
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_aws as aws

from components.alarm_topic import AlarmTopic
from components.cluster import Cluster
from components.documents.common import ContainerSpec, assume_role_policy, policy_document
from components.documents.staging import (
    ML_VOLUMES,
    TRAINING_CONTAINERS,
    platform_gate_container,
    training_containers,
)
from components.documents.sweep import (
    PICK_ROLE,
    SweepRun,
    callback_statements,
    map_run_statements,
    sweep_gate_environment,
)
from components.documents.training import (
    PipelineSpec,
    RolloutSpec,
    state_machine_role_statements,
    training_container,
    training_state_machine,
)
from components.network import Network
from components.settings.decisions import ON_DEMAND, Placement
from components.settings.pipeline import TrainingSettings
from components.settings.workload import (
    Objective,
    Promotion,
    SecuritySpec,
    StepSpec,
    TrainingSpec,
)
from components.shared_store import SharedStore
from components.task_block import Egress, TaskBlock, TaskBlockArgs, TaskSpec
from components.training_s3 import EXPORT_ROLE, ArtifactExport, grant_channels, grant_export
from components.training_triggers import TriggerSpec, declare_triggers

STEP_CPU = 512
STEP_MEMORY = 1024
"""validate and gate: a small Fargate size (MiB); the dataset is a few thousand rows."""


@dataclass(frozen=True)
class PlatformGate:
    """The platform's gate: the objective it compares, or every trained run promoted."""

    objective: Objective | None
    promotion: Promotion


@dataclass(frozen=True)
class ModelRollout:
    """The service a promoted model is rolled out to before it becomes current (`sagemaker`
    contract: its tasks stage the model at start), through its deploy function."""

    cluster_arn: pulumi.Input[str]
    service_name: pulumi.Input[str]
    function_arn: pulumi.Input[str]
    wait_minutes: int


@dataclass
class TrainingTaskArgs:
    stack: str
    region: str
    training: TrainingSettings
    """`mlops:training`: sizes, schedule, triggers, promote margin."""
    placement: Placement
    """Where train runs (the wiring's decision): Fargate, Fargate Spot or the GPU instances."""
    steps: tuple[str, ...]
    """The pipeline's tasks in order (validate when the workload has it, train, gate)."""
    log_retention_days: int
    """`observability.log_retention_days`."""
    network: Network
    """Where tasks run (`task_subnet_ids`) and whether they need a public IP."""
    cluster: Cluster
    """The ECS cluster; its GPU capacity provider when train runs on GPU EC2."""
    store: SharedStore
    """The shared EFS store every step mounts."""
    image_refs: Mapping[str, pulumi.Input[str]]
    """The workload's image by digest, per flavour (cpu, and gpu when something runs there)."""
    push_repository: pulumi.Input[str] | None
    """The ECR repository whose release pushes start a run (the stack's own); None when the
    stack builds nothing (an image by `location`): no push rule."""
    alarm_topic: AlarmTopic
    """The stack's alarm topic failed runs are reported to (and its key, when it has one)."""
    repository_arns: Sequence[pulumi.Input[str]]
    """The ECR repositories the execution role may pull from (none for another registry)."""
    train: TrainingSpec = field(default_factory=TrainingSpec)
    """`workload.training`: command, environment, secrets, channels, timeout."""
    step_commands: Mapping[str, StepSpec] = field(default_factory=dict)
    """`workload.steps`: the workload's own validate, gate and await_image steps."""
    security: SecuritySpec = field(default_factory=SecuritySpec)
    store_mounted: bool = True
    """The workload's containers mount the store (the `platform` contract)."""
    staged: bool = False
    """The `sagemaker` contract: train is stage-training, the workload's train, collect-training."""
    platform_image: pulumi.Input[str] | None = None
    """The platform image by digest, where it stages or gates."""
    platform_gate: PlatformGate | None = None
    """How the platform gate decides; None when the workload gates itself."""
    rollout: ModelRollout | None = None
    """Where a promoted model is rolled out after the gate; None when nothing is."""
    artifacts: ArtifactExport | None = None
    """Where the platform gate exports what it makes current; None: nowhere."""


class TrainingTask(pulumi.ComponentResource):
    state_machine_arn: pulumi.Output[str]
    task_definition_arns: dict[str, pulumi.Output[str]]
    """Per step of the pipeline (validate, train, gate): the registered revision's ARN."""
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    dead_letter_queue_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: TrainingTaskArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:TrainingTask", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._sweep_policies: list[pulumi.Resource] = []
        if args.placement.on_ec2 and args.cluster.gpu_capacity_provider_name is None:
            raise ValueError(f"TrainingTask {name}: gpu-ec2 needs the cluster's GPU capacity")
        if (args.staged or args.platform_gate is not None) and args.platform_image is None:
            raise ValueError(f"TrainingTask {name}: staging and the platform gate need its image")
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        self._families = {
            step: f"{pulumi.get_project()}-{args.stack}-{name}-{step}" for step in args.steps
        }

        block = TaskBlock(
            name,
            TaskBlockArgs(
                region=args.region,
                account=self._account,
                store=args.store,
                repository_arns=args.repository_arns,
                log_retention_days=args.log_retention_days,
                tasks=[self._task(args, step) for step in args.steps],
                execution_description="Pulls the training image and writes the training task logs",
                task_description="What the training steps may do: mount and write the shared store",
                egress=Egress(
                    vpc_id=args.network.vpc_id,
                    description="Training tasks: HTTPS out to ECR and CloudWatch, nothing in",
                    destinations="ECR, S3 (image layers) and CloudWatch Logs",
                ),
            ),
            self._child,
        )
        assert block.security_group is not None
        grant_channels(name, args.train, block.task_role, self._child)
        gate_role = block.task_roles.get("gate")
        if gate_role is not None and args.artifacts is not None:
            grant_export(name, args.artifacts, gate_role, self._child)
        self.gate_role_arn = gate_role.arn if gate_role is not None else None
        """The gate task's own role (it exports models, or returns a sweep's pick); None when it
        shares the task role."""
        state_machine = self._state_machine(
            args,
            block.security_group,
            block.execution_role,
            block.task_role,
            gate_role,
        )
        dead_letter_queue, self._push_trigger = declare_triggers(
            TriggerSpec(
                name=name,
                training=args.training,
                gpu=args.placement.on_ec2,
                repository_name=args.push_repository,
                trust=self._trust("events.amazonaws.com"),
            ),
            state_machine,
            self._child,
        )

        self.image_triggers: list[pulumi.Resource] = [*self._push_trigger, *self._sweep_policies]
        """What must exist before a release image is pushed: the push rule and its target (an
        event reaches only the rules that exist when it is sent), and a sweep's policies (the run
        it starts needs them). Pass to `ImageRepo.release`."""
        self.state_machine_arn = state_machine.arn
        self.task_definition_arns = {
            step: definition.arn for step, definition in block.task_definitions.items()
        }
        self.task_role_arn = block.task_role.arn
        self.execution_role_arn = block.execution_role.arn
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

    def _task(self, args: TrainingTaskArgs, step: str) -> TaskSpec:
        """One step's task: what runs in it, how big, where."""
        is_train = step == "train"
        placement = args.placement if is_train else ON_DEMAND
        image = args.image_refs[placement.flavour]
        containers: list[ContainerSpec]
        if is_train and args.staged:
            containers = training_containers(
                args.platform_image,
                image,
                training=args.train,
                security=args.security,
                gpus=placement.gpus,
            )
        elif step == "gate" and args.platform_gate is not None:
            gate = args.platform_gate
            containers = [
                platform_gate_container(
                    args.platform_image,
                    gate.objective,
                    gate.promotion,
                    rollout=args.rollout is not None,
                )
            ]
            if args.train.sweep is not None:
                # pick-trial runs in this task definition: the planned trials, the Region.
                sweep = sweep_gate_environment(SweepRun.of(args.train.sweep), args.region)
                containers = [
                    replace(c, environment={**c.environment, **sweep}) for c in containers
                ]
        else:
            containers = [
                training_container(
                    step,
                    image,
                    args.train if is_train else args.step_commands[step],
                    security=args.security,
                    store=args.store_mounted,
                    promote_margin=args.training.promote_margin,
                    gpus=placement.gpus,
                )
            ]
        export = args.artifacts if step == "gate" and args.platform_gate is not None else None
        if export is not None:
            extra = export.environment
            containers = [replace(c, environment={**c.environment, **extra}) for c in containers]
        return TaskSpec(
            suffix=step,
            family=self._families[step],
            cpu=args.training.cpu if is_train else STEP_CPU,
            memory=args.training.memory if is_train else STEP_MEMORY,
            placement=placement,
            containers=containers,
            volumes=list(ML_VOLUMES) if is_train and args.staged else [],
            own_role=(
                EXPORT_ROLE
                if export is not None
                else PICK_ROLE
                if step == "gate" and args.train.sweep is not None
                else ""
            ),
        )

    def _state_machine(
        self,
        args: TrainingTaskArgs,
        task_group: aws.ec2.SecurityGroup,
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
        gate_role: aws.iam.Role | None = None,
    ) -> aws.sfn.StateMachine:
        name = self._name
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
        rolled = args.rollout
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
                rolled.function_arn if rolled else "",
                *([gate_role.arn] if gate_role else []),
            ).apply(
                lambda v: json.dumps(
                    policy_document(
                        state_machine_role_statements(
                            region=args.region,
                            account=v[0],
                            cluster_name=v[1],
                            families=list(self._families.values()),
                            pass_role_arns=[v[2], v[3], *v[7:]],
                            topic_arn=v[4],
                            topic_key_arn=v[5],
                            rollout_function_arn=v[6],
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
            self._train_capacity(args),
            args.alarm_topic.topic_arn,
            *(
                (rolled.cluster_arn, rolled.service_name, rolled.function_arn)
                if rolled
                else ("", "", "")
            ),
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
                        gpu_train=args.placement.on_ec2,
                        topic_arn=v[5],
                        await_command=(
                            args.step_commands["await_image"].command
                            if "await_image" in args.step_commands
                            else ()
                        ),
                        train_timeout_seconds=args.train.timeout_minutes * 60,
                        companions=(
                            {"train": [c for c in TRAINING_CONTAINERS if c != "train"]}
                            if args.staged
                            else {}
                        ),
                        platform_gate=args.platform_gate is not None,
                        rollout=(
                            RolloutSpec(
                                function_arn=v[8],
                                cluster_arn=v[6],
                                service_name=v[7],
                                wait_minutes=rolled.wait_minutes,
                            )
                            if rolled
                            else None
                        ),
                        sagemaker=args.staged,
                        sweep=SweepRun.of(args.train.sweep) if args.train.sweep else None,
                    )
                )
            )
        )
        machine = aws.sfn.StateMachine(
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
        if args.train.sweep is not None:
            # pick-trial runs in the gate task, which has a role of its own with a sweep.
            assert gate_role is not None
            self._sweep_policies = self._sweep_permissions(role, machine, gate_role)
        return machine

    def _sweep_permissions(
        self, role: aws.iam.Role, machine: aws.sfn.StateMachine, gate_role: aws.iam.Role
    ) -> list[pulumi.Resource]:
        """A sweep's Distributed Map starts child executions of this very state machine, and
        pick-trial returns the chosen trial with its task token (documents/sweep.py), from the
        gate task's own role: the callback's `"*"` never reaches the workload's train task.
        Declared after the machine, whose ARN the first names; runs wait for both
        (`image_triggers`)."""
        return [
            aws.iam.RolePolicy(
                f"{self._name}-sfn-sweep-policy",
                role=role.id,
                policy=machine.arn.apply(
                    lambda arn: json.dumps(policy_document(map_run_statements(arn)))
                ),
                opts=self._child,
            ),
            aws.iam.RolePolicy(
                f"{self._name}-gate-task-sweep",
                role=gate_role.id,
                policy=json.dumps(policy_document(callback_statements())),
                opts=self._child,
            ),
        ]

    @staticmethod
    def _train_capacity(args: TrainingTaskArgs) -> pulumi.Input[str]:
        """The capacity provider of the first Train attempt."""
        if args.placement.on_ec2:
            # Resolves once the provider is attached: no run can ask for it before.
            assert args.cluster.gpu_capacity_provider_name is not None
            return args.cluster.gpu_capacity_provider_name
        return args.placement.fargate_provider
