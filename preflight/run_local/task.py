"""One ECS task, run in Docker with Fargate's semantics.

- awsvpc: one network namespace per task (a holder container, as ECS's pause container), so the
  containers reach each other on localhost and share its hostname and /etc/hosts; port mappings
  are published on 127.0.0.1 only;
- `user`, `readonlyRootFilesystem`, `command`/`entryPoint`, `environment`, `secrets` (by name,
  from run_local's local values), `workingDirectory`, `initProcessEnabled` (`--init`),
  `stopTimeout`, `healthCheck` (Docker's health check with the same command, interval, timeout,
  retries and start period), and the task's cpu and memory as limits;
- the EFS volume is a local directory, its access point's root directory created with the access
  point's owner and permissions; every other volume is what Fargate gives: an empty directory
  owned by root, mode 0755, unless the image declares that path as a `VOLUME`, in which case the
  image's content and permissions are copied in (ECS Developer Guide, "Use bind mounts with
  Amazon ECS": "the Amazon ECS data plane looks for a VOLUME directive"); Fargate supports no
  `tmpfs`, so a definition asking for one is refused;
- `dependsOn` as ECS resolves it (ECS API Reference, "ContainerDependency"): a container starts
  once each container it depends on reached the condition (START, COMPLETE, SUCCESS, HEALTHY);
  a condition that can no longer be met, or a dependency's `startTimeout` passed, means it never
  starts, and the message names the container it waited for and why; without `startTimeout` a
  dependency is waited on for as long as the task runs (the caller's timeout bounds that);
- `essential` and `restartPolicy`: an essential container that stops stops the task (stop code
  `EssentialContainerExited`); a non-essential one is restarted in place only if it ran for
  `restartAttemptPeriod` seconds first;
- stopping a task sends SIGTERM to every running container and SIGKILL after its `stopTimeout`,
  as ECS's StopTask does; a timeout of the caller or a simulated Spot interruption stops it so;
- the task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`, metadata.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.run_local.docker import (
    LABEL,
    LogPump,
    RunLocalError,
    docker,
    image_volumes,
)
from preflight.run_local.metadata import MetadataEndpoint
from preflight.run_local.stack import AccessPoint, TaskSpec, as_int

PENDING, RUNNING, STOPPED = "PENDING", "RUNNING", "STOPPED"
ESSENTIAL_EXITED = "EssentialContainerExited"
"""ECS stop codes (ECS API Reference, "Task": stopCode)."""
USER_INITIATED = "UserInitiated"
SPOT_INTERRUPTION = "SpotInterruption"
FAILED_TO_START = "TaskFailedToStart"
SPOT_REASON = "Your Spot Task was interrupted."
ESSENTIAL_REASON = "Essential container in task exited"
SECRETS_FILE = ".run-local-secrets.env"
SECRET_ENV_PREFIX = "RUN_LOCAL_SECRET_"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ContainerState:
    definition: dict[str, Any]
    id: str = ""
    status: str = PENDING
    started: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    restarts: int = 0
    exit_code: int | None = None
    note: str = ""
    """Why it never started, or was not restarted."""

    @property
    def name(self) -> str:
        return self.definition["name"]

    @property
    def essential(self) -> bool:
        return self.definition.get("essential", True)


@dataclass
class TaskOutcome:
    """How a task ended, as DescribeTasks reports it and Step Functions' `.sync` returns it."""

    family: str
    exit_codes: dict[str, int | None]
    stop_code: str
    stopped_reason: str
    timed_out: bool = False

    @property
    def failed(self) -> bool:
        """What fails a `runTask.sync` state: any container that exited non-zero, essential or
        not, or a task that stopped for another reason than its essential containers exiting (a
        timeout, StopTask, a Spot interruption, a container that never started). Step Functions
        documents only the Failures field ("Manage Amazon ECS or Fargate tasks with Step
        Functions"); the exit-code rule is what executions show: a non-essential log router
        killed with 137 after the app exited 0 failed the state with States.TaskFailed
        (wellcomecollection/catalogue-pipeline#3377, an execution's task description quoted)."""
        if self.timed_out or self.stop_code != ESSENTIAL_EXITED:
            return True
        return any(code not in (0, None) for code in self.exit_codes.values())

    def description(self) -> dict[str, Any]:
        """The stopped task as Step Functions passes it on (PascalCase DescribeTasks fields)."""
        return {
            "Group": f"family:{self.family}",
            "LastStatus": STOPPED,
            "StopCode": self.stop_code,
            "StoppedReason": self.stopped_reason,
            "Containers": [
                {
                    "Name": name,
                    "LastStatus": STOPPED,
                    **({"ExitCode": code} if code is not None else {}),
                }
                for name, code in self.exit_codes.items()
            ],
        }


