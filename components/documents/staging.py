"""The `sagemaker` contract: the platform's containers around a SageMaker BYOC workload.

SageMaker runs a training image as `<image> train` with its channels in
`/opt/ml/input/data/<channel>/`, its hyperparameters in `/opt/ml/input/config/
hyperparameters.json` (strings), and takes the model from `/opt/ml/model/` and a failure's text
from `/opt/ml/output/failure` (SageMaker Developer Guide, "your-algorithms-training-algo"); it
serves with `<image> serve` on port 8080, `GET /ping` and `POST /invocations`, the model in
`/opt/ml/model/` ("your-algorithms-inference-code"). Here the platform's own small image
(`platform/`, `python -m mlops_platform <command>`, docs/workload-contract.md) stages that
layout in the same task, on one task-scoped volume mounted at `/opt/ml`:

- training: `stage-training` (SUCCESS) → `sync-checkpoints` (START; non-essential: it copies
  `/opt/ml/checkpoints` to `checkpoints/<RUN_ID>/` in the store while the run trains, so a
  retried task of the run resumes; ECS stops it after `train`, the reverse of the start order)
  → the workload's `train` (non-essential) COMPLETE → `collect-training` (essential: its exit is
  the task's), which moves `/opt/ml/model` into `models/<RUN_ID>/` and fails the run with the
  failure text;
- serving: `stage-serving` (SUCCESS) → the workload's server. It stages the model
  models/CURRENT names, or with `MLOPS_SERVE_RUN` (a rollout's revision, documents/rollout.py)
  exactly that run.

The staging containers change file owners (the staged files to the workload's uid), so they run
as root, on a read-only root file system; the workload's containers never see the store.
"""

from __future__ import annotations

import json
from typing import Any

from components.documents.common import (
    LABEL_PROMOTION,
    LABEL_STAGING,
    ContainerSpec,
    workload_container,
)
from components.settings.workload import Objective, Promotion, SecuritySpec, TrainingSpec
from mlops_contract import Env, MlLayout, sagemaker_environment

ML_VOLUMES = {
    f"ml-{path.name}": str(path) for path in MlLayout().platform_paths
}  # ml-input, ml-model, ml-output, ml-checkpoints
"""What the platform provides under /opt/ml, each a task volume of its own (SageMaker provides
input, model, output and checkpoints and leaves the rest of the image's /opt/ml, its code/, in
place). Task volumes without a host path: they live and die with the task."""
MODEL_VOLUME = "ml-model"
SERVING_VOLUMES = {MODEL_VOLUME: ML_VOLUMES[MODEL_VOLUME]}
"""A server needs only the model the platform staged for it."""
COLLECTED_VOLUMES = {v: ML_VOLUMES[v] for v in ("ml-model", "ml-output")}
STAGE_TRAINING = "stage-training"
COLLECT_TRAINING = "collect-training"
SYNC_CHECKPOINTS = "sync-checkpoints"
CHECKPOINT_VOLUME = "ml-checkpoints"
STAGE_SERVING = "stage-serving"
PLATFORM_GATE = "gate"
TRAIN_CONTAINER = "train"
ROOT_USER = "0:0"
TRAINING_CONTAINERS = (STAGE_TRAINING, SYNC_CHECKPOINTS, TRAIN_CONTAINER, COLLECT_TRAINING)
"""The training task's containers, in order; RunTask gives each the run's RUN_ID."""


def _platform(name: str, image: Any, mounts: dict[str, str], **extra: Any) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image=image,
        command=[name],
        user=ROOT_USER,
        mounts=mounts,
        labels={LABEL_STAGING: "true"},
        **extra,
    )


