"""`mlops:inference` (with `inference.gpu`): how the service runs, scales and is reached."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from components.aws_facts import GPU_INSTANCES, tasks_per_instance
from components.settings._section import Section, cidr_block, cron, fail, fargate_size, gpu_type
from components.settings.capture import CaptureSettings, parse_capture
from components.settings.rollout import RolloutSettings, parse_rollout


class ServingCapacity(StrEnum):
    """Where the inference service runs."""

    FARGATE = "fargate"  # Fargate on-demand base + Fargate Spot (inference.on_demand_base...)
    GPU_EC2 = "gpu-ec2"  # its own GPU EC2 capacity provider (inference.gpu)


CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")


DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ScalingSchedule:
    name: str
    cron: str
    min: int
    max: int


@dataclass(frozen=True)
class GpuServingSettings:
    """`mlops:inference.gpu`: the serving GPU instances, used with `inference.capacity: gpu-ec2`."""

    instance_types: tuple[str, ...] = ("g4dn.xlarge", "g6.xlarge", "g5.xlarge")
    """x86_64 NVIDIA types, in order of preference for on-demand launches (cheapest first)."""
    gpus: int = 1
    """GPUs the api container of each task reserves."""
    min_instances: int = 1
    """The warm minimum: instances that run even with no task waiting."""
    max_instances: int = 4
    on_demand_base: int = 1
    """The first instances are on-demand; the rest follow `on_demand_percent_above_base`."""
    on_demand_percent_above_base: int = 0
    """0: every instance above the base is Spot."""


@dataclass(frozen=True)
class InferenceSettings:
    capacity: ServingCapacity = ServingCapacity.FARGATE
    """fargate (the strategy below) or gpu-ec2 (`gpu`, its own EC2 GPU capacity provider)."""
    cpu: int = 512
    """Task CPU units: a Fargate size, or with gpu-ec2 anything the instance types hold."""
    memory: int = 1024
    desired: int = 1
    min: int = 0
    max: int = 4
    on_demand_base: int = 0
    """Tasks that always run on FARGATE (on-demand). Fargate only, like the weights."""
    on_demand_weight: int = 0
    spot_weight: int = 1
    cpu_target: int = 70
    requests_per_target: int = 500
    schedules: tuple[ScalingSchedule, ...] = ()
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    certificate_arn: str = ""
    """An existing ACM certificate for HTTPS; or leave "" and set `domain`."""
    domain: str = ""
    """A DNS name in a public Route 53 zone: an ACM certificate (DNS-validated) and an alias."""
    hosted_zone: str = ""
    """The Route 53 public zone holding `domain`; "" = the domain minus its first label."""
    waf: bool = False
    access_logs: bool = False
    dashboard: bool = True
    """false leaves out the workload's sidecars served under a path (the web UIs)."""
    gpu: GpuServingSettings = field(default_factory=GpuServingSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    """How a new revision takes traffic (`components/settings/rollout.py`)."""
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    """A share of `/invocations` recorded to the store (`components/settings/capture.py`)."""


def _schedule(key: str, raw: Any) -> ScalingSchedule:
    if not isinstance(raw, Mapping):
        raise fail(key, raw, "each schedule is a map {name, cron, min, max}")
    missing = {"name", "cron", "min", "max"} - set(raw)
    extra = set(raw) - {"name", "cron", "min", "max"}
    if missing or extra:
        raise fail(key, dict(raw), "each schedule has exactly the keys name, cron, min, max")
    name = raw["name"]
    if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
        raise fail(f"{key}.name", name, "letters, digits, '-' and '_', at most 64")
    cron(f"{key}.cron", raw["cron"], allow_at=True)
    for bound in ("min", "max"):
        value = raw[bound]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f"{key}.{bound}", value, "it must be an integer from 0 up")
    if raw["min"] > raw["max"]:
        raise fail(f"{key}.min", raw["min"], f"it must not exceed max ({raw['max']})")
    return ScalingSchedule(name=name, cron=raw["cron"], min=raw["min"], max=raw["max"])


def _gpu_serving(raw: Any) -> GpuServingSettings:
    s = Section("inference.gpu", raw, GpuServingSettings)
    types = s.list("instance_types", gpu_type)
    if not types:
        raise fail(s.key("instance_types"), [], "list at least one GPU instance type")
    if len(set(types)) != len(types):
        raise fail(s.key("instance_types"), list(types), "list each instance type once")
    lo, hi = s.int("min_instances"), s.int("max_instances", lo=1, hi=100)
    if lo > hi:
        raise fail(s.key("min_instances"), lo, f"it must not exceed max_instances ({hi})")
    return GpuServingSettings(
        instance_types=types,
        gpus=s.int("gpus", lo=1),
        min_instances=lo,
        max_instances=hi,
        on_demand_base=s.int("on_demand_base", hi=hi),
        on_demand_percent_above_base=s.int("on_demand_percent_above_base", hi=100),
    )


