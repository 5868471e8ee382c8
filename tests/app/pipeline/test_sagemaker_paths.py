"""The forecaster answers SageMaker's "bring your own container" paths too, so the same image runs
as a SageMaker training job and endpoint (app/pipeline/sagemaker.py):
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
Each command runs as a real child process; /opt/ml is a temporary directory (MLOPS_ML_ROOT).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from app.store import Store
from tests.app.helpers import REPO_ROOT, TEST_ROUNDS, ServerProcess, free_port, predict_body

SHIPPED = REPO_ROOT / "app" / "data" / "co2_weekly.csv"


def sagemaker_env(root: Path, **extra: str) -> dict[str, str]:
    """A SageMaker container's environment: no STORE_DIR, /opt/ml at `root`."""
    env = {
        k: v for k, v in os.environ.items()
        if k.upper() not in ("STORE_DIR", "RUN_ID", "RUN_DATE") and not k.startswith("MLOPS_")
    }
    env.update(MLOPS_ML_ROOT=str(root), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", **extra)
    return env


def stage(root: Path, hyper: dict[str, str], csv: bytes | None = None) -> None:
    """What SageMaker puts in /opt/ml before `train`."""
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_bytes(orjson.dumps(hyper))
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "weekly.csv").write_bytes(SHIPPED.read_bytes() if csv is None else csv)
    (root / "model").mkdir()
    (root / "output").mkdir()


def train(root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "train"], cwd=REPO_ROOT, env=sagemaker_env(root, **extra),
        capture_output=True, text=True, timeout=300, check=False,
    )


HYPER = {"train_rounds": str(TEST_ROUNDS), "model_family": "harmonic", "train_threads": "1"}


@pytest.fixture(scope="module")
def sagemaker_trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("opt-ml")
    stage(root, HYPER)
    result = train(root, RUN_ID="sm-1")
    assert result.returncode == 0, result.stderr
    return root


def test_train_under_opt_ml_writes_the_model_to_opt_ml_model(sagemaker_trained: Path) -> None:
    model = sagemaker_trained / "model"
    names = sorted(p.name for p in model.iterdir())
    assert names == ["card.md", "metrics.json", "model.json"]
    metrics = orjson.loads((model / "metrics.json").read_bytes())
    assert metrics["run_id"] == "sm-1"
    assert metrics["family"] == "harmonic"
    mean = metrics["backtest"]["mean"]
    assert mean["mae"] < mean["naive_mae"]  # the usual report card, against seasonal naive
    report = orjson.loads((sagemaker_trained / "output" / "data" / "validation.json").read_bytes())
    assert report["ok"] is True
    assert not (sagemaker_trained / "output" / "failure").exists()
    # The shipped column: the shipped series, with its descriptor's bounds.
    assert metrics["series"]["name"] == "co2_weekly"
    assert (metrics["history_range"]["min"], metrics["history_range"]["max"]) == (250.0, 500.0)


@pytest.mark.slow
def test_train_under_opt_ml_on_a_plain_date_value_channel_trains_that_series(
    tmp_path: Path,
) -> None:
    gasoline = REPO_ROOT / "benchmarks" / "data" / "gasoline.csv"
    stage(tmp_path, HYPER, gasoline.read_bytes())
    result = train(tmp_path, RUN_ID="sm-gas")
    assert result.returncode == 0, result.stderr
    metrics = orjson.loads((tmp_path / "model" / "metrics.json").read_bytes())
    assert metrics["series"]["name"] == "weekly" and metrics["series"]["column"] == "value"
    # No descriptor: half the lowest (6.321) to twice the highest (9.815) weekly value.
    assert (metrics["history_range"]["min"], metrics["history_range"]["max"]) == (3.1, 19.7)


@pytest.mark.parametrize(("hyper", "csv", "message"), [
    ({"rounds": "5"}, None, "unknown hyperparameter(s) rounds"),
    ({"train_rounds": "zero"}, None, "TRAIN_ROUNDS='zero'"),
    ({}, b"date,ppm\n2020-01-04,not-a-number\n", "cannot train on this dataset"),
])
@pytest.mark.slow
def test_train_failure_goes_to_opt_ml_output_failure(
    tmp_path: Path, hyper: dict, csv: bytes | None, message: str
) -> None:
    stage(tmp_path, hyper, csv)
    result = train(tmp_path)
    assert result.returncode == 1
    assert message in (tmp_path / "output" / "failure").read_text()
    assert list((tmp_path / "model").iterdir()) == []


