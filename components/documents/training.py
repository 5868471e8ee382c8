"""Training: the pipeline's container, state machine (ASL) and the IAM its roles need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.aws_facts import FARGATE, FARGATE_SPOT
from components.documents.common import (
    DEFAULT_TRIGGER,
    STEP_ENVIRONMENT,
    ContainerSpec,
    WorkloadSection,
    workload_container,
)
from components.documents.pipeline_iam import (  # noqa: F401  (re-exported: the training builders)
    ECS_EVENTS_RULE,
    state_machine_role_statements,
)
from components.documents.rollout import rollout_states
from components.documents.staging import STAGE_SERVING
from components.documents.task_outcome import (
    gate_states,
    record_failure_environment,
    spot_states,
    train_failure_states,
)
from components.settings.workload import SecuritySpec
from mlops_contract import Env

TRAINING_STEPS = ("validate", "train", "gate")
"""The pipeline's ECS tasks, in order, those the workload has (train always); each is its own
task definition family and container."""
ECS_SYNC_RESOURCE = "arn:aws:states:::ecs:runTask.sync"
SNS_PUBLISH_RESOURCE = "arn:aws:states:::sns:publish"
IMAGE_CHECK_RETRY = {"interval": 30, "attempts": 8, "backoff": 1.5}
"""AwaitImage retries: 30 s growing by 1.5 over 8 attempts, at most 25 minutes of waits (full
jitter halves that on average) plus each attempt's task start, for `pulumi up` to register the
task definitions of a pushed image (app/provenance.py)."""
STEP_TIMEOUT_SECONDS = {"validate": 1800, "train": 4 * 3600, "gate": 1800}
"""Per-step ceiling, including capacity provisioning (a GPU instance takes minutes to join)."""

# Error names the ECS `.sync` integration reports, with their sources:
# - `ECS.AmazonECSException`: the ECS API refused or failed RunTask. That includes a RunTask
#   refused for lack of Fargate capacity ("Capacity is unavailable at this time"): AWS re:Post
#   knowledge center, "ecs-fargate-runtask-capacity": "If you start RunTask from Step Functions
#   and the task fails because of limited capacity, then Step Functions records an
#   ECS.AmazonECSException in its ErrorEquals field". Service errors are named
#   `<service>.<exception>` (Step Functions Developer Guide, "Handling errors in Step Functions":
#   "Errors that come from AWS service integrations"). Transient: retried with backoff on every
#   step; on Spot, after the retries, the signal to fall back to on-demand once.
# - `States.TaskFailed`: the task ran and stopped unsuccessfully (an essential container exited
#   non-zero: bad data, a bug, SIGTERM from a Spot interruption, or a task that is not running
#   the trigger's image yet). Step Functions Developer Guide, "Handling errors", predefined
#   error codes. Deterministic for validate and gate (exit 1 on bad data must stop the
#   pipeline), so never retried there; train checkpoints on SIGTERM and resumes with the same
#   RUN_ID, so it gets one more attempt; AwaitImage retries it until the deploy registered the
#   image. In a Retry or Catch, `States.TaskFailed` matches every error but `States.Timeout`, so
#   it always comes after the specific retriers.
# - `States.Timeout`: the step ran past TimeoutSeconds; not retried: a run that took too long
#   once would double the bill and likely time out again.
# - `States.ALL`: every error (same guide), for the Catch that reports a failed run.
ECS_ERRORS = ["ECS.AmazonECSException"]
TASK_FAILED = "States.TaskFailed"


@dataclass(frozen=True)
class RolloutSpec:
    """The service a promoted model is rolled out to, and how (documents/rollout.py)."""

    function_arn: str
    cluster_arn: str
    service_name: str
    wait_minutes: int


@dataclass(frozen=True)
class PipelineSpec:
    """What the training state machine needs, as plain values (see `training_state_machine`)."""

    cluster_arn: str
    families: Mapping[str, str]
    """Task definition family per step. RunTask with a family runs its latest ACTIVE revision,
    so a `pulumi up` that registers a new image is picked up by executions already started."""
    subnets: Sequence[str]
    security_groups: Sequence[str]
    assign_public_ip: bool
    """Fargate tasks in public subnets need one to reach ECR and CloudWatch (no NAT)."""
    train_capacity: str
    """Capacity provider of the first Train attempt: FARGATE, FARGATE_SPOT or the GPU provider."""
    topic_arn: str
    """SNS topic a failed run is reported to."""
    step_capacity: str = FARGATE
    """Capacity provider of validate and gate: short, small, on-demand."""
    gpu_train: bool = False
    """Train runs the gpu image: pushes of it trigger runs, and validate and gate (cpu image)
    cannot be checked against its digest."""
    await_command: Sequence[str] = ()
    """`workload.steps.await_image`: a command that exits 0 once the task runs the trigger's
    image, retried after an image push (AwaitImage); () = no such state."""
    train_timeout_seconds: int = STEP_TIMEOUT_SECONDS["train"]
    """`workload.training.timeout_minutes`."""
    companions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per step, the other containers of its task that get the run's RUN_ID (staging)."""
    sagemaker: bool = False
    """The `sagemaker` contract: the train container also gets TRAINING_JOB_NAME, the run's id,
    as SageMaker names its training job there (the training toolkit reads it)."""
    platform_gate: bool = False
    """The gate is the platform's (platform/): it exits KEPT_EXIT when it decided to keep the
    current model, which the pipeline tells from a failure by that code in the task's stop."""
    rollout: RolloutSpec | None = None
    """A promoted model rolls the service before it becomes current (documents/rollout.py)."""

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(step for step in TRAINING_STEPS if step in self.families)

    @property
    def image_steps(self) -> tuple[str, ...]:
        """The steps running the image whose push triggers a run (`trigger.image_digest`)."""
        return ("train",) if self.gpu_train else self.steps


