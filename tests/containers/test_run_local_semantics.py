"""run_local behaves as AWS does where a pipeline or a rollout depends on it, shown with a user's
SageMaker image (tests/containers/byoc_sample.py, configured through `mlops:workload` alone):

- a training past its step's `TimeoutSeconds` is stopped (SIGTERM, exit 143) and the state fails
  with States.Timeout, which the Spot Train's Catch does not take: the run ends at NotifyFailure;
- a Fargate Spot interruption (ECS stops the task: SIGTERM, then SIGKILL after stopTimeout) fails
  Train with States.TaskFailed, its Catch runs TrainOnDemand with the same RUN_ID, which succeeds;
- a server that answers /ping only after 30 s is not rolled back inside the service's grace
  period, though its target group called it unhealthy meanwhile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
from tests.containers import byoc_sample
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

DIGEST = "sha256:" + "1" * 64


@pytest.fixture(scope="module")
def sample(byoc_image: str) -> str:
    return byoc_image


def _workload(train: list[str], serve: list[str], start_period: int = 60) -> dict[str, Any]:
    return {
        "contract": "sagemaker",
        "image": {"location": f"registry.example.com/team/iris@{DIGEST}"},
        "training": {
            "command": train,
            "channels": {byoc_sample.CHANNEL: "datasets/iris"},
            "timeout_minutes": 1,
        },
        "serving": {
            "command": serve,
            "port": byoc_sample.PORT,
            "health_path": byoc_sample.HEALTH_PATH,
            "start_period_seconds": start_period,
        },
        "promotion": byoc_sample.PROMOTION,
        "security": {"run_as_root": True},
    }


def _session(stack: str, image: str, base: str, store: Path, out: Lines, **extra: Any) -> Session:
    view = read_stack(run_stack(stack))
    byoc_sample.write_dataset(channel_dir(view, store, "datasets/iris"))
    return Session(
        view=view,
        store=store,
        base_image=base,
        image=image,
        publish_ephemeral=True,
        out=out,
        **extra,
    )


def test_a_training_past_its_timeout_is_stopped_and_fails_the_run(
    sample: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    stack = user_stack(_workload(["sh", "-c", "sleep 600"], ["serve"]))
    out = Lines()
    session = _session(stack, sample, base, tmp_path, out)
    try:
        assert walk_state_machine(session) == 1, out.text()
        log = out.text()
        assert "Train: task stopped (UserInitiated; exit codes" in log, log
        assert re.search(r"train 143\b", log), log  # SIGTERM reached the training
        assert "Train failed (States.Timeout): caught, next TrainStopped" in log, log
        assert "TrainOnDemand" not in log  # a timeout is not a Spot interruption
        assert "Failed: failed (States.Timeout" in log, log
        models = store_root(session.view, tmp_path) / "models"
        assert not (models / "CURRENT").exists()
        # The run's record says why: the step's timeout, as Step Functions gave it.
        (run,) = [p for p in models.iterdir() if not p.name.startswith(".")]
        report = json.loads((run / "report.json").read_text())
        assert report["status"] == "failed" and report["task"]["stop_code"] == "UserInitiated"
        assert "State 'Train' has timed out after 60 s" in report["failure"]
    finally:
        remove_session(session.id)


def test_a_spot_interruption_retries_on_demand_with_the_same_run_id(
    sample: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    # The interruption comes 5 s after train started (run_local counts from the workload's
    # start, after staging): train is still asleep, so it gets the SIGTERM.
    stack = user_stack(_workload(["sh", "-c", "sleep 20 && exec train"], ["serve"]))
    out = Lines()
    session = _session(stack, sample, base, tmp_path, out, spot_interruptions=(5.0,))
    try:
        assert walk_state_machine(session) == 0, out.text()
        log = out.text()
        assert "Train: ecs:runTask" in log and "(FARGATE_SPOT)" in log
        assert "Train: task stopped (SpotInterruption; exit codes" in log, log
        assert re.search(r"train 143\b", log), log
        # The stop code says it was an interruption (a crash would not run again on demand).
        assert "Train failed (States.TaskFailed): caught, next SpotStopped" in log, log
        assert "TrainOnDemand: ecs:runTask" in log and "(FARGATE)" in log
        runs = re.findall(r"\[stage-training\] staged run (\S+):", log)
        assert len(runs) == 2 and runs[0] == runs[1], runs  # the same RUN_ID, staged again
        models = store_root(session.view, tmp_path) / "models"
        assert (models / "CURRENT").read_text().strip() == runs[0]
    finally:
        remove_session(session.id)


def test_a_slow_server_is_not_rolled_back_inside_its_grace_period(
    sample: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    """30 s of silence: the target group (10 s interval, 3 failures) calls it unhealthy at about
    30 s, inside the 120 s grace period ECS gives the new task, so the rollout waits for the
    checks to pass instead of rolling back."""
    stack = user_stack(_workload(["train"], ["sh", "-c", "sleep 30 && exec serve"], 120))
    out = Lines()
    session = _session(stack, sample, base, tmp_path, out)
    service = LocalService(session)
    try:
        assert walk_state_machine(session) == 0, out.text()
        service.start()
        assert service.wait_healthy(), out.text()
        log = out.text()
        assert ": unhealthy" in log and ": healthy" in log, log
        assert log.index(": unhealthy") < log.rindex(": healthy")
    finally:
        service.stop()
        remove_session(session.id)
