"""The typed stack config: parsed once, validated completely, frozen.

Every key lives under the project namespace as structured YAML (`mlops:network`, `mlops:inference`,
...). `load()` reads the Pulumi config; `parse()` is the pure part, so tests feed it plain dicts.
Any bad value raises `pulumi.RunError` naming the key, the bad value and what is allowed, before a
single resource is declared. Nothing outside this module reads `pulumi.Config`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

import pulumi

PROJECT = "mlops"


class Egress(StrEnum):
    """How tasks reach the internet (ECR, CloudWatch, package mirrors)."""

    PUBLIC_IP = "public-ip"  # no NAT: tasks run in public subnets with a public IP (cheap)
    SINGLE_NAT = "single-nat"  # one NAT gateway shared by every AZ
    NAT_PER_AZ = "nat-per-az"  # one NAT gateway per AZ: no cross-AZ dependency (safe)


class Throughput(StrEnum):
    """EFS throughput mode."""

    ELASTIC = "elastic"
    BURSTING = "bursting"


class Capacity(StrEnum):
    """Where the training task runs."""

    FARGATE = "fargate"
    FARGATE_SPOT = "fargate-spot"
    GPU_EC2 = "gpu-ec2"


class ServingCapacity(StrEnum):
    """Where the inference service runs."""

    FARGATE = "fargate"  # Fargate on-demand base + Fargate Spot (inference.on_demand_base...)
    GPU_EC2 = "gpu-ec2"  # its own GPU EC2 capacity provider (inference.gpu)


# Fargate task sizes: CPU units -> the memory values (MiB) AWS accepts with them.
# Source: "Task CPU and memory" table, Amazon ECS Developer Guide (task_definition_parameters).
FARGATE_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# CloudWatch Logs PutRetentionPolicy `retentionInDays` values.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

# EFS lifecycle `TransitionToIA` values (AFTER_N_DAYS), in days.
EFS_IA_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)

# NVIDIA GPU instance types the ECS GPU-optimized AMI supports, x86_64 only (the image is
# linux/amd64): size -> (vCPUs, memory MiB, GPUs). Source: EC2 accelerated computing instance
# specifications. Graviton (g5g) and AMD (g4ad) GPU families are deliberately absent.
GPU_INSTANCES: dict[str, tuple[int, int, int]] = {
    "g4dn.xlarge": (4, 16384, 1),
    "g4dn.2xlarge": (8, 32768, 1),
    "g4dn.4xlarge": (16, 65536, 1),
    "g4dn.8xlarge": (32, 131072, 1),
    "g4dn.12xlarge": (48, 196608, 4),
    "g4dn.16xlarge": (64, 262144, 1),
    "g5.xlarge": (4, 16384, 1),
    "g5.2xlarge": (8, 32768, 1),
    "g5.4xlarge": (16, 65536, 1),
    "g5.8xlarge": (32, 131072, 1),
    "g5.12xlarge": (48, 196608, 4),
    "g5.16xlarge": (64, 262144, 1),
    "g5.24xlarge": (96, 393216, 4),
    "g5.48xlarge": (192, 786432, 8),
    "g6.xlarge": (4, 16384, 1),
    "g6.2xlarge": (8, 32768, 1),
    "g6.4xlarge": (16, 65536, 1),
    "g6.8xlarge": (32, 131072, 1),
    "g6.12xlarge": (48, 196608, 4),
    "g6.16xlarge": (64, 262144, 1),
    "g6.24xlarge": (96, 393216, 4),
    "g6.48xlarge": (192, 786432, 8),
    "p3.2xlarge": (8, 62464, 1),
    "p3.8xlarge": (32, 249856, 4),
    "p3.16xlarge": (64, 499712, 8),
    "p4d.24xlarge": (96, 1179648, 8),
    "p5.48xlarge": (192, 2097152, 8),
}

# The ECS container agent reserves some instance memory; a task asking for all of it never places.
ECS_AGENT_RESERVED_MIB = 1024

# Network interfaces an instance type takes on its default network card (EC2
# DescribeInstanceTypes `NetworkInfo.NetworkCards[0].MaximumNetworkInterfaces`; EC2 User Guide,
# "Maximum IP addresses per network interface"; the same values as aws/amazon-vpc-cni-k8s
# pkg/vpc/vpc_ip_resource_limit.go). Each awsvpc task on EC2 takes one ENI of its own and the
# instance keeps its primary one, so an instance runs at most this minus one awsvpc tasks
# (ECS Developer Guide, "Amazon ECS task networking options for the EC2 launch type"). ENI
# trunking would raise it but is an account-wide ECS setting (`awsvpcTrunking`) this program does
# not own.
INSTANCE_ENIS: dict[str, int] = {
    "g4dn.xlarge": 3,
    "g4dn.2xlarge": 3,
    "g4dn.4xlarge": 3,
    "g4dn.8xlarge": 4,
    "g4dn.12xlarge": 8,
    "g4dn.16xlarge": 4,
    "g5.xlarge": 4,
    "g5.2xlarge": 4,
    "g5.4xlarge": 8,
    "g5.8xlarge": 8,
    "g5.12xlarge": 15,
    "g5.16xlarge": 8,
    "g5.24xlarge": 15,
    "g5.48xlarge": 7,
    "g6.xlarge": 4,
    "g6.2xlarge": 4,
    "g6.4xlarge": 8,
    "g6.8xlarge": 8,
    "g6.12xlarge": 8,
    "g6.16xlarge": 15,
    "g6.24xlarge": 15,
    "g6.48xlarge": 15,
    "p3.2xlarge": 4,
    "p3.8xlarge": 8,
    "p3.16xlarge": 8,
    "p4d.24xlarge": 15,
    "p5.48xlarge": 2,
}

SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
OIDC_PROVIDER_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$"
)
GITHUB_ENVIRONMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?")
NOAA_WEEKLY_URL = "https://gml.noaa.gov/webdata/ccgg/trends/co2/co2_weekly_mlo.txt"
"""The default ingest source (app/ingest.py `NOAA_WEEKLY_URL`)."""


def _fail(key: str, value: Any, allowed: str) -> pulumi.RunError:
    return pulumi.RunError(f"{PROJECT}:{key}: {value!r} is not allowed; {allowed}")


# --------------------------------------------------------------------------------------- cron


_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _cron_field_ok(text: str, lo: int, hi: int, names: list[str], extra: str) -> bool:
    """One cron field: `*`, values, ranges, lists and `/` increments, plus the field's specials."""
    if text == "*":
        return True
    for part in text.split(","):
        if "L" in extra and (part in ("L", "LW") or re.fullmatch(r"[1-7]L", part)):
            continue
        if "W" in extra and re.fullmatch(r"\d{1,2}W", part):
            if lo <= int(part[:-1]) <= hi:
                continue
            return False
        if "#" in extra and re.fullmatch(r"\d#[1-5]", part):
            if lo <= int(part[0]) <= hi:
                continue
            return False
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) >= 1):
            return False
        if base == "*" and step:
            continue
        bounds = base.split("-")
        if len(bounds) > 2:
            return False
        for bound in bounds:
            upper = bound.upper()
            if upper in names:
                continue
            if not bound.isdigit() or not lo <= int(bound) <= hi:
                return False
    return True


