"""Run the stack's own ECS task definitions in Docker, the way Fargate runs them.

    python -m preflight.run_local dev --task pipeline            # validate -> train -> gate
    python -m preflight.run_local dev --task inference           # api, dashboard, forecaster
    python -m preflight.run_local prod --task train --store DIR --base-image mlops-base:bookworm

In four steps:

1. The stack is evaluated offline (`preflight.offline.run_stack`, the mocks harness the tests use).
2. The task definitions the program declares are taken as they are: container definitions, task
   cpu/memory, volumes, the EFS access point, the load balancer's target-group health checks and
   the state machine's definition. Nothing is retyped here.
3. The image is built the way `ImageRepo` builds it: the same context, Dockerfile, platform,
   build args and flavour (`--base-image` adds `PYTHON_IMAGE`/`CUDA_IMAGE` for machines that
   cannot reach Docker Hub; see `preflight.base_image`).
4. Each task runs with its task definition's own settings:
   - awsvpc: one network namespace per task (a holder container), so the containers reach each
     other on localhost; port mappings are published on 127.0.0.1 only;
   - `user`, `readonlyRootFilesystem`, `command`/`entryPoint`, `environment`,
     `workingDirectory`, `initProcessEnabled` (`--init`), `stopTimeout`, `healthCheck` (Docker's
     health check with the same command, interval, timeout, retries and start period), and the
     task's cpu and memory as limits;
   - the EFS volume is a local directory, its access point's root directory created with the
     access point's owner and permissions; every other volume is what Fargate gives: an empty
     directory owned by root, mode 0755, unless the image declares that path as a `VOLUME`, in
     which case the image's content and permissions are copied in (ECS Developer Guide, "Use
     bind mounts with Amazon ECS": "the Amazon ECS data plane looks for a VOLUME directive");
     Fargate supports no `tmpfs`, so a definition asking for one is refused;
   - `essential`, `dependsOn` and `restartPolicy` as ECS applies them: an essential container
     that stops stops the task; a non-essential one is restarted in place only if it ran for
     `restartAttemptPeriod` seconds first.

`--task pipeline` walks the state machine (`preflight.asl`): Pass and Choice states as Step
Functions evaluates them, each `ecs:runTask` state as a local task with the overrides rendered
from the definition, stopping at the first failure. Waits and AWS-only tasks (SNS) are skipped
with a note. For `--task inference`, the load balancer's target-group health checks are probed
against the running task as the ALB would (path, port, matcher, interval, timeout, thresholds)
and printed next to Docker's container health.

Everything it starts (containers, volumes) carries a `mlops.run-local` label and is removed on
exit, on Ctrl-C and on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight import asl
from preflight.offline import ROOT, Plan, Resource, run_stack

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
IMAGE = "docker:index/image:Image"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
ECS_RUN_TASK = "arn:aws:states:::ecs:runTask"
ECS_UPDATE_SERVICE = "arn:aws:states:::aws-sdk:ecs:updateService"
LABEL = "mlops.run-local"
TASK_CHOICES = ("inference", "validate", "train", "gate", "pipeline")
DEFAULT_STORE = ROOT / ".run-local-store"
DEFAULT_SECRETS = ROOT / ".run-local-secrets.env"
"""Local values of the task definitions' `secrets`, `NAME=value` per line (git ignores it)."""
SECRET_ENV_PREFIX = "RUN_LOCAL_SECRET_"
"""Or `RUN_LOCAL_SECRET_<NAME>` in run_local's own environment, which wins over the file."""


class RunLocalError(RuntimeError):
    """Something the task definition asks for cannot run here, or Docker refused it."""


# --- docker ---------------------------------------------------------------------------------------


def docker(*args: str, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise RunLocalError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def builder_env() -> dict[str, str]:
    """BuildKit where the buildx plugin exists; Debian's daemon without it uses the classic
    builder (DOCKER_BUILDKIT=0). The Dockerfile builds with both."""
    if "DOCKER_BUILDKIT" in os.environ:
        return {}
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False)
    return {} if probe.returncode == 0 else {"DOCKER_BUILDKIT": "0"}


def _int(value: Any) -> int:
    """Numbers arrive from the mocks as floats (10001.0)."""
    return int(float(value))


# --- secrets --------------------------------------------------------------------------------------


