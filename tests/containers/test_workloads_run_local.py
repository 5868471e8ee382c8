"""Any workload under `preflight.run_local`, as its stack declares it: the digits stack
(examples/digits, SageMaker contract) and a BYOC image a user writes outside the repository
(tests/containers/byoc_sample.py: nginx + gunicorn as root, a JSON model of its own), configured
only through a stack file's `mlops:workload`. Each runs the stack's own pipeline from an empty
store (the platform image's stage-training -> the workload's train -> collect-training, then the
platform gate), then the inference task (stage-serving -> the server) behind its target-group
check, and answers a prediction through /invocations."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from preflight.offline import ROOT, run_stack
from preflight.run_local import (
    LocalService,
    LocalTask,
    Session,
    StackView,
    TargetProbe,
    read_stack,
    remove_session,
    walk_state_machine,
)
from tests.containers import byoc_sample
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers


def _pipeline_then_serve(
    view: StackView, store: Path, base: str, body: Any, image: str | None = None
) -> tuple[int, str, dict[str, Any]]:
    """The stack's pipeline from this store, then its inference task behind the target-group
    probes until one prediction went through /invocations. Returns the pipeline's exit code,
    the session's log and what the service answered."""
    out = Lines()
    session = Session(
        view=view, store=store, base_image=base, image=image, publish_ephemeral=True, out=out
    )
    seen: dict[str, Any] = {}
    try:
        code = walk_state_machine(session)
        if code != 0:
            return code, out.text(), seen
        task = session.task(view.inference_family)
        task.start()
        stop = threading.Event()
        probes = [TargetProbe(check, task.ports[check.port], out) for check in view.checks]
        for probe in probes:
            threading.Thread(target=probe.run, args=(stop,), daemon=True).start()
        try:
            seen.update(_exercise(task, probes, body))
        finally:
            stop.set()
            task.stop()
    finally:
        remove_session(session.id)
    return code, out.text(), seen