def check_cron(key: str, expression: str, *, allow_at: bool = False) -> str:
    """Reject what EventBridge / Application Auto Scaling would refuse.

    Format (EventBridge "Schedule expressions for rules"; Application Auto Scaling
    "Scheduled scaling"): `cron(minutes hours day-of-month month day-of-week year)` with exactly
    one of day-of-month / day-of-week set to `?`, or `rate(value unit)`; App Auto Scaling also
    takes `at(yyyy-mm-ddThh:mm:ss)`.
    """
    allowed = (
        "use cron(min hour day-of-month month day-of-week year) with exactly one of "
        "day-of-month/day-of-week set to '?', or rate(N minute|minutes|hour|hours|day|days)"
        + (", or at(yyyy-mm-ddThh:mm:ss)" if allow_at else "")
    )
    if not isinstance(expression, str):
        raise _fail(key, expression, allowed)
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise _fail(key, expression, "rate() needs a positive value, singular unit for 1")
        return expression
    if allow_at and re.fullmatch(r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)", expression):
        return expression
    match = re.fullmatch(r"cron\((.*)\)", expression)
    if not match:
        raise _fail(key, expression, allowed)
    parts = match.group(1).split()
    if len(parts) != 6:
        raise _fail(key, expression, f"cron() needs 6 fields, got {len(parts)}; {allowed}")
    minute, hour, dom, month, dow, year = parts
    if (dom == "?") == (dow == "?"):
        raise _fail(key, expression, "exactly one of day-of-month and day-of-week must be '?'")
    checks = [
        ("minutes", minute, 0, 59, [], ""),
        ("hours", hour, 0, 23, [], ""),
        ("day-of-month", dom, 1, 31, [], "LW"),
        ("month", month, 1, 12, _MONTHS, ""),
        ("day-of-week", dow, 1, 7, _DAYS, "L#"),
        ("year", year, 1970, 2199, [], ""),
    ]
    for name, text, lo, hi, names, extra in checks:
        if text == "?" and name in ("day-of-month", "day-of-week"):
            continue
        if not _cron_field_ok(text, lo, hi, names, extra):
            raise _fail(key, expression, f"the {name} field {text!r} must be within {lo}-{hi}")
    return expression


