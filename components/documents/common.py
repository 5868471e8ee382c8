"""Builders and facts every section shares: IAM documents, the container definition, names
that cross sections (the drift event, the store wait, the default trigger)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from components.settings.secrets import SecretRef
from components.settings.workload import SecuritySpec
from mlops_contract import STORE_MOUNT, Env
from policy.checks import (  # noqa: F401
    LABEL_HEALTH,
    LABEL_PROMOTION,
    LABEL_ROOT_OPT_OUT,
    LABEL_STAGING,
    looks_secret,
)

IAM_VERSION = "2012-10-17"

APP_UID = 10001
"""The default non-root user and group of a workload (`workload.security.user`; the EFS access
point)."""
STORE_VOLUME = "store"
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/tmp"
FARGATE_MAX_STOP_TIMEOUT = 120
"""Seconds. ECS caps `stopTimeout` at 120 on Fargate; the Fargate Spot warning is also 2 min."""

_DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


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


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a task definition; see `container_definition`."""

    name: str
    image: Any
    """A digest reference `repo@sha256:...`, never a mutable tag (a `pulumi.Input[str]` until the
    task block renders the definition)."""
    command: Sequence[str]
    log_group: str = ""
    """Filled by the task block (components/task_block.py): the log group it made for this
    container."""
    region: str = ""
    port: int | None = None
    internal_port: int | None = None
    """A second port, for callers inside the VPC only: no target group forwards to it."""
    health_command: Sequence[str] | None = None
    """The ECS container health check (`CMD ...`/`CMD-SHELL ...`), from the workload: the
    platform never assumes a program (python, curl) in the image."""
    health_start_period: int = 60
    """Seconds of failed checks ignored at start: covers the EFS wait and the model load."""
    environment: Mapping[str, str] = field(default_factory=dict)
    essential: bool = True
    """False for a sidecar whose exit must not stop the task (restarted in place instead)."""
    cpu: int = 0
    memory: int | None = None
    gpus: int = 0
    stop_timeout: int = FARGATE_MAX_STOP_TIMEOUT
    user: str = f"{APP_UID}:{APP_UID}"
    read_only_root: bool = True
    store: bool = True
    """The shared store mounted at /mnt/store, with STORE_DIR set."""
    store_read_only: bool = False
    """The store mounted read-only (a container that only reads it, as stage-serving)."""
    mounts: Mapping[str, str] = field(default_factory=dict)
    """More task volumes: volume name -> container path (e.g. the /opt/ml task volume)."""
    depends_on: Sequence[tuple[str, str]] = ()
    """(container, condition) pairs: START, COMPLETE, SUCCESS or HEALTHY (ECS `dependsOn`)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Docker labels; the policy pack reads `LABEL_*` (policy/checks.py)."""
    restart: bool = True
    """A non-essential container restarted in place when it exits; False for one that runs
    once (a staging container, a train step beside its collector)."""
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    """Environment name -> the secret ECS injects at start (`secrets[].valueFrom`); the task
    block lets the execution role read exactly these."""


