"""The forecaster's own image, unchanged, run as SageMaker runs a BYOC container: `train` with
/opt/ml staged (here by the platform image) and no STORE_DIR, then `serve` from /opt/ml/model,
answering /ping and /invocations (app/pipeline/sagemaker.py, docs/api.md "SageMaker's paths")."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from preflight.run_local import StackView, build_image
from tests.app.helpers import predict_body
from tests.containers.test_byoc_sample import docker, platform_run, volume, wait_for_ping

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(base: str, platform_image: str, views: dict[str, StackView]) -> tuple[str, str]:
    return platform_image, build_image(views["dev"], "cpu", base)


def test_the_forecaster_image_trains_and_serves_in_the_sagemaker_layout(
    images: tuple[str, str], tmp_path: Path, volumes: list[str]
) -> None:
    platform, app = images
    store = tmp_path / "store"
    (store / "weekly").mkdir(parents=True)
    shutil.copyfile(REPO / "app" / "data" / "co2_weekly.csv", store / "weekly" / "co2.csv")
    ml = volume(volumes)
    platform_run(
        platform,
        "stage-training",
        store,
        ml,
        RUN_ID="sm-1",
        MLOPS_WORKLOAD_UID="10001",
        MLOPS_CHANNELS=json.dumps({"train": "weekly"}),
        MLOPS_HYPERPARAMETERS=json.dumps({"train_rounds": 60, "model_family": "harmonic"}),
    )
    # As the image's own user, on a read-only root: no STORE_DIR, so /opt/ml is the layout.
    trained = docker(
        "run",
        "--rm",
        "--read-only",
        "-e",
        "RUN_ID=sm-1",
        "-v",
        f"{ml}:/opt/ml",
        app,
        "train",
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    name = f"forecaster-sm-{secrets.token_hex(4)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "-p",
        "127.0.0.1::8080",
        "-v",
        f"{ml}:/opt/ml",
        app,
        "serve",
    )
    try:
        url = wait_for_ping(name)
        assert httpx.get(url + "/ping").json() == {"status": "ready", "model": "sm-1"}
        answer = httpx.post(url + "/invocations", json=predict_body(horizon=4), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "sm-1"
        assert len(answer.json()["predictions"][0]["forecast"]) == 4
    finally:
        docker("stop", "-t", "30", name, check=False)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name, check=False).stdout.strip()
        docker("rm", "-f", name, check=False)
    assert code != "137", "serve ignored SIGTERM and was killed"
