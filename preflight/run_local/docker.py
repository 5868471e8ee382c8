"""Docker, as run_local uses it: one call, the classic builder where BuildKit is absent, the
paths an image declares as VOLUME, following a container's log, removing a session."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import subprocess
import threading
from collections.abc import Callable, Mapping

LABEL = "mlops.run-local"
"""On everything a session starts (`mlops.run-local=<session>`): what `remove_session` removes."""


class RunLocalError(RuntimeError):
    """Something the task definition asks for cannot run here, or Docker refused it."""


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


@functools.cache
def image_volumes(image: str) -> frozenset[str]:
    """The paths the image declares as VOLUME."""
    found = docker("image", "inspect", image, "--format", "{{json .Config.Volumes}}")
    return frozenset(json.loads(found) or {})


def image_exists(reference: str) -> bool:
    return bool(docker("image", "inspect", reference, "--format", "{{.Id}}", check=False))


@functools.cache
def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: what a task's containers reach the host
    on (run_local serves the task metadata endpoint there). Its IPAM config names it, or, on
    daemons that leave it out, it is the subnet's first address (the bridge's own, `--bip`)."""
    config = json.loads(docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"))
    for entry in config or []:
        if entry.get("Gateway"):
            return entry["Gateway"]
        if entry.get("Subnet") and ":" not in entry["Subnet"]:
            return str(next(ipaddress.ip_network(entry["Subnet"]).hosts()))
    raise RunLocalError("Docker's bridge network has no IPv4 gateway or subnet")


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


def remove_session(session: str) -> None:
    """Remove every container and volume this session started."""
    label = f"label={LABEL}={session}"
    ids = docker("ps", "-aq", "--filter", label, check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", label, check=False).split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
