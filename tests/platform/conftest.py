"""The platform's commands as the container runs them: `python -m mlops_platform <command>` in a
subprocess, inputs from the environment, against a temporary store and a temporary directory
standing in for /opt/ml (MLOPS_ML_ROOT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform.moto_s3 import enforcing_s3, s3  # noqa: F401  (the S3 tests' fixtures)

PLATFORM = Path(__file__).resolve().parents[2] / "platform"


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.store = tmp_path / "store"
        self.ml = tmp_path / "ml"
        self.store.mkdir()
        self.ml.mkdir()
        self.models = self.store / "models"

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        env.update(
            # The platform package and the contract beside it, as the image lays them out.
            PYTHONPATH=os.pathsep.join([str(PLATFORM), str(PLATFORM.parent)]),
            STORE_DIR=str(self.store),
            MLOPS_ML_ROOT=str(self.ml),
            MLOPS_WORKLOAD_UID=str(os.getuid()),
        )
        env.update(extra)
        return env

    def popen(self, command: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mlops_platform", command],
            env=self.environ(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlops_platform", command],
            env=self.environ(**extra),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def train(self, run_id: str, files: dict[str, bytes], failure: str | None = None) -> None:
        """What a workload's `train` leaves in /opt/ml after stage-training."""
        staged = self.run("stage-training", RUN_ID=run_id)
        assert staged.returncode == 0, staged.stderr
        for name, data in files.items():
            (self.ml / "model" / name).parent.mkdir(parents=True, exist_ok=True)
            (self.ml / "model" / name).write_bytes(data)
        if failure is not None:
            (self.ml / "output" / "failure").write_text(failure)

    def collect(self, run_id: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("collect-training", RUN_ID=run_id, **extra)

    def gate(self, run_id: str, **extra: str) -> subprocess.CompletedProcess[str]:
        settings = {"MLOPS_OBJECTIVE_KEY": "accuracy", "MLOPS_OBJECTIVE_DIRECTION": "maximize"}
        settings.update(extra)
        return self.run("gate", RUN_ID=run_id, **settings)

    def trained(self, run_id: str, accuracy: float) -> None:
        self.train(
            run_id,
            {
                "model.json": b'{"w": 1}',
                "metrics.json": json.dumps({"accuracy": accuracy}).encode(),
            },
        )
        collected = self.collect(run_id)
        assert collected.returncode == 0, collected.stderr

    def trained_with(self, run_id: str, metrics: bytes) -> None:
        """A run collected as trained, whatever its metrics.json holds."""
        self.train(run_id, {"model.json": b'{"w": 1}', "metrics.json": metrics})
        collected = self.collect(run_id)
        assert collected.returncode == 0, collected.stderr

    def current(self) -> str | None:
        path = self.models / "CURRENT"
        return path.read_text().strip() if path.exists() else None

    def decision(self, run_id: str) -> dict:
        return json.loads((self.models / run_id / "decision.json").read_text())


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)
