"""The training pipeline's triggers: an ECR push of a release image, the `training.schedule`, a
`DataDriftDetected` event; each an EventBridge rule whose target starts the state machine, with a
dead-letter queue for what it could not deliver. Children of the TrainingTask component."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import policy_document
from components.documents.triggers import (
    ECR_PUSH_INPUT_PATHS,
    dead_letter_queue_policy,
    drift_pattern,
    ecr_push_pattern,
    start_execution_statements,
    trigger_input,
    trigger_input_template,
)
from components.settings.pipeline import TrainingSettings

EVENT_MAX_AGE_SECONDS = 3600
"""EventBridge stops retrying a failed delivery after an hour and dead-letters the event."""
EVENT_MAX_RETRIES = 10
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
"""The SQS maximum: two weeks to look at an undelivered trigger."""


@dataclass
class TriggerSpec:
    name: str
    training: TrainingSettings
    """`mlops:training`: on_image_push, schedule, on_drift_event."""
    gpu: bool
    """The train step runs the gpu image: its pushes trigger runs."""
    repository_name: pulumi.Input[str] | None
    """The stack's release repository; None when it builds nothing (no push rule)."""
    trust: pulumi.Input[str]
    """The events role's trust policy."""


def declare_triggers(
    spec: TriggerSpec, state_machine: aws.sfn.StateMachine, child: pulumi.ResourceOptions
) -> tuple[aws.sqs.Queue, list[pulumi.Resource]]:
    """The triggers' role, dead-letter queue, rules and targets; and the push rule and target
    (what must exist before a release image is pushed)."""
    name = spec.name
    training = spec.training
    role = aws.iam.Role(
        f"{name}-events-role",
        assume_role_policy=spec.trust,
        description="Lets the training triggers start the training state machine",
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-events-policy",
        role=role.id,
        policy=state_machine.arn.apply(
            lambda arn: json.dumps(policy_document(start_execution_statements(arn)))
        ),
        opts=child,
    )
    # SSE-SQS: encrypted at rest without a KMS key policy for EventBridge to satisfy.
    queue = aws.sqs.Queue(
        f"{name}-dlq",
        sqs_managed_sse_enabled=True,
        message_retention_seconds=DLQ_RETENTION_SECONDS,
        opts=child,
    )

    rules: list[aws.cloudwatch.EventRule] = []
    push_trigger: list[pulumi.Resource] = []
    if training.on_image_push and spec.repository_name is not None:
        # The release tag of the image the train step runs (`<flavour>-<hash>`).
        flavour = "gpu" if spec.gpu else "cpu"
        pattern = pulumi.Output.from_input(spec.repository_name).apply(
            lambda repo: json.dumps(ecr_push_pattern(repo, f"{flavour}-"))
        )
        rule = _rule(name, child, "push", "Retrain when a new release image is pushed", pattern)
        target = _target(
            name,
            child,
            "push",
            rule,
            state_machine,
            role,
            queue,
            input_transformer={
                "input_paths": dict(ECR_PUSH_INPUT_PATHS),
                "input_template": trigger_input_template("image-push", "digest"),
            },
        )
        rules.append(rule)
        push_trigger = [rule, target]
    if training.schedule:
        rule = aws.cloudwatch.EventRule(
            f"{name}-on-schedule",
            description="Retrain on the training.schedule",
            schedule_expression=training.schedule,
            opts=child,
        )
        _target(
            name,
            child,
            "schedule",
            rule,
            state_machine,
            role,
            queue,
            input=json.dumps(trigger_input("schedule")),
        )
        rules.append(rule)
    if training.on_drift_event:
        rule = _rule(
            name,
            child,
            "drift",
            "Retrain when monitoring reports data drift",
            json.dumps(drift_pattern()),
        )
        _target(
            name,
            child,
            "drift",
            rule,
            state_machine,
            role,
            queue,
            input=json.dumps(trigger_input("drift")),
        )
        rules.append(rule)

    if rules:
        aws.sqs.QueuePolicy(
            f"{name}-dlq-policy",
            queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, *(rule.arn for rule in rules)).apply(
                lambda arns: json.dumps(dead_letter_queue_policy(arns[0], arns[1:]))
            ),
            opts=child,
        )
    return queue, push_trigger


def _rule(
    name: str,
    child: pulumi.ResourceOptions,
    trigger: str,
    description: str,
    pattern: pulumi.Input[str],
) -> aws.cloudwatch.EventRule:
    return aws.cloudwatch.EventRule(
        f"{name}-on-{trigger}",
        description=description,
        event_pattern=pattern,
        opts=child,
    )


def _target(
    name: str,
    child: pulumi.ResourceOptions,
    trigger: str,
    rule: aws.cloudwatch.EventRule,
    state_machine: aws.sfn.StateMachine,
    role: aws.iam.Role,
    queue: aws.sqs.Queue,
    **event_input: Any,
) -> aws.cloudwatch.EventTarget:
    return aws.cloudwatch.EventTarget(
        f"{name}-on-{trigger}-target",
        rule=rule.name,
        arn=state_machine.arn,
        role_arn=role.arn,
        retry_policy={
            "maximum_event_age_in_seconds": EVENT_MAX_AGE_SECONDS,
            "maximum_retry_attempts": EVENT_MAX_RETRIES,
        },
        dead_letter_config={"arn": queue.arn},
        **event_input,
        opts=child,
    )
