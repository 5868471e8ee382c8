"""The stack's images, built here the way ImageRepo builds them (the same context, Dockerfile,
platform, build args and flavour), or found on this machine when the stack builds none."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from components.image_repo import ship_contract
from preflight.offline import ROOT, Resource
from preflight.run_local.docker import RunLocalError, builder_env, docker, image_exists
from preflight.run_local.stack import StackView

NO_REGISTRY = re.compile(
    r"pull access denied|failed to resolve|no such host|dial tcp|i/o timeout|TLS handshake|"
    r"connection refused|manifest unknown|not found: manifest|toomanyrequests",
    re.IGNORECASE,
)
BASE_IMAGE_HINT = (
    "no registry reachable for the base image? build one from Debian packages with "
    "`python -m preflight.base_image` and pass `--base-image mlops-base:bookworm` "
    "(docs/local-containers.md)"
)


def workload_image(view: StackView, flavour: str, base_image: str | None, rebuild: bool) -> str:
    """The local image of the workload's `flavour`: built from the stack's own build, or, when
    the stack builds none, the image its task definitions name, if this machine has it."""
    if view.source.kind == "build":
        if flavour not in view.images:
            raise RunLocalError(f"the stack builds no {flavour} image")
        return build_resource(view.images[flavour], "mlops-local", base_image, rebuild)
    if view.source.kind == "location" and image_exists(view.source.reference):
        return view.source.reference
    raise RunLocalError(view.source.missing())


def build_image(
    view: StackView, flavour: str, base_image: str | None = None, rebuild: bool = False
) -> str:
    """Build the flavour as ImageRepo does; returns the local tag."""
    return workload_image(view, flavour, base_image, rebuild)


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
    context = ROOT / build["context"]
    ship_contract(context)
    command = ["build", "-t", tag, "--label", f"mlops.base={base}"]
    if build.get("platform"):
        command += ["--platform", build["platform"]]
    for key, value in sorted(args.items()):
        command += ["--build-arg", f"{key}={value}"]
    command += ["-f", str(ROOT / build["dockerfile"]), str(context)]
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
        output = (result.stdout + result.stderr).strip()
        tail = "\n".join(output.splitlines()[-25:])
        hint = f"\n{BASE_IMAGE_HINT}" if not base_image and NO_REGISTRY.search(output) else ""
        raise RunLocalError(
            f"the {resource.name} image ({build['context']}/, {flavour}) did not build:\n"
            f"{tail}{hint}"
        )
    print(f"[run-local] built {tag} in {time.monotonic() - started:.0f} s", flush=True)
    return tag
