"""Training: the pipeline's container, state machine (ASL) and the IAM its roles need."""

from __future__ import annotations

from typing import Any

from components.aws_facts import FARGATE, FARGATE_SPOT  # noqa: F401  (re-exported)
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
from components.documents.pipeline_tasks import (  # noqa: F401  (re-exported)
    ECS_ERRORS,
    ECS_SYNC_RESOURCE,
    STEP_TIMEOUT_SECONDS,
    TASK_FAILED,
    TRAINING_STEPS,
    PipelineSpec,
    RolloutSpec,
    retry,
    run_task,
    train_states,
)
from components.documents.rollout import rollout_states
from components.documents.staging import STAGE_SERVING
from components.documents.sweep import (
    BEST_TRIAL,
    SWEEP_TRIALS,
    TRIAL_FAILED,
    TRIAL_TRAINED,
    pick_trial_environment,
    sweep_states,
    trial_processor,
)
from components.documents.task_outcome import gate_states
from components.settings.workload import SecuritySpec
from mlops_contract import Env

SNS_PUBLISH_RESOURCE = "arn:aws:states:::sns:publish"
IMAGE_CHECK_RETRY = {"interval": 30, "attempts": 8, "backoff": 1.5}
"""AwaitImage retries: 30 s growing by 1.5 over 8 attempts, at most 25 minutes of waits (full
jitter halves that on average) plus each attempt's task start, for `pulumi up` to register the
task definitions of a pushed image (app/provenance.py)."""


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
    ecs_retry = retry(ECS_ERRORS, interval=30, attempts=4)
    train_start = SWEEP_TRIALS if spec.sweep else "Train"
    first = "Validate" if "validate" in spec.families else train_start
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
        states["AwaitImage"] = run_task(
            spec,
            await_step,
            spec.step_capacity if await_step == "validate" else spec.train_capacity,
            first,
            [
                ecs_retry,
                retry(
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
        states["Validate"] = run_task(
            spec, "validate", spec.step_capacity, train_start, [ecs_retry], notify
        )
    if spec.sweep is None:
        states.update(
            train_states(spec, after_train=after_train, notify="NotifyFailure", ecs_retry=ecs_retry)
        )
    else:
        if not (spec.sagemaker and spec.platform_gate and after_train == "Gate"):
            raise ValueError("a sweep trains a staged workload the platform gate picks from")
        states.update(
            sweep_states(
                spec.sweep,
                processor=trial_processor(
                    train_states(
                        spec, after_train=TRIAL_TRAINED, notify=TRIAL_FAILED, ecs_retry=ecs_retry
                    ),
                    start="Train",
                    train_family=spec.families["train"],
                ),
                pick=run_task(
                    spec,
                    "gate",
                    spec.step_capacity,
                    BEST_TRIAL,
                    [ecs_retry],
                    [],
                    command=["pick-trial"],
                    environment=pick_trial_environment(),
                ),
                after=after_train,
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
        states["Gate"] = run_task(
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
            return run_task(
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
        "Retry": [retry(["States.TaskFailed"], interval=5, attempts=3)],
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