def load_secrets(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The local stand-ins for the `secrets` ECS would fetch from Secrets Manager or SSM: the
    file's `NAME=value` lines (blank lines and `#` comments skipped; one pair of surrounding
    quotes removed), then `RUN_LOCAL_SECRET_<NAME>` variables over them. run_local never asks
    AWS, never prints a value and never writes one anywhere: Docker reads each from its own
    environment (`docker run --env NAME`), so the values stay off command lines too."""
    values: dict[str, str] = {}
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, sep, value = text.partition("=")
            name = name.strip().removeprefix("export ").strip()
            if not sep or not name.isidentifier():
                raise RunLocalError(f"{path}:{number}: not a NAME=value line (value not shown)")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    for key, value in environ.items():
        if key.startswith(SECRET_ENV_PREFIX) and key != SECRET_ENV_PREFIX:
            values[key.removeprefix(SECRET_ENV_PREFIX)] = value
    return values


# --- what the stack declares ----------------------------------------------------------------------


@dataclass(frozen=True)
class AccessPoint:
    uid: int
    gid: int
    root: str
    permissions: int


@dataclass(frozen=True)
class TargetCheck:
    """One target group's health check, bound to the container and port it checks."""

    name: str
    container: str
    port: int
    path: str
    matcher: str
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class TaskSpec:
    family: str
    cpu: int
    memory: int
    containers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    flavour: str
    """The image flavour its containers use (cpu or gpu)."""


@dataclass
class StackView:
    plan: Plan
    tasks: dict[str, TaskSpec]
    """By family."""
    access_point: AccessPoint
    images: dict[str, Resource]
    """The release docker.Image of the workload, per flavour."""
    inference_family: str
    checks: list[TargetCheck]
    state_machine: dict[str, Any]
    others: dict[str, Resource] = field(default_factory=dict)
    """Other images the stack builds (the platform's staging image), by the reference its task
    definitions name."""


def read_stack(plan: Plan) -> StackView:
    built = [r for r in plan.of_type(IMAGE) if not r.name.endswith("-cache")]
    # The platform's own image (ImageRepo's "platform-" children) stages /opt/ml around a
    # SageMaker workload; the rest are the workload's flavours.
    images = {
        r.inputs["build"]["args"]["FLAVOUR"]: r for r in built if not r.name.startswith("platform-")
    }
    others = {r.outputs.get("repoDigest"): r for r in built if r.name.startswith("platform-")}
    flavour_of = {r.outputs.get("repoDigest"): flavour for flavour, r in images.items()}
    tasks = {}
    for resource in plan.of_type(TASK_DEFINITION):
        inputs = resource.inputs
        containers = json.loads(inputs["containerDefinitions"])
        refs = {c["image"] for c in containers} - set(others)
        flavours = {flavour_of.get(ref) for ref in refs}
        if None in flavours and images:
            raise RunLocalError(f"{inputs['family']}: an image this stack does not build")
        tasks[inputs["family"]] = TaskSpec(
            family=inputs["family"],
            cpu=_int(inputs.get("cpu", 1024)),
            memory=_int(inputs.get("memory", 2048)),
            containers=containers,
            volumes=list(inputs.get("volumes") or []),
            flavour=(flavours.pop() if flavours and images else "cpu") or "cpu",
        )
    ap = plan.one(ACCESS_POINT).inputs
    info = ap["rootDirectory"]["creationInfo"]
    access_point = AccessPoint(
        uid=_int(ap["posixUser"]["uid"]),
        gid=_int(ap["posixUser"]["gid"]),
        root=ap["rootDirectory"]["path"],
        permissions=int(str(info["permissions"]), 8),
    )
    service = plan.one(SERVICE)
    by_arn = {r.outputs.get("arn"): r for r in plan.of_type(TASK_DEFINITION)}
    inference = by_arn[service.inputs["taskDefinition"]].inputs["family"]
    groups = {r.outputs.get("arn"): r for r in plan.of_type(TARGET_GROUP)}
    checks = []
    for attachment in service.inputs.get("loadBalancers", []):
        group = groups[attachment["targetGroupArn"]]
        health = group.inputs["healthCheck"]
        port = _int(attachment["containerPort"])
        if health.get("port", "traffic-port") != "traffic-port":
            port = _int(health["port"])
        checks.append(
            TargetCheck(
                name=group.name,
                container=attachment["containerName"],
                port=port,
                path=health.get("path", "/"),
                matcher=str(health.get("matcher", "200")),
                interval=_int(health.get("interval", 30)),
                timeout=_int(health.get("timeout", 5)),
                healthy_threshold=_int(health.get("healthyThreshold", 5)),
                unhealthy_threshold=_int(health.get("unhealthyThreshold", 2)),
            )
        )
    machine = json.loads(plan.one(STATE_MACHINE).inputs["definition"])
    return StackView(plan, tasks, access_point, images, inference, checks, machine, others)


# --- the image ------------------------------------------------------------------------------------


def build_image(
    view: StackView, flavour: str, base_image: str | None = None, rebuild: bool = False
) -> str:
    """Build the flavour as ImageRepo does; returns the local tag. An image already built from
    the same context (the content tag) and base is reused."""
    if flavour not in view.images:
        raise RunLocalError(
            f"the stack builds no {flavour} image (image.pin deploys a pushed digest): unset "
            "mlops:image.pin, or pass --image with a local image"
        )
    return build_resource(view.images[flavour], "mlops-local", base_image, rebuild)