def test_a_stack_task_with_store_dir_never_switches(tmp_path: Path) -> None:
    """STORE_DIR set (every stack task): /opt/ml present or not, train uses the store."""
    root = tmp_path / "ml"
    stage(root, HYPER, b"garbage that would fail\n")
    store = tmp_path / "store"
    store.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "app", "train"], cwd=REPO_ROOT,
        env=sagemaker_env(root, STORE_DIR=str(store), STORE_WAIT_SECONDS="5", RUN_ID="r1", **{
            k.upper(): v for k, v in HYPER.items()}),
        capture_output=True, text=True, timeout=300, check=False,
    )
    # The store's train refuses a dataset no validation vouched for: the old behaviour.
    assert result.returncode == 1
    assert "cannot train on this dataset" in result.stderr
    assert not (root / "output" / "failure").exists()
    assert Store(store).dataset_path.exists()


def test_layout_switch_is_checked(tmp_path: Path) -> None:
    result = train(tmp_path, MLOPS_LAYOUT="s3")
    assert result.returncode == 2
    assert "MLOPS_LAYOUT='s3': use auto, store, sagemaker" in result.stderr


class SageMakerServer(ServerProcess):
    """`python -m app serve` as SageMaker starts it: no STORE_DIR, the model in /opt/ml/model."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / f"serve-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=REPO_ROOT,
            env=sagemaker_env(root, HOST="127.0.0.1", PORT=str(self.port)),
            stdout=self._log, stderr=subprocess.STDOUT,
        )


@pytest.fixture
def sagemaker_server(sagemaker_trained: Path, tmp_path: Path) -> Iterator[SageMakerServer]:
    root = tmp_path / "ml"
    shutil.copytree(sagemaker_trained / "model", root / "model")  # what SageMaker stages
    with SageMakerServer(root) as process:
        process.wait_ready("/ping")
        yield process


def test_serve_from_opt_ml_model_answers_ping_and_invocations(
    sagemaker_server: SageMakerServer,
) -> None:
    ping = httpx.get(sagemaker_server.url + "/ping")
    assert ping.json() == {"status": "ready", "model": "sm-1"}
    body = predict_body(instances=2, horizon=4)
    invoked = httpx.post(sagemaker_server.url + "/invocations", json=body)
    predicted = httpx.post(sagemaker_server.url + "/predict", json=body)
    assert invoked.status_code == 200, invoked.text
    assert invoked.content == predicted.content
    assert invoked.json()["model"] == "sm-1"
    assert len(invoked.json()["predictions"][0]["forecast"]) == 4


def test_serve_without_a_model_in_opt_ml_model_says_so(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=REPO_ROOT,
        env=sagemaker_env(tmp_path, MLOPS_LAYOUT="sagemaker", PORT=str(free_port())),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert f"no model in {tmp_path / 'model'}" in result.stderr


def test_ping_and_invocations_are_ready_and_predict_on_the_store_server(
    server: ServerProcess,
) -> None:
    """The stack's own server (STORE_DIR): /ping is /ready, /invocations is /predict, byte for
    byte, including errors; the OpenAPI document is unchanged (no new paths)."""
    ready = httpx.get(server.url + "/ready")
    ping = httpx.get(server.url + "/ping")
    assert (ping.status_code, ping.content) == (ready.status_code, ready.content) == (
        200, ready.content)
    body = predict_body(instances=3, horizon=8)
    invoked = httpx.post(server.url + "/invocations", json=body)
    assert invoked.status_code == 200
    assert invoked.content == httpx.post(server.url + "/predict", json=body).content
    bad = {"instances": [{"history": [1.0], "horizon": 4}]}
    bad_invoked = httpx.post(server.url + "/invocations", json=bad)
    bad_predicted = httpx.post(server.url + "/predict", json=bad)
    assert bad_invoked.status_code == bad_predicted.status_code == 422
    assert bad_invoked.content == bad_predicted.content
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "/ping" not in paths and "/invocations" not in paths and "/predict" in paths


def test_ping_is_503_before_a_model_is_promoted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with ServerProcess(store) as server:
        server.wait_ready("/health")
        ping = httpx.get(server.url + "/ping")
        assert ping.status_code == 503
        assert ping.content == httpx.get(server.url + "/ready").content