def _check_gpu_serving(
    s: Section, gpu: GpuServingSettings, cpu: int, memory: int, most: int
) -> None:
    """gpu-ec2 serving: every instance type holds a task, and the group's max holds `max` tasks."""
    for instance in gpu.instance_types:
        _, _, count = GPU_INSTANCES[instance]
        if gpu.gpus > count:
            raise fail(s.key("gpu.gpus"), gpu.gpus, f"{instance} has {count} GPU(s)")
        fits, reason = tasks_per_instance(instance, gpu.gpus, cpu, memory)
        if fits < 1:
            key = "cpu" if "CPU" in reason else "memory"
            raise fail(s.key(key), cpu if key == "cpu" else memory, f"{instance} has {reason}")
        if gpu.max_instances * fits < most:
            raise fail(
                s.key("gpu.max_instances"),
                gpu.max_instances,
                f"inference.max is {most} tasks, and {instance} holds {fits} task(s) "
                f"(limited by its {reason}), so {gpu.max_instances} instance(s) hold only "
                f"{gpu.max_instances * fits}; raise gpu.max_instances or lower inference.max",
            )


def parse_inference(raw: Any) -> InferenceSettings:
    s = Section("inference", raw, InferenceSettings)
    capacity = s.enum("capacity", ServingCapacity)
    gpu = _gpu_serving(s.raw.get("gpu"))
    if capacity is ServingCapacity.GPU_EC2:
        cpu, memory = s.int("cpu", lo=128), s.int("memory", lo=512)
    else:
        cpu, memory = fargate_size(s, "the inference service")
    lo, hi = s.int("min"), s.int("max", lo=1)
    if lo > hi:
        raise fail(s.key("min"), lo, f"it must not exceed max ({hi})")
    desired = s.int("desired")
    if not lo <= desired <= hi:
        raise fail(s.key("desired"), desired, f"it must be within min..max ({lo}..{hi})")
    base = s.int("on_demand_base", hi=hi)
    on_demand_weight, spot_weight = s.int("on_demand_weight"), s.int("spot_weight")
    if on_demand_weight == 0 and spot_weight == 0:
        raise fail(s.key("spot_weight"), 0, "on_demand_weight and spot_weight cannot both be 0")
    schedules = s.list("schedules", _schedule)
    names = [sc.name for sc in schedules]
    if len(set(names)) != len(names):
        raise fail(s.key("schedules"), names, "schedule names must be unique")
    cidrs = s.list("allowed_cidrs", cidr_block)
    if not cidrs:
        raise fail(s.key("allowed_cidrs"), [], "list at least one CIDR allowed to reach the ALB")
    certificate = s.str(
        "certificate_arn",
        CERTIFICATE_ARN,
        'it must be "" or an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)',
    )
    domain = s.str("domain", DOMAIN, 'it must be "" or a lowercase DNS name like api.example.com')
    if domain and certificate:
        raise fail(
            s.key("domain"),
            domain,
            "set either inference.domain (a new DNS-validated certificate) or "
            "inference.certificate_arn (an existing one), not both",
        )
    zone = s.str("hosted_zone", DOMAIN, 'it must be "" or the Route 53 zone name, like example.com')
    if zone and not domain:
        raise fail(s.key("hosted_zone"), zone, "it only applies with inference.domain")
    if domain and domain.count(".") < 2 and not zone:
        raise fail(
            s.key("domain"),
            domain,
            "an apex domain needs inference.hosted_zone (the zone is not its parent)",
        )
    zone = zone or (domain.split(".", 1)[1] if domain else "")
    if domain and not (domain == zone or domain.endswith("." + zone)):
        raise fail(s.key("hosted_zone"), zone, f"it must contain inference.domain {domain!r}")
    if capacity is ServingCapacity.GPU_EC2:
        _check_gpu_serving(s, gpu, cpu, memory, hi)
    return InferenceSettings(
        capacity=capacity,
        gpu=gpu,
        rollout=parse_rollout(s.raw.get("rollout")),
        capture=parse_capture(s.raw.get("capture")),
        cpu=cpu,
        memory=memory,
        desired=desired,
        min=lo,
        max=hi,
        on_demand_base=base,
        on_demand_weight=on_demand_weight,
        spot_weight=spot_weight,
        cpu_target=s.int("cpu_target", lo=10, hi=95),
        requests_per_target=s.int("requests_per_target", lo=1),
        schedules=schedules,
        allowed_cidrs=cidrs,
        certificate_arn=certificate,
        domain=domain,
        hosted_zone=zone,
        waf=s.bool("waf"),
        access_logs=s.bool("access_logs"),
        dashboard=s.bool("dashboard"),
    )
