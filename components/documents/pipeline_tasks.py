"""The pipeline's ECS task states: what the state machine needs to know (`PipelineSpec`), one
`ecs:runTask.sync` state with its overrides, retries and catchers (`run_task`), and the states of
one training (`train_states`), which a single run and each trial of a sweep share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.aws_facts import FARGATE, FARGATE_SPOT
from components.documents.sweep import SweepRun
from components.documents.task_outcome import (
    record_failure_environment,
    spot_states,
    train_failure_states,
)
from mlops_contract import Env

TRAINING_STEPS = ("validate", "train", "gate")
"""The pipeline's ECS tasks, in order, those the workload has (train always); each is its own
task definition family and container."""
ECS_SYNC_RESOURCE = "arn:aws:states:::ecs:runTask.sync"
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
    sweep: SweepRun | None = None
    """Train runs as a hyperparameter sweep, the gate takes its best trial (documents/sweep.py)."""

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(step for step in TRAINING_STEPS if step in self.families)

    @property
    def image_steps(self) -> tuple[str, ...]:
        """The steps running the image whose push triggers a run (`trigger.image_digest`)."""
        return ("train",) if self.gpu_train else self.steps


def retry(
    errors: Sequence[str], interval: int, attempts: int, backoff: float = 2.0
) -> dict[str, Any]:
    return {
        "ErrorEquals": list(errors),
        "IntervalSeconds": interval,
        "MaxAttempts": attempts,
        "BackoffRate": backoff,
        "JitterStrategy": "FULL",
    }


def run_task(
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


def train_states(
    spec: PipelineSpec, *, after_train: str, notify: str, ecs_retry: Mapping[str, Any]
) -> dict[str, Any]:
    """Train (from StartAt "Train") to `after_train`, or, failed for good, to `notify` with the
    error at `$.error`: the single training's states, and each trial's in a sweep."""
    states: dict[str, Any] = {}
    # A staged (`sagemaker`) train task's failure is recorded in the run's report (the
    # platform's record-failure, in the gate's task definition) before it is reported.
    record = spec.sagemaker and spec.platform_gate
    failed_train = "TrainStopped" if record else notify
    train_failed = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed_train}]
    if spec.train_capacity == FARGATE_SPOT:
        # Spot: capacity refusals (`ECS.AmazonECSException`) are retried with backoff first;
        # still refused, or interrupted (stop code SpotInterruption), the run falls back to
        # on-demand, once. A train that failed on its own is not run again.
        states["Train"] = run_task(
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
        states["TrainOnDemand"] = run_task(
            spec, "train", FARGATE, after_train, [ecs_retry], train_failed
        )
    else:
        # On-demand Fargate or the GPU provider: a stopped task (host drained, container
        # killed) resumes from its checkpoint once.
        states["Train"] = run_task(
            spec,
            "train",
            spec.train_capacity,
            after_train,
            [ecs_retry, retry([TASK_FAILED], interval=30, attempts=1)],
            train_failed,
        )
    if record:
        states.update(
            train_failure_states(
                record=run_task(
                    spec,
                    "gate",
                    spec.step_capacity,
                    notify,
                    [ecs_retry],
                    [],
                    command=["record-failure"],
                    environment=record_failure_environment("train"),
                ),
                notify=notify,
            )
        )
    return states
