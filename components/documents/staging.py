"""The `sagemaker` contract: the platform's containers around a SageMaker BYOC workload.

SageMaker runs a training image as `<image> train` with its channels in
`/opt/ml/input/data/<channel>/`, its hyperparameters in `/opt/ml/input/config/
hyperparameters.json` (strings), and takes the model from `/opt/ml/model/` and a failure's text
from `/opt/ml/output/failure` (SageMaker Developer Guide, "your-algorithms-training-algo"); it
serves with `<image> serve` on port 8080, `GET /ping` and `POST /invocations`, the model in
`/opt/ml/model/` ("your-algorithms-inference-code"). Here the platform's own small image
(`platform/`, `python -m mlops_platform <command>`, docs/workload-contract.md) stages that
layout in the same task, on one task-scoped volume mounted at `/opt/ml`:

- training: `stage-training` (SUCCESS) → the workload's `train` (non-essential) COMPLETE →
  `collect-training` (essential: its exit is the task's), which moves `/opt/ml/model` into
  `models/<RUN_ID>/` and fails the run with the failure text;
- serving: `stage-serving` (SUCCESS) → the workload's server.

The staging containers change file owners (the staged files to the workload's uid), so they run
as root, on a read-only root file system; the workload's containers never see the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from components.documents.common import (
    LABEL_STAGING,
    ContainerSpec,
    container_definition,
    workload_labels,
)
from components.settings.workload import Objective, SecuritySpec, TrainingSpec

ML_VOLUME = "ml"
ML_MOUNT = "/opt/ml"
STAGE_TRAINING = "stage-training"
COLLECT_TRAINING = "collect-training"
STAGE_SERVING = "stage-serving"
PLATFORM_GATE = "gate"
TRAIN_CONTAINER = "train"
ROOT_USER = "0:0"
TRAINING_CONTAINERS = (STAGE_TRAINING, TRAIN_CONTAINER, COLLECT_TRAINING)
"""The training task's containers, in order; RunTask gives each the run's RUN_ID."""


def ml_volume() -> dict[str, Any]:
    """The task-scoped volume at /opt/ml (no host path, no EFS: it lives and dies with the task;
    pulumi-aws `TaskDefinitionVolumeArgs` shape)."""
    return {"name": ML_VOLUME}


def sagemaker_environment(channels: Mapping[str, str] = ()) -> dict[str, str]:
    """SageMaker's own variables for the workload: SM_MODEL_DIR and SM_CHANNEL_<NAME>."""
    return {
        "SM_MODEL_DIR": f"{ML_MOUNT}/model",
        **{f"SM_CHANNEL_{name.upper()}": f"{ML_MOUNT}/input/data/{name}" for name in channels},
    }


def _platform(name: str, image: str, log_group: str, region: str, **extra: Any) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image=image,
        command=[name],
        log_group=log_group,
        region=region,
        user=ROOT_USER,
        mounts={ML_VOLUME: ML_MOUNT},
        labels={LABEL_STAGING: "true"},
        **extra,
    )


def training_containers(
    platform_image: str,
    workload_image: str,
    log_group: str,
    region: str,
    *,
    training: TrainingSpec,
    security: SecuritySpec,
    gpus: int = 0,
) -> list[dict[str, Any]]:
    """The training task of a `sagemaker` workload: stage, train, collect."""
    stage = _platform(
        STAGE_TRAINING,
        platform_image,
        log_group,
        region,
        environment={
            "MLOPS_CHANNELS": json.dumps(dict(training.channels), sort_keys=True),
            "MLOPS_HYPERPARAMETERS": json.dumps(dict(training.hyperparameters), sort_keys=True),
            "MLOPS_WORKLOAD_UID": str(security.uid),
        },
        essential=False,
        restart=False,
    )
    train = ContainerSpec(
        name=TRAIN_CONTAINER,
        image=workload_image,
        command=list(training.command),
        log_group=log_group,
        region=region,
        environment={**sagemaker_environment(training.channels), **training.environment},
        # Its exit must not stop the task before collect-training has recorded the run.
        essential=False,
        restart=False,
        gpus=gpus,
        user=security.container_user,
        read_only_root=security.read_only_root,
        store=False,
        mounts={ML_VOLUME: ML_MOUNT},
        depends_on=[(STAGE_TRAINING, "SUCCESS")],
        labels=workload_labels(security.run_as_root),
    )
    collect = _platform(
        COLLECT_TRAINING,
        platform_image,
        log_group,
        region,
        depends_on=[(TRAIN_CONTAINER, "COMPLETE")],
    )
    return [container_definition(spec) for spec in (stage, train, collect)]


def stage_serving_spec(
    platform_image: str, log_group: str, region: str, security: SecuritySpec
) -> ContainerSpec:
    """The serving task's staging container: the promoted model into /opt/ml/model, then exit
    (non-essential, never restarted); the server starts on its SUCCESS."""
    return _platform(
        STAGE_SERVING,
        platform_image,
        log_group,
        region,
        environment={"MLOPS_WORKLOAD_UID": str(security.uid)},
        essential=False,
        restart=False,
    )


def platform_gate_container(
    platform_image: str, log_group: str, region: str, objective: Objective
) -> dict[str, Any]:
    """The platform gate (no gate step of the workload's own): compares the run's objective
    with the current model's and promotes only a better one by the margin. Runs as the image's
    non-root user; needs the store only."""
    return container_definition(
        ContainerSpec(
            name=PLATFORM_GATE,
            image=platform_image,
            command=[PLATFORM_GATE],
            log_group=log_group,
            region=region,
            environment={
                "MLOPS_OBJECTIVE_FILE": objective.file,
                "MLOPS_OBJECTIVE_KEY": objective.key,
                "MLOPS_OBJECTIVE_DIRECTION": objective.direction.value,
                "MLOPS_OBJECTIVE_MARGIN": str(objective.margin),
            },
        )
    )


UPDATE_SERVICE_RESOURCE = "arn:aws:states:::aws-sdk:ecs:updateService"
"""Step Functions' AWS SDK integration, `arn:aws:states:::aws-sdk:<service>:<apiAction>`, its
parameters in PascalCase (Step Functions Developer Guide, "Learning to use AWS service SDK
integrations in Step Functions",
https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html)."""


def roll_service_state(cluster_arn: str, service_name: str) -> dict[str, Any]:
    """After a gate: a new deployment of the service (ECS UpdateService, ForceNewDeployment), so
    its tasks stage the model `models/CURRENT` names; a server that does not hot-reload serves it
    only after a restart. The service's circuit breaker and deployment alarms judge the new
    tasks and roll back to the previous ones when the new model fails its health check. When the
    gate kept the current model the deployment restarts the same model: harmless."""
    if not cluster_arn.startswith("arn:aws") or ":cluster/" not in cluster_arn:
        raise ValueError(f"{cluster_arn!r} is not an ECS cluster ARN")
    return {
        "Type": "Task",
        "Resource": UPDATE_SERVICE_RESOURCE,
        "Parameters": {
            "Cluster": cluster_arn,
            "Service": service_name,
            "ForceNewDeployment": True,
        },
        "ResultPath": None,
        "TimeoutSeconds": 60,
        "Retry": [
            {
                "ErrorEquals": ["States.TaskFailed"],
                "IntervalSeconds": 5,
                "MaxAttempts": 3,
                "BackoffRate": 2.0,
                "JitterStrategy": "FULL",
            }
        ],
    }