# ------------------------------------------------------------------------------ the sections


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str = "10.0.0.0/16"
    """VPC CIDR, a private IPv4 block from /16 to /20."""
    azs: int = 2
    """Availability zones: 2 or 3."""
    egress: Egress = Egress.PUBLIC_IP
    """public-ip (no NAT), single-nat or nat-per-az."""


@dataclass(frozen=True)
class ImageSettings:
    keep_images: int = 20
    """Tagged images the ECR lifecycle policy keeps."""
    pin: str = ""
    """"sha256:..." deploys that already-pushed image and builds nothing (image rollback)."""
    gpu_pin: str = ""
    """"sha256:..." of the gpu image; required with `pin` on a gpu-ec2 stack, else ""."""


@dataclass(frozen=True)
class StoreSettings:
    throughput: Throughput = Throughput.ELASTIC
    infrequent_access_after_days: int = 30
    """0 = never; else an EFS TransitionToIA value."""
    backups: bool = True
    protect: bool = False
    """True: Pulumi refuses to delete the file system (and the load balancer)."""


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
    forecast_interval_seconds: int = 10
    gpu: GpuServingSettings = field(default_factory=GpuServingSettings)


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
    """The closed loop: the scheduled ingest task and the monitor's thresholds."""

    ingest_schedule: str = "cron(0 6 ? * MON *)"
    """When the ingest task runs (EventBridge cron or rate); "" = never."""
    source: str = NOAA_WEEKLY_URL
    """The weekly file ingested (https only): NOAA GML's weekly Mauna Loa CO2."""
    error_tolerance: float = 2.5
    """Forecast-error check: trips above this multiple of the backtest band's 95th percentile."""
    drift_p_value: float = 0.001
    """Input-drift check: significance level of the Mann-Whitney U test."""
    drift_min_shift_ppm: float = 2.0
    """Input-drift check: smallest shift of the median annual change that counts (ppm)."""
    cooldown_weeks: int = 8
    """Weeks of new data after a drift event before the next one may be sent."""


@dataclass(frozen=True)
class ObservabilitySettings:
    log_retention_days: int = 7
    alarm_email: str = ""
    container_insights: bool = False
    """ECS Container Insights on the cluster (billed as custom metrics); also the tasks-below-min
    alarm, which reads its RunningTaskCount."""
    cloudwatch_dashboard: bool = False
    """A CloudWatch dashboard of the service ($3 a month beyond the free tier)."""
    alarm_topic_cmk: bool = True
    """Encrypt the alarm topic with a customer-managed KMS key ($1 a month). CloudWatch alarms
    cannot publish to a topic under the AWS-managed `aws/sns` key, so false means unencrypted."""


@dataclass(frozen=True)
class CiSettings:
    repository: str = ""
    """GitHub `owner/repo` whose Actions may preview and deploy this stack; "" = no CI trust."""
    oidc_provider_arn: str = ""
    """An existing GitHub OIDC provider in the account; "" = declare one (one per account)."""
    deploy_environment: str = ""
    """The GitHub environment whose jobs may deploy; "" = the stack's name."""


