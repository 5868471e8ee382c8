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


def deny_insecure_transport(action: str, resource: str | Sequence[str]) -> dict[str, Any]:
    """A resource-policy statement refusing `action` to anyone over plain HTTP/NFS without TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": action,
        "Resource": resource if isinstance(resource, str) else list(resource),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


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
    internal_port: int | None = None
    """A second port, for callers inside the VPC only: no target group forwards to it."""
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
        ports = [spec.port, *([spec.internal_port] if spec.internal_port else [])]
        for port in ports[1:]:
            if not 1 <= port <= 65535 or port == spec.port:
                raise ValueError(f"container {spec.name}: internal port {port} is not usable")
        definition["portMappings"] = [
            {"containerPort": port, "hostPort": port, "protocol": "tcp"} for port in ports
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
            deny_insecure_transport("*", file_system_arn),
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


BUILD_CACHE_SUFFIX = "-build-cache"
"""The one mutable repository's name ends so: it holds only `cache-<flavour>` build caches."""


def ecr_cache_lifecycle_policy(flavours: Sequence[str] = IMAGE_FLAVOURS) -> dict[str, Any]:
    """The build-cache repository's lifecycle policy: each `cache-<flavour>` tag keeps one image
    (the tag moves to every new build), and the images it moved off expire a day later."""
    if not flavours or len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours {list(flavours)!r} must be a non-empty list without repeats")
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": "Expire replaced build caches one day after push",
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
        rules.append(
            {
                "rulePriority": priority,
                "description": f"Keep one {flavour} build cache",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [f"cache-{flavour}"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules}


# --- CI: GitHub Actions OIDC trust ---------------------------------------------------------------

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"


def github_oidc_trust_policy(provider_arn: str, repository: str, subject: str) -> dict[str, Any]:
    """Trust policy for a role GitHub Actions assumes with its OIDC token.

    GitHub Docs, "Configuring OpenID Connect in Amazon Web Services": principal the account's
    `token.actions.githubusercontent.com` provider, action `sts:AssumeRoleWithWebIdentity`,
    `StringEquals` on the token's `aud` (`sts.amazonaws.com`) and `sub`. `subject` is the part
    after `repo:OWNER/REPO:`: `pull_request` for pull-request jobs, `environment:NAME` for jobs
    in a deployment environment ("OpenID Connect reference": subject claims).
    """
    if not re.fullmatch(
        rf"arn:aws[a-z-]*:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}", provider_arn
    ):
        raise ValueError(f"{provider_arn!r} is not the GitHub OIDC provider's ARN")
    if not re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", repository):
        raise ValueError(f"{repository!r} is not a GitHub owner/repo")
    if subject != "pull_request" and not re.fullmatch(r"environment:[A-Za-z0-9._-]+", subject):
        raise ValueError(f"subject {subject!r}: use pull_request or environment:NAME")
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:{subject}",
                    }
                },
            }
        ],
    }


