"""The dev and prod task definitions, run in Docker as Fargate runs them (preflight/run_local.py).

From an empty store, each stack's pipeline (validate -> train -> gate, walked from its own state
machine) exits 0 at every step; then its inference task stays up, passes the load balancer's
target-group check, serves the dashboard and every asset the page names, keeps forecasting, and
drains in-flight /predict requests on `docker stop`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from preflight import run_local
from preflight.run_local import LocalTask, StackView, serve_inference
from tests.containers.conftest import Lines, make_session

pytestmark = pytest.mark.containers
STACKS = ("dev", "prod")
UP_SECONDS = 60
HISTORY = [
    float(line.split(",")[1])
    for line in Path("app/data/co2_weekly.csv").read_text().splitlines()[-60:]
    if line.split(",")[1].strip()
]


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_image_runs_no_baked_health_check_and_declares_tmp(base: str, views: dict) -> None:
    """ECS ignores an image HEALTHCHECK; a baked-in /health probe would mark every command but
    serve unhealthy under plain Docker. /tmp is a VOLUME so Fargate copies its 1777 mode."""
    session = make_session(views["dev"], Path("/nonexistent"), base, Lines())
    image = session.image_for("cpu")
    config = json.loads(subprocess.check_output(["docker", "image", "inspect", image]))[0]
    assert config["Config"].get("Healthcheck") is None
    assert "/tmp" in (config["Config"].get("Volumes") or {})
    mode = subprocess.check_output(
        ["docker", "run", "--rm", "--entrypoint", "stat", image, "-c", "%a %U", "/tmp"], text=True
    )
    assert mode.split() == ["1777", "root"]


def test_gpu_image_carries_the_cuda_xgboost_and_trains_on_the_cpu_here(
    base: str, views: dict
) -> None:
    """The gpu flavour installs the CUDA-enabled xgboost; with no GPU visible, the device is
    chosen at run time and training falls back to the CPU."""
    session = make_session(views["prod"], Path("/nonexistent"), base, Lines())
    image = session.image_for("gpu")
    probe = (
        "import xgboost; from app.pipeline.train import detect_device; "
        "print(xgboost.build_info()['USE_CUDA'], detect_device())"
    )
    out = subprocess.check_output(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-c", probe], text=True
    )
    assert out.split() == ["True", "cpu"]


def test_dashboard_dies_on_a_root_owned_tmp_and_starts_on_the_image_volume(
    base: str, views: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction: Fargate gives a task-level volume without a VOLUME declaration as an
    empty root-owned 0755 directory; gunicorn then has no temporary directory and the
    non-essential dashboard exits before restartAttemptPeriod, never to be restarted. With the
    image's `VOLUME /tmp`, the same container definition serves its page."""
    view: StackView = views["dev"]
    out = Lines()
    session = make_session(view, tmp_path, base, out)
    image = session.image_for("cpu")
    spec = view.tasks[view.inference_family]
    dashboard = next(c for c in spec.containers if c["name"] == "dashboard")
    one = run_local.TaskSpec(spec.family, spec.cpu, spec.memory, [dashboard], spec.volumes, "cpu")

    def run_dashboard() -> tuple[LocalTask, int, str]:
        task = LocalTask(one, image, tmp_path, view.access_point, session.id, True, out=out)
        task.start()
        port = task.ports[8050]
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            if task.inspect(task.containers["dashboard"])["Status"] == "exited":
                break
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/dashboard/", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(1)
        logs = subprocess.run(
            ["docker", "logs", task.containers["dashboard"].id], capture_output=True, text=True
        )
        return task, status, logs.stdout + logs.stderr

    try:
        # Before the fix, as far as Fargate is concerned: the image declares no VOLUME at /tmp.
        monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset())
        task, status, logs = run_dashboard()
        state = task.inspect(task.containers["dashboard"])
        assert state["Status"] == "exited" and state["ExitCode"] != 0, logs
        assert "No usable temporary directory found" in logs
        assert status != 200
        task.stop()

        monkeypatch.undo()
        task, status, logs = run_dashboard()
        assert status == 200, logs
        task.stop()
    finally:
        run_local.remove_session(session.id)