def build_resource(
    resource: Resource, repository: str, base_image: str | None = None, rebuild: bool = False
) -> str:
    """Build one docker.Image resource of the plan as Pulumi would, tagged
    `<repository>:<content tag>`; reused when already built from the same context and base."""
    build = resource.inputs["build"]
    content_tag = resource.inputs["imageName"].rsplit(":", 1)[-1]
    tag = f"{repository}:{content_tag}"
    flavour = build.get("args", {}).get("FLAVOUR", "cpu")
    base = base_image or ""
    if not rebuild:
        found = docker("image", "inspect", tag, "--format", "{{json .Config.Labels}}", check=False)
        if found and (json.loads(found) or {}).get("mlops.base", "") == base:
            return tag
    args = dict(build.get("args") or {})
    if base_image:
        # The forecaster's Dockerfile names its bases PYTHON_IMAGE and CUDA_IMAGE; the platform
        # image and examples/digits take BASE_IMAGE, as most user Dockerfiles would.
        args.update(PYTHON_IMAGE=base_image, CUDA_IMAGE=base_image, BASE_IMAGE=base_image)
    command = ["build", "-t", tag, "--label", f"mlops.base={base}"]
    if build.get("platform"):
        command += ["--platform", build["platform"]]
    for key, value in sorted(args.items()):
        command += ["--build-arg", f"{key}={value}"]
    command += ["-f", str(ROOT / build["dockerfile"]), str(ROOT / build["context"])]
    print(f"[run-local] docker {' '.join(command)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        ["docker", *command],
        env={**os.environ, **builder_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RunLocalError(f"the {flavour} image did not build:\n{tail}")
    print(f"[run-local] built {tag} in {time.monotonic() - started:.0f} s", flush=True)
    return tag


@functools.cache
def image_volumes(image: str) -> frozenset[str]:
    """The paths the image declares as VOLUME."""
    found = docker("image", "inspect", image, "--format", "{{json .Config.Volumes}}")
    return frozenset(json.loads(found) or {})


# --- one task -------------------------------------------------------------------------------------


class LogPump(threading.Thread):
    """Follows one container's output and prints it with the container's name."""

    def __init__(self, container_id: str, name: str, since: str, out: Callable[[str], None]):
        super().__init__(daemon=True)
        self.process = subprocess.Popen(
            ["docker", "logs", "--follow", "--since", since, container_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.name_ = name
        self.out = out

    def run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out(f"[{self.name_}] {line.rstrip()}")


@dataclass
class ContainerState:
    definition: dict[str, Any]
    id: str = ""
    started: float = 0.0
    restarts: int = 0
    exit_code: int | None = None
    note: str = ""


@dataclass
class LocalTask:
    """One ECS task of `spec`, run in Docker with Fargate's semantics."""

    spec: TaskSpec
    image: str
    store: Path
    access_point: AccessPoint
    session: str
    publish_ephemeral: bool = False
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per container: environment overrides (as RunTask's containerOverrides)."""
    commands: Mapping[str, list[str]] = field(default_factory=dict)
    """Per container: a command override (RunTask's containerOverrides.command)."""
    out: Callable[[str], None] = print
    container_images: Mapping[str, str] = field(default_factory=dict)
    """Per container whose image is not `image` (the platform's staging containers): its tag."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Local values of the definitions' `secrets`, by variable name (`load_secrets`)."""
    containers: dict[str, ContainerState] = field(default_factory=dict)
    holder: str = ""
    ports: dict[int, int] = field(default_factory=dict)
    """Container port -> host port on 127.0.0.1."""
    volumes: dict[str, str] = field(default_factory=dict)
    stopping: bool = False
    stopped_reason: str = ""
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _pumps: list[LogPump] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{LABEL}={self.session}"

    @property
    def prefix(self) -> str:
        """Names of this task's containers and volumes: unique per task, like an ECS task id."""
        return f"mlops-{self.session}-{self.spec.family}-{self.task_id}"

    # --- start ---

    def start(self) -> None:
        for definition in self.spec.containers:
            tmpfs = (definition.get("linuxParameters") or {}).get("tmpfs")
            if tmpfs:
                raise RunLocalError(
                    f"{self.spec.family}/{definition['name']}: Fargate supports no tmpfs "
                    "(ECS task definition parameters, linuxParameters.tmpfs)"
                )
            self.containers[definition["name"]] = ContainerState(definition)
        self._create_volumes()
        self._start_holder()
        for name in self._start_order():
            self._wait_dependencies(self.containers[name].definition)
            self._start_container(self.containers[name])

    def _create_volumes(self) -> None:
        declared = image_volumes(self.image)
        used = {
            mount["sourceVolume"]: mount["containerPath"]
            for c in self.spec.containers
            for mount in c.get("mountPoints", [])
        }
        for volume in self.spec.volumes:
            name = volume["name"]
            if volume.get("efsVolumeConfiguration"):
                self.volumes[name] = str(self._access_point_root())
            elif volume.get("host") or volume.get("dockerVolumeConfiguration"):
                raise RunLocalError(f"volume {name}: Fargate tasks have no host or Docker volumes")
            else:
                local = f"{self.prefix}-{name}"
                options = ["volume", "create", "--label", self.label, local]
                docker(*options)
                self.volumes[name] = local
                path = used.get(name)
                if path is not None and path not in declared:
                    self.out(
                        f"[run-local] volume {name} at {path}: empty, root-owned, 0755 "
                        "(the image declares no VOLUME there)"
                    )

    def _access_point_root(self) -> Path:
        """The access point's root directory in the local store, created as EFS creates it."""
        ap = self.access_point
        root = self.store / ap.root.strip("/")
        if not root.exists():
            root.mkdir(parents=True)
            os.chown(root, ap.uid, ap.gid)
            root.chmod(ap.permissions)
        return root.resolve()

    def _start_holder(self) -> None:
        ports = sorted(
            {
                _int(mapping["containerPort"])
                for c in self.spec.containers
                for mapping in c.get("portMappings", [])
            }
        )
        publish = []
        for port in ports:
            publish += [
                "-p",
                f"127.0.0.1::{port}" if self.publish_ephemeral else f"127.0.0.1:{port}:{port}",
            ]
        self.holder = docker(
            "run",
            "-d",
            "--label",
            self.label,
            "--name",
            f"{self.prefix}-net",
            "--entrypoint",
            "sleep",
            *publish,
            self.image,
            "infinity",
        )
        for port in ports:
            bound = docker("port", self.holder, f"{port}/tcp").splitlines()[0]
            self.ports[port] = int(bound.rsplit(":", 1)[1])

    def _start_order(self) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise RunLocalError(f"{self.spec.family}: dependsOn cycle through {name}")
            visiting.add(name)
            for dependency in self.containers[name].definition.get("dependsOn", []):
                if dependency["containerName"] not in self.containers:
                    raise RunLocalError(f"{name} depends on unknown {dependency['containerName']}")
                visit(dependency["containerName"])
            order.append(name)

        for name in self.containers:
            visit(name)
        return order

    def _wait_dependencies(self, definition: dict[str, Any], timeout: float = 300) -> None:
        for dependency in definition.get("dependsOn", []):
            target = self.containers[dependency["containerName"]]
            condition = dependency["condition"]
            deadline = time.monotonic() + timeout
            while True:
                state = self.inspect(target)
                status, health = state["Status"], (state.get("Health") or {}).get("Status")
                met = {
                    "START": status in ("running", "exited"),
                    "COMPLETE": status == "exited",
                    "SUCCESS": status == "exited" and state["ExitCode"] == 0,
                    "HEALTHY": health == "healthy",
                }[condition]
                if met:
                    break
                if status == "exited" and condition in ("SUCCESS", "HEALTHY"):
                    raise RunLocalError(
                        f"{definition['name']} waits for {target.definition['name']} "
                        f"{condition}, which exited with {state['ExitCode']}"
                    )
                if time.monotonic() > deadline:
                    raise RunLocalError(f"{definition['name']}: {condition} not met in time")
                time.sleep(1)

    def docker_run_args(self, state: ContainerState) -> list[str]:
        """`docker run` arguments for one container definition (ECS API names)."""
        d = state.definition
        name = d["name"]
        image = self.container_images.get(name, self.image)
        args = ["--label", self.label, "--name", f"{self.prefix}-{name}"]
        args += ["--network", f"container:{self.holder}"]
        if d.get("user"):
            args += ["--user", d["user"]]
        if d.get("readonlyRootFilesystem"):
            args.append("--read-only")
        if d.get("privileged"):
            raise RunLocalError(f"{name}: Fargate does not run privileged containers")
        if (d.get("linuxParameters") or {}).get("initProcessEnabled"):
            args.append("--init")
        if d.get("workingDirectory"):
            args += ["--workdir", d["workingDirectory"]]
        if d.get("stopTimeout") is not None:
            args += ["--stop-timeout", str(_int(d["stopTimeout"]))]
        # Fargate limits the task as a whole; Docker limits each container: each gets the
        # container-level value when set, else the task's.
        memory = _int(d["memory"]) if d.get("memory") else self.spec.memory
        # A task bigger than this machine gets all of its CPUs (Docker refuses more).
        cpus = min(self.spec.cpu / 1024, os.cpu_count() or 1)
        args += ["--memory", f"{memory}m", "--cpus", f"{cpus:g}"]
        environment = {e["name"]: e["value"] for e in d.get("environment", [])}
        environment.update(self.overrides.get(name, {}))
        for key, value in sorted(environment.items()):
            args += ["--env", f"{key}={value}"]
        # Secrets by name only: Docker takes each value from its own environment.
        for key in sorted(self.secret_environment(d)):
            args += ["--env", key]
        for mount in d.get("mountPoints", []):
            source = self.volumes[mount["sourceVolume"]]
            kind = "bind" if source.startswith("/") else "volume"
            spec = f"type={kind},src={source},dst={mount['containerPath']}"
            if kind == "volume" and mount["containerPath"] not in image_volumes(image):
                spec += ",volume-nocopy"  # Fargate copies image content only for a VOLUME
            if mount.get("readOnly"):
                spec += ",readonly"
            args += ["--mount", spec]
        check = d.get("healthCheck")
        if check:
            command = check["command"]
            if command[0] == "CMD":
                shell = shlex.join(command[1:])
            elif command[0] == "CMD-SHELL":
                shell = command[1]
            else:
                raise RunLocalError(f"{name}: healthCheck.command must start with CMD or CMD-SHELL")
            args += [
                "--health-cmd",
                shell,
                "--health-interval",
                f"{_int(check.get('interval', 30))}s",
                "--health-timeout",
                f"{_int(check.get('timeout', 5))}s",
                "--health-retries",
                str(_int(check.get("retries", 3))),
                "--health-start-period",
                f"{_int(check.get('startPeriod', 0))}s",
            ]
        else:
            # ECS ignores a HEALTHCHECK baked into the image; so does the local task.
            args.append("--no-healthcheck")
        entry = d.get("entryPoint")
        command = list(self.commands.get(name) or d.get("command") or [])
        if entry:
            args += ["--entrypoint", entry[0]]
            command = [*entry[1:], *command]
        return [*args, image, *command]

    def secret_environment(self, definition: Mapping[str, Any]) -> dict[str, str]:
        """The container's `secrets`, each with its local value (as ECS injects them at start);
        one missing is an error naming it and where to put it."""
        values = {}
        for item in definition.get("secrets") or []:
            name = item["name"]
            if name not in self.secrets:
                raise RunLocalError(
                    f"{definition['name']}: secret {name} ({item['valueFrom']}) has no local "
                    f"value: add {name}=... to {DEFAULT_SECRETS.name} (or the file --secrets "
                    f"names) or set {SECRET_ENV_PREFIX}{name}; run_local never reads AWS "
                    "(docs/local-containers.md#secrets)"
                )
            values[name] = self.secrets[name]
        return values

    def _start_container(self, state: ContainerState) -> None:
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state.id = docker(
            "run",
            "-d",
            *self.docker_run_args(state),
            env=self.secret_environment(state.definition),
        )
        state.started = time.monotonic()
        self._follow(state, since)

    def _follow(self, state: ContainerState, since: str) -> None:
        pump = LogPump(state.id, state.definition["name"], since, self.out)
        pump.start()
        self._pumps.append(pump)

    # --- watch ---

    def inspect(self, state: ContainerState) -> dict[str, Any]:
        return json.loads(docker("inspect", state.id, "--format", "{{json .State}}"))

    def poll(self) -> None:
        """Apply ECS's rules to containers that stopped: essential stops the task; a
        non-essential one with a restart policy restarts if it ran long enough."""
        if self.stopping:
            return
        for state in self.containers.values():
            current = self.inspect(state)
            if current["Status"] != "exited" or state.exit_code is not None:
                continue
            code = current["ExitCode"]
            ran = time.monotonic() - state.started
            d = state.definition
            name = d["name"]
            if d.get("essential", True):
                state.exit_code = code
                self.stopped_reason = f"essential container {name} exited with {code}"
                self.out(f"[run-local] {self.stopped_reason}: stopping the task")
                self.stop()
                return
            policy = d.get("restartPolicy") or {}
            period = _int(policy.get("restartAttemptPeriod", 300))
            ignored = {_int(c) for c in policy.get("ignoredExitCodes", [])}
            if policy.get("enabled") and code not in ignored and ran >= period:
                state.restarts += 1
                self.out(f"[run-local] {name} exited with {code} after {ran:.0f} s: restarting")
                since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                docker("start", state.id)
                state.started = time.monotonic()
                self._follow(state, since)
            else:
                state.exit_code = code
                why = (
                    "no restart policy"
                    if not policy.get("enabled")
                    else f"it ran {ran:.0f} s, less than restartAttemptPeriod {period} s"
                    if ran < period
                    else f"exit code {code} is ignored"
                )
                state.note = f"exited with {code}, not restarted ({why})"
                self.out(f"[run-local] {name} {state.note}")

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """For one-off tasks: wait until every essential container exits; their exit codes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        essential = [s for s in self.containers.values() if s.definition.get("essential", True)]
        while True:
            states = {s.definition["name"]: self.inspect(s) for s in essential}
            if all(st["Status"] == "exited" for st in states.values()):
                self.stop()
                return {name: st["ExitCode"] for name, st in states.items()}
            if deadline is not None and time.monotonic() > deadline:
                raise RunLocalError(f"{self.spec.family} did not finish in {timeout:.0f} s")
            time.sleep(1)

    def health(self) -> dict[str, str]:
        """Per container: Docker's status and health, restarts, and any note."""
        report = {}
        for name, state in self.containers.items():
            current = self.inspect(state)
            health = (current.get("Health") or {}).get("Status", "no check")
            text = f"{current['Status']}, health {health}"
            if state.restarts:
                text += f", restarted {state.restarts}x"
            if state.note:
                text += f", {state.note}"
            report[name] = text
        return report

    # --- stop ---

    def stop(self) -> None:
        """ECS stop: SIGTERM to every container, SIGKILL after its stopTimeout."""
        if self.stopping:
            return
        self.stopping = True
        threads = []
        for state in reversed(list(self.containers.values())):
            if not state.id:
                continue
            timeout = str(_int(state.definition.get("stopTimeout", 30)))
            thread = threading.Thread(
                target=docker, args=("stop", "--time", timeout, state.id), kwargs={"check": False}
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def exit_codes(self) -> dict[str, int]:
        return {n: self.inspect(s)["ExitCode"] for n, s in self.containers.items() if s.id}


def remove_session(session: str) -> None:
    """Remove every container and volume this session started."""
    label = f"label={LABEL}={session}"
    ids = docker("ps", "-aq", "--filter", label, check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", label, check=False).split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)


# --- the load balancer's view ---------------------------------------------------------------------


def matcher_accepts(matcher: str, status: int) -> bool:
    """ELB target group `Matcher.HttpCode`: "200", "200,202" or "200-299"."""
    for part in matcher.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            if int(low) <= status <= int(high):
                return True
        elif part and int(part) == status:
            return True
    return False


@dataclass
class TargetProbe:
    """Probes one target the way the ALB does and keeps its verdict."""

    check: TargetCheck
    host_port: int
    out: Callable[[str], None] = print
    state: str = "initial"
    successes: int = 0
    failures: int = 0
    last: str = ""

    def probe_once(self) -> bool:
        url = f"http://127.0.0.1:{self.host_port}{self.check.path}"
        try:
            with urllib.request.urlopen(url, timeout=self.check.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, urllib.error.URLError) as exc:
            self.last = f"no answer ({getattr(exc, 'reason', exc)})"
            return False
        self.last = f"HTTP {status}"
        return matcher_accepts(self.check.matcher, status)

    def step(self) -> None:
        ok = self.probe_once()
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)
        before = self.state
        if ok and self.successes >= self.check.healthy_threshold:
            self.state = "healthy"
        elif not ok and self.failures >= self.check.unhealthy_threshold:
            self.state = "unhealthy"
        if self.state != before:
            self.out(f"[alb] {self.describe()}")

    def describe(self) -> str:
        c = self.check
        return (
            f"target group {c.name} ({c.container}:{c.port}{c.path}, matcher {c.matcher}): "
            f"{self.state} (last {self.last or 'none'})"
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.check.interval)


# --- the commands ---------------------------------------------------------------------------------


@dataclass
class Session:
    view: StackView
    store: Path
    base_image: str | None = None
    image: str | None = None
    publish_ephemeral: bool = False
    rebuild: bool = False
    out: Callable[[str], None] = print
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Local values of the task definitions' `secrets` (`load_secrets`)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _images: dict[str, str] = field(default_factory=dict)
    _others: dict[str, str] = field(default_factory=dict)
    service: LocalService | None = None
    """The inference service running in this session, if any: what the pipeline's
    ecs:updateService (forceNewDeployment) replaces."""

    def other_image(self, reference: str) -> str:
        """The local tag of a platform image the task definitions name by `reference`."""
        if reference not in self._others:
            self._others[reference] = build_resource(
                self.view.others[reference], "mlops-platform-local", self.base_image, self.rebuild
            )
        return self._others[reference]

    def image_for(self, flavour: str) -> str:
        if self.image:
            return self.image
        if flavour not in self._images:
            self._images[flavour] = build_image(self.view, flavour, self.base_image, self.rebuild)
        return self._images[flavour]

    def task(
        self,
        family: str,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        commands: Mapping[str, list[str]] | None = None,
    ) -> LocalTask:
        spec = self.view.tasks[family]
        staging = {
            c["name"]: self.other_image(c["image"])
            for c in spec.containers
            if c["image"] in self.view.others
        }
        workload = [c for c in spec.containers if c["name"] not in staging]
        return LocalTask(
            spec=spec,
            # A task of the platform's containers only (the platform gate) runs on their image.
            image=self.image_for(spec.flavour) if workload else next(iter(staging.values())),
            container_images=staging,
            secrets=self.secrets,
            store=self.store,
            access_point=self.view.access_point,
            session=self.id,
            publish_ephemeral=self.publish_ephemeral,
            overrides=overrides or {},
            commands=commands or {},
            out=self.out,
        )

    def run_once(
        self,
        family: str,
        overrides: Mapping[str, Mapping[str, str]],
        commands: Mapping[str, list[str]] | None = None,
    ) -> int:
        task = self.task(family, overrides, commands)
        env = "; ".join(f"{k}={v}" for o in overrides.values() for k, v in o.items())
        self.out(f"[run-local] {family}: starting ({env or 'no overrides'})")
        task.start()
        codes = task.wait()
        self.out(f"[run-local] {family}: exit codes {codes}")
        return max(codes.values(), default=0)


def _overrides(
    parameters: Mapping[str, Any],
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """RunTask's containerOverrides: environment and command per container."""
    environments: dict[str, dict[str, str]] = {}
    commands: dict[str, list[str]] = {}
    for override in (parameters.get("Overrides") or {}).get("ContainerOverrides", []):
        environment = override.get("Environment", [])
        environments[override["Name"]] = {e["Name"]: str(e["Value"]) for e in environment}
        if override.get("Command"):
            commands[override["Name"]] = [str(part) for part in override["Command"]]
    return environments, commands


@dataclass
class LocalService:
    """The stack's inference service as ECS runs it: one task behind the target-group probes.
    `roll()` is what `UpdateService` with `forceNewDeployment` does under the deployment circuit
    breaker: start a new task (which stages the model now promoted), wait for its target checks,
    then stop the old one; a new task that never turns healthy is stopped and the old one keeps
    serving (the rollback)."""

    session: Session
    task: LocalTask | None = None
    probes: list[TargetProbe] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LocalTask:
        self.task, self.probes, self._stop = self._launch()
        self.session.service = self
        return self.task

    def _launch(self) -> tuple[LocalTask, list[TargetProbe], threading.Event]:
        view = self.session.view
        task = self.session.task(view.inference_family)
        task.start()
        stop = threading.Event()
        probes = [TargetProbe(c, task.ports[c.port], self.session.out) for c in view.checks]
        for probe in probes:
            threading.Thread(target=probe.run, args=(stop,), daemon=True).start()
        return task, probes, stop

    @staticmethod
    def wait_healthy(task: LocalTask, probes: list[TargetProbe], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task.poll()
            if task.stopping:
                return False
            if all(probe.state == "healthy" for probe in probes):
                return True
            if any(probe.state == "unhealthy" for probe in probes):
                return False
            time.sleep(1)
        return False

    def roll(self, timeout: float = 300) -> bool:
        assert self.task is not None
        task, probes, stop = self._launch()
        if self.wait_healthy(task, probes, timeout):
            old, old_stop = self.task, self._stop
            self.task, self.probes, self._stop = task, probes, stop
            old_stop.set()
            old.stop()
            return True
        stop.set()
        task.stop()
        return False

    def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            self.task.stop()
        if self.session.service is self:
            self.session.service = None


def walk_state_machine(
    session: Session, only: str | None = None, execution_input: Any = None
) -> int:
    """Walk the declared state machine; run each ECS task (or only the step `only`).

    Returns 0 when it reaches a Succeed state, else the failing task's exit code (or 1).
    """
    machine = session.view.state_machine
    families = {family.rsplit("-", 1)[-1]: family for family in session.view.tasks}
    started = dt.datetime.now(dt.UTC)
    name = f"local-{started.strftime('%Y%m%d%H%M%S')}-{session.id}"
    context = {
        "Execution": {
            "Id": f"local:{name}",
            "Name": name,
            "StartTime": started.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{started.microsecond // 1000:03d}Z",
            "Input": execution_input or {},
        }
    }
    data: Any = execution_input or {}
    state_name = machine["StartAt"]
    ran_steps: list[str] = []
    while True:
        state = machine["States"][state_name]
        kind = state["Type"]
        if kind == "Pass":
            effective = asl.state_input(state, data, context)
            result = state.get("Result", effective)
            data = asl.state_output(state, data, result, context)
        elif kind == "Choice":
            following = next(
                (c["Next"] for c in state["Choices"] if asl.choice_matches(c, data, context)),
                state.get("Default"),
            )
            if following is None:
                raise RunLocalError(f"Choice {state_name}: no rule matched and no Default")
            state_name = following
            continue
        elif kind == "Wait":
            session.out(
                f"[pipeline] {state_name}: Wait {state.get('Seconds', '?')} s skipped locally"
            )
        elif kind == "Task":
            resource = state["Resource"]
            if resource == ECS_UPDATE_SERVICE and session.service is not None:
                session.out(f"[pipeline] {state_name}: ecs:updateService, a new deployment")
                if session.service.roll():
                    session.out(f"[pipeline] {state_name}: the new task passed its target checks")
                else:
                    session.out(
                        f"[pipeline] {state_name}: the new task failed its target checks: "
                        "rolled back, the previous task still serves"
                    )
                data = asl.state_output(state, data, None, context)
            elif not resource.startswith(ECS_RUN_TASK):
                session.out(f"[pipeline] {state_name}: {resource} exists only on AWS, skipped")
            else:
                parameters = asl.state_input(state, data, context)
                family = parameters["TaskDefinition"]
                if family not in session.view.tasks:
                    raise RunLocalError(f"{state_name}: task definition {family} is not declared")
                step = next((s for s, f in families.items() if f == family), family)
                if only is None or step == only:
                    if only is not None and step in ran_steps:
                        return 0
                    session.out(f"[pipeline] {state_name}: ecs:runTask {family}")
                    code = session.run_once(family, *_overrides(parameters))
                    ran_steps.append(step)
                    if code != 0:
                        session.out(f"[pipeline] {state_name} failed (exit {code}): stopping")
                        return code
                    if only is not None:
                        return 0
                data = asl.state_output(state, data, None, context)
        elif kind == "Succeed":
            session.out(f"[pipeline] {state_name}: succeeded ({', '.join(ran_steps)})")
            return 0
        elif kind == "Fail":
            session.out(f"[pipeline] {state_name}: failed")
            return 1
        else:
            raise RunLocalError(f"state {state_name}: type {kind} is not supported locally")
        if state.get("End"):
            return 0
        state_name = state["Next"]


def serve_inference(
    session: Session,
    duration: float | None,
    ready: Callable[[LocalTask], None] | None = None,
    until: threading.Event | None = None,
) -> int:
    """Run the inference task and the ALB's probes until Ctrl-C, `duration` seconds or `until`.

    `ready(task)` is called once the task runs (for callers that exercise it)."""
    view = session.view
    task = session.task(view.inference_family)
    task.start()
    stop = threading.Event()
    probes = []
    for check in view.checks:
        probe = TargetProbe(check, task.ports[check.port], session.out)
        probes.append(probe)
        threading.Thread(target=probe.run, args=(stop,), daemon=True).start()
    for port, host in sorted(task.ports.items()):
        session.out(f"[run-local] container port {port} -> http://127.0.0.1:{host}")
    if ready is not None:
        ready(task)
    deadline = None if duration is None else time.monotonic() + duration
    last_report = time.monotonic()
    try:
        while not task.stopping and (deadline is None or time.monotonic() < deadline):
            if until is not None and until.is_set():
                break
            task.poll()
            if time.monotonic() - last_report >= 30:
                _report(session, task, probes)
                last_report = time.monotonic()
            time.sleep(1)
    finally:
        stop.set()
        _report(session, task, probes)
        task.stop()
    return 1 if task.stopped_reason else 0


def _report(session: Session, task: LocalTask, probes: list[TargetProbe]) -> None:
    for name, text in task.health().items():
        session.out(f"[status] container {name}: {text}")
    for probe in probes:
        session.out(f"[status] {probe.describe()}")


@contextlib.contextmanager
def cleanup_on_exit(session_id: str) -> Iterator[None]:
    """Remove the session's containers and volumes however the run ends (Ctrl-C, SIGTERM)."""

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        remove_session(session_id)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m preflight.run_local",
        description="Run the stack's ECS task definitions in Docker with Fargate's semantics.",
    )
    parser.add_argument("stack", help="the stack file to read: Pulumi.<stack>.yaml")
    parser.add_argument("--task", choices=TASK_CHOICES, required=True)
    parser.add_argument("--store", type=Path, default=None, help=f"default {DEFAULT_STORE}/<stack>")
    parser.add_argument(
        "--base-image",
        help="build on this local image as PYTHON_IMAGE and CUDA_IMAGE (preflight.base_image)",
    )
    parser.add_argument("--image", help="run this local image instead of building one")
    parser.add_argument("--rebuild", action="store_true", help="build even if the image exists")
    parser.add_argument(
        "--for", dest="duration", type=float, help="inference: stop after this many seconds"
    )
    parser.add_argument(
        "--input",
        type=json.loads,
        default=None,
        help='pipeline: the execution input, e.g. \'{"reason": "schedule"}\' (default {})',
    )
    parser.add_argument(
        "--ephemeral-ports", action="store_true", help="publish on free host ports, not the same"
    )
    parser.add_argument(
        "--secrets",
        type=Path,
        default=DEFAULT_SECRETS,
        help=f"NAME=value lines standing in for the task definitions' secrets "
        f"(default {DEFAULT_SECRETS.name}; {SECRET_ENV_PREFIX}<NAME> variables win)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        view = read_stack(run_stack(args.stack))
    except Exception as exc:  # a config error or a missing stack file: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = (args.store or DEFAULT_STORE / args.stack).resolve()
    store.mkdir(parents=True, exist_ok=True)
    try:
        secrets = load_secrets(args.secrets, os.environ)
    except RunLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    session = Session(
        view=view,
        store=store,
        base_image=args.base_image,
        image=args.image,
        publish_ephemeral=args.ephemeral_ports,
        rebuild=args.rebuild,
        out=lambda line: print(line, flush=True),
        secrets=secrets,
    )
    print(f"[run-local] stack {args.stack}, store {store}, session {session.id}", flush=True)
    try:
        with cleanup_on_exit(session.id):
            if args.task == "inference":
                return serve_inference(session, args.duration)
            only = None if args.task == "pipeline" else args.task
            return walk_state_machine(session, only, args.input)
    except KeyboardInterrupt:
        print("[run-local] interrupted: everything it started is removed", flush=True)
        return 130
    except (RunLocalError, asl.AslError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
