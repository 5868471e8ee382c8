"""What starts a training run: EventBridge patterns, execution inputs, the dead-letter queue."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from components.documents.common import (
    DEFAULT_TRIGGER,
    DRIFT_DETAIL_TYPE,
    DRIFT_SOURCE,
    IAM_VERSION,
)


def ecr_push_pattern(repository_name: str, tag_prefix: str) -> dict[str, Any]:
    """EventBridge pattern: a successful push of a release image to this repository.

    Field names and values from the ECR User Guide, "Amazon ECR events and EventBridge" (event
    for a completed image push). `image-tag` narrows it to the release tag of one flavour: a
    deploy also pushes the `cache-<flavour>` tags (and the other flavour), and each push is an
    event; without the prefix one deploy would start several identical runs.
    """
    if not repository_name or not tag_prefix:
        raise ValueError("the push pattern needs a repository name and a tag prefix")
    return {
        "source": ["aws.ecr"],
        "detail-type": ["ECR Image Action"],
        "detail": {
            "action-type": ["PUSH"],
            "result": ["SUCCESS"],
            "repository-name": [repository_name],
            "image-tag": [{"prefix": tag_prefix}],
        },
    }


def drift_pattern() -> dict[str, Any]:
    """EventBridge pattern: the monitoring job reports data drift (a custom event)."""
    return {"source": [DRIFT_SOURCE], "detail-type": [DRIFT_DETAIL_TYPE]}


ECR_PUSH_INPUT_PATHS = {"digest": "$.detail.image-digest"}
"""Input transformer variables for push events (`InputPathsMap`)."""


def trigger_input(reason: str) -> dict[str, str]:
    """The constant execution input of a trigger whose event carries no image (schedule, drift)."""
    if not re.fullmatch(r"[a-z][a-z-]*", reason):
        raise ValueError(f"reason {reason!r}: use lowercase words joined by '-'")
    return {"reason": reason, "image_digest": DEFAULT_TRIGGER["image_digest"]}


def trigger_input_template(reason: str, digest_variable: str) -> str:
    """An input transformer `InputTemplate`: `{"reason": ..., "image_digest": <variable>}`.

    The placeholder sits in quotes, as EventBridge expects for a string value (EventBridge User
    Guide, "Amazon EventBridge input transformation"; API reference, "InputTransformer").
    """
    trigger_input(reason)
    if digest_variable not in ECR_PUSH_INPUT_PATHS:
        raise ValueError(f"{digest_variable!r} is not one of {sorted(ECR_PUSH_INPUT_PATHS)}")
    return f'{{"reason": "{reason}", "image_digest": "<{digest_variable}>"}}'


def dead_letter_queue_policy(queue_arn: str, rule_arns: Sequence[str]) -> dict[str, Any]:
    """The DLQ's queue policy: EventBridge may send to it, for these rules only.

    EventBridge User Guide, "Using dead-letter queues to process undelivered events": grant
    `events.amazonaws.com` `sqs:SendMessage` with `aws:SourceArn` set to the rule ARN.
    """
    if ":sqs:" not in queue_arn:
        raise ValueError(f"{queue_arn!r} is not an SQS queue ARN")
    if not rule_arns:
        raise ValueError("the dead-letter queue policy needs at least one rule ARN")
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "EventBridgeDeadLetters",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(set(rule_arns))}},
            }
        ],
    }


def start_execution_statements(state_machine_arn: str) -> list[dict[str, Any]]:
    """EventBridge's role for the training targets: start this state machine, nothing else."""
    if ":states:" not in state_machine_arn or ":stateMachine:" not in state_machine_arn:
        raise ValueError(f"{state_machine_arn!r} is not a state machine ARN")
    return [
        {
            "Sid": "StartTraining",
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": state_machine_arn,
        }
    ]