def training_containers(
    platform_image: Any,
    workload_image: Any,
    *,
    training: TrainingSpec,
    security: SecuritySpec,
    gpus: int = 0,
) -> list[ContainerSpec]:
    """The training task of a `sagemaker` workload: stage, sync checkpoints, train, collect."""
    stage = _platform(
        STAGE_TRAINING,
        platform_image,
        ML_VOLUMES,
        environment={
            Env.CHANNELS: json.dumps(dict(training.channels), sort_keys=True),
            Env.HYPERPARAMETERS: json.dumps(dict(training.hyperparameters), sort_keys=True),
            Env.WORKLOAD_UID: str(security.uid),
        },
        essential=False,
        restart=False,
    )
    sync = _platform(
        SYNC_CHECKPOINTS,
        platform_image,
        {CHECKPOINT_VOLUME: ML_VOLUMES[CHECKPOINT_VOLUME]},
        essential=False,
        restart=False,
        depends_on=[(STAGE_TRAINING, "SUCCESS")],
    )
    train = workload_container(
        TRAIN_CONTAINER,
        workload_image,
        training,
        security=security,
        store=False,
        platform_environment=sagemaker_environment(training.channels),
        # Its exit must not stop the task before collect-training has recorded the run.
        essential=False,
        restart=False,
        gpus=gpus,
        mounts=ML_VOLUMES,
        # START on the sync: ECS stops the training first and the sync after it, so the sync
        # copies the checkpoint the training wrote on SIGTERM (API reference, ContainerDependency:
        # "When a dependency is defined for container startup, for container shutdown it is
        # reversed").
        depends_on=[(STAGE_TRAINING, "SUCCESS"), (SYNC_CHECKPOINTS, "START")],
    )
    collect = _platform(
        COLLECT_TRAINING,
        platform_image,
        COLLECTED_VOLUMES,
        environment={Env.MODEL_MAX_BYTES: str(training.model_limit_gib * 1024**3)},
        depends_on=[(TRAIN_CONTAINER, "COMPLETE")],
    )
    return [stage, sync, train, collect]


def stage_serving_spec(platform_image: Any, security: SecuritySpec) -> ContainerSpec:
    """The serving task's staging container: the promoted model into /opt/ml/model, then exit
    (non-essential, never restarted); the server starts on its SUCCESS."""
    return _platform(
        STAGE_SERVING,
        platform_image,
        SERVING_VOLUMES,
        environment={Env.WORKLOAD_UID: str(security.uid)},
        essential=False,
        restart=False,
        # It only reads the store: the serving task can write nothing there.
        store_read_only=True,
    )


def platform_gate_container(
    platform_image: Any,
    objective: Objective | None,
    promotion: Promotion = Promotion.OBJECTIVE,
    *,
    rollout: bool = False,
) -> ContainerSpec:
    """The platform gate (no gate step of the workload's own): compares the run's objective
    with the current model's and promotes only a better one by the margin; or, with promotion
    every-trained-run, promotes every run that trained (labelled for the policy pack). With
    `rollout`, a promoted run becomes the candidate that the pipeline rolls out; the same task
    definition runs `finish-rollout` and `record-failure` (command overrides). Runs as the
    image's non-root user; needs the store only."""
    if (objective is None) != (promotion is Promotion.EVERY_TRAINED_RUN):
        raise ValueError("the platform gate compares an objective, or promotes every trained run")
    environment = (
        {Env.PROMOTION: promotion.value}
        if objective is None
        else {
            Env.OBJECTIVE_FILE: objective.file,
            Env.OBJECTIVE_KEY: objective.key,
            Env.OBJECTIVE_DIRECTION: objective.direction.value,
            Env.OBJECTIVE_MARGIN: str(objective.margin),
        }
    )
    if rollout:
        # A promoted run is the candidate until its rollout succeeded (documents/rollout.py).
        environment = {**environment, Env.ROLLOUT: "1"}
    return ContainerSpec(
        name=PLATFORM_GATE,
        image=platform_image,
        command=[PLATFORM_GATE],
        environment=environment,
        labels={LABEL_PROMOTION: promotion.value} if objective is None else {},
    )