@dataclass(frozen=True)
class Settings:
    """The whole stack config."""

    stack: str
    region: str
    network: NetworkSettings = field(default_factory=NetworkSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    ci: CiSettings = field(default_factory=CiSettings)

    @property
    def https(self) -> bool:
        """The load balancer serves HTTPS (an existing certificate or a domain to certify)."""
        return bool(self.inference.certificate_arn or self.inference.domain)

    @property
    def gpu_training(self) -> bool:
        return self.training.capacity is Capacity.GPU_EC2

    @property
    def gpu_serving(self) -> bool:
        return self.inference.capacity is ServingCapacity.GPU_EC2

    @property
    def gpu_image(self) -> bool:
        """Whether anything runs the gpu image flavour (CUDA base, CUDA-enabled XGBoost)."""
        return self.gpu_training or self.gpu_serving


SECTIONS: dict[str, type] = {
    "network": NetworkSettings,
    "image": ImageSettings,
    "store": StoreSettings,
    "inference": InferenceSettings,
    "training": TrainingSettings,
    "monitoring": MonitoringSettings,
    "observability": ObservabilitySettings,
    "ci": CiSettings,
}


# ---------------------------------------------------------------------------- value readers


class _Section:
    """Reads one config section, key by key, with messages that name `mlops:<section>.<key>`."""

    def __init__(self, name: str, raw: Any, cls: type):
        self.name = name
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise _fail(name, raw, "it must be a map of keys (structured YAML)")
        known = [f.name for f in fields(cls)]
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise pulumi.RunError(
                    f"{PROJECT}:{name}.{key}: unknown key; {hint}known keys: {', '.join(known)}"
                )
        self.raw = raw
        self.defaults = {f.name: f.default for f in fields(cls)}

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def has(self, key: str) -> bool:
        return key in self.raw

    def int(self, key: str, lo: int | None = 0, hi: int | None = None) -> int:
        value = self.raw.get(key, self.defaults[key])
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(self.key(key), value, "it must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"from {lo}" + (f" to {hi}" if hi is not None else " up")
            raise _fail(self.key(key), value, f"it must be an integer {span}")
        return value

    def number(self, key: str, lo: float, hi: float) -> float:
        value = self.raw.get(key, self.defaults[key])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(self.key(key), value, "it must be a number")
        if not lo <= value < hi:
            raise _fail(self.key(key), value, f"it must be at least {lo} and below {hi}")
        return float(value)

    def bool(self, key: str) -> bool:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, bool):
            raise _fail(self.key(key), value, "it must be true or false")
        return value

    def str(self, key: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, str):
            raise _fail(self.key(key), value, "it must be a string")
        if value and pattern is not None and not pattern.fullmatch(value):
            raise _fail(self.key(key), value, allowed)
        return value

    def enum(self, key: str, enum: type[StrEnum]) -> Any:
        value = self.raw.get(key, self.defaults[key])
        try:
            return enum(value)
        except ValueError:
            options = ", ".join(e.value for e in enum)
            raise _fail(self.key(key), value, f"allowed: {options}") from None

    def choice(self, key: str, options: tuple[int, ...], off: bool = False) -> int:
        """One of `options`, or 0 meaning "never" when `off`."""
        value = self.int(key, lo=None)
        if value not in options and not (off and value == 0):
            allowed = ", ".join(str(o) for o in options)
            raise _fail(self.key(key), value, f"allowed: {'0 (never) or ' if off else ''}{allowed}")
        return value

    def list(self, key: str, item: Callable[[str, Any], Any]) -> tuple[Any, ...]:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, list | tuple):
            raise _fail(self.key(key), value, "it must be a list")
        return tuple(item(f"{self.key(key)}[{i}]", v) for i, v in enumerate(value))


