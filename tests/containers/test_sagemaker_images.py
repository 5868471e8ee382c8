"""The images SageMaker users already have, run unchanged through `mlops:workload` alone, under
run_local: an image built on AWS's `sagemaker-training` toolkit (a user script named by
SAGEMAKER_PROGRAM, reading its channel through SM_CHANNEL_TRAIN, saving to SM_MODEL_DIR) and
served by MLflow's own SageMaker scoring server (nginx in front of uvicorn, /ping and
/invocations), with no code of this project inside (tests/containers/peers).

From an empty store: the stack's pipeline (the platform's stage-training, the toolkit's `train`,
collect-training, the platform gate) promotes the model; the service stages it and MLflow's
server answers behind its /ping check within the service's grace period; a failing user script
is recorded failed with the toolkit's own failure text and the pipeline ends at NotifyFailure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from preflight.offline import run_stack
from preflight.run_local import (
    LocalService,
    Session,
    read_stack,
    remove_session,
    walk_state_machine,
)
from tests.containers import peers
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

DIGEST = "sha256:" + "0" * 64
"""The location the stack file names (a user's CI would push there); the local image is given
to run_local with --image, as docs/local-containers.md says for an image built elsewhere."""


def _workload(program: str, serving: bool, run_as_root: bool) -> dict[str, Any]:
    return {
        "contract": "sagemaker",
        "image": {"location": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/iris@{DIGEST}"},
        "training": {
            "command": peers.TRAIN_COMMAND,
            "channels": {peers.CHANNEL: "datasets/iris"},
            "hyperparameters": {"C": 0.5, "max-iter": 200},
            "environment": {"SAGEMAKER_PROGRAM": program},
            "timeout_minutes": 15,
        },
        "serving": (
            {
                "command": peers.SERVE_COMMAND,
                "port": peers.PORT,
                "health_path": peers.HEALTH_PATH,
                "start_period_seconds": 120,
            }
            if serving
            else None
        ),
        "objective": {
            "file": peers.OBJECTIVE_FILE,
            "key": peers.OBJECTIVE_KEY,
            "direction": peers.OBJECTIVE_DIRECTION,
        },
        # MLflow's server starts nginx, which writes /var/log/nginx and /var/lib/nginx: as
        # SageMaker runs it, as root. The toolkit alone runs as the default non-root user.
        **({"security": {"run_as_root": True}} if run_as_root else {}),
    }


def _pipeline(stack: str, image: str, base: str, store: Path, out: Lines) -> tuple[int, Session]:
    view = read_stack(run_stack(stack))
    if not (store_root(view, store) / "datasets" / "iris").exists():
        peers.write_dataset(channel_dir(view, store, "datasets/iris"))
    session = Session(
        view=view, store=store, base_image=base, image=image, publish_ephemeral=True, out=out
    )
    return walk_state_machine(session), session


def _record(session: Session, store: Path) -> tuple[str, dict[str, Any]]:
    models = store_root(session.view, store) / "models"
    (run,) = [p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run, json.loads((models / run / "report.json").read_text())


def test_the_training_toolkit_runs_a_users_script_non_root_from_an_empty_store(
    peer_image: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    """As uid 10001 on a read-only root: the toolkit finds its script in the image's own
    /opt/ml/code, resolves the host resourceconfig.json names, writes the MLflow model to
    SM_MODEL_DIR, and the platform gate promotes it on its accuracy."""
    stack = user_stack(_workload(peers.PROGRAM, serving=False, run_as_root=False))
    out = Lines()
    code, session = _pipeline(stack, peer_image, base, tmp_path / "store", out)
    try:
        assert code == 0, out.text()
        run, report = _record(session, tmp_path / "store")
        assert (report["status"], report["exit_code"]) == ("trained", 0), report
        assert report["exit_code_from"] == "the task metadata endpoint"
        assert {"MLmodel", "metrics.json"} <= set(report["files"]), report
        models = store_root(session.view, tmp_path / "store") / "models"
        decision = json.loads((models / run / "decision.json").read_text())
        assert decision["promoted"] is True and decision["objective"] > 0.9, decision
        assert (models / "CURRENT").read_text().strip() == run
        # The toolkit's own account of the run, and the name SageMaker would give the job.
        assert "Invoking user script" in out.text() or "Invoking script" in out.text(), out.text()
        assert f"staged run {run}" in out.text()
    finally:
        remove_session(session.id)


def test_a_failing_user_script_is_recorded_failed_with_the_toolkits_failure_text(
    peer_image: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    stack = user_stack(_workload(peers.FAILING_PROGRAM, serving=False, run_as_root=False))
    out = Lines()
    code, session = _pipeline(stack, peer_image, base, tmp_path / "store", out)
    try:
        assert code == 1, out.text()
        run, report = _record(session, tmp_path / "store")
        assert report["status"] == "failed" and report["exit_code"] != 0, report
        assert "ExecuteUserScriptError" in report["failure"], report
        models = store_root(session.view, tmp_path / "store") / "models"
        assert not (models / "CURRENT").exists()
        assert not (models / run / "decision.json").exists()  # never gated
        assert "NotifyFailure: sns:publish" in out.text() and "ExecuteUserScriptError" in out.text()
    finally:
        remove_session(session.id)


def test_mlflows_sagemaker_server_serves_the_promoted_model_behind_ping(
    peer_image: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    stack = user_stack(_workload(peers.PROGRAM, serving=True, run_as_root=True))
    out = Lines()
    code, session = _pipeline(stack, peer_image, base, tmp_path / "store", out)
    service = LocalService(session)
    try:
        assert code == 0, out.text()
        task = service.start()
        assert service.wait_healthy(), out.text()
        assert all("/ping" in probe.describe() for probe in service.probes)
        rows = [values for _, values in peers.byoc_sample.dataset_rows(5, seed=11)]
        csv = (
            ",".join(peers.FEATURES)
            + "\n"
            + "".join(",".join(map(str, values)) + "\n" for values in rows)
        )
        port = task.ports[peers.PORT]
        answer = httpx.post(
            f"http://127.0.0.1:{port}{peers.INVOCATIONS_PATH}",
            content=csv,
            headers={"Content-Type": "text/csv"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        truth = [label for label, _ in peers.byoc_sample.dataset_rows(5, seed=11)]
        assert sum(p == t for p, t in zip(predictions, truth, strict=True)) >= 0.9 * len(truth)
    finally:
        service.stop()
        remove_session(session.id)
