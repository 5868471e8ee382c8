"""The digits workload as SageMaker runs it: `train` then `serve` (the real gunicorn), with the
/opt/ml root moved to a temporary directory (MLOPS_ML_ROOT), and a real HTTP client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
HYPER = {"num_round": "30", "max_depth": "4", "seed": "7", "nthread": "2", "test_size": "0.25"}


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(MLOPS_ML_ROOT=str(root), **extra)
    return env


def _train(root: Path, hyper: dict[str, str]) -> subprocess.CompletedProcess[str]:
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyper))
    return subprocess.run(
        [sys.executable, str(DIGITS / "train")], env=_env(root), capture_output=True, text=True,
        timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ml")
    result = _train(root, HYPER)
    assert result.returncode == 0, result.stderr
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(DIGITS / "serve")],
            env=_env(root, SAGEMAKER_BIND_TO_PORT=str(self.port), MODEL_SERVER_WORKERS="1"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            try:
                httpx.get(self.url + "/ping", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "gunicorn never listened"
                time.sleep(0.2)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(trained: Path) -> Iterator[Server]:
    srv = Server(trained)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.mark.slow
def test_train_writes_an_xgboost_json_model_and_an_honest_accuracy(trained: Path) -> None:
    model = trained / "model" / "model.json"
    assert "learner" in json.loads(model.read_text())  # XGBoost's JSON model format
    metrics = json.loads((trained / "model" / "metrics.json").read_text())
    # Recompute the held-out accuracy from the saved model on the split train documents.
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=7,
        stratify=digits.target,
    )
    booster = xgb.Booster()
    booster.load_model(model)
    accuracy = float(np.mean(booster.predict(xgb.DMatrix(x_test)).argmax(axis=1) == y_test))
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["test_rows"] == len(y_test)
    assert metrics["data"] == "load_digits"
    assert metrics["device"] == "cpu"
    # A real peer on the same split: scikit-learn's k-nearest-neighbours (~0.98 on digits).
    peer = KNeighborsClassifier(n_neighbors=3).fit(x_train, y_train).score(x_test, y_test)
    print(f"digits held-out accuracy: xgboost {accuracy:.4f}, 3-NN {peer:.4f}")
    assert accuracy > peer - 0.06


@pytest.mark.slow
def test_train_reads_the_train_channel_csv(tmp_path: Path) -> None:
    digits = load_digits()
    channel = tmp_path / "input" / "data" / "train"
    channel.mkdir(parents=True)
    rows = np.column_stack([digits.data[:400], digits.target[:400]])
    np.savetxt(channel / "part.csv", rows, delimiter=",", fmt="%g")
    result = _train(tmp_path, {"num_round": "5", "nthread": "2"})
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["data"] == "1 CSV file(s)"
    assert metrics["train_rows"] + metrics["test_rows"] == 400


@pytest.mark.parametrize(("hyper", "csv", "message"), [
    ({"depth": "3"}, None, "unknown hyperparameter(s) depth"),
    ({"max_depth": "deep"}, None, "hyperparameter max_depth='deep' is invalid"),
    ({"eta": "0"}, None, "hyperparameter eta='0' is invalid"),
    ({}, "1,2,3\n", "3 columns, expected 64 pixels and a label"),
    ({}, ",".join(["99"] * 64 + ["1"]) + "\n", "pixel values must be finite numbers in 0..16"),
])
@pytest.mark.slow
def test_train_failure_goes_to_the_failure_file(
    tmp_path: Path, hyper: dict, csv: str | None, message: str
) -> None:
    if csv is not None:
        (tmp_path / "input" / "data" / "train").mkdir(parents=True)
        (tmp_path / "input" / "data" / "train" / "bad.csv").write_text(csv)
    result = _train(tmp_path, hyper)
    assert result.returncode == 1
    assert message in (tmp_path / "output" / "failure").read_text()
    assert not (tmp_path / "model" / "model.json").exists()


def test_invocations_json_and_csv_agree_with_the_model(trained: Path, server: Server) -> None:
    assert httpx.get(server.url + "/ping").status_code == 200
    digits = load_digits()
    rows = digits.data[-20:]
    booster = xgb.Booster()
    booster.load_model(trained / "model" / "model.json")
    expected = booster.predict(xgb.DMatrix(rows.astype(np.float32)))
    answer = httpx.post(server.url + "/invocations", json={"instances": rows.tolist()})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["class"] for p in predictions] == expected.argmax(axis=1).tolist()
    for got, want in zip(predictions, expected, strict=True):
        assert got["probabilities"] == pytest.approx(want.tolist(), abs=1e-5)
        assert sum(got["probabilities"]) == pytest.approx(1, abs=1e-4)
    # and right about the digits (some of these 20 were in its training split, some held out)
    assert np.mean(np.array([p["class"] for p in predictions]) == digits.target[-20:]) >= 0.8
    csv = "\n".join(",".join(f"{v:g}" for v in row) for row in rows) + "\n"
    by_csv = httpx.post(
        server.url + "/invocations", content=csv, headers={"Content-Type": "text/csv"}
    )
    assert by_csv.status_code == 200, by_csv.text
    assert by_csv.json() == answer.json()


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"json": {"instances": [[1.0] * 63]}}, 400, "row 0: expected 64 pixel values, got 63"),
    ({"json": {"instances": [[17.0] * 64]}}, 400, "row 0, column 0: 17.0 is not a pixel value"),
    ({"json": {"instances": []}}, 400, "non-empty list"),
    ({"json": {"rows": [[0] * 64]}}, 400, '{"instances"'),
    ({"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "not JSON"),
    ({"content": b"1,2,x\n", "headers": {"Content-Type": "text/csv"}}, 400, "CSV line 1"),
    ({"content": b"0", "headers": {"Content-Type": "text/plain"}}, 415, "text/csv"),
    ({"json": {"instances": [[0] * 64] * 1001}}, 413, "1001 rows exceed the limit of 1000"),
    ({"content": b"0," * (600 * 1024), "headers": {"Content-Type": "text/csv"}}, 413,
     "exceeds 1048576 bytes"),
])
def test_bad_input_gets_a_clear_4xx(
    server: Server, kwargs: dict, status: int, message: str
) -> None:
    answer = httpx.post(server.url + "/invocations", **kwargs)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_wrong_method_and_path(server: Server) -> None:
    assert httpx.get(server.url + "/invocations").status_code == 405
    assert httpx.get(server.url + "/predict").status_code == 404


def test_ping_is_503_without_a_model_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    try:
        ping = httpx.get(srv.url + "/ping")
        assert ping.status_code == 503
        assert f"no model at {tmp_path / 'model' / 'model.json'}" in ping.json()["error"]
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "model.json").write_text('{"not": "a model"}')
        damaged = httpx.get(srv.url + "/ping")
        assert damaged.status_code == 503
        assert "is not an XGBoost model" in damaged.json()["error"]
    finally:
        assert srv.stop() == 0