def _cidr(key: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except (TypeError, ValueError) as exc:
        raise _fail(key, value, f"it must be a CIDR block like 10.0.0.0/16 ({exc})") from None


def _fargate_size(section: _Section, what: str) -> tuple[int, int]:
    cpu = section.int("cpu", lo=None)
    if cpu not in FARGATE_MEMORY:
        allowed = ", ".join(str(c) for c in FARGATE_MEMORY)
        raise _fail(section.key("cpu"), cpu, f"{what} needs a Fargate CPU value: {allowed}")
    memory = section.int("memory", lo=None)
    options = FARGATE_MEMORY[cpu]
    if memory not in options:
        step = options[1] - options[0]
        allowed = (
            ", ".join(str(m) for m in options)
            if cpu == 256
            else f"{options[0]}-{options[-1]} in steps of {step}"
        )
        raise _fail(section.key("memory"), memory, f"with cpu {cpu} Fargate accepts {allowed}")
    return cpu, memory


# ---------------------------------------------------------------------------- the sections


def _network(raw: Any) -> NetworkSettings:
    s = _Section("network", raw, NetworkSettings)
    cidr = _cidr(s.key("cidr"), s.raw.get("cidr", s.defaults["cidr"]))
    net = ipaddress.ip_network(cidr)
    if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 20:
        raise _fail(s.key("cidr"), cidr, "the VPC needs a private IPv4 block from /16 to /20")
    return NetworkSettings(
        cidr=cidr,
        azs=s.int("azs", lo=2, hi=3),
        egress=s.enum("egress", Egress),
    )


def _image(raw: Any) -> ImageSettings:
    s = _Section("image", raw, ImageSettings)
    return ImageSettings(
        keep_images=s.int("keep_images", lo=1, hi=1000),
        pin=s.str("pin", SHA256_DIGEST, 'it must be "" or "sha256:" followed by 64 hex digits'),
        gpu_pin=s.str(
            "gpu_pin", SHA256_DIGEST, 'it must be "" or "sha256:" followed by 64 hex digits'
        ),
    )


def _store(raw: Any) -> StoreSettings:
    s = _Section("store", raw, StoreSettings)
    return StoreSettings(
        throughput=s.enum("throughput", Throughput),
        infrequent_access_after_days=s.choice(
            "infrequent_access_after_days", EFS_IA_DAYS, off=True
        ),
        backups=s.bool("backups"),
        protect=s.bool("protect"),
    )


def _schedule(key: str, raw: Any) -> ScalingSchedule:
    if not isinstance(raw, Mapping):
        raise _fail(key, raw, "each schedule is a map {name, cron, min, max}")
    missing = {"name", "cron", "min", "max"} - set(raw)
    extra = set(raw) - {"name", "cron", "min", "max"}
    if missing or extra:
        raise _fail(key, dict(raw), "each schedule has exactly the keys name, cron, min, max")
    name = raw["name"]
    if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
        raise _fail(f"{key}.name", name, "letters, digits, '-' and '_', at most 64")
    check_cron(f"{key}.cron", raw["cron"], allow_at=True)
    for bound in ("min", "max"):
        value = raw[bound]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(f"{key}.{bound}", value, "it must be an integer from 0 up")
    if raw["min"] > raw["max"]:
        raise _fail(f"{key}.min", raw["min"], f"it must not exceed max ({raw['max']})")
    return ScalingSchedule(name=name, cron=raw["cron"], min=raw["min"], max=raw["max"])


def _gpu_serving(raw: Any) -> GpuServingSettings:
    s = _Section("inference.gpu", raw, GpuServingSettings)
    types = s.list("instance_types", _gpu_type)
    if not types:
        raise _fail(s.key("instance_types"), [], "list at least one GPU instance type")
    if len(set(types)) != len(types):
        raise _fail(s.key("instance_types"), list(types), "list each instance type once")
    lo, hi = s.int("min_instances"), s.int("max_instances", lo=1, hi=100)
    if lo > hi:
        raise _fail(s.key("min_instances"), lo, f"it must not exceed max_instances ({hi})")
    return GpuServingSettings(
        instance_types=types,
        gpus=s.int("gpus", lo=1),
        min_instances=lo,
        max_instances=hi,
        on_demand_base=s.int("on_demand_base", hi=hi),
        on_demand_percent_above_base=s.int("on_demand_percent_above_base", hi=100),
    )


def tasks_per_instance(instance: str, gpus: int, cpu: int, memory: int) -> tuple[int, str]:
    """How many awsvpc serving tasks of this size one instance holds, and what limits it.

    The least of: its GPUs over the task's, its network interfaces but the primary one (see
    `INSTANCE_ENIS`), its CPU units and its memory less the agent's reserve.
    """
    vcpus, mem, count = GPU_INSTANCES[instance]
    limits = {
        f"{count} GPU(s)": count // gpus,
        f"{INSTANCE_ENIS[instance]} network interfaces (awsvpc: one per task plus the "
        "instance's own)": INSTANCE_ENIS[instance] - 1,
        f"{vcpus * 1024} CPU units": vcpus * 1024 // cpu,
        f"{mem - ECS_AGENT_RESERVED_MIB} MiB for tasks": (mem - ECS_AGENT_RESERVED_MIB) // memory,
    }
    reason = min(limits, key=lambda k: limits[k])
    return limits[reason], reason


def _check_gpu_serving(
    s: _Section, gpu: GpuServingSettings, cpu: int, memory: int, most: int
) -> None:
    """gpu-ec2 serving: every instance type holds a task, and the group's max holds `max` tasks."""
    for instance in gpu.instance_types:
        _, _, count = GPU_INSTANCES[instance]
        if gpu.gpus > count:
            raise _fail(s.key("gpu.gpus"), gpu.gpus, f"{instance} has {count} GPU(s)")
        fits, reason = tasks_per_instance(instance, gpu.gpus, cpu, memory)
        if fits < 1:
            key = "cpu" if "CPU" in reason else "memory"
            raise _fail(s.key(key), cpu if key == "cpu" else memory, f"{instance} has {reason}")
        if gpu.max_instances * fits < most:
            raise _fail(
                s.key("gpu.max_instances"),
                gpu.max_instances,
                f"inference.max is {most} tasks, and {instance} holds {fits} task(s) "
                f"(limited by its {reason}), so {gpu.max_instances} instance(s) hold only "
                f"{gpu.max_instances * fits}; raise gpu.max_instances or lower inference.max",
            )


def _inference(raw: Any) -> InferenceSettings:
    s = _Section("inference", raw, InferenceSettings)
    capacity = s.enum("capacity", ServingCapacity)
    gpu = _gpu_serving(s.raw.get("gpu"))
    if capacity is ServingCapacity.GPU_EC2:
        cpu, memory = s.int("cpu", lo=128), s.int("memory", lo=512)
    else:
        cpu, memory = _fargate_size(s, "the inference service")
    lo, hi = s.int("min"), s.int("max", lo=1)
    if lo > hi:
        raise _fail(s.key("min"), lo, f"it must not exceed max ({hi})")
    desired = s.int("desired")
    if not lo <= desired <= hi:
        raise _fail(s.key("desired"), desired, f"it must be within min..max ({lo}..{hi})")
    base = s.int("on_demand_base", hi=hi)
    on_demand_weight, spot_weight = s.int("on_demand_weight"), s.int("spot_weight")
    if on_demand_weight == 0 and spot_weight == 0:
        raise _fail(s.key("spot_weight"), 0, "on_demand_weight and spot_weight cannot both be 0")
    schedules = s.list("schedules", _schedule)
    names = [sc.name for sc in schedules]
    if len(set(names)) != len(names):
        raise _fail(s.key("schedules"), names, "schedule names must be unique")
    cidrs = s.list("allowed_cidrs", _cidr)
    if not cidrs:
        raise _fail(s.key("allowed_cidrs"), [], "list at least one CIDR allowed to reach the ALB")
    certificate = s.str(
        "certificate_arn",
        CERTIFICATE_ARN,
        'it must be "" or an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)',
    )
    domain = s.str("domain", DOMAIN, 'it must be "" or a lowercase DNS name like api.example.com')
    if domain and certificate:
        raise _fail(
            s.key("domain"),
            domain,
            "set either inference.domain (a new DNS-validated certificate) or "
            "inference.certificate_arn (an existing one), not both",
        )
    zone = s.str("hosted_zone", DOMAIN, 'it must be "" or the Route 53 zone name, like example.com')
    if zone and not domain:
        raise _fail(s.key("hosted_zone"), zone, "it only applies with inference.domain")
    if domain and domain.count(".") < 2 and not zone:
        raise _fail(
            s.key("domain"),
            domain,
            "an apex domain needs inference.hosted_zone (the zone is not its parent)",
        )
    zone = zone or (domain.split(".", 1)[1] if domain else "")
    if domain and not (domain == zone or domain.endswith("." + zone)):
        raise _fail(s.key("hosted_zone"), zone, f"it must contain inference.domain {domain!r}")
    if capacity is ServingCapacity.GPU_EC2:
        _check_gpu_serving(s, gpu, cpu, memory, hi)
    return InferenceSettings(
        capacity=capacity,
        gpu=gpu,
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
        forecast_interval_seconds=s.int("forecast_interval_seconds", lo=1, hi=3600),
    )


def _gpu_type(key: str, value: Any) -> str:
    if value not in GPU_INSTANCES:
        families = sorted({t.split(".")[0] for t in GPU_INSTANCES})
        raise _fail(
            key,
            value,
            f"gpu-ec2 needs an x86_64 NVIDIA GPU instance type ({', '.join(families)}), "
            "e.g. g5.xlarge",
        )
    return value


def _training(raw: Any) -> TrainingSettings:
    s = _Section("training", raw, TrainingSettings)
    capacity = s.enum("capacity", Capacity)
    if capacity is Capacity.GPU_EC2:
        types = s.list("gpu_instance_types", _gpu_type)
        if not types:
            raise _fail(s.key("gpu_instance_types"), [], "list at least one GPU instance type")
        gpus = s.int("gpus", lo=1) if s.has("gpus") else 1
        cpu, memory = s.int("cpu", lo=128), s.int("memory", lo=512)
        for instance in types:
            vcpus, mem, count = GPU_INSTANCES[instance]
            if gpus > count:
                raise _fail(s.key("gpus"), gpus, f"{instance} has {count} GPU(s)")
            if cpu > vcpus * 1024:
                raise _fail(s.key("cpu"), cpu, f"{instance} has {vcpus * 1024} CPU units")
            if memory > mem - ECS_AGENT_RESERVED_MIB:
                raise _fail(
                    s.key("memory"),
                    memory,
                    f"{instance} leaves at most {mem - ECS_AGENT_RESERVED_MIB} MiB for tasks",
                )
        max_instances = s.int("max_instances", lo=1, hi=100)
    else:
        gpus = s.int("gpus", lo=None)
        if gpus != 0:
            raise _fail(
                s.key("gpus"),
                gpus,
                f"Fargate has no GPUs: use capacity gpu-ec2 for GPUs, or 0 with {capacity.value}",
            )
        cpu, memory = _fargate_size(s, "Fargate training")
        types = s.list("gpu_instance_types", _gpu_type)
        max_instances = s.int("max_instances", lo=1, hi=100)
    schedule = s.str("schedule")
    if schedule:
        check_cron(s.key("schedule"), schedule)
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


def _monitoring(raw: Any) -> MonitoringSettings:
    s = _Section("monitoring", raw, MonitoringSettings)
    schedule = s.str("ingest_schedule")
    if schedule:
        check_cron(s.key("ingest_schedule"), schedule)
    source = s.str("source")
    if not HTTPS_URL.fullmatch(source):
        raise _fail(s.key("source"), source, "it must be an https:// URL of NOAA's weekly format")
    return MonitoringSettings(
        ingest_schedule=schedule,
        source=source,
        error_tolerance=s.number("error_tolerance", 1.0, 100.0),
        drift_p_value=s.number("drift_p_value", 1e-12, 0.5),
        drift_min_shift_ppm=s.number("drift_min_shift_ppm", 0.0, 50.0),
        cooldown_weeks=s.int("cooldown_weeks", lo=0, hi=520),
    )


def _observability(raw: Any) -> ObservabilitySettings:
    s = _Section("observability", raw, ObservabilitySettings)
    return ObservabilitySettings(
        log_retention_days=s.choice("log_retention_days", LOG_RETENTION_DAYS),
        alarm_email=s.str("alarm_email", EMAIL, 'it must be "" or an email address'),
        container_insights=s.bool("container_insights"),
        cloudwatch_dashboard=s.bool("cloudwatch_dashboard"),
        alarm_topic_cmk=s.bool("alarm_topic_cmk"),
    )


def _ci(raw: Any) -> CiSettings:
    s = _Section("ci", raw, CiSettings)
    repository = s.str(
        "repository", GITHUB_REPOSITORY, 'it must be "" or a GitHub owner/repo like acme/mlops'
    )
    provider = s.str(
        "oidc_provider_arn",
        OIDC_PROVIDER_ARN,
        'it must be "" or arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com',
    )
    environment = s.str(
        "deploy_environment", GITHUB_ENVIRONMENT, "letters, digits, '.', '-' and '_'"
    )
    if provider and not repository:
        raise _fail(s.key("oidc_provider_arn"), provider, "it only applies with ci.repository")
    return CiSettings(
        repository=repository, oidc_provider_arn=provider, deploy_environment=environment
    )


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "network": _network,
    "image": _image,
    "store": _store,
    "inference": _inference,
    "training": _training,
    "monitoring": _monitoring,
    "observability": _observability,
    "ci": _ci,
}