def ci_preview_statements(region: str, account: str, repository_arn: str) -> list[dict[str, Any]]:
    """What `pulumi preview` of this program calls in AWS: the program's lookups, nothing else.

    A preview without `--refresh` reads no resource; it runs the program's invokes: caller
    identity (no permission needed), availability zones (awsx Vpc), the ECS GPU AMI parameter,
    the release tag lookup and the registry token (ImageRepo), and the Route 53 zone of
    `inference.domain`. Describe/List actions and GetAuthorizationToken take no resource ARN
    (Service Authorization Reference), hence "*" there.
    """
    if ":ecr:" not in repository_arn or ":repository/" not in repository_arn:
        raise ValueError(f"{repository_arn!r} is not an ECR repository ARN")
    return [
        {
            "Sid": "ProgramLookups",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeAvailabilityZones",
                "ecr:GetAuthorizationToken",
                "route53:ListHostedZones",
                "route53:ListHostedZonesByName",
            ],
            "Resource": "*",
        },
        {
            # ImageRepo.release: ecr.get_repositories (DescribeRepositories without names: every
            # repository of the Region) and ecr.get_images (ListImages on ours).
            "Sid": "ReleaseTagLookup",
            "Effect": "Allow",
            "Action": ["ecr:DescribeRepositories", "ecr:ListImages", "ecr:DescribeImages"],
            "Resource": [repository_arn, f"arn:aws:ecr:{region}:{account}:repository/*"],
        },
        {
            "Sid": "GpuAmiParameter",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/ecs/*",
        },
        {
            "Sid": "HostedZoneLookup",
            "Effect": "Allow",
            "Action": ["route53:GetHostedZone", "route53:ListTagsForResource"],
            "Resource": "arn:aws:route53:::hostedzone/*",
        },
    ]


CI_DEPLOY_SERVICES = (
    "acm", "application-autoscaling", "autoscaling", "cloudwatch", "ec2", "ecr", "ecs",
    "elasticfilesystem", "elasticloadbalancing", "events", "kms", "logs", "route53", "s3",
    "sns", "sqs", "states", "wafv2", "backup",
)  # fmt: skip
"""Every AWS service the program declares resources in (besides IAM, scoped on its own)."""


def ci_deploy_statements(region: str, account: str) -> list[dict[str, Any]]:
    """What `pulumi up` and `pulumi destroy` of this stack need: the services the program
    declares resources in, in this account and Region only, and IAM only on this stack's roles.

    Pulumi auto-names every resource, so names are not known before the deploy: the deploy role
    is scoped to the account and Region (every ARN pattern names them), IAM to roles and
    instance profiles whose auto-generated names start with a component prefix of this program,
    and `iam:PassRole` to the services the program hands roles to. Route 53 and S3 ARNs carry
    no account or Region by design (Service Authorization Reference). It cannot touch IAM users,
    other roles, Organizations or billing.
    """
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"{account!r} is not an AWS account id")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ValueError(f"{region!r} is not an AWS Region code")
    regional = [f"arn:aws:{service}:{region}:{account}:*" for service in CI_DEPLOY_SERVICES]
    prefixes = ("inference-", "training-", "cluster-", "image-", "store-", "monitoring-", "ci-")
    roles = [f"arn:aws:iam::{account}:role/{p}*" for p in prefixes]
    return [
        {
            "Sid": "DeployStackServices",
            "Effect": "Allow",
            "Action": [f"{service}:*" for service in CI_DEPLOY_SERVICES],
            "Resource": [
                *regional,
                "arn:aws:route53:::hostedzone/*",
                "arn:aws:route53:::change/*",
                "arn:aws:s3:::*",
            ],
        },
        {
            # Documented exception: Describe/List/Get-account actions take no resource ARN.
            "Sid": "DescribeEverywhere",
            "Effect": "Allow",
            "Action": [
                "ec2:Describe*",
                "ecr:GetAuthorizationToken",
                "elasticloadbalancing:Describe*",
                "autoscaling:Describe*",
                "application-autoscaling:Describe*",
                "cloudwatch:Describe*",
                "logs:Describe*",
                "route53:List*",
                "acm:ListCertificates",
                "kms:ListAliases",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "states:ListStateMachines",
                "wafv2:List*",
                "ecs:Describe*",
                "ecs:List*",
                "ecs:RegisterTaskDefinition",
                "ecs:DeregisterTaskDefinition",
                "ecs:CreateCapacityProvider",
                "ecs:CreateCluster",
                "kms:CreateKey",
            ],
            "Resource": "*",
        },
        {
            "Sid": "StackRoles",
            "Effect": "Allow",
            "Action": [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:TagInstanceProfile",
            ],
            "Resource": [
                *roles,
                *(f"arn:aws:iam::{account}:instance-profile/{p}*" for p in prefixes),
            ],
        },
        {
            "Sid": "PassStackRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": roles,
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": [
                        "ecs-tasks.amazonaws.com",
                        "ec2.amazonaws.com",
                        "states.amazonaws.com",
                        "events.amazonaws.com",
                    ]
                }
            },
        },
        {
            # The service-linked roles ECS, Auto Scaling and ELB create on first use.
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": f"arn:aws:iam::{account}:role/aws-service-role/*",
        },
        {
            "Sid": "GithubOidcProvider",
            "Effect": "Allow",
            "Action": [
                "iam:GetOpenIDConnectProvider",
                "iam:CreateOpenIDConnectProvider",
                "iam:DeleteOpenIDConnectProvider",
                "iam:UpdateOpenIDConnectProviderThumbprint",
                "iam:TagOpenIDConnectProvider",
                "iam:AddClientIDToOpenIDConnectProvider",
            ],
            "Resource": f"arn:aws:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}",
        },
    ]


# --- inference: containers, ALB access logs, alarm topic, scaling, dashboard -------------------

API_CONTAINER = "api"
DASHBOARD_CONTAINER = "dashboard"
FORECASTER_CONTAINER = "forecaster"
API_PORT = 8080
API_INTERNAL_PORT = 8081
"""The api's `/metrics` and `/model` (the app's INTERNAL_PORT): reachable from the VPC's CIDR,
never through the load balancer, whose target group forwards API_PORT only."""
DASHBOARD_PORT = 8050
API_HEALTH_PATH = "/health"
"""200 while the process serves, model or not: the container health check and the load
balancer's. A task waiting for its first model stays in rotation and answers `/predict` with 503
and Retry-After; checking `/ready` instead would have ECS replace every task of a new stack (no
model can exist before the first training run) and fail its very first deployment."""
DASHBOARD_PATH = "/dashboard/"
STORE_WAIT_SECONDS = 60
"""How long a container waits at start for the EFS mount (the app's `STORE_WAIT_SECONDS`)."""
INFERENCE_START_PERIOD = 120
"""Container health-check grace: the store wait plus imports and the model load, which run before
the server listens (`app/serve.py`); also the service's load-balancer grace period."""
ALB_LOG_PREFIX = "alb"


def inference_containers(
    image: str,
    log_groups: Mapping[str, str],
    region: str,
    *,
    dashboard: bool,
    forecast_interval_seconds: int,
    log_level: str = "INFO",
    api_gpus: int = 0,
) -> list[dict[str, Any]]:
    """The inference task's container definitions: api, optional dashboard, forecaster.

    `api_gpus` (EC2 GPU capacity only) reserves GPUs for the api, the one container that predicts
    with the model; the dashboard and the forecaster (which calls the api) need none.

    `log_groups` maps each container name to its CloudWatch log group. The api's container health
    check probes `/health` (liveness), not `/ready`: with `/ready`, every task of a stack whose
    first model is not promoted yet, or whose promoted model fails to load, would be killed and
    replaced in a loop although it is healthy and keeps serving the last good model (see
    `API_HEALTH_PATH`). Only the api is essential: the dashboard and
    the forecaster are restarted in place when they exit (container restart policy), so a crash
    in either never costs serving capacity.
    """
    if forecast_interval_seconds < 1:
        raise ValueError(f"forecast interval {forecast_interval_seconds} must be at least 1 s")
    names = [API_CONTAINER, *([DASHBOARD_CONTAINER] if dashboard else []), FORECASTER_CONTAINER]
    missing = [n for n in names if not log_groups.get(n)]
    if missing:
        raise ValueError(f"no log group for container(s) {', '.join(missing)}")
    common = {"LOG_LEVEL": log_level, "STORE_WAIT_SECONDS": str(STORE_WAIT_SECONDS)}
    specs = [
        ContainerSpec(
            name=API_CONTAINER,
            image=image,
            command=["serve"],
            log_group=log_groups[API_CONTAINER],
            region=region,
            port=API_PORT,
            internal_port=API_INTERNAL_PORT,
            health_path=API_HEALTH_PATH,
            health_start_period=INFERENCE_START_PERIOD,
            environment={
                **common,
                "PORT": str(API_PORT),
                "INTERNAL_PORT": str(API_INTERNAL_PORT),
            },
            gpus=api_gpus,
        )
    ]
    if dashboard:
        specs.append(
            ContainerSpec(
                name=DASHBOARD_CONTAINER,
                image=image,
                command=["dashboard"],
                log_group=log_groups[DASHBOARD_CONTAINER],
                region=region,
                port=DASHBOARD_PORT,
                health_path=DASHBOARD_PATH,
                health_start_period=INFERENCE_START_PERIOD,
                environment={**common, "DASHBOARD_PORT": str(DASHBOARD_PORT)},
                essential=False,
            )
        )
    specs.append(
        ContainerSpec(
            name=FORECASTER_CONTAINER,
            image=image,
            command=["forecast"],
            log_group=log_groups[FORECASTER_CONTAINER],
            region=region,
            environment={**common, "FORECAST_INTERVAL_SECONDS": str(forecast_interval_seconds)},
            essential=False,
        )
    )
    return [container_definition(spec) for spec in specs]


def capacity_provider_strategy(
    on_demand_base: int, on_demand_weight: int, spot_weight: int
) -> list[dict[str, Any]]:
    """The service's capacity provider strategy (pulumi-aws input shape).

    FARGATE carries the base (tasks that always run on demand); a provider with weight 0 and no
    base would never get a task, so it is left out. ECS allows a base on one provider only and
    needs a positive weight somewhere.
    """
    if min(on_demand_base, on_demand_weight, spot_weight) < 0:
        raise ValueError("capacity base and weights must not be negative")
    if on_demand_weight == 0 and spot_weight == 0:
        raise ValueError("on_demand_weight and spot_weight cannot both be 0")
    strategy: list[dict[str, Any]] = []
    if on_demand_base or on_demand_weight:
        strategy.append(
            {"capacity_provider": "FARGATE", "base": on_demand_base, "weight": on_demand_weight}
        )
    if spot_weight:
        strategy.append({"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": spot_weight})
    return strategy


# ELB User Guide, "Enable access logs for your Application Load Balancer", step "Attach a policy
# to your S3 bucket": the Elastic Load Balancing account of each Region available before August
# 2022. Every Region launched since has no such account; the bucket policy names the log delivery
# service principal there instead.
ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584",
    "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993",
    "cn-northwest-1": "037604701340",
}
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def elb_log_delivery_principal(region: str) -> dict[str, str]:
    """Who writes ALB access logs in `region`: its ELB account, or the log delivery service."""
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ValueError(f"{region!r} is not an AWS Region code")
    account = ELB_ACCOUNTS.get(region)
    if account is None:
        return {"Service": ELB_LOG_DELIVERY_SERVICE}
    return {"AWS": f"arn:{_partition(region)}:iam::{account}:root"}


def alb_access_log_bucket_policy(
    bucket_arn: str, account_id: str, region: str, prefix: str = ALB_LOG_PREFIX
) -> dict[str, Any]:
    """Bucket policy letting Elastic Load Balancing write this account's ALB access logs.

    ELB User Guide, "Enable access logs for your Application Load Balancer": `s3:PutObject` on
    `bucket/prefix/AWSLogs/ACCOUNT/*` for the Region's ELB account (Regions available before
    August 2022) or for `logdelivery.elasticloadbalancing.amazonaws.com` (every newer Region);
    see `elb_log_delivery_principal`. Plus a deny of plain-HTTP access to the bucket.
    """
    if not bucket_arn.startswith("arn:aws") or ":s3:::" not in bucket_arn:
        raise ValueError(f"{bucket_arn!r} is not an S3 bucket ARN")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    if not prefix or "AWSLogs" in prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"log prefix {prefix!r}: non-empty, no AWSLogs, no leading/trailing /")
    return policy_document(
        [
            {
                "Sid": "ElbLogDelivery",
                "Effect": "Allow",
                "Principal": elb_log_delivery_principal(region),
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/{prefix}/AWSLogs/{account_id}/*",
            },
            deny_insecure_transport("s3:*", [bucket_arn, f"{bucket_arn}/*"]),
        ]
    )


def alarm_topic_key_policy(account_id: str) -> dict[str, Any]:
    """Key policy of the CMK encrypting the alarm topic.

    The account root statement is the KMS default: it lets IAM policies grant the key (the
    training state machine role publishes failures with `alarm_publisher_statements`) and keeps
    the key manageable. CloudWatch alarms publish as the `cloudwatch.amazonaws.com` service,
    which needs `kms:Decrypt` and `kms:GenerateDataKey*` in the key policy itself (SNS Developer
    Guide, "Encryption at rest": compatibility between event sources from AWS services and
    encrypted topics); `aws:SourceAccount` limits it to this account's alarms.
    """
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    # In a key policy, "Resource": "*" means this key (KMS Developer Guide, "Key policies").
    return policy_document(
        [
            {
                "Sid": "AccountAdministersAndDelegatesThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsEncryptNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ]
    )


def alarm_topic_policy(topic_arn: str, account_id: str) -> dict[str, Any]:
    """SNS topic policy: this account's CloudWatch alarms may publish; plain HTTP is refused.

    Principals of the account (the training state machine role) publish through their own IAM
    policies (`alarm_publisher_statements`), which suffice within one account.
    """
    if not topic_arn.startswith("arn:aws") or ":sns:" not in topic_arn:
        raise ValueError(f"{topic_arn!r} is not an SNS topic ARN")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    return policy_document(
        [
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
            deny_insecure_transport("sns:Publish", topic_arn),
        ]
    )


def alarm_publisher_statements(topic_arn: str, key_arn: str = "") -> list[dict[str, Any]]:
    """IAM statements for a role that publishes to the alarm topic.

    Publishing to a topic encrypted with a customer-managed key also needs
    `kms:GenerateDataKey*` and `kms:Decrypt` on that key (SNS Developer Guide, "Encryption at
    rest"); the key policy delegates to IAM. `key_arn` "" is an unencrypted topic.
    """
    if ":sns:" not in topic_arn or (key_arn and ":kms:" not in key_arn):
        raise ValueError(
            f"need an SNS topic ARN and a KMS key ARN or '', got {topic_arn}, {key_arn}"
        )
    statements: list[dict[str, Any]] = [
        {"Sid": "PublishAlarms", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn}
    ]
    if key_arn:
        statements.append(
            {
                "Sid": "EncryptAlarmMessages",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": key_arn,
            }
        )
    return statements


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch metric alarm of the inference service."""

    role: str
    """Stable suffix of the alarm's resource name."""
    description: str
    namespace: str
    metric_name: str
    scope: str
    """Which dimensions: `target_group` (LoadBalancer + TargetGroup ARN suffixes of the api) or
    `service` (ClusterName + ServiceName)."""
    comparison_operator: str
    threshold: float
    statistic: str | None = None
    extended_statistic: str | None = None
    period: int = 60
    evaluation_periods: int = 3
    datapoints_to_alarm: int = 2
    treat_missing_data: str = "notBreaching"
    deployment: bool = False
    """Watched by ECS during a deployment: in ALARM, the deployment fails."""

    def args(self) -> dict[str, Any]:
        """Keyword arguments for `aws.cloudwatch.MetricAlarm`, without dimensions and actions."""
        values: dict[str, Any] = {
            "alarm_description": self.description,
            "namespace": self.namespace,
            "metric_name": self.metric_name,
            "comparison_operator": self.comparison_operator,
            "threshold": self.threshold,
            "period": self.period,
            "evaluation_periods": self.evaluation_periods,
            "datapoints_to_alarm": self.datapoints_to_alarm,
            "treat_missing_data": self.treat_missing_data,
        }
        if self.statistic:
            values["statistic"] = self.statistic
        if self.extended_statistic:
            values["extended_statistic"] = self.extended_statistic
        return values


ALARM_SCOPES = ("target_group", "service")
P99_LATENCY_SECONDS = 1.0
CPU_HIGH_PERCENT = 90
TARGET_5XX_PER_MINUTE = 5


def inference_alarms(min_tasks: int, container_insights: bool = True) -> list[AlarmSpec]:
    """The service's alarms: target 5xx, unhealthy hosts, p99 latency, CPU, tasks below min.

    The 5xx and unhealthy-host alarms double as deployment alarms; the load balancer's health
    check is `API_HEALTH_PATH`, so a task waiting for its first model is a healthy host and a new
    stack's first deployment can succeed. The tasks-below-min alarm reads Container Insights'
    RunningTaskCount, so it exists only with Container Insights and when `min_tasks > 0` (pass
    the lowest minimum any schedule sets, so a scheduled scale-to-zero does not page); missing
    data there means no task reports at all, so it breaches.
    """
    if min_tasks < 0:
        raise ValueError(f"min_tasks {min_tasks} must not be negative")
    alarms = [
        AlarmSpec(
            role="target-5xx",
            description=f"api targets answered over {TARGET_5XX_PER_MINUTE} 5xx a minute",
            namespace="AWS/ApplicationELB",
            metric_name="HTTPCode_Target_5XX_Count",
            scope="target_group",
            statistic="Sum",
            comparison_operator="GreaterThanThreshold",
            threshold=TARGET_5XX_PER_MINUTE,
            deployment=True,
        ),
        AlarmSpec(
            role="unhealthy-hosts",
            description=f"an api target fails the load balancer's {API_HEALTH_PATH} check",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            scope="target_group",
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            deployment=True,
        ),
        AlarmSpec(
            role="p99-latency",
            description=f"p99 target response time above {P99_LATENCY_SECONDS:g} s",
            namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime",
            scope="target_group",
            extended_statistic="p99",
            comparison_operator="GreaterThanThreshold",
            threshold=P99_LATENCY_SECONDS,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        ),
        AlarmSpec(
            role="cpu-high",
            description=f"service CPU above {CPU_HIGH_PERCENT}%: scaling is not keeping up",
            namespace="AWS/ECS",
            metric_name="CPUUtilization",
            scope="service",
            statistic="Average",
            comparison_operator="GreaterThanThreshold",
            threshold=CPU_HIGH_PERCENT,
            evaluation_periods=5,
            datapoints_to_alarm=5,
        ),
    ]
    if min_tasks > 0 and container_insights:
        alarms.append(
            AlarmSpec(
                role="tasks-below-min",
                description=f"fewer than {min_tasks} running tasks",
                namespace="ECS/ContainerInsights",
                metric_name="RunningTaskCount",
                scope="service",
                statistic="Minimum",
                comparison_operator="LessThanThreshold",
                threshold=min_tasks,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                treat_missing_data="breaching",
            )
        )
    return alarms


def inference_dashboard(
    region: str,
    load_balancer: str,
    target_group: str,
    cluster_name: str,
    service_name: str,
) -> dict[str, Any]:
    """CloudWatch dashboard body: requests, latency p50/p99, 5xx, CPU/memory, task count."""
    if not load_balancer.startswith("app/") or not target_group.startswith("targetgroup/"):
        raise ValueError("load_balancer and target_group must be ALB and target group ARN suffixes")
    alb = ["LoadBalancer", load_balancer, "TargetGroup", target_group]
    svc = ["ClusterName", cluster_name, "ServiceName", service_name]

    def widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "view": "timeSeries",
                "stat": stat,
                "period": 60,
                "metrics": metrics,
            },
        }

    elb = "AWS/ApplicationELB"
    return {
        "widgets": [
            widget("Requests", [[elb, "RequestCount", *alb]], 0, 0, "Sum"),
            widget(
                "Latency p50 / p99 (s)",
                [
                    [elb, "TargetResponseTime", *alb, {"stat": "p50", "label": "p50"}],
                    [elb, "TargetResponseTime", *alb, {"stat": "p99", "label": "p99"}],
                ],
                12,
                0,
                "p99",
            ),
            widget(
                "5xx",
                [
                    [elb, "HTTPCode_Target_5XX_Count", *alb, {"label": "targets"}],
                    [elb, "HTTPCode_ELB_5XX_Count", *alb[:2], {"label": "ALB"}],
                ],
                0,
                6,
                "Sum",
            ),
            widget(
                "CPU / memory (%)",
                [
                    ["AWS/ECS", "CPUUtilization", *svc, {"label": "CPU"}],
                    ["AWS/ECS", "MemoryUtilization", *svc, {"label": "memory"}],
                ],
                12,
                6,
                "Average",
            ),
            widget(
                "Tasks",
                [
                    ["ECS/ContainerInsights", "RunningTaskCount", *svc, {"label": "running"}],
                    ["ECS/ContainerInsights", "DesiredTaskCount", *svc, {"label": "desired"}],
                    [elb, "HealthyHostCount", *alb, {"label": "healthy targets"}],
                ],
                0,
                12,
                "Average",
            ),
        ]
    }


# --- inference on GPU EC2: placement, instance alarms and widgets --------------------------------

SPREAD_ACROSS_AZS = [
    {"type": "spread", "field": "attribute:ecs.availability-zone"},
    {"type": "spread", "field": "instanceId"},
]
"""Task placement for the EC2 serving tasks (pulumi-aws input shape): across AZs first (a
service's default), then across the instances within each AZ: AWS's own example (ECS Developer
Guide, "Example Amazon ECS task placement strategies")."""
GPU_ALARM_SCOPES = ("auto_scaling_group", "capacity_provider")
CAPACITY_SHORT_MINUTES = 15


def gpu_capacity_alarms(min_instances: int) -> list[AlarmSpec]:
    """Alarms on the serving GPU instances, beside the service's own.

    - `gpu-capacity-short`: the capacity provider's `CapacityProviderReservation` (namespace
      `AWS/ECS/ManagedScaling`, dimensions ClusterName + CapacityProviderName) stays above 100:
      tasks wait for instances the group does not add (at `max_instances`, or no Spot or
      on-demand capacity for any listed type) (ECS Developer Guide, "Amazon ECS cluster auto
      scaling" / managed scaling metrics);
    - `gpu-status-check`: an instance of the group fails its EC2 status checks (`AWS/EC2`
      StatusCheckFailed by AutoScalingGroupName, 5-minute basic monitoring);
    - `gpu-instances-below-min` (only with a warm minimum): fewer in-service instances than
      `min_instances` for 10 minutes (`AWS/AutoScaling` GroupInServiceInstances; the group
      enables its metrics); missing data means the group reports nothing, so it breaches.

    Scope `auto_scaling_group` takes {"AutoScalingGroupName"}, `capacity_provider` takes
    {"ClusterName", "CapacityProviderName"}.
    """
    if min_instances < 0:
        raise ValueError(f"min_instances {min_instances} must not be negative")
    alarms = [
        AlarmSpec(
            role="gpu-capacity-short",
            description=(
                f"serving tasks waited over {CAPACITY_SHORT_MINUTES} min for GPU instances the "
                "group does not add (max_instances reached, or no capacity for its types)"
            ),
            namespace="AWS/ECS/ManagedScaling",
            metric_name="CapacityProviderReservation",
            scope="capacity_provider",
            statistic="Minimum",
            comparison_operator="GreaterThanThreshold",
            threshold=100,
            evaluation_periods=CAPACITY_SHORT_MINUTES,
            datapoints_to_alarm=CAPACITY_SHORT_MINUTES,
        ),
        AlarmSpec(
            role="gpu-status-check",
            description="a serving GPU instance fails its EC2 status checks",
            namespace="AWS/EC2",
            metric_name="StatusCheckFailed",
            scope="auto_scaling_group",
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            period=300,
            evaluation_periods=2,
            datapoints_to_alarm=2,
        ),
    ]
    if min_instances > 0:
        alarms.append(
            AlarmSpec(
                role="gpu-instances-below-min",
                description=f"fewer than {min_instances} serving GPU instances in service",
                namespace="AWS/AutoScaling",
                metric_name="GroupInServiceInstances",
                scope="auto_scaling_group",
                statistic="Minimum",
                comparison_operator="LessThanThreshold",
                threshold=min_instances,
                evaluation_periods=10,
                datapoints_to_alarm=10,
                treat_missing_data="breaching",
            )
        )
    return alarms


def gpu_capacity_widgets(
    region: str, group_name: str, cluster_name: str, provider_name: str, y: int
) -> list[dict[str, Any]]:
    """Dashboard widgets for the serving GPU instances, placed from row `y` down: instances in
    service / desired / pending, the capacity provider's reservation, instance CPU."""
    if not group_name or not provider_name:
        raise ValueError("the serving GPU widgets need the group and capacity provider names")
    group = ["AutoScalingGroupName", group_name]
    provider = ["ClusterName", cluster_name, "CapacityProviderName", provider_name]

    def widget(title: str, metrics: list[list[Any]], x: int, stat: str) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 8,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "view": "timeSeries",
                "stat": stat,
                "period": 60,
                "metrics": metrics,
            },
        }

    scaling = "AWS/AutoScaling"
    return [
        widget(
            "GPU instances",
            [
                [scaling, "GroupInServiceInstances", *group, {"label": "in service"}],
                [scaling, "GroupDesiredCapacity", *group, {"label": "desired"}],
                [scaling, "GroupPendingInstances", *group, {"label": "pending"}],
            ],
            0,
            "Average",
        ),
        widget(
            "GPU capacity reservation (%)",
            [["AWS/ECS/ManagedScaling", "CapacityProviderReservation", *provider]],
            8,
            "Average",
        ),
        widget("GPU instance CPU (%)", [["AWS/EC2", "CPUUtilization", *group]], 16, "Average"),
    ]


# --- training: ASL, event patterns and inputs, IAM for Step Functions and EventBridge, GPU hosts -

TRAINING_STEPS = ("validate", "train", "gate")
"""The pipeline's ECS tasks, in order; each is its own task definition family and container."""
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
ECS_SYNC_RESOURCE = "arn:aws:states:::ecs:runTask.sync"
SNS_PUBLISH_RESOURCE = "arn:aws:states:::sns:publish"
ECS_EVENTS_RULE = "StepFunctionsGetEventsForECSTaskRule"
"""The managed rule `.sync` ECS integrations create to learn when a task stops (Step Functions
Developer Guide, "IAM policies for Amazon ECS/AWS Fargate")."""
DEFAULT_TRIGGER = {"reason": "manual", "image_digest": "deployed"}
"""Merged under every execution input: a console or CLI start without input still runs."""
IMAGE_CHECK_COMMAND = "check-image"
"""`python -m app check-image`: exit 0 once the task runs the trigger's image"""
IMAGE_CHECK_RETRY = {"interval": 30, "attempts": 8, "backoff": 1.5}
"""AwaitImage retries: 30 s growing by 1.5 over 8 attempts, at most 25 minutes of waits (full
jitter halves that on average) plus each attempt's task start, for `pulumi up` to register the
task definitions of a pushed image (app/provenance.py)."""
STEP_TIMEOUT_SECONDS = {"validate": 1800, "train": 4 * 3600, "gate": 1800}
"""Per-step ceiling, including capacity provisioning (a GPU instance takes minutes to join)."""
DRIFT_SOURCE = "mlops.monitoring"
DRIFT_DETAIL_TYPE = "DataDriftDetected"

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

    @property
    def image_steps(self) -> tuple[str, ...]:
        """The steps running the image whose push triggers a run (`trigger.image_digest`)."""
        return ("train",) if self.gpu_train else TRAINING_STEPS


STEP_ENVIRONMENT = {"LOG_LEVEL": "INFO", "STORE_WAIT_SECONDS": str(STORE_WAIT_SECONDS)}
"""Static settings of every step (app/settings.py); per-run values come as RunTask overrides."""


def training_container(
    step: str,
    image: str,
    log_group: str,
    region: str,
    *,
    promote_margin: float = 0.0,
    gpus: int = 0,
) -> dict[str, Any]:
    """The one container of a pipeline step's task definition: `python -m app <step>`.

    The image's ENTRYPOINT is `python -m app`, so the command is the step. Only `train` may
    reserve GPUs, and only on EC2 (the caller checks the capacity).
    """
    if step not in TRAINING_STEPS:
        raise ValueError(f"step {step!r}: use one of {', '.join(TRAINING_STEPS)}")
    if gpus and step != "train":
        raise ValueError(f"{step} needs no GPU; only train reserves them")
    if not 0.0 <= promote_margin < 1.0:
        raise ValueError(f"promote_margin {promote_margin!r} must be at least 0 and below 1")
    environment = dict(STEP_ENVIRONMENT)
    if step == "gate":
        environment["PROMOTE_MARGIN"] = str(promote_margin)
    return container_definition(
        ContainerSpec(
            name=step,
            image=image,
            command=[step],
            log_group=log_group,
            region=region,
            environment=environment,
            gpus=gpus,
        )
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
            {"Name": "RUN_ID", "Value.$": "$.run.id"},
            {"Name": "RUN_DATE", "Value.$": "$.run.date"},
            {"Name": "TRIGGER", "Value.$": "$.trigger.reason"},
        ],
    }
    if step in spec.image_steps:
        # The task compares it with the image it runs (app/provenance.py) and fails when they
        # differ: RunTask overrides cannot change a container's image (ECS API
        # "ContainerOverride" has no image field), so a run never records a digest it did not
        # run.
        container_override["Environment"].append(
            {"Name": "TRIGGER_IMAGE_DIGEST", "Value.$": "$.trigger.image_digest"}
        )
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
            "Overrides": {"ContainerOverrides": [container_override]},
        },
        # Discard the task description: the next step gets the same input, the trigger.
        "ResultPath": None,
        "TimeoutSeconds": STEP_TIMEOUT_SECONDS[step],
        "Retry": [dict(r) for r in retry],
        "Catch": [dict(c) for c in catch],
        "Next": next_state,
    }


def training_state_machine(spec: PipelineSpec) -> dict[str, Any]:
    """The training pipeline in Amazon States Language (JSONPath).

    Prepare (defaults under the trigger) → [AwaitImage after an image push] → Validate →
    Train (→ TrainOnDemand when a Spot attempt fails) → Gate → Succeeded. Any step that fails
    for good goes to NotifyFailure (SNS) and then Failed. AwaitImage runs the `check-image`
    command of a step running the pushed image, retried until the deployed task definitions run the
    pushed digest: the push event fires while `pulumi up` is still registering them.
    """
    if set(spec.families) != set(TRAINING_STEPS):
        raise ValueError(f"families must name exactly the steps {TRAINING_STEPS}")
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
            "Next": "PushedImage",
        },
        "PushedImage": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.trigger.reason",
                    "StringEquals": "image-push",
                    "Next": "AwaitImage",
                }
            ],
            "Default": "Validate",
        },
        # On the step that runs the pushed flavour: validate (cpu stacks, small and on demand) or
        # train (gpu stacks; the instance it starts serves the Train step right after).
        "AwaitImage": _run_task(
            spec,
            "train" if spec.gpu_train else "validate",
            spec.train_capacity if spec.gpu_train else spec.step_capacity,
            "Validate",
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
            command=[IMAGE_CHECK_COMMAND],
        ),
        "Validate": _run_task(spec, "validate", spec.step_capacity, "Train", [ecs_retry], notify),
    }
    if spot:
        # Spot: capacity refusals (`ECS.AmazonECSException`) are retried with backoff first;
        # still refused, or interrupted (`States.TaskFailed`), the run falls back to on-demand,
        # once.
        states["Train"] = _run_task(
            spec,
            "train",
            FARGATE_SPOT,
            "Gate",
            [ecs_retry],
            [
                {
                    "ErrorEquals": [*ECS_ERRORS, TASK_FAILED],
                    "ResultPath": "$.spot_error",
                    "Next": "TrainOnDemand",
                },
                *notify,
            ],
        )
        states["TrainOnDemand"] = _run_task(spec, "train", FARGATE, "Gate", [ecs_retry], notify)
    else:
        # On-demand Fargate or the GPU provider: a stopped task (host drained, container
        # killed) resumes from its checkpoint once.
        states["Train"] = _run_task(
            spec,
            "train",
            spec.train_capacity,
            "Gate",
            [ecs_retry, _retry([TASK_FAILED], interval=30, attempts=1)],
            notify,
        )
    states["Gate"] = _run_task(spec, "gate", spec.step_capacity, "Succeeded", [ecs_retry], notify)
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


def task_definition_arn_patterns(region: str, account: str, family: str) -> list[str]:
    """Every revision of one task definition family, and the family itself.

    RunTask is given the family (latest ACTIVE revision); IAM evaluates the revision ARN, so
    `family:*` is what grants it; the bare family ARN covers the request as written.
    """
    base = f"arn:aws:ecs:{region}:{account}:task-definition/{family}"
    return [base, f"{base}:*"]


def state_machine_role_statements(
    *,
    region: str,
    account: str,
    cluster_name: str,
    families: Sequence[str],
    pass_role_arns: Sequence[str],
    topic_arn: str,
    topic_key_arn: str,
) -> list[dict[str, Any]]:
    """The state machine role's permissions: run these tasks, follow them, report, log, trace.

    Sources: Step Functions Developer Guide, "IAM policies for Amazon ECS/AWS Fargate" (RunTask on
    the task definitions; StopTask/DescribeTasks; the events actions on the managed rule), "IAM
    policies for Amazon SNS", "Logging using CloudWatch Logs" and "AWS X-Ray and Step Functions".
    The guide grants StopTask/DescribeTasks on "*" because task ids are unknown in advance; the
    Service Authorization Reference lets both take a `task` resource
    (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`), so they are limited to this cluster's tasks.
    """
    if not families or not pass_role_arns:
        raise ValueError("the state machine role needs task definition families and roles to pass")
    for role in pass_role_arns:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")
    task_definitions = [
        arn for family in families for arn in task_definition_arn_patterns(region, account, family)
    ]
    return [
        {
            "Sid": "RunPipelineTasks",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": task_definitions,
            "Condition": {
                "ArnEquals": {
                    "ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster_name}"
                }
            },
        },
        {
            "Sid": "FollowPipelineTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": f"arn:aws:ecs:{region}:{account}:task/{cluster_name}/*",
        },
        {
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted(set(pass_role_arns)),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "SyncEcsTaskEvents",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": f"arn:aws:events:{region}:{account}:rule/{ECS_EVENTS_RULE}",
        },
        # The failure topic is the alarm topic: Publish, plus its key when it has a CMK.
        *alarm_publisher_statements(topic_arn, topic_key_arn),
        {
            # Documented exception: the CloudWatch Logs vended-log delivery actions take no
            # resource ARN, Resource must be "*" (Step Functions Developer Guide, "Logging using
            # CloudWatch Logs": IAM policy for logging to CloudWatch Logs).
            "Sid": "DeliverExecutionLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ],
            "Resource": "*",
        },
        {
            # Documented exception: X-Ray trace and sampling actions take no resource ARN
            # (Step Functions Developer Guide, "AWS X-Ray and Step Functions": IAM policy).
            "Sid": "TraceExecutions",
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            "Resource": "*",
        },
    ]


STAR_RESOURCE_SIDS = (
    "DeliverExecutionLogs",
    "TraceExecutions",
    "PullImagesToken",
    "ProgramLookups",
    "DescribeEverywhere",
)
"""Statements AWS documents as needing `Resource: "*"`; every other statement names its ARNs."""


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


def execution_role_statements(
    repository_arn: str, log_group_arns: Sequence[str]
) -> list[dict[str, Any]]:
    """A task execution role: pull this repository's images and write these log groups.

    Narrower than the managed AmazonECSTaskExecutionRolePolicy (ECR and Logs on "*"); the
    actions are the ones that policy grants for image pulls and awslogs (ECS Developer Guide,
    "Amazon ECS task execution IAM role"). The repository uses the AWS-managed `aws/ecr` key,
    which ECR uses through its own grants, so pulling needs no KMS permission (ECR User Guide,
    "Encryption at rest").
    """
    if ":ecr:" not in repository_arn or ":repository/" not in repository_arn:
        raise ValueError(f"{repository_arn!r} is not an ECR repository ARN")
    if not log_group_arns:
        raise ValueError("the execution role needs at least one log group ARN")
    for arn in log_group_arns:
        if ":logs:" not in arn or ":log-group:" not in arn:
            raise ValueError(f"{arn!r} is not a CloudWatch Logs log group ARN")
    streams = sorted({f"{arn.removesuffix(':*')}:log-stream:*" for arn in log_group_arns})
    return [
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
            "Resource": repository_arn,
        },
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": streams[0] if len(streams) == 1 else streams,
        },
    ]


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


def gpu_user_data(cluster_name: str) -> str:
    """User data for GPU container instances: join the cluster with GPU support on.

    ECS agent configuration (ECS Developer Guide, "Amazon ECS container agent configuration"):
    - `ECS_ENABLE_GPU_SUPPORT`: advertise the GPUs so tasks can reserve them;
    - `ECS_ENABLE_SPOT_INSTANCE_DRAINING`: on a Spot two-minute interruption notice the agent
      sets the instance DRAINING, so ECS starts replacement tasks elsewhere and deregisters this
      one's targets (the serving group runs Spot above its on-demand base);
    - `ECS_IMAGE_PULL_BEHAVIOR=prefer-cached`: reuse the multi-GB CUDA image already on the host
      (tasks reference digests, so a cached image is the right one);
    - `ECS_AWSVPC_BLOCK_IMDS`: awsvpc tasks cannot reach the instance metadata service, so they
      never see the instance role's credentials.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", cluster_name):
        raise ValueError(f"{cluster_name!r} is not an ECS cluster name")
    settings = {
        "ECS_CLUSTER": cluster_name,
        "ECS_ENABLE_GPU_SUPPORT": "true",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING": "true",
        "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
        "ECS_AWSVPC_BLOCK_IMDS": "true",
    }
    lines = "\n".join(f"{key}={value}" for key, value in settings.items())
    return f"#!/bin/bash\ncat >> /etc/ecs/ecs.config <<'EOF'\n{lines}\nEOF\n"


# --- monitoring: the scheduled ingest task and what it may do ----------------------------------

INGEST_CONTAINER = "ingest"
INGEST_CPU = 256
INGEST_MEMORY = 1024
"""Fargate size of the ingest task (MiB): pandas, scipy and one model, a few thousand rows."""
DEFAULT_EVENT_BUS = "default"


@dataclass(frozen=True)
class MonitorThresholds:
    """The monitor's thresholds (app/monitor.py `MonitorSettings`, as `MONITOR_*` variables)."""

    error_tolerance: float = 2.5
    drift_p_value: float = 0.001
    drift_min_shift_ppm: float = 2.0
    cooldown_weeks: int = 8


def ingest_container(
    image: str,
    log_group: str,
    region: str,
    *,
    source: str,
    thresholds: MonitorThresholds,
) -> dict[str, Any]:
    """The ingest task's one container: `python -m app ingest --monitor`.

    It appends the new weeks of `source`, then runs the monitor, which publishes
    `DataDriftDetected` to the default bus (`MONITOR_ON_DRIFT=eventbridge`). `AWS_REGION` is set
    explicitly: botocore resolves the EventBridge endpoint from it.
    """
    if not re.fullmatch(r"https://[^\s]+", source):
        raise ValueError(f"ingest source {source!r} must be an https:// URL")
    environment = {
        **STEP_ENVIRONMENT,
        "INGEST_SOURCE": source,
        "MONITOR_ON_DRIFT": "eventbridge",
        "EVENT_BUS_NAME": DEFAULT_EVENT_BUS,
        "AWS_REGION": region,
        "MONITOR_ERROR_TOLERANCE": str(thresholds.error_tolerance),
        "MONITOR_DRIFT_P_VALUE": str(thresholds.drift_p_value),
        "MONITOR_DRIFT_MIN_SHIFT_PPM": str(thresholds.drift_min_shift_ppm),
        "MONITOR_COOLDOWN_WEEKS": str(thresholds.cooldown_weeks),
    }
    return container_definition(
        ContainerSpec(
            name=INGEST_CONTAINER,
            image=image,
            command=["ingest", "--monitor"],
            log_group=log_group,
            region=region,
            environment=environment,
        )
    )


def default_event_bus_arn(region: str, account: str) -> str:
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"{account!r} is not an AWS account id")
    return f"arn:aws:events:{region}:{account}:event-bus/{DEFAULT_EVENT_BUS}"


def publish_drift_statements(event_bus_arn: str) -> list[dict[str, Any]]:
    """The ingest task's role: put `DataDriftDetected` events from `mlops.monitoring` on this bus.

    PutEvents takes the event bus as its resource, and the `events:source` and
    `events:detail-type` condition keys narrow it to this one kind of event (EventBridge User
    Guide, "Using IAM policy conditions in Amazon EventBridge"; Service Authorization Reference,
    Amazon EventBridge).
    """
    if not re.fullmatch(
        r"arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/default", event_bus_arn
    ):
        raise ValueError(f"{event_bus_arn!r} is not a default event bus ARN")
    return [
        {
            "Sid": "PublishDriftEvents",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": event_bus_arn,
            "Condition": {
                "StringEquals": {
                    "events:source": DRIFT_SOURCE,
                    "events:detail-type": DRIFT_DETAIL_TYPE,
                }
            },
        }
    ]


def run_scheduled_task_statements(
    *,
    region: str,
    account: str,
    cluster_name: str,
    family: str,
    pass_role_arns: Sequence[str],
) -> list[dict[str, Any]]:
    """EventBridge's role for the ingest schedule: run this task family on this cluster.

    The ECS target needs `ecs:RunTask` and `iam:PassRole` for the task's roles (EventBridge User
    Guide, "Amazon ECS targets": the managed `AmazonEC2ContainerServiceEventsRole` grants both on
    "*"; here they name the family, the cluster and the two roles).
    """
    for role in pass_role_arns:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")
    return [
        {
            "Sid": "RunIngestTask",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": task_definition_arn_patterns(region, account, family),
            "Condition": {
                "ArnEquals": {
                    "ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster_name}"
                }
            },
        },
        {
            "Sid": "PassIngestTaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted(set(pass_role_arns)),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
    ]
