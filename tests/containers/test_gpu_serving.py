"""prod with `inference.capacity: gpu-ec2`, run in Docker: the gpu image's api on this machine,
which has no GPU. The device is chosen at run time, so the CPU fallback is what serves: the api
says so in one log line, `/model` reports "cpu", and the load balancer's check passes.

ECS reserves the GPU (`resourceRequirements`) on a GPU instance; Docker here has none to give,
so the task runs as its definition says otherwise (EC2-only, awsvpc, the same containers).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from preflight import run_local
from preflight.offline import run_stack
from preflight.run_local import (
    LocalTask,
    StackView,
    read_stack,
    serve_inference,
    walk_state_machine,
)
from tests.containers.conftest import Lines, make_session

pytestmark = pytest.mark.containers
GPU_SERVING = {"inference": {"capacity": "gpu-ec2"}}
HISTORY = [
    float(line.split(",")[1])
    for line in Path("app/data/co2_weekly.csv").read_text().splitlines()[-60:]
    if line.split(",")[1].strip()
]


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError:
        return 0, {}


@pytest.fixture(scope="module")
def gpu_view() -> StackView:
    return read_stack(run_stack("prod", GPU_SERVING))


@pytest.fixture(scope="module")
def gpu_store(
    gpu_view: StackView, base: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A store that went through this stack's own pipeline (training on the gpu image)."""
    store = tmp_path_factory.mktemp("store-gpu-serving")
    out = Lines()
    session = make_session(gpu_view, store, base, out)
    try:
        assert walk_state_machine(session) == 0, out.text()
        yield store
    finally:
        run_local.remove_session(session.id)


def test_the_inference_task_is_ec2_only_on_the_gpu_image(gpu_view: StackView) -> None:
    spec = gpu_view.tasks[gpu_view.inference_family]
    assert spec.flavour == "gpu"
    api = next(c for c in spec.containers if c["name"] == "api")
    assert api["resourceRequirements"] == [{"type": "GPU", "value": "1"}]


def test_gpu_image_api_falls_back_to_the_cpu_and_serves(
    gpu_view: StackView, gpu_store: Path, base: str
) -> None:
    out = Lines()
    session = make_session(gpu_view, gpu_store, base, out)
    checks: dict[str, object] = {}
    done = threading.Event()

    def exercise(task: LocalTask) -> None:
        def run() -> None:
            try:
                api = f"http://127.0.0.1:{task.ports[8080]}"
                deadline = time.monotonic() + 120
                while _call(f"{api}/ready")[0] != 200:
                    assert time.monotonic() < deadline, "/ready never answered 200"
                    time.sleep(1)
                # /model answers on the api's internal port (inside the VPC only).
                checks["model"] = _call(f"http://127.0.0.1:{task.ports[8081]}/model")
                body = {"instances": [{"history": HISTORY, "horizon": 4}]}
                checks["predict"] = _call(f"{api}/predict", body)
                # Long enough for the load balancer's check (2 x 10 s) to mark it healthy.
                time.sleep(25)
            except BaseException as exc:  # reported by the test below
                checks["error"] = repr(exc)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()

    try:
        code = serve_inference(session, duration=240, ready=exercise, until=done)
    finally:
        run_local.remove_session(session.id)
    log = out.text()
    assert "error" not in checks, f"{checks.get('error')}\n{log}"
    assert code == 0, log
    status, model = checks["model"]
    assert status == 200 and model["device"] == "cpu", model
    status, predicted = checks["predict"]
    assert status == 200 and len(predicted["predictions"][0]["forecast"]) == 4, predicted
    api_lines = [line for line in log.splitlines() if line.startswith("[api]")]
    assert [line for line in api_lines if "no GPU visible; predicting on CPU" in line], log
    assert re.search(r"target group inference-api .*: healthy", log), log
