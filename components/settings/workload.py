"""`mlops:workload`: what the image does (commands, ports, health, steps, sidecars, job, user).

Sizes, capacity, GPUs and schedules stay in `mlops:training`, `mlops:inference` and
`mlops:monitoring`; this section says what runs, those say where and how big. Without the section
the bundled reference workload (`default_workload` in `workloads/defaults.yaml`) is read, so a
stack file that
never declares a workload deploys what it deployed before. Keys of the old config that became
workload environment (`deprecated_keys` there) are still read, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from components.settings._section import PROJECT, Section, as_map, fail
from components.settings.channels import parse_channel, parse_kms_key
from components.settings.rollout import SampleRequest, parse_samples
from components.settings.secrets import ENV_NAME, SecretRef, no_secret, parse_secrets
from components.settings.sweep import Sweep, check_sweep, parse_sweep
from components.settings.workload_image import ROOT, ImageSpec, parse_workload_image
from mlops_contract import RESERVED_ENV, RESERVED_ENV_PREFIXES

WORKLOADS = ROOT / "workloads"
DEFAULTS = WORKLOADS / "defaults.yaml"
"""`default_workload`: the file read when a stack declares no `mlops:workload` (the reference
workload, app/); `deprecated_keys`: settings/legacy.py."""

CONTAINER_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
PLATFORM_CONTAINERS = ("api", "stage-training", "collect-training", "stage-serving", "gate")
"""Names the platform gives its own containers; a sidecar cannot take them."""
HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,1023}")
USER = re.compile(r"(?P<uid>\d{1,10})(:(?P<gid>\d{1,10}))?")
STEPS = ("validate", "gate", "await_image")


class Contract(StrEnum):
    """How the platform runs the image."""

    PLATFORM = "platform"  # the image's own commands; the store mounted at /mnt/store, STORE_DIR
    SAGEMAKER = "sagemaker"  # SageMaker BYOC: /opt/ml staged by the platform's containers


class Promotion(StrEnum):
    """How the platform gate decides (a workload with its own gate step decides itself)."""

    OBJECTIVE = "objective"  # compare `objective` with the current model's; promote the better
    EVERY_TRAINED_RUN = "every-trained-run"  # no metrics: every run that trained is promoted


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


@dataclass(frozen=True)
class TrainingSpec:
    command: tuple[str, ...] = ("train",)
    environment: Mapping[str, str] = field(default_factory=dict)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """sagemaker: written to /opt/ml/input/config/hyperparameters.json as strings."""
    channels: Mapping[str, str] = field(default_factory=dict)
    """sagemaker: channel -> store-relative directory or `s3://bucket/prefix/` (settings/
    channels.py), staged into /opt/ml/input/data/<channel>."""
    channels_kms_key_arn: str = ""
    """The KMS key the S3 channels' objects are encrypted with: the task role may decrypt with
    it through S3; "" for none (SSE-S3 or unencrypted)."""
    timeout_minutes: int = 60
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    model_limit_gib: int = 10
    """sagemaker: the most a run's model (and its output/data) may hold, at full size (a sparse
    file counts whole, as copying writes it); a bigger one fails the run."""
    sweep: Sweep | None = None
    """sagemaker: a hyperparameter search, each trial a training run (settings/sweep.py)."""


@dataclass(frozen=True)
class ServingSpec:
    command: tuple[str, ...] = ("serve",)
    port: int = 8080
    health_path: str = "/ping"
    """The load balancer target group's check."""
    health_command: tuple[str, ...] | None = None
    """An ECS container health check (`CMD ...` or `CMD-SHELL ...`); none when absent."""
    start_period_seconds: int = 60
    environment: Mapping[str, str] = field(default_factory=dict)
    internal_port: int | None = None
    """A second port reachable from the VPC only, never through the load balancer."""
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    samples: tuple[SampleRequest, ...] = ()
    """Requests a new revision must answer through the test listener before it takes production
    traffic (`inference.rollout` blue-green, canary or linear)."""


@dataclass(frozen=True)
class StepSpec:
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    file: str = "metrics.json"
    key: str = ""
    direction: Direction = Direction.MAXIMIZE
    margin: float = 0.0