def training_container(
    step: str,
    image: Any,
    section: WorkloadSection,
    *,
    security: SecuritySpec,
    store: bool = True,
    promote_margin: float = 0.0,
    gpus: int = 0,
) -> ContainerSpec:
    """The one container of a pipeline step's task definition, running the workload's
    `section` for the step (`workload.training` for train, `workload.steps.<step>`).

    Only `train` may reserve GPUs, and only on EC2 (the caller checks the capacity). The gate
    gets `PROMOTE_MARGIN` (`training.promote_margin`).
    """
    if step not in TRAINING_STEPS:
        raise ValueError(f"step {step!r}: use one of {', '.join(TRAINING_STEPS)}")
    if gpus and step != "train":
        raise ValueError(f"{step} needs no GPU; only train reserves them")
    if not 0.0 <= promote_margin < 1.0:
        raise ValueError(f"promote_margin {promote_margin!r} must be at least 0 and below 1")
    env = dict(STEP_ENVIRONMENT)
    if step == "gate":
        env[Env.PROMOTE_MARGIN] = str(promote_margin)
    return workload_container(
        step,
        image,
        section,
        security=security,
        store=store,
        platform_environment=env,
        gpus=gpus,
    )


def _retry(
    errors: Sequence[str], interval: int, attempts: int, backoff: float = 2.0
) -> dict[str, Any]:
    return {
        "ErrorEquals": list(errors),
        "IntervalSeconds": interval,
        "MaxAttempts": attempts,
        "BackoffRate": backoff,
        "JitterStrategy": "FULL",
    }


