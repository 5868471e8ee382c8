"""The training pipeline and S3: what its task role may read of the S3 channels
(stage-training runs in the train task) and what the gate task, which runs the platform gate and
finish-rollout, may write to the stack's artifact bucket (components/model_artifacts.py).
Children of the TrainingTask component; the JSON is documents/s3.py's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import policy_document
from components.documents.s3 import (
    artifact_environment,
    artifact_export_statements,
    channel_read_statements,
)
from components.settings.channels import s3_channels
from components.settings.workload import TrainingSpec

EXPORT_ROLE = (
    "The platform gate and finish-rollout: mount and write the shared store, export each model "
    "they make current to the artifact bucket"
)
"""The gate task's own role: the export's rights must not reach the workload's train task,
whose containers would share the pipeline's task role."""


@dataclass(frozen=True)
class ArtifactExport:
    """The stack's artifact bucket: the gate task exports each model it makes current to it."""

    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    keep_last: int

    @property
    def environment(self) -> dict[str, Any]:
        return artifact_environment(self.bucket_name, self.keep_last)


def grant_channels(
    name: str, training: TrainingSpec, task_role: aws.iam.Role, child: pulumi.ResourceOptions
) -> None:
    """`<name>-task-channels`: the task role lists and reads exactly the S3 channels' prefixes
    (and decrypts with their key through S3); nothing without an S3 channel."""
    channels = s3_channels(training.channels)
    if not channels:
        return
    statements = channel_read_statements(channels, training.channels_kms_key_arn)
    aws.iam.RolePolicy(
        f"{name}-task-channels",
        role=task_role.id,
        policy=json.dumps(policy_document(statements)),
        opts=child,
    )


def grant_export(
    name: str, export: ArtifactExport, gate_role: aws.iam.Role, child: pulumi.ResourceOptions
) -> None:
    """`<name>-gate-export`: the gate task's own role writes the artifact bucket's models/."""
    aws.iam.RolePolicy(
        f"{name}-gate-export",
        role=gate_role.id,
        policy=pulumi.Output.from_input(export.bucket_arn).apply(
            lambda arn: json.dumps(policy_document(artifact_export_statements(arn)))
        ),
        opts=child,
    )
