"""`mlops:training` and `mlops:monitoring`: the retraining pipeline, the closed loop's ingest and
the platform's model monitor (`monitoring.model_monitor`, components/settings/model_monitor.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from components.aws_facts import ECS_AGENT_RESERVED_MIB, GPU_INSTANCES
from components.settings._section import Section, cron, fail, fargate_size, gpu_type
from components.settings.model_monitor import ModelMonitorSettings, parse_model_monitor


class Capacity(StrEnum):
    """Where the training task runs."""

    FARGATE = "fargate"
    FARGATE_SPOT = "fargate-spot"
    GPU_EC2 = "gpu-ec2"


@dataclass(frozen=True)
class TrainingSettings:
    capacity: Capacity = Capacity.FARGATE_SPOT
    cpu: int = 1024
    memory: int = 4096
    gpu_instance_types: tuple[str, ...] = ("g5.xlarge",)
    gpus: int = 0
    """GPUs per training task; only with gpu-ec2 (defaults to 1 there)."""
    max_instances: int = 2
    schedule: str = "cron(0 3 * * ? *)"
    """"" = no scheduled retraining."""
    on_image_push: bool = True
    on_drift_event: bool = True
    promote_margin: float = 0.0


@dataclass(frozen=True)
class MonitoringSettings:
    """The closed loop: when the workload's job runs, and the monitor's thresholds (its
    environment, `MONITOR_*`)."""

    ingest_schedule: str = "cron(0 6 ? * MON *)"
    """When the workload's scheduled job runs (EventBridge cron or rate); "" = never."""
    error_tolerance: float = 2.5
    """Prediction-error check: trips above this multiple of the backtest band's 95th percentile."""
    drift_p_value: float = 0.001
    """Input-drift check: significance level of the Mann-Whitney U test."""
    cooldown_weeks: int = 8
    """Weeks of new data after a drift event before the next one may be sent."""
    model_monitor: ModelMonitorSettings = field(default_factory=ModelMonitorSettings)
    """The platform's model monitor of the served model (`components/settings/model_monitor.py`)."""


def parse_training(raw: Any) -> TrainingSettings:
    s = Section("training", raw, TrainingSettings)
    capacity = s.enum("capacity", Capacity)
    if capacity is Capacity.GPU_EC2:
        types = s.list("gpu_instance_types", gpu_type)
        if not types:
            raise fail(s.key("gpu_instance_types"), [], "list at least one GPU instance type")
        gpus = s.int("gpus", lo=1) if s.has("gpus") else 1
        cpu, memory = s.int("cpu", lo=128), s.int("memory", lo=512)
        for instance in types:
            vcpus, mem, count = GPU_INSTANCES[instance]
            if gpus > count:
                raise fail(s.key("gpus"), gpus, f"{instance} has {count} GPU(s)")
            if cpu > vcpus * 1024:
                raise fail(s.key("cpu"), cpu, f"{instance} has {vcpus * 1024} CPU units")
            if memory > mem - ECS_AGENT_RESERVED_MIB:
                raise fail(
                    s.key("memory"),
                    memory,
                    f"{instance} leaves at most {mem - ECS_AGENT_RESERVED_MIB} MiB for tasks",
                )
        max_instances = s.int("max_instances", lo=1, hi=100)
    else:
        gpus = s.int("gpus", lo=None)
        if gpus != 0:
            raise fail(
                s.key("gpus"),
                gpus,
                f"Fargate has no GPUs: use capacity gpu-ec2 for GPUs, or 0 with {capacity.value}",
            )
        cpu, memory = fargate_size(s, "Fargate training")
        types = s.list("gpu_instance_types", gpu_type)
        max_instances = s.int("max_instances", lo=1, hi=100)
    schedule = s.str("schedule")
    if schedule:
        cron(s.key("schedule"), schedule)
    return TrainingSettings(
        capacity=capacity,
        cpu=cpu,
        memory=memory,
        gpu_instance_types=types,
        gpus=gpus,
        max_instances=max_instances,
        schedule=schedule,
        on_image_push=s.bool("on_image_push"),
        on_drift_event=s.bool("on_drift_event"),
        promote_margin=s.number("promote_margin", 0.0, 1.0),
    )


def parse_monitoring(raw: Any) -> MonitoringSettings:
    s = Section("monitoring", raw, MonitoringSettings)
    schedule = s.str("ingest_schedule")
    if schedule:
        cron(s.key("ingest_schedule"), schedule)
    return MonitoringSettings(
        ingest_schedule=schedule,
        error_tolerance=s.number("error_tolerance", 1.0, 100.0),
        drift_p_value=s.number("drift_p_value", 1e-12, 0.5),
        cooldown_weeks=s.int("cooldown_weeks", lo=0, hi=520),
        model_monitor=parse_model_monitor(s.raw.get("model_monitor")),
    )
