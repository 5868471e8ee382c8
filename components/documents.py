"""Pure builders for every JSON document the program sends.

Container definitions, IAM policies, state machine definitions, lifecycle and scaling documents
are built here from plain Python values (strings, ints), never from Outputs, so they are tested
without Pulumi. Components serialize them at the edge (`pulumi.Output.json_dumps`, or
`Output.all(...).apply(lambda v: json.dumps(builder(...)))`). Bad input raises `ValueError` with
a message naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# --- common: IAM, containers -------------------------------------------------------------------

IAM_VERSION = "2012-10-17"

APP_UID = 10001
"""The image's non-root user and group (app/Dockerfile `USER 10001:10001`, the EFS access point)."""
STORE_VOLUME = "store"
STORE_MOUNT = "/mnt/store"
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/tmp"
FARGATE_MAX_STOP_TIMEOUT = 120
"""Seconds. ECS caps `stopTimeout` at 120 on Fargate; the Fargate Spot warning is also 2 min."""

_DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE)")
_SECRET_VALUE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def policy_document(statements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An IAM policy document. Every statement must name its resources."""
    if not statements:
        raise ValueError("a policy document needs at least one statement")
    for statement in statements:
        if "Resource" not in statement and "NotResource" not in statement:
            raise ValueError(f"statement {statement.get('Sid', '?')} names no Resource")
    return {"Version": IAM_VERSION, "Statement": [dict(s) for s in statements]}


def assume_role_policy(service: str, source_account: str | None = None) -> dict[str, Any]:
    """Trust policy letting one AWS service assume a role, optionally only for this account.

    `aws:SourceAccount` guards against the confused-deputy problem (IAM User Guide,
    "The confused deputy problem"), for the services that send it.
    """
    if not service.endswith(".amazonaws.com"):
        raise ValueError(f"{service!r} is not an AWS service principal (*.amazonaws.com)")
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return {"Version": IAM_VERSION, "Statement": [statement]}


def looks_secret(name: str, value: str) -> bool:
    """True for an environment variable that looks like a credential (name or value)."""
    return bool(_SECRET_NAME.search(name.upper()) or _SECRET_VALUE.search(value))


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a task definition; see `container_definition`."""

    name: str
    image: str
    """A digest reference `repo@sha256:...`, never a mutable tag."""
    command: Sequence[str]
    log_group: str
    region: str
    port: int | None = None
    health_path: str | None = None
    """HTTP path probed on `port` by the container health check."""
    health_start_period: int = 60
    """Seconds of failed checks ignored at start: covers the EFS wait and the model load."""
    environment: Mapping[str, str] = field(default_factory=dict)
    essential: bool = True
    """False for a sidecar whose exit must not stop the task (restarted in place instead)."""
    cpu: int = 0
    memory: int | None = None
    gpus: int = 0
    stop_timeout: int = FARGATE_MAX_STOP_TIMEOUT


def container_definition(spec: ContainerSpec) -> dict[str, Any]:
    """An ECS container definition (ECS API camelCase names), hardened the same way everywhere.

    Non-root user 10001, read-only root filesystem with a writable scratch volume at /tmp, the
    shared store at /mnt/store, awslogs, an init process to reap children and forward signals,
    and a stop timeout that lets a task drain. Integers stay integers: inside a container
    definition `cpu` and `memory` are numbers (ECS RegisterTaskDefinition API).
    """
    if not _CONTAINER_NAME.fullmatch(spec.name):
        raise ValueError(f"container name {spec.name!r}: use letters, digits, '-' and '_'")
    if not _DIGEST_REF.fullmatch(spec.image):
        raise ValueError(f"container {spec.name}: image {spec.image!r} is not a repo@sha256 ref")
    if not spec.command:
        raise ValueError(f"container {spec.name}: command is empty")
    if not 2 <= spec.stop_timeout <= FARGATE_MAX_STOP_TIMEOUT:
        raise ValueError(
            f"container {spec.name}: stopTimeout {spec.stop_timeout} must be 2..120 seconds"
        )
    for key, value in spec.environment.items():
        if looks_secret(key, value):
            raise ValueError(
                f"container {spec.name}: environment {key} looks like a secret; "
                "use the task definition's `secrets` from Secrets Manager instead"
            )
    definition: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "essential": spec.essential,
        "command": list(spec.command),
        "user": f"{APP_UID}:{APP_UID}",
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {"initProcessEnabled": True},
        "mountPoints": [
            {"sourceVolume": STORE_VOLUME, "containerPath": STORE_MOUNT, "readOnly": False},
            {"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_MOUNT, "readOnly": False},
        ],
        "environment": [
            {"name": key, "value": value}
            for key, value in sorted({**spec.environment, "STORE_DIR": STORE_MOUNT}.items())
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": spec.log_group,
                "awslogs-region": spec.region,
                "awslogs-stream-prefix": spec.name,
            },
        },
        "stopTimeout": spec.stop_timeout,
    }
    if not spec.essential:
        # A sidecar that exits is restarted in place instead of replacing the whole task (ECS
        # "container restart policies"; restartAttemptPeriod is 60..1800 s).
        definition["restartPolicy"] = {"enabled": True, "restartAttemptPeriod": 60}
    if spec.cpu:
        definition["cpu"] = spec.cpu
    if spec.memory:
        definition["memory"] = spec.memory
    if spec.port is not None:
        if not 1 <= spec.port <= 65535:
            raise ValueError(f"container {spec.name}: port {spec.port} is out of range")
        definition["portMappings"] = [
            {"containerPort": spec.port, "hostPort": spec.port, "protocol": "tcp"}
        ]
    if spec.health_path is not None:
        if spec.port is None or not spec.health_path.startswith("/"):
            raise ValueError(f"container {spec.name}: a health check needs a port and a /path")
        url = f"http://127.0.0.1:{spec.port}{spec.health_path}"
        definition["healthCheck"] = {
            # The image has no curl: python's urllib raises (exit 1) on errors and non-2xx.
            "command": [
                "CMD",
                "python",
                "-c",
                f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)",
            ],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": spec.health_start_period,
        }
    if spec.gpus:
        definition["resourceRequirements"] = [{"type": "GPU", "value": str(spec.gpus)}]
    return definition


