"""examples/digits as an image (its own Dockerfile, on the debootstrap base), run the way the
platform runs it: non-root (uid 10001) on a read-only root file system, /opt/ml staged and
collected by the platform image, `train` then `serve` answering /ping and /invocations."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_digits

from tests.containers.test_byoc_sample import docker, platform_run, volume, wait_for_ping

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = ["--user", "10001", "--read-only", "--tmpfs", "/tmp"]


@pytest.fixture(scope="module")
def images(base: str, platform_image: str) -> Iterator[tuple[str, str]]:
    digits = f"digits-test:{secrets.token_hex(4)}"
    docker(
        "build",
        "-q",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        digits,
        str(REPO / "examples" / "digits"),
    )
    yield platform_image, digits
    docker("image", "rm", "-f", digits, check=False)


def test_digits_trains_and_serves_non_root_read_only(
    images: tuple[str, str], tmp_path: Path, volumes: list[str]
) -> None:
    platform, digits = images
    store = tmp_path / "store"
    store.mkdir()
    ml = volume(volumes)
    uid = {"MLOPS_WORKLOAD_UID": "10001"}
    platform_run(
        platform,
        "stage-training",
        store,
        ml,
        RUN_ID="d1",
        MLOPS_HYPERPARAMETERS=json.dumps({"num_round": 20, "nthread": 2}),
        **uid,
    )
    trained = docker("run", "--rm", *WORKLOAD, "-v", f"{ml}:/opt/ml", digits, "train", check=False)
    assert trained.returncode == 0, trained.stderr
    platform_run(platform, "collect-training", store, ml, RUN_ID="d1", MLOPS_TRAINING_EXIT="0")
    metrics = json.loads((store / "models" / "d1" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9 and metrics["device"] == "cpu"
    gated = platform_run(
        platform,
        "gate",
        store,
        ml,
        RUN_ID="d1",
        MLOPS_OBJECTIVE_KEY="accuracy",
        MLOPS_OBJECTIVE_DIRECTION="maximize",
    )
    assert gated.stdout.startswith("promoted run d1")
    serve_ml = volume(volumes)
    platform_run(platform, "stage-serving", store, serve_ml, **uid)
    name = f"digits-serve-{secrets.token_hex(4)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        *WORKLOAD,
        "-p",
        "127.0.0.1::8080",
        "-v",
        f"{serve_ml}:/opt/ml",
        digits,
        "serve",
    )
    try:
        url = wait_for_ping(name)
        sample = load_digits()
        answer = httpx.post(
            url + "/invocations", json={"instances": sample.data[:50].tolist()}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        classes = [p["class"] for p in answer.json()["predictions"]]
        assert sum(c == t for c, t in zip(classes, sample.target[:50], strict=True)) >= 45
    finally:
        docker("stop", "-t", "20", name, check=False)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name, check=False).stdout.strip()
        logs = docker("logs", name, check=False)
        docker("rm", "-f", name, check=False)
    assert code != "137", "serve ignored SIGTERM and was killed"
    # Nothing the server logs as an error on a read-only root (gunicorn's control socket under
    # $HOME/.gunicorn was one, on every start).
    errors = [line for line in (logs.stdout + logs.stderr).splitlines() if "[ERROR]" in line]
    assert not errors, errors
