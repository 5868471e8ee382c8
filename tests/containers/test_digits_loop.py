"""The loop for a user's model, on this machine: the digits stack (examples/digits, SageMaker
contract) with data capture on, under preflight.run_local, and AWS's EventBridge played by moto's
server. Nothing in the digits image knows about any of it.

1. The stack's pipeline trains on a channel in the store (a random 1,200 of the digits); the
   platform computes the channel's baseline and promotes the model; the service starts, the
   capture proxy in front of the unchanged server.
2. Requests drawn from the held-out digits, then the stack's own model-monitor task (the platform
   image's `monitor`, as its EventBridge schedule starts it): no drift, no event.
3. The same requests with inverted pixels, then the monitor again: it puts `DataDriftDetected`,
   which the stack's own drift rule (its pattern) matches in moto's EventBridge, an SQS queue in
   the state machine's place. moto delivers the whole event and ignores a target's constant
   `Input`; EventBridge passes that Input alone ("nothing from the event itself is passed to the
   target", PutTargets, `Target.Input`), so the execution input is the stack's target's.
4. That pipeline runs (trigger `drift`): stage -> train -> collect -> gate, which decides.
5. The platform's page shows it all in headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from preflight.offline import run_stack
from preflight.run_local import LocalService, Session, read_stack, remove_session
from preflight.run_local.docker import bridge_gateway
from preflight.run_local.pipeline import walk_state_machine
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
OVERRIDES = {
    "inference": {"capture": {"percent": 100}},
    "training": {"on_drift_event": True},
    "monitoring": {"model_monitor": {"output": {"field": "class", "baseline": "_c64"}}},
    "workload": {"training": {"sweep": None}},  # one training a run: test_sweep.py sweeps
}
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def eventbridge() -> Iterator[str]:
    """moto's server on Docker's bridge gateway, where a task's containers reach the host."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=bridge_gateway(), port=0)
    server.start()
    try:
        yield f"http://{bridge_gateway()}:{server._server.server_port}"
    finally:
        server.stop()


def _clients(endpoint: str) -> tuple[Any, Any]:
    import boto3

    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("events", **kwargs), boto3.client("sqs", **kwargs)


def _the_stacks_drift_rule(view: Any, events: Any, sqs: Any) -> tuple[str, dict[str, Any]]:
    """The stack's drift rule with its declared pattern, an SQS queue as its target: the queue's
    URL, and the execution input the stack's target passes the state machine."""
    rule = view.plan.one(RULE, "on-drift")
    target = next(t for t in view.plan.of_type(TARGET) if t.name.endswith("on-drift-target"))
    queue = sqs.create_queue(QueueName="pipeline")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    events.put_rule(Name="on-drift", EventPattern=rule.inputs["eventPattern"])
    events.put_targets(
        Rule="on-drift", Targets=[{"Id": "pipeline", "Arn": arn["Attributes"]["QueueArn"]}]
    )
    return queue, json.loads(target.inputs["input"])