def _run_task(
    spec: PipelineSpec,
    step: str,
    capacity: str,
    next_state: str,
    retry: Sequence[Mapping[str, Any]],
    catch: Sequence[Mapping[str, Any]],
    command: Sequence[str] | None = None,
    environment: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One `ecs:runTask.sync` Task state (Step Functions parameters are PascalCase).

    No `LaunchType`: it and `CapacityProviderStrategy` are mutually exclusive (ECS RunTask API),
    and only the strategy can choose Fargate Spot or the GPU provider. `command` overrides the
    container's command (ECS "ContainerOverride": `command`).
    """
    container_override: dict[str, Any] = {
        "Name": step,
        "Environment": [
            # Fixed once per execution (Prepare): the same on every retry and on the
            # on-demand fallback, so train resumes from models/<RUN_ID>/checkpoint.
            {"Name": Env.RUN_ID, "Value.$": "$.run.id"},
            {"Name": Env.RUN_DATE, "Value.$": "$.run.date"},
            {"Name": Env.TRIGGER, "Value.$": "$.trigger.reason"},
        ],
    }
    if spec.sagemaker and step == "train":
        container_override["Environment"].append(
            {"Name": Env.TRAINING_JOB_NAME, "Value.$": "$.run.id"}
        )
    if step in spec.image_steps:
        # The task compares it with the image it runs (app/provenance.py) and fails when they
        # differ: RunTask overrides cannot change a container's image (ECS API
        # "ContainerOverride" has no image field), so a run never records a digest it did not
        # run.
        container_override["Environment"].append(
            {"Name": Env.TRIGGER_IMAGE_DIGEST, "Value.$": "$.trigger.image_digest"}
        )
    container_override["Environment"].extend(dict(e) for e in environment)
    if command:
        container_override["Command"] = list(command)
    if capacity not in (FARGATE, FARGATE_SPOT) and spec.assign_public_ip:
        # ECS RunTask: assignPublicIp is Fargate-only; EC2 tasks reach out through NAT.
        raise ValueError(f"{step}: EC2 capacity {capacity!r} cannot assign a public IP")
    return {
        "Type": "Task",
        "Resource": ECS_SYNC_RESOURCE,
        "Parameters": {
            "Cluster": spec.cluster_arn,
            "TaskDefinition": spec.families[step],
            "CapacityProviderStrategy": [{"CapacityProvider": capacity, "Weight": 1}],
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": list(spec.subnets),
                    "SecurityGroups": list(spec.security_groups),
                    "AssignPublicIp": "ENABLED" if spec.assign_public_ip else "DISABLED",
                }
            },
            "Overrides": {
                "ContainerOverrides": [
                    container_override,
                    *(
                        {"Name": name, "Environment": container_override["Environment"][:3]}
                        for name in spec.companions.get(step, ())
                    ),
                ]
            },
        },
        # Discard the task description: the next step gets the same input, the trigger.
        "ResultPath": None,
        "TimeoutSeconds": (
            spec.train_timeout_seconds if step == "train" else STEP_TIMEOUT_SECONDS[step]
        ),
        "Retry": [dict(r) for r in retry],
        "Catch": [dict(c) for c in catch],
        "Next": next_state,
    }


def training_state_machine(spec: PipelineSpec) -> dict[str, Any]:
    """The training pipeline in Amazon States Language (JSONPath).

    Prepare (defaults under the trigger) → [AwaitImage after an image push] → [Validate] →
    Train (→ TrainOnDemand when a Spot attempt fails) → [Gate] → Succeeded, the bracketed
    states where the workload has the step. Any step that fails for good goes to NotifyFailure
    (SNS) and then Failed. AwaitImage runs the workload's `await_image` command in a step running
    the pushed image, retried until the deployed task definitions run the pushed digest: the push
    event fires while `pulumi up` is still registering them.
    """
    if "train" not in spec.families or not set(spec.families) <= set(TRAINING_STEPS):
        raise ValueError(f"families must name train and only the steps {TRAINING_STEPS}")
    if not spec.subnets or not spec.security_groups:
        raise ValueError("tasks need at least one subnet and one security group")
    if not spec.topic_arn.startswith("arn:aws") or ":sns:" not in spec.topic_arn:
        raise ValueError(f"{spec.topic_arn!r} is not an SNS topic ARN")
    if spec.step_capacity == FARGATE_SPOT:
        raise ValueError("validate and gate run on-demand: a Spot interruption would fail them")

    notify = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
    # Capacity refusals and API errors: 30 s, 60 s, 120 s, 240 s (with full jitter).
    ecs_retry = _retry(ECS_ERRORS, interval=30, attempts=4)
    spot = spec.train_capacity == FARGATE_SPOT
    first = "Validate" if "validate" in spec.families else "Train"
    after_train = "Gate" if "gate" in spec.families else "Succeeded"
    # The pushed flavour's step: validate on cpu stacks (small and on demand), or train (gpu
    # stacks, or no validate; on GPU the instance it starts serves the Train step right after).
    await_step = "validate" if first == "Validate" and not spec.gpu_train else "train"

    states: dict[str, Any] = {
        "Defaults": {
            "Type": "Pass",
            "Parameters": {
                "defaults": dict(DEFAULT_TRIGGER),
                "input.$": "$",
                # 2026-11-22T03:00:00.123Z -> [2026, 11, 22T03, 00, 00, 123]; each character of
                # the second argument is a delimiter (Step Functions Developer Guide, "Intrinsic
                # functions": States.StringSplit).
                "start.$": "States.StringSplit($$.Execution.StartTime, '-:.Z')",
            },
            "Next": "Prepare",
        },
        "Prepare": {
            "Type": "Pass",
            "Comment": "The trigger over the defaults; the run's id and as-of date",
            "Parameters": {
                "trigger.$": "States.JsonMerge($.defaults, $.input, false)",
                "run": {
                    # `<start, app's new_run_id format>-<execution name>`: unique per execution,
                    # and run ids sort by time in the store and the dashboard.
                    "id.$": (
                        "States.Format('{}{}{}{}{}Z-{}', "
                        + ", ".join(f"States.ArrayGetItem($.start, {i})" for i in range(5))
                        + ", $$.Execution.Name)"
                    ),
                    "date.$": (
                        "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)"
                    ),
                },
            },
            "Next": "PushedImage" if spec.await_command else first,
        },
    }
    if spec.await_command:
        states["PushedImage"] = {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.trigger.reason",
                    "StringEquals": "image-push",
                    "Next": "AwaitImage",
                }
            ],
            "Default": first,
        }
        states["AwaitImage"] = _run_task(
            spec,
            await_step,
            spec.step_capacity if await_step == "validate" else spec.train_capacity,
            first,
            [
                ecs_retry,
                _retry(
                    [TASK_FAILED],
                    interval=IMAGE_CHECK_RETRY["interval"],
                    attempts=IMAGE_CHECK_RETRY["attempts"],
                    backoff=IMAGE_CHECK_RETRY["backoff"],
                ),
            ],
            notify,
            command=spec.await_command,
        )
    if first == "Validate":
        states["Validate"] = _run_task(
            spec, "validate", spec.step_capacity, "Train", [ecs_retry], notify
        )
    # A staged (`sagemaker`) train task's failure is recorded in the run's report (the
    # platform's record-failure, in the gate's task definition) before it is reported.
    record = spec.sagemaker and spec.platform_gate
    failed_train = "TrainStopped" if record else "NotifyFailure"
    train_failed = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed_train}]
    if spot:
        # Spot: capacity refusals (`ECS.AmazonECSException`) are retried with backoff first;
        # still refused, or interrupted (stop code SpotInterruption), the run falls back to
        # on-demand, once. A train that failed on its own is not run again.
        states["Train"] = _run_task(
            spec,
            "train",
            FARGATE_SPOT,
            after_train,
            [ecs_retry],
            [
                {"ErrorEquals": ECS_ERRORS, "ResultPath": "$.spot_error", "Next": "TrainOnDemand"},
                {"ErrorEquals": [TASK_FAILED], "ResultPath": "$.error", "Next": "SpotStopped"},
                *train_failed,
            ],
        )
        states.update(spot_states(on_demand="TrainOnDemand", failed=failed_train))
        states["TrainOnDemand"] = _run_task(
            spec, "train", FARGATE, after_train, [ecs_retry], train_failed
        )
    else:
        # On-demand Fargate or the GPU provider: a stopped task (host drained, container
        # killed) resumes from its checkpoint once.
        states["Train"] = _run_task(
            spec,
            "train",
            spec.train_capacity,
            after_train,
            [ecs_retry, _retry([TASK_FAILED], interval=30, attempts=1)],
            train_failed,
        )
    if record:
        states.update(
            train_failure_states(
                record=_run_task(
                    spec,
                    "gate",
                    spec.step_capacity,
                    "NotifyFailure",
                    [ecs_retry],
                    notify,
                    command=["record-failure"],
                    environment=record_failure_environment("train"),
                ),
                notify="NotifyFailure",
            )
        )
    if after_train == "Gate":
        after_gate = "StartRollout" if spec.rollout else "Succeeded"
        gate_catch = (
            [
                {
                    "ErrorEquals": ["States.Timeout"],
                    "ResultPath": "$.error",
                    "Next": "NotifyFailure",
                },
                {"ErrorEquals": [TASK_FAILED], "ResultPath": "$.error", "Next": "GateStopped"},
                *notify,
            ]
            if spec.platform_gate
            else notify
        )
        states["Gate"] = _run_task(
            spec, "gate", spec.step_capacity, after_gate, [ecs_retry], gate_catch
        )
        if spec.platform_gate:
            states.update(gate_states(kept="ModelKept", notify="NotifyFailure"))
    if spec.rollout:
        if not spec.platform_gate:
            raise ValueError("a model rollout follows the platform gate")
        rollout = spec.rollout

        def finish(status: str) -> dict[str, Any]:
            environment: list[dict[str, Any]] = [
                {"Name": Env.ROLLOUT_STATUS, "Value": status},
                {"Name": Env.ROLLOUT_REASON, "Value.$": "$.rollout.status.value.reason"},
                {"Name": Env.SERVICE_DEPLOYMENT, "Value.$": "$.rollout.deploy.value.deployment"},
            ]
            return _run_task(
                spec,
                "gate",
                spec.step_capacity,
                "Succeeded",
                [ecs_retry],
                notify,
                command=["finish-rollout"],
                environment=environment,
            )

        states["StartRollout"] = {
            "Type": "Pass",
            "Parameters": {"polls": {"count": 0}, "run_id.$": "$.run.id"},
            "ResultPath": "$.rollout",
            "Next": "Deploy",
        }
        states.update(
            rollout_states(
                function_arn=rollout.function_arn,
                cluster_arn=rollout.cluster_arn,
                service_name=rollout.service_name,
                container=STAGE_SERVING,
                wait_minutes=rollout.wait_minutes,
                finish={"succeeded": finish("succeeded"), "failed": finish("failed")},
                notify="NotifyFailure",
            )
        )
    states["NotifyFailure"] = {
        "Type": "Task",
        "Resource": SNS_PUBLISH_RESOURCE,
        "Parameters": {
            "TopicArn": spec.topic_arn,
            "Subject": "mlops training run failed",
            "Message.$": (
                "States.Format('Training run {} failed with {}. Trigger: {}. Cause: {}', "
                "$$.Execution.Name, $.error.Error, States.JsonToString($.trigger), "
                "$.error.Cause)"
            ),
        },
        "ResultPath": None,
        "TimeoutSeconds": 60,
        "Retry": [_retry(["States.TaskFailed"], interval=5, attempts=3)],
        # The run fails either way; a lost notification must not hide the original error.
        "Catch": [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "Failed"}
        ],
        "Next": "Failed",
    }
    states["Failed"] = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    states["Succeeded"] = {"Type": "Succeed"}
    return {
        "Comment": "mlops training: validate, train (Spot falls back to on-demand once), gate",
        "StartAt": "Defaults",
        "States": states,
    }


STAR_RESOURCE_SIDS = (
    "DeliverExecutionLogs",
    "TraceExecutions",
    "PullImagesToken",
    "ProgramLookups",
    "DescribeEverywhere",
)
"""Statements AWS documents as needing `Resource: "*"`; every other statement names its ARNs."""
