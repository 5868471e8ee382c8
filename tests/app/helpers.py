"""Helpers for the app tests: real subprocesses of `python -m app`, free ports, request bodies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from app.forecasting.model import MODEL_FILES, read_series
from app.forecasting.model_check import model_file_record

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_ROUNDS = 60
"""Boosting rounds of test training runs: enough to beat seasonal naive + drift with calibrated
intervals, fast to train. Commands run as children backtest the cheaper harmonic family only
(`MODEL_FAMILY`) unless a test says otherwise."""


PATIENCE = 180.0
"""Seconds a test waits for an event it needs (a file, a port, a log line) before failing: long
enough for a machine under any load the suite meets, since a test that waits for the event
itself never depends on how fast it comes."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(store_root: Path, **overrides: Any) -> dict[str, str]:
    """The environment of a `python -m app` child: the given store, test-sized settings."""
    env = {key: value for key, value in os.environ.items() if key not in ("RUN_ID", "RUN_DATE")}
    env.update(
        STORE_DIR=str(store_root),
        STORE_WAIT_SECONDS="5",
        TRAIN_ROUNDS=str(TEST_ROUNDS),
        TRAIN_THREADS="1",
        MODEL_FAMILY="harmonic",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def run_app(
    *args: str, store_root: Path, timeout: float = PATIENCE, **env: Any
) -> subprocess.CompletedProcess:
    """Run `python -m app <args>` to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env=app_env(store_root, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def replace_model(run_dir: Path, raw: bytes, *, record: bool = True) -> None:
    """Write `raw` as the run's model file; with `record`, also as what train recorded (a file
    damaged before train hashed it), so the bytes reach the model's loader. The file is the
    one the run's family uses (`model.ubj` or `model.json`)."""
    metrics = orjson.loads((run_dir / "metrics.json").read_bytes())
    name = MODEL_FILES[metrics.get("family", "xgboost")]
    (run_dir / name).write_bytes(raw)
    if record:
        metrics["model_file"] = model_file_record(raw, name)
        (run_dir / "metrics.json").write_bytes(orjson.dumps(metrics))


def shipped_history(length: int = 60) -> list[float]:
    """The last `length` observed weekly values of the shipped series."""
    _, values = read_series(REPO_ROOT / "app" / "data" / "co2_weekly.csv")
    return [float(v) for v in values[~np.isnan(values)][-length:]]


def predict_body(instances: int = 1, horizon: int = 4, length: int = 60) -> dict:
    history = shipped_history(length)
    return {"instances": [{"history": history, "horizon": horizon}] * instances}


def wait_for(condition, timeout: float = PATIENCE, interval: float = 0.05) -> None:
    """Wait until `condition()` is true (the event a test needs), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


class ServerProcess:
    """`python -m app serve` as a child process on a free port; stopped on exit."""

    def __init__(self, store_root: Path, **env: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(store_root).parent / f"serve-{self.port}.log"
        settings = {
            "HOST": "127.0.0.1",
            "PORT": self.port,
            "RELOAD_INTERVAL_SECONDS": "0.2",
            **env,
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=REPO_ROOT,
            env=app_env(store_root, **settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, path: str = "/ready", timeout: float = PATIENCE) -> None:
        """Wait until `path` answers 200 (raises with the server log if the process dies)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} not 200 after {timeout}s:\n{self.log()}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
