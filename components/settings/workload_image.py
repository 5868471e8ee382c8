"""`mlops:workload.image`: the image the stack builds from the repository (`build`), or one built
elsewhere, by digest (`location`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.settings._section import Section, as_map, fail

ROOT = Path(__file__).resolve().parents[2]

IMAGE_LOCATION = re.compile(
    r"(?P<registry>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?)/(?P<repository>[a-z0-9]"
    r"[a-z0-9._/-]{0,254})@sha256:[0-9a-f]{64}"
)
ECR_REGISTRY = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com")

@dataclass(frozen=True)
class ImageBuild:
    context: str = "app"
    """Repo-relative directory."""
    dockerfile: str = "Dockerfile"
    """Relative to `context`."""
    args: Mapping[str, str] = field(default_factory=dict)
    """Build args of both flavours."""
    gpu_args: Mapping[str, str] = field(default_factory=dict)
    """Extra build args of the gpu flavour."""


@dataclass(frozen=True)
class ImageSpec:
    build: ImageBuild | None = field(default_factory=ImageBuild)
    location: str = ""
    """`<registry>/<repository>@sha256:<64 hex>`: an image built elsewhere, by digest."""

    @property
    def ecr_repository_arn(self) -> str:
        """The ECR repository `location` names ("" for another registry): the one the execution
        role may pull."""
        if not self.location:
            return ""
        match = IMAGE_LOCATION.fullmatch(self.location)
        registry = ECR_REGISTRY.fullmatch(match["registry"]) if match else None
        if not match or not registry:
            return ""
        return (
            f"arn:aws:ecr:{registry['region']}:{registry['account']}:repository/"
            f"{match['repository']}"
        )


def _repo_dir(key: str, raw: Any, base: Path) -> str:
    parts = raw.split("/") if isinstance(raw, str) else []
    if not parts or raw.startswith("/") or ".." in parts:
        raise fail(key, raw, "a path relative to the repository, without '..'")
    return raw


# -- the sections ------------------------------------------------------------------------------


def parse_workload_image(raw: Any) -> ImageSpec:
    s = Section("workload.image", raw, ImageSpec)
    if s.has("build") == s.has("location"):
        raise fail("workload.image", dict(s.raw), "give exactly one of build or location")
    if s.has("location"):
        location = s.raw["location"]
        if not isinstance(location, str) or not IMAGE_LOCATION.fullmatch(location):
            raise fail(
                "workload.image.location",
                location,
                "an image by digest: <registry>/<repository>@sha256:<64 hex digits>",
            )
        return ImageSpec(build=None, location=location)
    b = Section("workload.image.build", s.raw["build"], ImageBuild)
    context = _repo_dir(b.key("context"), b.str("context"), ROOT)
    if not (ROOT / context).is_dir():
        raise fail(b.key("context"), context, f"a directory of the repository ({ROOT})")
    dockerfile = _repo_dir(b.key("dockerfile"), b.str("dockerfile"), ROOT / context)
    if not (ROOT / context / dockerfile).is_file():
        raise fail(b.key("dockerfile"), dockerfile, f"a file inside {context}/")
    args = {}
    for name in ("args", "gpu_args"):
        values = as_map(b.key(name), b.raw.get(name))
        for arg, value in values.items():
            if not isinstance(arg, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg):
                raise fail(f"{b.key(name)}.{arg}", arg, "a build arg name")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise fail(f"{b.key(name)}.{arg}", value, "a string or a number")
        args[name] = {k: str(v) for k, v in values.items()}
    return ImageSpec(
        build=ImageBuild(
            context=context, dockerfile=dockerfile, args=args["args"], gpu_args=args["gpu_args"]
        )
    )