def _exercise(task: LocalTask, probes: list[TargetProbe], body: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while not all(probe.state == "healthy" for probe in probes):
        task.poll()
        assert not task.stopping, f"the task stopped: {task.stopped_reason}"
        assert time.monotonic() < deadline, [probe.describe() for probe in probes]
        time.sleep(1)
    port = task.ports[probes[0].check.port]
    response = httpx.post(f"http://127.0.0.1:{port}/invocations", timeout=30, **body)
    return {
        "probes": [probe.describe() for probe in probes],
        "status": response.status_code,
        "answer": response.text,
    }


def _decision(store: Path, view: StackView) -> dict[str, Any]:
    models = store / view.access_point.root.strip("/") / "models"
    current = (models / "CURRENT").read_text().strip()
    return json.loads((models / current / "decision.json").read_text())


def _accuracy(task: LocalTask, port: int, images: Any, labels: list[int]) -> float:
    url = f"http://127.0.0.1:{task.ports[port]}/invocations"
    response = httpx.post(url, json={"instances": images.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    classes = [p["class"] for p in response.json()["predictions"]]
    return sum(c == t for c, t in zip(classes, labels, strict=True)) / len(labels)


def _assert_captured(task: LocalTask, port: int, store: Path, image: Any) -> None:
    """One CSV request through the service's port (the capture proxy's): its record, in
    SageMaker's format, under the event id the response carried."""
    row = ",".join(str(int(v)) for v in image)
    url = f"http://127.0.0.1:{task.ports[port]}/invocations"
    response = httpx.post(url, content=row, headers={"Content-Type": "text/csv"}, timeout=30)
    assert response.status_code == 200, response.text
    event = response.headers["X-Mlops-Event-Id"]
    deadline = time.monotonic() + 10
    while True:
        records = [
            json.loads(line)
            for path in sorted((store / "capture" / "inference" / "AllTraffic").rglob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        mine = [r for r in records if r["eventMetadata"]["eventId"] == event]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1, records[-3:]
    data = mine[0]["captureData"]
    assert data["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": row,
        "encoding": "CSV",
    }
    assert data["endpointOutput"]["data"] == response.text
    assert data["endpointOutput"]["mode"] == "OUTPUT"
    # The JSON requests before it were captured too (100 %).
    assert len(records) >= 2, records


def test_digits_from_an_empty_store_then_a_better_model_rolls_the_service(
    base: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The digits stack's pipeline from an empty store with a deliberately weak recipe (one
    boosting round of depth 1), the service behind its /ping check answering /invocations; then
    the stack's own recipe trains, the platform gate makes it the candidate on accuracy, and the
    pipeline rolls it out as the stack declares (a blue-green revision pinned to the run, its
    target checks, the stack's own sample: a CSV row to /invocations) before it becomes current:
    the same requests are answered better, with no restart by hand. With `inference.capture`
    at 100 %, the platform's proxy in front of the unchanged image records each /invocations
    exchange in the store, in SageMaker's data-capture format, under the id the client got."""
    from sklearn.datasets import load_digits

    weak = read_stack(
        run_stack(
            "digits",
            overrides={
                "workload": {
                    "training": {
                        "hyperparameters": {"num_round": 1, "max_depth": 1},
                        "sweep": None,  # one training a run: tests/containers/test_sweep.py
                    }
                }
            },
        )
    )
    view = read_stack(
        run_stack(
            "digits",
            {"inference": {"capture": {"percent": 100}}, "workload": {"training": {"sweep": None}}},
        )
    )
    store = tmp_path_factory.mktemp("digits-store")
    channel_dir(view, store, "datasets/digits")  # empty: the image trains on its bundled data
    digits = load_digits()
    images, labels = digits.data[-300:], digits.target[-300:].tolist()
    out = Lines()
    first = Session(view=weak, store=store, base_image=base, publish_ephemeral=True, out=out)
    session = Session(view=view, store=store, base_image=base, publish_ephemeral=True, out=out)
    service = LocalService(session)
    try:
        assert walk_state_machine(first) == 0, out.text()
        assert "[stage-training] staged run" in out.text()
        assert "[collect-training] collected run" in out.text()
        weak_decision = _decision(store, view)
        assert weak_decision["promoted"] is True and weak_decision["key"] == "accuracy"
        # No service ran yet: nothing to roll, the candidate became current.
        assert weak_decision["rollout"]["status"] == "succeeded"
        port = view.checks[0].port
        task = service.start()
        assert service.wait_healthy(180), out.text()
        assert all("/ping" in probe.describe() for probe in service.probes)
        before = _accuracy(task, port, images, labels)
        _assert_captured(task, port, store_root(view, store), images[0])

        assert walk_state_machine(session) == 0, out.text()
        decision = _decision(store, view)
        assert decision["promoted"] is True, decision
        assert decision["objective"] > weak_decision["objective"], decision
        log = out.text()
        assert "sample 1/1 POST /invocations: 200" in log, log
        assert "[rollout] succeeded: the new task passed its target checks" in log, log
        assert "is current: its rollout succeeded" in log, log
        assert service.task is not task and task.stopping
        after = _accuracy(service.task, port, images, labels)
        assert after > 0.9 and after > before + 0.2, (before, after)
    finally:
        service.stop()
        for each in (first, session):
            remove_session(each.id)


@pytest.fixture
def byoc_stack(byoc_image: str) -> Iterator[tuple[str, str]]:
    """The sample built as a user builds their image (the session's `byoc_image`), and a stack
    file whose only workload settings are its `mlops:workload` (the image by digest, as a user's
    CI would push it). Yields the stack name and the local image tag."""
    tag = byoc_image
    image_id = subprocess.run(
        ["docker", "image", "inspect", tag, "--format", "{{.Id}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    config = yaml.safe_load((ROOT / "Pulumi.digits.yaml").read_text())
    config["config"]["mlops:workload"] = {
        "contract": "sagemaker",
        "image": {"location": f"registry.example.com/team/iris@{image_id}"},
        "training": {
            "command": ["train"],
            "channels": {byoc_sample.CHANNEL: "datasets/iris"},
            "timeout_minutes": 30,
        },
        "serving": {
            "command": ["serve"],
            "port": byoc_sample.PORT,
            "health_path": byoc_sample.HEALTH_PATH,
            "start_period_seconds": 60,
        },
        # AWS's sample writes no metrics: SageMaker deploys any trained model.
        "promotion": byoc_sample.PROMOTION,
        "security": {"run_as_root": True},
    }
    stack = f"byoc-{secrets.token_hex(3)}"
    path = ROOT / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        yield stack, tag
    finally:
        path.unlink(missing_ok=True)


def test_a_users_byoc_image_runs_through_mlops_workload_alone(
    byoc_stack: tuple[str, str], base: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stack, tag = byoc_stack
    view = read_stack(run_stack(stack))
    store = tmp_path_factory.mktemp("byoc-store")
    byoc_sample.write_dataset(channel_dir(view, store, "datasets/iris"))
    rows = byoc_sample.dataset_rows(rows_per_class=5, seed=7)
    csv = "".join(",".join(map(str, features)) + "\n" for _, features in rows)
    body = {"content": csv, "headers": {"Content-Type": "text/csv"}}
    code, log, seen = _pipeline_then_serve(view, store, base, body, image=tag)
    assert code == 0, log
    decision = _decision(store, view)
    assert decision["promoted"] is True and decision["promotion"] == "every-trained-run", decision
    assert seen["status"] == 200, seen
    assert all(": healthy" in text for text in seen["probes"]), seen
    assert seen["answer"].split() == [label for label, _ in rows], seen