@dataclass
class LocalTask:
    """One ECS task of `spec`, run in Docker with Fargate's semantics."""

    spec: TaskSpec
    image: str
    store: Path
    access_point: AccessPoint
    """The store's access point: an EFS volume that names no other."""
    session: str
    publish_ephemeral: bool = False
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per container: environment overrides (as RunTask's containerOverrides)."""
    commands: Mapping[str, list[str]] = field(default_factory=dict)
    access_points: Mapping[str, AccessPoint] = field(default_factory=dict)
    """Every access point of the stack by id: an EFS volume mounts the one it names."""
    """Per container: a command override (RunTask's containerOverrides.command)."""
    out: Callable[[str], None] = print
    container_images: Mapping[str, str] = field(default_factory=dict)
    """Per container whose image is not `image` (the platform's staging containers): its tag."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Local values of the definitions' `secrets`, by variable name (`load_secrets`)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Variables every container gets beneath its definition's own (`Session.environment`)."""
    metadata: MetadataEndpoint | None = None
    containers: dict[str, ContainerState] = field(default_factory=dict)
    holder: str = ""
    ports: dict[int, int] = field(default_factory=dict)
    """Container port -> host port on 127.0.0.1."""
    volumes: dict[str, str] = field(default_factory=dict)
    stopping: bool = False
    stop_code: str = ""
    stopped_reason: str = ""
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _pumps: list[LogPump] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stopped: threading.Event = field(default_factory=threading.Event)

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
        self._check_dependencies()
        self._create_volumes()
        self._start_holder()
        if self.metadata is not None:
            self.metadata.register(self.task_id, self.describe)
        self._waiting_since = time.monotonic()
        self._advance()

    def _check_dependencies(self) -> None:
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                raise RunLocalError(f"{self.spec.family}: dependsOn cycle through {name}")
            visiting.add(name)
            for dependency in self.containers[name].definition.get("dependsOn", []):
                if dependency["containerName"] not in self.containers:
                    raise RunLocalError(f"{name} depends on unknown {dependency['containerName']}")
                visit(dependency["containerName"])
            done.add(name)

        for name in self.containers:
            visit(name)

    def _create_volumes(self) -> None:
        declared = image_volumes(self.image)
        used = {
            mount["sourceVolume"]: mount["containerPath"]
            for c in self.spec.containers
            for mount in c.get("mountPoints", [])
        }
        for volume in self.spec.volumes:
            name = volume["name"]
            efs = volume.get("efsVolumeConfiguration")
            if efs:
                point = (efs.get("authorizationConfig") or {}).get("accessPointId")
                ap = self.access_points.get(point, self.access_point)
                # The store's root first: EFS creates a nested root (capture/) inside it.
                self._access_point_root(self.access_point)
                self.volumes[name] = str(self._access_point_root(ap))
            elif volume.get("host") or volume.get("dockerVolumeConfiguration"):
                raise RunLocalError(f"volume {name}: Fargate tasks have no host or Docker volumes")
            else:
                local = f"{self.prefix}-{name}"
                docker("volume", "create", "--label", self.label, local)
                self.volumes[name] = local
                path = used.get(name)
                if path is not None and path not in declared:
                    self.out(
                        f"[run-local] volume {name} at {path}: empty, root-owned, 0755 "
                        "(the image declares no VOLUME there)"
                    )

    def _access_point_root(self, ap: AccessPoint) -> Path:
        """The access point's root directory in the local store, created as EFS creates it."""
        root = self.store / ap.root.strip("/")
        if not root.exists():
            root.mkdir(parents=True)
            os.chown(root, ap.uid, ap.gid)
            root.chmod(ap.permissions)
        return root.resolve()

    def _start_holder(self) -> None:
        ports = sorted(
            {
                as_int(mapping["containerPort"])
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

    # --- dependencies ---

    def _dependency_verdict(self, state: ContainerState) -> tuple[bool, str]:
        """(ready to start, why it never can: "" while it still may)."""
        for dependency in state.definition.get("dependsOn", []):
            target = self.containers[dependency["containerName"]]
            condition = dependency["condition"]
            if target.status == PENDING:
                if target.note:
                    return False, f"{target.name} never started ({target.note})"
                return False, self._gave_up(state, target, condition)
            current = self.inspect(target) if target.status == RUNNING else {}
            health = (current.get("Health") or {}).get("Status")
            met = {
                "START": True,
                "COMPLETE": target.status == STOPPED,
                "SUCCESS": target.status == STOPPED and target.exit_code == 0,
                "HEALTHY": health == "healthy",
            }[condition]
            if met:
                continue
            if target.status == STOPPED:
                return False, (
                    f"it waits for {target.name} to reach {condition}, and {target.name} exited "
                    f"with {target.exit_code}"
                )
            return False, self._gave_up(state, target, condition)
        return True, ""

    def _gave_up(self, state: ContainerState, target: ContainerState, condition: str) -> str:
        """ECS's `startTimeout` on the dependency: past it, the dependent gives up."""
        limit = target.definition.get("startTimeout")
        if limit is not None and time.monotonic() - self._waiting_since > as_int(limit):
            return (
                f"it waits for {target.name} to reach {condition}, and {target.name}'s "
                f"startTimeout of {as_int(limit)} s passed"
            )
        return ""

    def _advance(self) -> None:
        """Start every pending container whose dependencies are met; mark those whose never
        can be; an essential one of those stops the task."""
        with self._lock:
            changed = True
            while changed and not self.stopping:
                changed = False
                for state in self.containers.values():
                    if state.status != PENDING or state.note:
                        continue
                    ready, never = self._dependency_verdict(state)
                    if ready:
                        self._start_container(state)
                        changed = True
                    elif never:
                        state.note = f"never started: {never}"
                        self.out(f"[run-local] {state.name} {state.note}")
                        changed = True
                        if state.essential:
                            self.stop(
                                FAILED_TO_START, f"essential container {state.name} {state.note}"
                            )
                            return

    # --- run ---

    def secret_environment(self, definition: Mapping[str, Any]) -> dict[str, str]:
        """The container's `secrets`, each with its local value (as ECS injects them at start);
        one missing is an error naming it and where to put it."""
        values = {}
        for item in definition.get("secrets") or []:
            name = item["name"]
            if name not in self.secrets:
                raise RunLocalError(
                    f"{definition['name']}: secret {name} ({item['valueFrom']}) has no local "
                    f"value: add {name}=... to {SECRETS_FILE} (or the file --secrets names) or "
                    f"set {SECRET_ENV_PREFIX}{name}; run_local never reads AWS "
                    "(docs/local-containers.md#secrets)"
                )
            values[name] = self.secrets[name]
        return values

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
            args += ["--stop-timeout", str(as_int(d["stopTimeout"]))]
        # Fargate limits the task as a whole; Docker limits each container: each gets the
        # container-level value when set, else the task's.
        memory = as_int(d["memory"]) if d.get("memory") else self.spec.memory
        # A task bigger than this machine gets all of its CPUs (Docker refuses more).
        cpus = min(self.spec.cpu / 1024, os.cpu_count() or 1)
        args += ["--memory", f"{memory}m", "--cpus", f"{cpus:g}"]
        environment = {
            **self.environment,
            **{e["name"]: e["value"] for e in d.get("environment", [])},
        }
        environment.update(self.overrides.get(name, {}))
        if self.metadata is not None:
            environment["ECS_CONTAINER_METADATA_URI_V4"] = self.metadata.uri(self.task_id, name)
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
                f"{as_int(check.get('interval', 30))}s",
                "--health-timeout",
                f"{as_int(check.get('timeout', 5))}s",
                "--health-retries",
                str(as_int(check.get("retries", 3))),
                "--health-start-period",
                f"{as_int(check.get('startPeriod', 0))}s",
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

    def _start_container(self, state: ContainerState) -> None:
        since = _now()
        state.id = docker(
            "run", "-d", *self.docker_run_args(state), env=self.secret_environment(state.definition)
        )
        state.status, state.started, state.started_at = RUNNING, time.monotonic(), since
        self._follow(state, since)

    def _follow(self, state: ContainerState, since: str) -> None:
        pump = LogPump(state.id, state.name, since, self.out)
        pump.start()
        self._pumps.append(pump)

    # --- watch ---

    def inspect(self, state: ContainerState) -> dict[str, Any]:
        return json.loads(docker("inspect", state.id, "--format", "{{json .State}}"))

    def poll(self) -> None:
        """Apply ECS's rules to containers that stopped (an essential one stops the task; a
        non-essential one with a restart policy restarts if it ran long enough), then start
        what became ready."""
        with self._lock:
            if self.stopping:
                return
            for state in self.containers.values():
                if state.status != RUNNING:
                    continue
                current = self.inspect(state)
                if current["Status"] != "exited":
                    continue
                if self._restart(state, current):
                    continue
                state.status, state.exit_code = STOPPED, current["ExitCode"]
                state.finished_at = _now()
                if state.essential:
                    self.out(
                        f"[run-local] essential container {state.name} exited with "
                        f"{state.exit_code}: stopping the task"
                    )
                    self.stop(ESSENTIAL_EXITED, ESSENTIAL_REASON)
                    return
            self._advance()

    def _restart(self, state: ContainerState, current: dict[str, Any]) -> bool:
        d = state.definition
        if state.essential:
            return False
        code = current["ExitCode"]
        ran = time.monotonic() - state.started
        policy = d.get("restartPolicy") or {}
        period = as_int(policy.get("restartAttemptPeriod", 300))
        ignored = {as_int(c) for c in policy.get("ignoredExitCodes", [])}
        if policy.get("enabled") and code not in ignored and ran >= period:
            state.restarts += 1
            self.out(f"[run-local] {state.name} exited with {code} after {ran:.0f} s: restarting")
            since = _now()
            docker("start", state.id)
            state.started = time.monotonic()
            self._follow(state, since)
            return True
        if policy.get("enabled"):
            why = (
                f"it ran {ran:.0f} s, less than restartAttemptPeriod {period} s"
                if ran < period
                else f"exit code {code} is ignored"
            )
            state.note = f"exited with {code}, not restarted ({why})"
            self.out(f"[run-local] {state.name} {state.note}")
        return False

    def wait(self, timeout: float | None = None) -> TaskOutcome:
        """Run until the task stops: every essential container exited (the others are then
        stopped, as ECS stops a task), or `timeout` seconds passed (the task is stopped: SIGTERM,
        then SIGKILL after each container's stopTimeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        while not self.stopping:
            self.poll()
            if self.stopping:
                break
            essential = [s for s in self.containers.values() if s.essential]
            if essential and all(s.status == STOPPED for s in essential):
                self.stop(ESSENTIAL_EXITED, ESSENTIAL_REASON)
                break
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                self.stop(USER_INITIATED, f"the step's TimeoutSeconds ({timeout:g} s) passed")
                break
            time.sleep(0.5)
        # A stop another thread began (a Spot interruption) ends when every container has: the
        # task is STOPPED, with its exit codes, only then (as `ecs:runTask.sync` returns it).
        self._stopped.wait()
        return self.outcome(timed_out)

    def outcome(self, timed_out: bool = False) -> TaskOutcome:
        return TaskOutcome(
            family=self.spec.family,
            exit_codes={name: s.exit_code for name, s in self.containers.items()},
            stop_code=self.stop_code,
            stopped_reason=self.stopped_reason,
            timed_out=timed_out,
        )

    def health(self) -> dict[str, str]:
        """Per container: Docker's status and health, restarts, and any note."""
        report = {}
        for name, state in self.containers.items():
            if not state.id:
                report[name] = f"not started, {state.note or 'waiting for its dependencies'}"
                continue
            current = self.inspect(state)
            health = (current.get("Health") or {}).get("Status", "no check")
            text = f"{current['Status']}, health {health}"
            if state.restarts:
                text += f", restarted {state.restarts}x"
            if state.note:
                text += f", {state.note}"
            report[name] = text
        return report

    def describe(self) -> dict[str, Any]:
        """The task as the task metadata endpoint v4 describes it (`/task`)."""
        stopped = self.stopping
        containers = []
        for state in self.containers.values():
            entry: dict[str, Any] = {
                "DockerId": state.id,
                "Name": state.name,
                "DockerName": f"{self.prefix}-{state.name}",
                "Image": state.definition["image"],
                "Labels": state.definition.get("dockerLabels", {}),
                "DesiredStatus": STOPPED if stopped else RUNNING,
                "KnownStatus": state.status,
                "Type": "NORMAL",
            }
            if state.started_at:
                entry["StartedAt"] = state.started_at
            if state.status == STOPPED and state.exit_code is not None:
                entry["ExitCode"] = state.exit_code
                entry["FinishedAt"] = state.finished_at
            containers.append(entry)
        return {
            "Cluster": "run-local",
            "TaskARN": f"arn:aws:ecs:local:000000000000:task/run-local/{self.task_id}",
            "Family": self.spec.family,
            "Revision": "1",
            "DesiredStatus": STOPPED if stopped else RUNNING,
            "KnownStatus": STOPPED if stopped else RUNNING,
            "LaunchType": "FARGATE",
            "Containers": containers,
        }

    # --- stop ---

    def interrupt_after(self, seconds: float) -> threading.Thread:
        """A Fargate Spot interruption `seconds` after the workload's first container started
        (the platform's staging containers run before it): ECS stops the task (SIGTERM, then
        SIGKILL after stopTimeout) with stop code SpotInterruption. AWS interrupts at any
        moment; counting from the workload's start makes the local one interrupt the work, on
        any machine, however long staging took."""

        def interrupt() -> None:
            while not self._workload_started():
                if self.stopping:
                    return
                time.sleep(0.1)
            if not self._stopped.wait(seconds):
                self.stop(SPOT_INTERRUPTION, SPOT_REASON)

        thread = threading.Thread(target=interrupt, daemon=True)
        thread.start()
        return thread

    def _workload_started(self) -> bool:
        return any(
            state.status != PENDING
            for name, state in self.containers.items()
            if name not in self.container_images
        )

    def _stop_waves(self) -> list[list[ContainerState]]:
        """The containers in the order ECS stops them: a container's dependents before it ("When
        a dependency is defined for container startup, for container shutdown it is reversed",
        ECS API reference, ContainerDependency); those with none left at once, together."""
        remaining = dict(self.containers)
        waves: list[list[ContainerState]] = []
        while remaining:
            depended_on = {
                dependency["containerName"]
                for state in remaining.values()
                for dependency in state.definition.get("dependsOn", [])
            }
            wave = [state for name, state in remaining.items() if name not in depended_on]
            if not wave:  # a cycle, which ECS refuses at registration: stop the rest together
                wave = list(remaining.values())
            waves.append(wave)
            for state in wave:
                remaining.pop(state.name)
        return waves

    def stop(self, code: str = USER_INITIATED, reason: str = "stopped by run_local") -> None:
        """ECS stop: SIGTERM to the running containers, dependents before their dependencies,
        each SIGKILLed after its stopTimeout."""
        with self._lock:
            if self.stopping:
                return
            self.stopping, self.stop_code, self.stopped_reason = True, code, reason
        if code != ESSENTIAL_EXITED:
            self.out(f"[run-local] {self.spec.family}: stopping ({code}: {reason})")
        for wave in self._stop_waves():
            threads = []
            for state in wave:
                if state.status == PENDING:
                    state.note = state.note or "never started: the task stopped first"
                    continue
                if not state.id:
                    continue
                timeout = str(as_int(state.definition.get("stopTimeout", 30)))
                thread = threading.Thread(
                    target=docker,
                    args=("stop", "--time", timeout, state.id),
                    kwargs={"check": False},
                )
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
        for state in self.containers.values():
            if state.status == RUNNING:
                found = docker("inspect", state.id, "--format", "{{.State.ExitCode}}", check=False)
                state.status = STOPPED
                state.exit_code = int(found) if found.lstrip("-").isdigit() else None
                state.finished_at = _now()
        if self.metadata is not None:
            self.metadata.forget(self.task_id)
        self._stopped.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait for a stop in progress (another thread's) to finish."""
        return self._stopped.wait(timeout)

    def exit_codes(self) -> dict[str, int]:
        return {n: self.inspect(s)["ExitCode"] for n, s in self.containers.items() if s.id}
