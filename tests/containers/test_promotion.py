"""Nothing unproven serves, shown with a user's image (tests/containers/promotion_image.py)
through `mlops:workload` alone, run by run_local as the stack declares it (the pipeline's
states, the service's blue-green deployment with its sample check and bake):

1. a first model is promoted and, with no service yet, made current; the service serves it;
2. a better model whose server never answers /ping: the new revision fails its target checks,
   the old task keeps serving, a task started afterwards serves the old model too, CURRENT still
   names it, and the pipeline ends FAILED naming why; the run's decision records it;
3. a better model whose server answers /ping but fails every /invocations: the sample check
   through the test header fails it, with the same outcome;
4. a better, healthy model: promoted after its bake; the service and any new task serve it;
5. a training that writes a better metrics file and exits 1: never gated; the run's report names
   the exit code and how the task stopped; the pipeline ends FAILED;
6. an objective file of hostile JSON (nested 100,000 deep): the gate refuses it in one line, the
   run ends with the current model kept.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from preflight.offline import run_stack
from preflight.run_local import (
    LocalService,
    Session,
    read_stack,
    remove_session,
    walk_state_machine,
)
from preflight.run_local.task import LocalTask
from tests.containers import promotion_image
from tests.containers.conftest import Lines, channel_dir, docker_build, store_root

pytestmark = pytest.mark.containers

DIGEST = "sha256:" + "2" * 64


@pytest.fixture(scope="module")
def image(base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tag = docker_build(
        promotion_image.write(tmp_path_factory.mktemp("promotion")), "promotion", base
    )
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


def _workload() -> dict[str, Any]:
    return {
        "contract": "sagemaker",
        "image": {"location": f"registry.example.com/team/promotion@{DIGEST}"},
        "training": {
            "command": ["train"],
            "channels": {promotion_image.CHANNEL: "datasets/plan"},
            "timeout_minutes": 2,
        },
        "serving": {
            "command": ["serve"],
            "port": promotion_image.PORT,
            "health_path": promotion_image.HEALTH_PATH,
            "start_period_seconds": 5,
            "samples": [
                {"path": "/invocations", "content_type": "application/json", "body": '{"x": 1}'}
            ],
        },
        "objective": {"file": "metrics.json", "key": "accuracy", "direction": "maximize"},
    }


def _predict(task: LocalTask, deadline: float = 90) -> dict[str, Any]:
    """What the task's server answers on /invocations, once it answers."""
    url = f"http://127.0.0.1:{task.ports[promotion_image.PORT]}/invocations"
    end = time.monotonic() + deadline
    while True:
        try:
            request = urllib.request.Request(url, data=b'{"x": 1}', method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except (OSError, urllib.error.URLError):
            if time.monotonic() > end:
                raise
            time.sleep(1)


def test_nothing_unproven_serves(
    image: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    # A bake of a minute, waited 0.05 times over (3 s) as the session scales AWS's waits.
    stack = user_stack(
        _workload(),
        inference={"rollout": {"strategy": "blue-green", "bake_minutes": 1, "wait_minutes": 30}},
    )
    view = read_stack(run_stack(stack))
    plan_dir = channel_dir(view, tmp_path, "datasets/plan")
    models = store_root(view, tmp_path) / "models"
    out = Lines()
    session = Session(
        view=view,
        store=tmp_path,
        base_image=base,
        image=image,
        publish_ephemeral=True,
        out=out,
        retry_scale=0.05,
    )
    service = LocalService(session)

    def run(**plan: Any) -> tuple[int, str]:
        path = plan_dir / "plan.json"
        path.write_text(json.dumps(plan))
        subprocess.run(["chown", "10001:10001", str(path)], check=True)
        start = len(out.lines)
        code = walk_state_machine(session)
        return code, "\n".join(out.lines[start:])

    def current() -> str:
        return (models / "CURRENT").read_text().strip()

    def decision(run_id: str) -> dict[str, Any]:
        return json.loads((models / run_id / "decision.json").read_text())

    def run_id(log: str) -> str:
        return log.split("staged run ", 1)[1].split(":", 1)[0]

    try:
        # 1. The first model, with no service yet: promoted, then current.
        code, log = run(accuracy=0.80)
        assert code == 0, log
        first = current()
        assert decision(first)["rollout"]["status"] == "succeeded"
        service.start()
        assert service.wait_healthy(), out.text()
        assert _predict(service.task)["accuracy"] == 0.80

        # 2. A better model that never answers /ping: rolled back, the old model keeps serving
        # every task, and the run fails naming why.
        code, log = run(accuracy=0.90, serve="no-ping")
        assert code == 1, log
        assert "[pipeline] RolloutStatus" in log and "the new task failed its target checks" in log
        assert "[pipeline] Failed: failed (RolloutFailed: The model rollout failed:" in log
        bad = run_id(log)
        assert current() == first
        assert decision(bad)["promoted"] is False
        assert "target checks" in decision(bad)["reason"]
        assert _predict(service.task)["accuracy"] == 0.80
        later = service.scale_out()
        try:
            assert _predict(later)["accuracy"] == 0.80  # a task started afterwards: the old model
        finally:
            later.stop()

        # 3. A better model that answers /ping but fails every prediction: the sample check
        # through the test listener's header fails it before it takes traffic.
        code, log = run(accuracy=0.95, serve="500")
        assert code == 1, log
        assert "the sample check failed" in log and "500" in log
        assert current() == first
        assert _predict(service.task)["accuracy"] == 0.80

        # 4. A better, healthy model: promoted after its bake, served by every task.
        code, log = run(accuracy=0.97)
        assert code == 0, log
        assert "[rollout] baking 3 s" in log and "[rollout] succeeded" in log
        good = run_id(log)
        assert current() == good and decision(good)["rollout"]["status"] == "succeeded"
        assert _predict(service.task) == {"accuracy": 0.97, "run": good}
        later = service.scale_out()
        try:
            assert _predict(later)["run"] == good
        finally:
            later.stop()

        # 5. A training that writes a better metrics file, then exits 1: never gated.
        code, log = run(accuracy=0.99, exit=1)
        assert code == 1, log
        crashed = run_id(log)
        report = json.loads((models / crashed / "report.json").read_text())
        assert report["status"] == "failed" and report["exit_code"] == 1
        assert report["task"]["exit_codes"]["train"] == 1
        assert report["task"]["stop_code"] == "EssentialContainerExited"
        assert "[pipeline] RecordFailure" in log and "[pipeline] Gate" not in log
        assert not (models / crashed / "decision.json").exists()
        assert current() == good

        # 6. Hostile JSON as the objective: one line, a decision kept, nothing rolled.
        code, log = run(accuracy=0.99, metrics="[" * 100_000 + "]" * 100_000)
        assert code == 0, log
        gate_lines = [line for line in log.splitlines() if line.startswith("[gate]")]
        assert len(gate_lines) == 1 and "levels deep, the limit" in gate_lines[0], gate_lines
        assert "ModelKept" in log and "Deploy" not in log
        assert current() == good
        assert _predict(service.task)["run"] == good
    finally:
        service.stop()
        remove_session(session.id)