def _send(port: int, images: np.ndarray) -> None:
    """Requests of 10 CSV rows each, through the service's port (the capture proxy's)."""
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(images), 10):
            body = "\n".join(",".join(str(int(v)) for v in row) for row in images[i : i + 10])
            answer = client.post(
                f"http://127.0.0.1:{port}/invocations",
                content=body,
                headers={"Content-Type": "text/csv"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Mlops-Event-Id"]


def _captured(root: Path) -> int:
    return sum(
        len(path.read_bytes().splitlines())
        for path in (root / "capture" / "inference" / "AllTraffic").rglob("*.jsonl")
    )


def _wait_captured(root: Path, records: int) -> None:
    deadline = time.monotonic() + 20
    while _captured(root) < records:
        assert time.monotonic() < deadline, f"{_captured(root)} of {records} records captured"
        time.sleep(0.2)


def _monitor(session: Session, view: Any, endpoint: str) -> None:
    family = view.scheduled["model-monitor"]
    (container,) = [c["name"] for c in view.tasks[family].containers]
    task = session.task(
        family, overrides={container: {"AWS_ENDPOINT_URL_EVENTBRIDGE": endpoint, **AWS}}
    )
    task.start()
    outcome = task.wait(timeout=120)
    assert not outcome.failed, outcome


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _history(root: Path) -> list[dict[str, Any]]:
    path = root / "monitoring" / "model" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_digits_drift_is_caught_retrained_and_shown(
    base: str, tmp_path_factory: pytest.TempPathFactory, eventbridge: str
) -> None:
    from sklearn.datasets import load_digits

    view = read_stack(run_stack("digits", OVERRIDES))
    assert "model-monitor" in view.scheduled, view.scheduled
    store = tmp_path_factory.mktemp("digits-loop")
    digits = load_digits()
    order = np.random.default_rng(7).permutation(len(digits.target))
    train, held = order[:1200], order[1200:1600]
    rows = np.column_stack([digits.data[train], digits.target[train]]).astype(int)
    channel = channel_dir(view, store, "datasets/digits")
    np.savetxt(channel / "train.csv", rows, fmt="%d", delimiter=",")
    root = store_root(view, store)
    events, sqs = _clients(eventbridge)
    queue, execution_input = _the_stacks_drift_rule(view, events, sqs)

    out = Lines()
    session = Session(view=view, store=store, base_image=base, publish_ephemeral=True, out=out)
    service = LocalService(session)
    try:
        assert walk_state_machine(session) == 0, out.text()
        first = (root / "models" / "CURRENT").read_text().strip()
        assert (root / "models" / first / "baseline" / "train" / "statistics.json").is_file()
        task = service.start()
        assert service.wait_healthy(180), out.text()
        port = task.ports[view.checks[0].port]

        images = digits.data[held]
        _send(port, images)
        _wait_captured(root, 40)
        _monitor(session, view, eventbridge)
        calm = _history(root)[-1]
        assert calm["decided"] and calm["rows"] == 400 and calm["drifted"] == [], calm
        assert calm["output"]["drift"] is False, calm["output"]
        assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)

        _send(port, 16 - images)
        _wait_captured(root, 80)
        _monitor(session, view, eventbridge)
        shifted = _history(root)[-1]
        assert shifted["rows"] == 400 and len(shifted["drifted"]) > 30, shifted["drifted"]
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
        (message,) = messages
        event = json.loads(message["Body"])
        assert (event["source"], event["detail-type"]) == ("mlops.monitoring", "DataDriftDetected")
        assert event["id"] == shifted["event"]["id"] and event["detail"]["model_run_id"] == first
        assert execution_input["reason"] == "drift"

        assert walk_state_machine(session, None, execution_input) == 0, out.text()
        runs = sorted(p.name for p in (root / "models").iterdir() if p.is_dir())
        retrained = [r for r in runs if r != first and not r.startswith(".")]
        assert len(retrained) == 1, runs
        decision = json.loads((root / "models" / retrained[0] / "decision.json").read_text())
        assert decision["key"] == "accuracy" and "promoted" in decision, decision
        _page_shows(root, first, retrained[0], shifted)
    finally:
        service.stop()
        remove_session(session.id)


def _page_shows(root: Path, first: str, retrained: str, shifted: dict[str, Any]) -> None:
    """The platform's page (`python -m mlops_platform page`) against the same store, read in
    headless Chromium as a user would."""
    from playwright.sync_api import sync_playwright

    from tests.app.dashboard.test_page import CHROMIUM, CHROMIUM_ARGS
    from tests.platform.conftest import PLATFORM

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PLATFORM), str(PLATFORM.parent)]),
        "STORE_DIR": str(root),
        "PORT": str(port),
    }
    page = subprocess.Popen(
        [sys.executable, "-m", "mlops_platform", "page"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert page.stdout is not None and "page-listening" in page.stdout.readline()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                view = browser.new_page()
                errors: list[str] = []
                view.on("pageerror", lambda error: errors.append(str(error)))
                view.goto(f"http://127.0.0.1:{port}/")
                current = view.inner_text("#current-model")
                runs = view.inner_text("#runs")
                drift = view.inner_text("#drift")
                events = view.inner_text("#events")
                capture = view.inner_text("#capture")
            finally:
                browser.close()
    finally:
        page.terminate()
        page.wait(timeout=30)
    assert errors == []
    assert first in runs and retrained in runs
    assert (root / "models" / "CURRENT").read_text().strip() in current
    assert "80 records in the last 48 hours" in capture, capture
    assert shifted["drifted"][0] in drift
    assert shifted["event"]["id"] in events