def scratch_volume() -> dict[str, Any]:
    """Task-level volume without a host path: task storage, writable under a read-only root.

    In pulumi-aws Python input shape (`aws.ecs.TaskDefinitionVolumeArgs` as a dict).
    """
    return {"name": SCRATCH_VOLUME}


# --- store: EFS file-system policy, client IAM statements ---------------------------------------

EFS_CLIENT_MOUNT = "elasticfilesystem:ClientMount"
EFS_CLIENT_WRITE = "elasticfilesystem:ClientWrite"


def _through_access_point(access_point_arn: str) -> dict[str, Any]:
    # Condition key and operator: EFS User Guide, "Using access points in IAM policies"
    # (`StringEquals` on `elasticfilesystem:AccessPointArn`, the ARN of the access point the
    # client mounts with).
    if ":access-point/fsap-" not in access_point_arn:
        raise ValueError(f"{access_point_arn!r} is not an EFS access point ARN")
    return {"StringEquals": {"elasticfilesystem:AccessPointArn": access_point_arn}}


def _check_file_system_arn(file_system_arn: str) -> None:
    if ":file-system/fs-" not in file_system_arn:
        raise ValueError(f"{file_system_arn!r} is not an EFS file system ARN")


def efs_file_system_policy(
    file_system_arn: str, access_point_arn: str, client_role_arns: Sequence[str]
) -> dict[str, Any]:
    """The EFS file system policy: TLS only, and only the given roles, only via the access point.

    - Deny every action to everyone when `aws:SecureTransport` is false (EFS User Guide, "Using
      IAM to control access to file systems": the client condition keys).
    - Allow `ClientMount` and `ClientWrite` to the roles, conditioned on the access point. No
      `ClientRootAccess`: the access point forces uid/gid 10001, so nobody needs root.

    Once a policy is set, the default policy (full access to any client that can reach a mount
    target) stops applying, so a client that is not named here cannot mount at all.
    """
    _check_file_system_arn(file_system_arn)
    roles = sorted(set(client_role_arns))  # stable order: no diff when callers reorder
    if not roles:
        raise ValueError("the file system policy needs at least one client role ARN")
    for role in roles:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")
    return policy_document(
        [
            {
                "Sid": "DenyWithoutTls",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "*",
                "Resource": file_system_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "AllowClientsThroughAccessPoint",
                "Effect": "Allow",
                "Principal": {"AWS": roles},
                "Action": [EFS_CLIENT_MOUNT, EFS_CLIENT_WRITE],
                "Resource": file_system_arn,
                "Condition": _through_access_point(access_point_arn),
            },
        ]
    )


def efs_client_statements(
    file_system_arn: str, access_point_arn: str, write: bool = True
) -> list[dict[str, Any]]:
    """The identity-policy statements a task role needs to mount the store with `iam: ENABLED`.

    ECS mounts with the task role when the volume's `authorizationConfig.iam` is ENABLED; the
    role needs `ClientMount` (read) and `ClientWrite` (write) on the file system ARN (EFS User
    Guide, "Using IAM to control access to file systems"), here only through the access point.
    """
    _check_file_system_arn(file_system_arn)
    actions = [EFS_CLIENT_MOUNT, EFS_CLIENT_WRITE] if write else [EFS_CLIENT_MOUNT]
    return [
        {
            "Sid": "MountSharedStore",
            "Effect": "Allow",
            "Action": actions,
            "Resource": file_system_arn,
            "Condition": _through_access_point(access_point_arn),
        }
    ]


# --- image: ECR lifecycle policy ----------------------------------------------------------------

IMAGE_FLAVOURS = ("cpu", "gpu")
"""Every image flavour; a release tag is `<flavour>-<content hash>` (components/image_repo.py)."""


def ecr_lifecycle_policy(
    keep_images: int, flavours: Sequence[str] = IMAGE_FLAVOURS
) -> dict[str, Any]:
    """The ECR lifecycle policy: untagged images go after a day, each flavour keeps its newest N.

    ECR User Guide, "Lifecycle policy properties": `tagStatus: tagged` needs a `tagPrefixList`
    or `tagPatternList`, `untagged` must have neither; every `rulePriority` is unique. Several
    prefixes in one rule select only images carrying all of them, so each flavour gets its own
    rule and `keep_images` counts per flavour. Tags outside these prefixes (the moving
    `cache-<flavour>` build-cache tags) are never expired by count.
    """
    if isinstance(keep_images, bool) or not 1 <= keep_images <= 1000:
        raise ValueError(f"keep_images {keep_images!r} must be an integer from 1 to 1000")
    if not flavours or len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours {list(flavours)!r} must be a non-empty list without repeats")
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": "Expire untagged images one day after push",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
    for priority, flavour in enumerate(flavours, start=2):
        if not re.fullmatch(r"[a-z0-9]+", flavour):
            raise ValueError(f"flavour {flavour!r}: use lowercase letters and digits")
        rules.append(
            {
                "rulePriority": priority,
                "description": f"Keep the newest {keep_images} {flavour} images",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [f"{flavour}-"],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules}
