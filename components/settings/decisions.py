"""The decisions that span config sections, made once from the parsed settings.

What the contract means for the containers (what is staged, whether the workload mounts the
store), who gates, and where each task runs (capacity, GPUs, image flavour) are resolved here
into plain values; the wiring (components/wiring.py) hands them to the components, which never
derive them again from `contract`, `steps` or `capacity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from components.aws_facts import FARGATE, FARGATE_SPOT
from components.settings.artifacts import ArtifactsSettings
from components.settings.capture import CaptureSettings
from components.settings.model_monitor import ModelMonitorSettings
from components.settings.pipeline import Capacity
from components.settings.serving import ServingCapacity
from components.settings.workload import Contract, Objective, Promotion

if TYPE_CHECKING:
    from components.settings.stack import Settings


@dataclass(frozen=True)
class Placement:
    """Where one task runs: its capacity, the GPUs it reserves, the image flavour it runs."""

    capacity: Capacity = Capacity.FARGATE
    gpus: int = 0

    @property
    def on_ec2(self) -> bool:
        """GPUs exist only on EC2 capacity (the cluster's GPU instances)."""
        return self.capacity is Capacity.GPU_EC2

    @property
    def fargate_provider(self) -> str:
        """The cluster's Fargate capacity provider it runs on (EC2 capacity is the cluster's
        own provider, named at deploy time)."""
        if self.on_ec2:
            raise ValueError("a GPU EC2 task runs on the cluster's own capacity provider")
        return FARGATE_SPOT if self.capacity is Capacity.FARGATE_SPOT else FARGATE

    @property
    def flavour(self) -> str:
        """The image flavour it runs: `gpu` (CUDA base) on GPU EC2, else `cpu`."""
        return "gpu" if self.on_ec2 else "cpu"


ON_DEMAND = Placement(Capacity.FARGATE)
"""Small, short tasks that a Spot interruption must not fail: validate, the gates."""
SPOT = Placement(Capacity.FARGATE_SPOT)
"""The scheduled job: a Spot interruption loses one run; the next one catches up."""


@dataclass(frozen=True)
class ModelMonitor:
    """The platform's model monitor of the served model (`monitoring.model_monitor`): what it
    compares, how long the capture it reads is kept, and whether it reports drift to the
    pipeline."""

    settings: ModelMonitorSettings
    retention_days: int
    """`inference.capture.retention_days`: it deletes capture hours older than this (0: never)."""
    publishes: bool
    """`training.on_drift_event`: it puts the drift event on the default bus, which retrains."""
    objective: Objective | None
    """`workload.objective`: what it recomputes from ground truth, when labels arrive."""


class Gatekeeper(StrEnum):
    """Who decides whether a trained run is promoted."""

    WORKLOAD = "workload"  # the workload's own gate step (`workload.steps.gate`)
    PLATFORM = "platform"  # the platform image's gate on `workload.objective`


@dataclass(frozen=True)
class Decisions:
    staged: bool
    """The `sagemaker` contract: the platform stages /opt/ml around the workload's train and
    serve containers, which never see the store."""
    store_mounted: bool
    """The workload's own containers mount the store at /mnt/store (the `platform` contract)."""
    gatekeeper: Gatekeeper
    objective: Objective | None
    """What the platform gate compares (None when the workload gates itself, or promotes every
    trained run)."""
    promotion: Promotion
    train: Placement
    serving: Placement | None
    """None: a training-only workload (no service)."""
    pipeline_steps: tuple[str, ...]
    """The pipeline's ECS tasks in order: validate (when the workload has it), train, gate."""
    capture: CaptureSettings | None = None
    """The serving task records a share of its requests (the platform's capture proxy in front
    of the server); None: it does not (off, or no service)."""
    model_monitor: ModelMonitor | None = None
    """The platform's model monitor runs on a schedule: only with capture on (a service that
    records what it is asked) and `monitoring.model_monitor.schedule` set; None otherwise."""
    artifacts: ArtifactsSettings | None = None
    """The stack's artifact bucket, to which the platform exports each model it makes current:
    `artifacts.export` on and the platform gates; None otherwise (a workload's own gate)."""

    @property
    def platform_image(self) -> bool:
        """The platform's own image is built: it stages (sagemaker), gates or captures."""
        return self.staged or self.gatekeeper is Gatekeeper.PLATFORM or self.capture is not None


def decide(settings: Settings) -> Decisions:
    workload = settings.workload
    staged = workload.contract is Contract.SAGEMAKER
    gatekeeper = Gatekeeper.WORKLOAD if "gate" in workload.steps else Gatekeeper.PLATFORM
    train = (
        Placement(Capacity.GPU_EC2, gpus=settings.training.gpus)
        if settings.training.capacity is Capacity.GPU_EC2
        else Placement(settings.training.capacity)
    )
    serving = None
    if workload.serving is not None:
        serving = (
            Placement(Capacity.GPU_EC2, gpus=settings.inference.gpu.gpus)
            if settings.inference.capacity is ServingCapacity.GPU_EC2
            else Placement(Capacity.FARGATE)
        )
    # The gate always runs: the workload's own, or the platform's on the objective (the parser
    # requires one of the two).
    steps = ("validate",) * ("validate" in workload.steps) + ("train", "gate")
    capture = settings.inference.capture
    if serving is None or not capture.on:
        capture = None
    monitor = settings.monitoring.model_monitor
    return Decisions(
        staged=staged,
        store_mounted=not staged,
        gatekeeper=gatekeeper,
        objective=workload.objective if gatekeeper is Gatekeeper.PLATFORM else None,
        promotion=workload.promotion,
        train=train,
        serving=serving,
        pipeline_steps=steps,
        capture=capture,
        model_monitor=(
            ModelMonitor(
                settings=monitor,
                retention_days=capture.retention_days,
                publishes=settings.training.on_drift_event,
                objective=workload.objective,
            )
            if capture is not None and monitor.schedule
            else None
        ),
        artifacts=(
            settings.artifacts
            if settings.artifacts.export and gatekeeper is Gatekeeper.PLATFORM
            else None
        ),
    )