@pytest.mark.parametrize("stack", STACKS)
def test_pipeline_runs_every_step_from_an_empty_store(stack: str, trained: dict) -> None:
    store, log = trained[stack]
    assert log.endswith("exit 0"), log
    for step in ("validate", "train", "gate"):
        assert re.search(rf"task stopped \(EssentialContainerExited; exit codes {step} 0\)", log), (
            f"{step} did not exit 0\n{log}"
        )
    run_id = (store / "mlops" / "models" / "CURRENT").read_text().strip()
    # The state machine's own RUN_ID reached the tasks: <start time>Z-<execution name>.
    assert re.fullmatch(r"\d{8}T\d{6}Z-local-\d{14}-[0-9a-f]{8}", run_id)
    run_dir = store / "mlops" / "models" / run_id
    # The served family's own file (model.ubj or model.json), as train recorded it.
    model_file = json.loads((run_dir / "metrics.json").read_text())["model_file"]
    assert (run_dir / model_file["name"]).stat().st_size == model_file["bytes"] > 0
    assert (store / "mlops" / "reports" / run_id / "validation.json").exists()
    if stack == "prod":
        # prod trains on gpu-ec2: the gpu image, which finds no GPU here and says so.
        assert "training on CPU" in log


def _page_assets(base: str) -> list[str]:
    status, page = _get(f"{base}/dashboard/")
    assert status == 200
    text = page.decode()
    found = re.findall(r'<script[^>]+src="([^"]+)"', text)
    found += re.findall(r'<link[^>]+href="([^"]+)"', text)
    return [urllib.parse.urljoin(f"{base}/dashboard/", url) for url in found]


@pytest.mark.parametrize("stack", STACKS)
def test_inference_task_serves_passes_the_alb_check_and_drains(
    stack: str, trained: dict, views: dict, base: str
) -> None:
    store, _ = trained[stack]
    view: StackView = views[stack]
    out = Lines()
    session = make_session(view, store, base, out)
    checks: dict[str, object] = {}
    done = threading.Event()

    def exercise(task: LocalTask) -> None:
        def run() -> None:
            try:
                api = f"http://127.0.0.1:{task.ports[8080]}"
                dash = f"http://127.0.0.1:{task.ports[8050]}"
                started = time.monotonic()
                forecasts = store / "mlops" / "forecasts" / "latest.json"
                deadline = started + 120
                for url in (f"{api}/ready", f"{dash}/dashboard/"):
                    while _status(url) != 200:
                        assert time.monotonic() < deadline, f"{url} never answered 200"
                        time.sleep(1)
                assets = _page_assets(dash)
                checks["assets"] = {url: _get(url)[0] for url in assets}
                first = forecasts.stat().st_mtime if forecasts.exists() else 0
                time.sleep(max(0, UP_SECONDS - (time.monotonic() - started)))
                checks["forecast_advanced"] = forecasts.stat().st_mtime > first
                checks["health"] = task.health()
                checks["drain"] = _drain(task)
            except BaseException as exc:  # reported by the test below
                checks["error"] = repr(exc)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()

    try:
        code = serve_inference(session, duration=UP_SECONDS + 150, ready=exercise, until=done)
    finally:
        run_local.remove_session(session.id)
    log = out.text()
    assert "error" not in checks, f"{checks.get('error')}\n{log}"
    assert code == 0, log
    health = checks["health"]
    assert all(text.startswith("running") for text in health.values()), health
    assert "restarted" not in " ".join(health.values()), health
    assert health["api"] == "running, health healthy", health
    assert health["dashboard"] == "running, health healthy", health
    assert re.search(r"target group inference-api .*: healthy", log), log
    assert re.search(r"target group inference-dashboard .*: healthy", log), log
    assets = checks["assets"]
    assert assets and all(status == 200 for status in assets.values()), assets
    assert checks["forecast_advanced"], log
    drain = checks["drain"]
    assert drain["in_flight_at_stop"] > 0 and drain["completed"] > 0, drain
    assert drain["in_flight_errors"] == 0, drain