@dataclass(frozen=True)
class SidecarSpec:
    name: str
    command: tuple[str, ...]
    port: int | None = None
    path: str | None = None
    """Served through the load balancer under this path (its own target group)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    health_command: tuple[str, ...] | None = None
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    emits_drift: bool = False
    """May put the drift event on the default bus (the only use of events:PutEvents)."""
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)


@dataclass(frozen=True)
class SecuritySpec:
    user: str = "10001"
    read_only_root: bool = True
    run_as_root: bool = False
    """The documented opt-out: user 0 and a writable root (the policy pack reports it)."""

    @property
    def container_user(self) -> str:
        """`uid:gid` as ECS takes it."""
        match = USER.fullmatch(self.user)
        assert match, self.user  # the parser checked it
        return f"{match['uid']}:{match['gid'] or match['uid']}"

    @property
    def uid(self) -> int:
        return int(self.container_user.split(":")[0])


@dataclass(frozen=True)
class WorkloadSpec:
    contract: Contract = Contract.PLATFORM
    image: ImageSpec = field(default_factory=ImageSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    serving: ServingSpec | None = field(default_factory=ServingSpec)
    """None: a training-only workload (no service, no load balancer)."""
    steps: Mapping[str, StepSpec] = field(default_factory=dict)
    objective: Objective | None = None
    promotion: Promotion = Promotion.OBJECTIVE
    """`every-trained-run`: the documented choice for images that write no metrics; the policy
    pack reports it as advisory."""
    sidecars: tuple[SidecarSpec, ...] = ()
    job: JobSpec | None = None
    security: SecuritySpec = field(default_factory=SecuritySpec)

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        """Every secret any of the workload's containers names, once each."""
        found = [
            *self.training.secrets.values(),
            *(self.serving.secrets.values() if self.serving is not None else ()),
            *(ref for car in self.sidecars for ref in car.secrets.values()),
            *(self.job.secrets.values() if self.job is not None else ()),
        ]
        return tuple(dict.fromkeys(found))


# -- readers of one value, each naming its key ------------------------------------------------


def _command(key: str, raw: Any) -> tuple[str, ...]:
    if (
        not isinstance(raw, list | tuple)
        or not raw
        or not all(isinstance(a, str) and a for a in raw)
    ):
        raise fail(key, raw, "it must be a non-empty list of strings, e.g. [train]")
    return tuple(raw)