def parse(raw: Mapping[str, Any], stack: str = "dev", region: str = "us-east-1") -> Settings:
    """Validate the `mlops:*` config (section name -> structured value) into `Settings`."""
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, list(SECTIONS), n=1)
            hint = f"did you mean `{PROJECT}:{close[0]}`? " if close else ""
            raise pulumi.RunError(
                f"{PROJECT}:{section}: unknown config key; {hint}known keys: "
                + ", ".join(f"{PROJECT}:{s}" for s in SECTIONS)
            )
    values = {name: parser(raw.get(name)) for name, parser in _PARSERS.items()}
    settings = Settings(stack=stack, region=region, **values)
    if settings.gpu_training and settings.network.egress is Egress.PUBLIC_IP:
        # GPU instances run in private subnets without public IPs; with no NAT they could not
        # reach ECS, ECR or CloudWatch and would never register with the cluster.
        raise _fail(
            "training.capacity",
            "gpu-ec2",
            "gpu-ec2 needs mlops:network.egress single-nat or nat-per-az (GPU instances run in "
            "private subnets), got public-ip",
        )
    if settings.gpu_serving and settings.network.egress is Egress.PUBLIC_IP:
        # awsvpc tasks on EC2 get no public IP (ECS Developer Guide, "Amazon ECS task networking
        # options for the EC2 launch type"): without NAT they cannot pull the image or log.
        raise _fail(
            "inference.capacity",
            "gpu-ec2",
            "gpu-ec2 needs mlops:network.egress single-nat or nat-per-az (tasks on EC2 get no "
            "public IP, so they reach ECR and CloudWatch through NAT), got public-ip",
        )
    _check_pins(settings)
    if settings.store.protect and not settings.https:
        # A protected (production) stack never serves its API over plain HTTP.
        raise pulumi.RunError(
            f"{PROJECT}:inference.domain: '' and {PROJECT}:inference.certificate_arn: '' are not "
            "allowed on a protected stack (store.protect: true); set inference.domain to a name "
            "in a Route 53 public zone of this account (a DNS-validated certificate is issued) "
            "or inference.certificate_arn to an existing ACM certificate in "
            f"{settings.region}"
        )
    return settings


