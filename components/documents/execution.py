"""The task execution role every ECS task of the program gets: pull the image, write its logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.settings.secrets import SecretRef


def execution_role_statements(
    repository_arns: str | Sequence[str], log_group_arns: Sequence[str]
) -> list[dict[str, Any]]:
    """A task execution role: pull these ECR repositories' images and write these log groups.

    No repository (an image in another registry, `workload.image.location`): no ECR statement.

    Narrower than the managed AmazonECSTaskExecutionRolePolicy (ECR and Logs on "*"); the
    actions are the ones that policy grants for image pulls and awslogs (ECS Developer Guide,
    "Amazon ECS task execution IAM role"). The repository uses the AWS-managed `aws/ecr` key,
    which ECR uses through its own grants, so pulling needs no KMS permission (ECR User Guide,
    "Encryption at rest").
    """
    repositories = [repository_arns] if isinstance(repository_arns, str) else list(repository_arns)
    for repository_arn in repositories:
        if ":ecr:" not in repository_arn or ":repository/" not in repository_arn:
            raise ValueError(f"{repository_arn!r} is not an ECR repository ARN")
    if not log_group_arns:
        raise ValueError("the execution role needs at least one log group ARN")
    for arn in log_group_arns:
        if ":logs:" not in arn or ":log-group:" not in arn:
            raise ValueError(f"{arn!r} is not a CloudWatch Logs log group ARN")
    streams = sorted({f"{arn.removesuffix(':*')}:log-stream:*" for arn in log_group_arns})
    pulls: list[dict[str, Any]] = [
        {
            # Documented exception: GetAuthorizationToken is account-wide and takes no resource
            # ARN (Service Authorization Reference, Amazon ECR).
            "Sid": "PullImagesToken",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullImages",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            "Resource": repositories[0] if len(repositories) == 1 else sorted(set(repositories)),
        },
    ]
    return [
        *(pulls if repositories else []),
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": streams[0] if len(streams) == 1 else streams,
        },
    ]


def secret_read_statements(refs: Sequence[SecretRef]) -> list[dict[str, Any]]:
    """What the execution role needs so ECS can inject these secrets at container start, and
    nothing more: `secretsmanager:GetSecretValue` on exactly the secrets, `ssm:GetParameters` on
    exactly the parameters, and `kms:Decrypt` on exactly the customer managed keys they name,
    used only through those two services (ECS Developer Guide, "Amazon ECS task execution IAM
    role", Secrets Manager or Systems Manager permissions: kms:Decrypt "only required if your
    key uses a custom KMS key"; KMS Developer Guide, the `kms:ViaService` condition key)."""
    secrets = sorted({ref.arn for ref in refs if not ref.is_parameter})
    parameters = sorted({ref.arn for ref in refs if ref.is_parameter})
    keys = sorted({ref.kms_key for ref in refs if ref.kms_key})
    statements: list[dict[str, Any]] = []
    if secrets:
        statements.append(
            {
                "Sid": "ReadWorkloadSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secrets[0] if len(secrets) == 1 else secrets,
            }
        )
    if parameters:
        statements.append(
            {
                "Sid": "ReadWorkloadParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": parameters[0] if len(parameters) == 1 else parameters,
            }
        )
    if keys:
        services = sorted(
            {
                f"{'ssm' if ref.is_parameter else 'secretsmanager'}.{ref.arn.split(':')[3]}"
                ".amazonaws.com"
                for ref in refs
                if ref.kms_key
            }
        )
        statements.append(
            {
                "Sid": "DecryptWorkloadSecrets",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": keys[0] if len(keys) == 1 else keys,
                "Condition": {"StringEquals": {"kms:ViaService": services}},
            }
        )
    return statements