def _status(url: str) -> int:
    try:
        return _get(url, timeout=5)[0]
    except OSError:
        return 0


DRAIN_CLIENT = """
import json, sys, threading, urllib.error, urllib.request
body = json.dumps({"instances": [{"history": json.loads(sys.argv[1]), "horizon": 4}]}).encode()
counts = {"completed": 0, "in_flight_errors": 0, "in_flight_at_stop": 0, "errors": []}
lock = threading.Lock()
deregistered = threading.Event()
in_flight = 0
def client():
    global in_flight
    while not deregistered.is_set():
        request = urllib.request.Request("http://127.0.0.1:8080/predict", data=body,
                                         headers={"content-type": "application/json"})
        with lock:
            in_flight += 1
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                ok = response.status == 200
                error = None if ok else f"HTTP {response.status}"
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        with lock:
            in_flight -= 1
            counts["completed" if ok else "in_flight_errors"] += 1
            if error:
                counts["errors"].append(error)
threads = [threading.Thread(target=client) for _ in range(8)]
for thread in threads:
    thread.start()
print("started", flush=True)
sys.stdin.readline()
with lock:
    deregistered.set()
    counts["in_flight_at_stop"] = in_flight
print("deregistered", flush=True)
for thread in threads:
    thread.join(120)
print(json.dumps(counts), flush=True)
"""


def _drain(task: LocalTask) -> dict[str, Any]:
    """ECS's stop sequence under load. 8 clients send /predict back to back from inside the
    task's network namespace (where the load balancer's connections arrive: no Docker port proxy
    in between). Then, as ECS does, the target is deregistered (the clients start no new
    request) and the task is stopped at once (SIGTERM, then stopTimeout) while the last requests
    are still in flight: every one of them must complete with 200."""
    client = subprocess.Popen(
        [
            "docker", "run", "--rm", "--label", task.label,
            "--interactive", "--network", f"container:{task.holder}",
            "--entrypoint", "python", task.image, "-c", DRAIN_CLIENT, json.dumps(HISTORY),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert client.stdout is not None and client.stdin is not None
    assert client.stdout.readline().strip() == "started"
    time.sleep(3)
    client.stdin.write("deregister\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "deregistered"
    task.stop()
    # Read the result before closing stdin: a `docker run -i` whose stdin closes may lose the
    # tail of its output.
    result = client.stdout.readline()
    client.stdin.close()
    client.wait(timeout=60)
    assert result.startswith("{"), f"client said {result!r}: {client.stderr.read()[-2000:]}"
    counts = json.loads(result)
    print(f"[drain] {counts}", flush=True)
    return counts


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_run_local_removes_everything_it_started_when_interrupted(
    stop_signal: signal.Signals, trained: dict, base: str, views: dict
) -> None:
    """The command as a user runs it, stopped with Ctrl-C (SIGINT) or SIGTERM mid-run: no
    container or volume with its session label is left behind."""
    store, _ = trained["dev"]
    image = make_session(views["dev"], store, base, Lines()).image_for("cpu")
    command = [
        sys.executable, "-m", "preflight.run_local", "dev", "--task", "inference",
        "--store", str(store), "--image", image, "--ephemeral-ports",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    session = ""
    for line in process.stdout:
        found = re.search(r"session ([0-9a-f]{8})", line)
        session = found.group(1) if found else session
        if "container port 8080" in line:
            break
    label = f"label={run_local.LABEL}={session}"
    running = subprocess.check_output(["docker", "ps", "-q", "--filter", label], text=True)
    assert session and len(running.split()) == 4  # the namespace holder and three containers
    process.send_signal(stop_signal)
    process.communicate(timeout=180)
    assert process.returncode == 130
    left = subprocess.check_output(["docker", "ps", "-aq", "--filter", label], text=True)
    volumes = subprocess.check_output(
        ["docker", "volume", "ls", "-q", "--filter", label], text=True
    )
    assert left.split() == [] and volumes.split() == []