def _check_pins(settings: Settings) -> None:
    """A pinned (rollback) stack builds nothing, so every flavour it runs needs its own digest:
    the cpu image has no CUDA-enabled XGBoost, and one digest cannot be both flavours."""
    image = settings.image
    if image.gpu_pin and not settings.gpu_image:
        raise _fail(
            "image.gpu_pin",
            image.gpu_pin,
            f"only a gpu-ec2 stack runs the gpu image (training.capacity is "
            f"{settings.training.capacity.value}, inference.capacity "
            f'{settings.inference.capacity.value}); leave it ""',
        )
    if image.gpu_pin and not image.pin:
        raise _fail(
            "image.gpu_pin", image.gpu_pin, "it only applies with image.pin; set both or neither"
        )
    if image.pin and settings.gpu_image and not image.gpu_pin:
        raise _fail(
            "image.gpu_pin",
            image.gpu_pin,
            "a gpu-ec2 stack pinned with image.pin also needs the gpu image's digest "
            '("sha256:" followed by 64 hex digits, an image tagged gpu-...)',
        )


def _config_keys() -> set[str]:
    """Every config key the engine handed the program, e.g. `mlops:network`.

    `pulumi.Config` cannot enumerate keys, and rejecting unknown ones needs the full list. The
    Python language host stores the config in `pulumi.runtime.config` (or, in older engines, in
    the PULUMI_CONFIG environment variable), so read both.
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def load() -> Settings:
    """Read and validate this stack's config. The only reader of `pulumi.Config` in the program."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    for key in sorted(_config_keys()):
        namespace, _, name = key.partition(":")
        if namespace != PROJECT:
            continue
        try:
            raw[name] = config.get_object(name)
        except json.JSONDecodeError:
            raw[name] = config.get(name)
    region = pulumi.Config("aws").get("region") or ""
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise pulumi.RunError(f"aws:region: {region!r} is not allowed; set one, e.g. us-east-1")
    return parse(raw, stack=pulumi.get_stack(), region=region)