def _environment(key: str, raw: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in as_map(key, raw).items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise fail(f"{key}.{name}", name, "a variable name is [A-Z_][A-Z0-9_]*")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise fail(
                f"{key}.{name}",
                name,
                "the platform sets it: "
                + ", ".join([*RESERVED_ENV, *(p + "*" for p in RESERVED_ENV_PREFIXES)]),
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise fail(f"{key}.{name}", value, "a value is a string or a number (no secrets)")
        no_secret(f"{key}.{name}", str(value))
        env[name] = str(value)
    return env


def _port(key: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise fail(key, raw, "it must be a TCP port 1..65535")
    return raw


def _health_command(key: str, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    command = _command(key, raw)
    if command[0] not in ("CMD", "CMD-SHELL") or len(command) < 2:
        raise fail(key, raw, 'an ECS health check: ["CMD", "prog", "arg"...] or ["CMD-SHELL", "…"]')
    return command


def _health_path(key: str, raw: Any) -> str:
    if not isinstance(raw, str) or not HEALTH_PATH.fullmatch(raw):
        raise fail(key, raw, "an HTTP path starting with /, e.g. /ping")
    return raw


def _training(raw: Any) -> TrainingSpec:
    s = Section("workload.training", raw, TrainingSpec)
    hyperparameters = dict(as_map(s.key("hyperparameters"), s.raw.get("hyperparameters")))
    for name, value in hyperparameters.items():
        if not isinstance(name, str) or value is None or isinstance(value, Mapping | list):
            raise fail(f"{s.key('hyperparameters')}.{name}", value, "a string, number or bool")
        no_secret(f"{s.key('hyperparameters')}.{name}", str(value))
    channels = {}
    for name, value in as_map(s.key("channels"), s.raw.get("channels")).items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
            raise fail(f"{s.key('channels')}.{name}", name, "a channel name like train")
        channels[name] = parse_channel(f"{s.key('channels')}.{name}", value)
    environment = _environment(s.key("environment"), s.raw.get("environment"))
    return TrainingSpec(
        command=_command(s.key("command"), s.raw.get("command", ["train"])),
        environment=environment,
        hyperparameters=hyperparameters,
        channels=channels,
        channels_kms_key_arn=parse_kms_key(
            s.key("channels_kms_key_arn"), s.raw.get("channels_kms_key_arn"), channels
        ),
        timeout_minutes=s.int("timeout_minutes", lo=1, hi=7 * 24 * 60),
        secrets=parse_secrets(s.key("secrets"), s.raw.get("secrets"), environment),
        model_limit_gib=s.int("model_limit_gib", lo=1, hi=1024),
        sweep=parse_sweep(s.raw.get("sweep"), hyperparameters),
    )


def _serving(raw: Any) -> ServingSpec:
    s = Section("workload.serving", raw, ServingSpec)
    port = _port(s.key("port"), s.raw.get("port", 8080))
    internal = s.raw.get("internal_port")
    if internal is not None and _port(s.key("internal_port"), internal) == port:
        raise fail(s.key("internal_port"), internal, f"it must differ from port ({port})")
    environment = _environment(s.key("environment"), s.raw.get("environment"))
    return ServingSpec(
        command=_command(s.key("command"), s.raw.get("command", ["serve"])),
        port=port,
        health_path=_health_path(s.key("health_path"), s.raw.get("health_path", "/ping")),
        health_command=_health_command(s.key("health_command"), s.raw.get("health_command")),
        start_period_seconds=s.int("start_period_seconds", lo=0, hi=300),
        environment=environment,
        internal_port=internal,
        secrets=parse_secrets(s.key("secrets"), s.raw.get("secrets"), environment),
        samples=parse_samples(s.key("samples"), s.raw.get("samples")),
    )


def _steps(raw: Any) -> dict[str, StepSpec]:
    steps = {}
    for name, value in as_map("workload.steps", raw).items():
        if name not in STEPS:
            raise fail(f"workload.steps.{name}", name, f"allowed steps: {', '.join(STEPS)}")
        s = Section(f"workload.steps.{name}", value, StepSpec)
        if not s.has("command"):
            raise fail(s.key("command"), None, "a step needs its command, e.g. [validate]")
        environment = _environment(s.key("environment"), s.raw.get("environment"))
        steps[name] = StepSpec(
            command=_command(s.key("command"), s.raw["command"]),
            environment=environment,
            secrets=parse_secrets(s.key("secrets"), s.raw.get("secrets"), environment),
        )
    return steps


def _objective(raw: Any) -> Objective:
    s = Section("workload.objective", raw, Objective)
    path = s.str("file")
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise fail(s.key("file"), path, "a file inside the model directory, e.g. metrics.json")
    key = s.str("key")
    if not key:
        raise fail(s.key("key"), key, "the metric's key in the file, e.g. accuracy")
    margin = s.raw.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1e9:
        raise fail(s.key("margin"), margin, "a number from 0 up")
    return Objective(file=path, key=key, direction=s.enum("direction", Direction), margin=margin)


def _sidecar(key: str, raw: Any) -> SidecarSpec:
    s = Section(key.removeprefix(f"{PROJECT}:"), raw, SidecarSpec)
    name = s.raw.get("name")
    if not isinstance(name, str) or not CONTAINER_NAME.fullmatch(name):
        raise fail(s.key("name"), name, "lowercase letters, digits and '-', at most 31")
    if name in PLATFORM_CONTAINERS:
        raise fail(s.key("name"), name, f"the platform's own: {', '.join(PLATFORM_CONTAINERS)}")
    port = s.raw.get("port")
    if port is not None:
        _port(s.key("port"), port)
    path = s.raw.get("path")
    if path is not None:
        _health_path(s.key("path"), path)
        if port is None:
            raise fail(s.key("path"), path, "a sidecar served under a path needs its port")
    if "command" not in s.raw:
        raise fail(s.key("command"), None, "a sidecar needs its command")
    environment = _environment(s.key("environment"), s.raw.get("environment"))
    return SidecarSpec(
        name=name,
        command=_command(s.key("command"), s.raw["command"]),
        port=port,
        path=path,
        environment=environment,
        health_command=_health_command(s.key("health_command"), s.raw.get("health_command")),
        secrets=parse_secrets(s.key("secrets"), s.raw.get("secrets"), environment),
    )


def _job(raw: Any) -> JobSpec:
    s = Section("workload.job", raw, JobSpec)
    if "command" not in s.raw:
        raise fail(s.key("command"), None, "a job needs its command, e.g. [monitor]")
    environment = _environment(s.key("environment"), s.raw.get("environment"))
    return JobSpec(
        command=_command(s.key("command"), s.raw["command"]),
        environment=environment,
        emits_drift=s.bool("emits_drift"),
        secrets=parse_secrets(s.key("secrets"), s.raw.get("secrets"), environment),
    )


def _security(raw: Any) -> SecuritySpec:
    s = Section("workload.security", raw, SecuritySpec)
    root = s.bool("run_as_root")
    user = s.raw.get("user", "0" if root else "10001")
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    match = USER.fullmatch(user) if isinstance(user, str) else None
    if not match:
        raise fail(s.key("user"), user, 'a numeric "uid" or "uid:gid", e.g. "10001"')
    read_only = s.raw.get("read_only_root", not root)
    if not isinstance(read_only, bool):
        raise fail(s.key("read_only_root"), read_only, "it must be true or false")
    if root and (match["uid"] != "0" or read_only):
        raise fail(
            s.key("run_as_root"),
            True,
            'it runs as user "0" with a writable root; leave user and read_only_root out',
        )
    if not root and match["uid"] == "0":
        raise fail(s.key("user"), user, "root is the documented opt-out: set run_as_root: true")
    return SecuritySpec(user=user, read_only_root=read_only, run_as_root=root)


def parse_workload(raw: Any) -> WorkloadSpec:
    """`mlops:workload`, or the reference workload's file when `raw` is None."""
    if raw is None:
        raw = default_workload_raw()
    s = Section("workload", raw, WorkloadSpec)
    contract = s.enum("contract", Contract)
    training = _training(s.raw.get("training"))
    if contract is Contract.PLATFORM and (training.channels or training.hyperparameters):
        key = "channels" if training.channels else "hyperparameters"
        raise fail(
            f"workload.training.{key}",
            dict(getattr(training, key)),
            "only the sagemaker contract stages channels and hyperparameters",
        )
    steps = _steps(s.raw.get("steps"))
    objective = _objective(s.raw["objective"]) if s.raw.get("objective") is not None else None
    promotion = s.enum("promotion", Promotion)
    if promotion is Promotion.EVERY_TRAINED_RUN and ("gate" in steps or objective is not None):
        raise fail(
            "workload.promotion",
            promotion.value,
            "every-trained-run is the platform gate's choice for a workload with no objective: "
            "leave out the objective and the gate step, or promotion",
        )
    if "gate" not in steps and objective is None and promotion is Promotion.OBJECTIVE:
        raise fail(
            "workload.objective",
            None,
            "without a gate step the platform gate needs an objective {file, key, direction}, "
            "or promotion: every-trained-run for an image that writes no metrics",
        )
    check_sweep(
        training.sweep,
        sagemaker=contract is Contract.SAGEMAKER,
        own_gate="gate" in steps,
        objective=objective is not None,
    )
    sidecars = s.list("sidecars", _sidecar) if s.raw.get("sidecars") is not None else ()
    names = [c.name for c in sidecars]
    if len(set(names)) != len(names):
        raise fail("workload.sidecars", names, "sidecar names must be unique")
    serving = _serving(s.raw.get("serving", {})) if s.raw.get("serving", {}) is not None else None
    if serving is None and sidecars:
        raise fail("workload.sidecars", names, "sidecars run beside the server: declare serving")
    if serving is not None:
        taken = {serving.port, serving.internal_port}
        for car in sidecars:
            if car.port in taken:
                raise fail(f"workload.sidecars.{car.name}.port", car.port, "a port not yet used")
            taken.add(car.port)
    image = parse_workload_image(s.raw.get("image", {"build": {}}))
    return WorkloadSpec(
        contract=contract,
        image=image,
        training=training,
        serving=serving,
        steps=steps,
        objective=objective,
        promotion=promotion,
        sidecars=sidecars,
        job=_job(s.raw["job"]) if s.raw.get("job") is not None else None,
        security=_security(s.raw.get("security")),
    )


def default_workload_raw() -> Any:
    name = yaml.safe_load(DEFAULTS.read_text())["default_workload"]
    return yaml.safe_load((WORKLOADS / name).read_text())
