"""The real image, built from app/Dockerfile, and the stacks' own task definitions run in Docker.

Marked `containers`: the default `pytest` run leaves them out (they build images and run tasks
for minutes); the README's test command runs them as a second step, and so does CI. Without a
Docker daemon they are skipped, unless `MLOPS_REQUIRE_DOCKER=1` (set by `.ci/run`), which turns
the skip into a failure so CI can never pass without running them.

The base image comes from Debian packages (`preflight.base_image`): no registry is reachable here.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from preflight import base_image
from preflight.offline import ROOT, run_stack
from preflight.run_local import (
    Session,
    StackView,
    build_resource,
    read_stack,
    remove_session,
    walk_state_machine,
)


def _docker_ready() -> bool:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    if ours and not _docker_ready():
        if os.environ.get("MLOPS_REQUIRE_DOCKER") == "1":
            raise pytest.UsageError("MLOPS_REQUIRE_DOCKER=1 but no Docker daemon answers")
        skip = pytest.mark.skip(reason="no Docker daemon (apt-get install docker.io; dockerd)")
        for item in ours:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base() -> str:
    return base_image.build()


@pytest.fixture(scope="session")
def platform_image(base: str) -> str:
    """The platform's staging image, built once per run as the digits stack declares it (the
    same tag run_local's sessions use, so they reuse it)."""
    (resource,) = read_stack(run_stack("digits")).others.values()
    return build_resource(resource, "mlops-platform-local", base)


@pytest.fixture(scope="session")
def peer_image(base: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The SageMaker peers' image (tests/containers/peers: AWS's training toolkit and MLflow's
    scoring server), `mlops-peers:<hash of its content>`; kept so the next run reuses it."""
    from tests.containers import peers

    return peers.build(base, tmp_path_factory.mktemp("peers-context"))


def docker_build(context: Path, repository: str, base: str) -> str:
    """Build a user's image from `context` on `base` (its Dockerfile's `BASE_IMAGE`), tagged
    `repository:<random>`; remove it with `docker image rm` when done."""
    tag = f"{repository}:{secrets.token_hex(4)}"
    subprocess.run(
        ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return tag


@pytest.fixture(scope="session")
def byoc_image(base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AWS's scikit BYOC sample as a user builds it (tests/containers/byoc_sample.py), built once
    per run for every test that runs it."""
    from tests.containers import byoc_sample

    tag = docker_build(byoc_sample.write(tmp_path_factory.mktemp("byoc")), "byoc-user", base)
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


@pytest.fixture
def volumes() -> Iterator[list[str]]:
    """Names of Docker volumes a test creates (`test_byoc_sample.volume`); removed after it."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def views() -> dict[str, StackView]:
    return {stack: read_stack(run_stack(stack)) for stack in ("dev", "prod")}


class Lines:
    """Collects a session's output lines (and echoes them, for -s runs)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def text(self) -> str:
        return "\n".join(self.lines)


def make_session(view: StackView, store: Path, base: str, out: Lines) -> Session:
    return Session(view=view, store=store, base_image=base, publish_ephemeral=True, out=out)


@pytest.fixture(scope="session")
def trained(
    views: dict[str, StackView], base: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Path, str]]]:
    """Per stack: a store that went through the stack's own pipeline from empty, and its log."""
    results: dict[str, tuple[Path, str]] = {}
    sessions: list[str] = []
    try:
        for stack, view in views.items():
            store = tmp_path_factory.mktemp(f"store-{stack}")
            out = Lines()
            session = make_session(view, store, base, out)
            sessions.append(session.id)
            code = walk_state_machine(session)
            results[stack] = (store, out.text() + f"\nexit {code}")
        yield results
    finally:
        for session_id in sessions:
            remove_session(session_id)


@pytest.fixture
def user_stack() -> Iterator[Callable[[dict[str, Any]], str]]:
    """`user_stack(workload)`: a stack file as a user writes one for their own image (the digits
    stack's cheap settings, this `mlops:workload`), named `user-<random>`; removed afterwards."""
    made: list[Path] = []

    def write(workload: dict[str, Any], **sections: Any) -> str:
        config = yaml.safe_load((ROOT / "Pulumi.digits.yaml").read_text())
        config["config"]["mlops:workload"] = workload
        for section, values in sections.items():
            config["config"][f"mlops:{section}"] = {
                **config["config"].get(f"mlops:{section}", {}),
                **values,
            }
        name = f"user-{secrets.token_hex(3)}"
        path = ROOT / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        made.append(path)
        return name

    yield write
    for path in made:
        path.unlink(missing_ok=True)


def channel_dir(view: StackView, store: Path, relative: str) -> Path:
    """A channel's directory in the store, made as a user would before the first run (the
    access point's root as EFS creates it, owned by its POSIX user)."""
    ap = view.access_point
    root = store / ap.root.strip("/")
    path = root / relative
    path.mkdir(parents=True, exist_ok=True)
    for part in [root, *reversed(path.relative_to(root).parents[:-1]), path]:
        target = part if part.is_absolute() else root / part
        subprocess.run(["chown", f"{ap.uid}:{ap.gid}", str(target)], check=True)
    return path


def store_root(view: StackView, store: Path) -> Path:
    """The store as the tasks see it (the access point's root directory)."""
    return store / view.access_point.root.strip("/")