def container_definition(spec: ContainerSpec) -> dict[str, Any]:
    """An ECS container definition (ECS API camelCase names), hardened the same way everywhere.

    The workload's user (non-root 10001 by default), read-only root filesystem (unless the
    workload opts out) with a writable scratch volume at /tmp, the shared store at /mnt/store
    where the container uses it, awslogs, an init process to reap children and forward signals,
    and a stop timeout that lets a task drain. Integers stay integers: inside a container
    definition `cpu` and `memory` are numbers (ECS RegisterTaskDefinition API).
    """
    if not _CONTAINER_NAME.fullmatch(spec.name):
        raise ValueError(f"container name {spec.name!r}: use letters, digits, '-' and '_'")
    if not _DIGEST_REF.fullmatch(spec.image):
        raise ValueError(f"container {spec.name}: image {spec.image!r} is not a repo@sha256 ref")
    if not spec.command:
        raise ValueError(f"container {spec.name}: command is empty")
    if not spec.log_group or not spec.region:
        raise ValueError(f"container {spec.name}: no log group or region to log to")
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
        "user": spec.user,
        "readonlyRootFilesystem": spec.read_only_root,
        "privileged": False,
        "linuxParameters": {"initProcessEnabled": True},
        "mountPoints": [
            *(
                [
                    {
                        "sourceVolume": STORE_VOLUME,
                        "containerPath": STORE_MOUNT,
                        "readOnly": spec.store_read_only,
                    }
                ]
                if spec.store
                else []
            ),
            {"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_MOUNT, "readOnly": False},
            *(
                {"sourceVolume": volume, "containerPath": path, "readOnly": False}
                for volume, path in spec.mounts.items()
            ),
        ],
        "environment": [
            {"name": key, "value": value}
            for key, value in sorted(
                {**spec.environment, **({Env.STORE_DIR: STORE_MOUNT} if spec.store else {})}.items()
            )
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
    if not spec.essential and spec.restart:
        # A sidecar that exits is restarted in place instead of replacing the whole task (ECS
        # "container restart policies"; restartAttemptPeriod is 60..1800 s).
        definition["restartPolicy"] = {"enabled": True, "restartAttemptPeriod": 60}
    if spec.secrets:
        clash = sorted(set(spec.secrets) & set(spec.environment))
        if clash:
            raise ValueError(
                f"container {spec.name}: {', '.join(clash)} in environment and secrets"
            )
        # ECS injects each at container start from Secrets Manager or SSM (ECS Developer Guide,
        # "Pass sensitive data to an Amazon ECS container"); the execution role reads them.
        definition["secrets"] = [
            {"name": name, "valueFrom": ref.value_from}
            for name, ref in sorted(spec.secrets.items())
        ]
    if spec.labels:
        definition["dockerLabels"] = dict(spec.labels)
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
    if spec.depends_on:
        conditions = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
        for _container, condition in spec.depends_on:
            if condition not in conditions:
                raise ValueError(f"container {spec.name}: dependsOn condition {condition!r}")
        definition["dependsOn"] = [
            {"containerName": container, "condition": condition}
            for container, condition in spec.depends_on
        ]
    if spec.health_command is not None:
        if len(spec.health_command) < 2 or spec.health_command[0] not in ("CMD", "CMD-SHELL"):
            raise ValueError(f"container {spec.name}: a health check is [CMD|CMD-SHELL, ...]")
        definition["healthCheck"] = {
            "command": list(spec.health_command),
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": spec.health_start_period,
        }
    if spec.gpus:
        definition["resourceRequirements"] = [{"type": "GPU", "value": str(spec.gpus)}]
    return definition


def render_containers(
    specs: Sequence[ContainerSpec], region: str, log_groups: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A task definition's `containerDefinitions`: each container logging to its group in
    `log_groups` (container name -> log group name) in `region`, through `container_definition`."""
    missing = [spec.name for spec in specs if not log_groups.get(spec.name)]
    if missing:
        raise ValueError(f"no log group for container(s) {', '.join(missing)}")
    return [
        container_definition(replace(spec, log_group=log_groups[spec.name], region=region))
        for spec in specs
    ]


def scratch_volume() -> dict[str, Any]:
    """Task-level volume without a host path: task storage, writable under a read-only root.

    In pulumi-aws Python input shape (`aws.ecs.TaskDefinitionVolumeArgs` as a dict).
    """
    return {"name": SCRATCH_VOLUME}


def workload_labels(run_as_root: bool, health_by_load_balancer: bool = False) -> dict[str, str]:
    return {
        **({LABEL_ROOT_OPT_OUT: "true"} if run_as_root else {}),
        **({LABEL_HEALTH: "load-balancer"} if health_by_load_balancer else {}),
    }


class WorkloadSection(Protocol):
    """What every part of `mlops:workload` that becomes a container declares (training, the
    steps, serving, a sidecar, the job): its command, plain environment and secrets."""

    @property
    def command(self) -> Sequence[str]: ...

    @property
    def environment(self) -> Mapping[str, str]: ...

    @property
    def secrets(self) -> Mapping[str, SecretRef]: ...


def workload_container(
    name: str,
    image: Any,
    section: WorkloadSection,
    *,
    security: SecuritySpec,
    store: bool,
    platform_environment: Mapping[str, str] | None = None,
    health_by_load_balancer: bool = False,
    **extra: Any,
) -> ContainerSpec:
    """A container running the workload's own image and `section` of its config: its command,
    its environment over the platform's (`platform_environment`), its secrets; as the workload's
    user and root file system (`workload.security`), the store mounted only where the contract
    gives it one (`store`), labelled for the policy pack; `extra` is the rest of its
    `ContainerSpec` (ports, GPUs, mounts...)."""
    return ContainerSpec(
        name=name,
        image=image,
        command=list(section.command),
        environment={**(platform_environment or {}), **section.environment},
        secrets=dict(section.secrets),
        user=security.container_user,
        read_only_root=security.read_only_root,
        store=store,
        labels=workload_labels(security.run_as_root, health_by_load_balancer),
        **extra,
    )


STORE_WAIT_SECONDS = 60
"""How long a container waits at start for the EFS mount (the app's `STORE_WAIT_SECONDS`)."""
DEFAULT_TRIGGER = {"reason": "manual", "image_digest": "deployed"}
"""Merged under every execution input: a console or CLI start without input still runs."""
DRIFT_SOURCE = "mlops.monitoring"
DRIFT_DETAIL_TYPE = "DataDriftDetected"
STEP_ENVIRONMENT = {Env.LOG_LEVEL: "INFO", Env.STORE_WAIT_SECONDS: str(STORE_WAIT_SECONDS)}
"""Static settings of every step (app/settings.py); per-run values come as RunTask overrides."""


def task_definition_arn_patterns(region: str, account: str, family: str) -> list[str]:
    """Every revision of one task definition family, and the family itself.

    RunTask is given the family (latest ACTIVE revision); IAM evaluates the revision ARN, so
    `family:*` is what grants it; the bare family ARN covers the request as written.
    """
    base = f"arn:aws:ecs:{region}:{account}:task-definition/{family}"
    return [base, f"{base}:*"]
