"""The BYOC proof in Docker: an image written as a SageMaker user would (tests/containers/
byoc_sample.py: nginx + gunicorn as root, a JSON centroid model) trains and serves with its /opt/ml
staged and collected only by the platform image (platform/Dockerfile): stage-training -> train ->
collect-training -> gate -> stage-serving -> serve, then /ping and /invocations answer."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.containers import byoc_sample

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]


def docker(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exit {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def images(
    base: str, platform_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    sample = f"byoc-sample-test:{secrets.token_hex(4)}"
    context = byoc_sample.write(tmp_path_factory.mktemp("byoc"))
    docker("build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", sample, str(context))
    yield platform_image, sample
    docker("image", "rm", "-f", sample, check=False)


def volume(made: list[str]) -> str:
    name = f"byoc-ml-{secrets.token_hex(4)}"
    docker("volume", "create", name)
    made.append(name)
    return name


def wait_for_ping(name: str, port: int = 8080, path: str = "/ping") -> str:
    """The base URL of container `name`'s published `port`, once `path` answers 200 (the
    container's logs in the failure after 120 s)."""
    host_port = docker("port", name, str(port)).stdout.strip().rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{host_port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        logs = docker("logs", name, check=False)
        assert time.monotonic() < deadline, logs.stdout + logs.stderr
        time.sleep(0.5)


def platform_run(
    image: str, command: str, store: Path, ml: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess:
    # The staging commands that change owners run as root (docs/workload-contract.md).
    flags = ["-e", "STORE_DIR=/mnt/store", "-e", f"MLOPS_WORKLOAD_UID={byoc_sample.USER}"]
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]
    return docker(
        "run",
        "--rm",
        "--user",
        "0",
        "--read-only",
        "-v",
        f"{store}:/mnt/store",
        "-v",
        f"{ml}:/opt/ml",
        *flags,
        image,
        command,
        check=check,
    )


def test_a_user_byoc_image_trains_and_serves_with_platform_staging(
    images: tuple[str, str], tmp_path: Path, volumes: list[str]
) -> None:
    platform, sample = images
    store = tmp_path / "store"
    byoc_sample.write_dataset(store / "datasets" / "iris")
    train_ml = volume(volumes)
    staged = platform_run(
        platform,
        "stage-training",
        store,
        train_ml,
        RUN_ID="r1",
        MLOPS_CHANNELS=json.dumps({byoc_sample.CHANNEL: "datasets/iris"}),
        MLOPS_HYPERPARAMETERS=json.dumps({"holdout": 0.3, "seed": 1}),
    )
    assert "1 channel(s), 1 file(s)" in staged.stdout
    trained = docker("run", "--rm", "-v", f"{train_ml}:/opt/ml", sample, "train", check=False)
    assert trained.returncode == 0, trained.stderr
    platform_run(
        platform,
        "collect-training",
        store,
        train_ml,
        RUN_ID="r1",
        MLOPS_TRAINING_EXIT=str(trained.returncode),
    )
    model = json.loads((store / "models" / "r1" / "model.json").read_text())
    assert model["classes"] == list(byoc_sample.CLASSES)
    assert not (store / "models" / "r1" / "metrics.json").exists()  # as AWS's sample: none
    gated = platform_run(
        platform, "gate", store, train_ml, RUN_ID="r1", MLOPS_PROMOTION=byoc_sample.PROMOTION
    )
    assert gated.stdout.startswith("promoted run r1: run r1 trained")
    serve_ml = volume(volumes)
    platform_run(platform, "stage-serving", store, serve_ml)

    name = f"byoc-serve-{secrets.token_hex(4)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1::{byoc_sample.PORT}",
        "-v",
        f"{serve_ml}:/opt/ml",
        sample,
        "serve",
    )
    try:
        url = wait_for_ping(name, byoc_sample.PORT, byoc_sample.HEALTH_PATH)
        rows = byoc_sample.dataset_rows(rows_per_class=10, seed=99)  # unseen rows
        body = "\n".join(",".join(map(str, values)) for _, values in rows) + "\n"
        answer = httpx.post(
            url + byoc_sample.INVOCATIONS_PATH,
            content=body,
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        predicted = answer.text.split()

        def nearest(values: list[float]) -> str:  # the model file, read by the test itself
            d = [
                sum((a - b) ** 2 for a, b in zip(values, m, strict=True))
                for m in model["centroids"]
            ]
            return model["classes"][d.index(min(d))]

        assert predicted == [nearest(values) for _, values in rows]
        assert sum(p == label for p, (label, _) in zip(predicted, rows, strict=True)) >= 27
    finally:
        stopped = docker("stop", "-t", "20", name, check=False)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name, check=False).stdout.strip()
        docker("rm", "-f", name, check=False)
    assert stopped.returncode == 0
    assert code != "137", "serve ignored SIGTERM and was killed"


def test_a_failed_byoc_training_reaches_collect_training(
    images: tuple[str, str], tmp_path: Path, volumes: list[str]
) -> None:
    platform, sample = images
    store = tmp_path / "store"
    (store / "datasets" / "empty").mkdir(parents=True)
    ml = volume(volumes)
    platform_run(
        platform,
        "stage-training",
        store,
        ml,
        RUN_ID="bad",
        MLOPS_CHANNELS=json.dumps({byoc_sample.CHANNEL: "datasets/empty"}),
    )
    trained = docker("run", "--rm", "-v", f"{ml}:/opt/ml", sample, "train", check=False)
    assert trained.returncode == 255
    collected = platform_run(
        platform,
        "collect-training",
        store,
        ml,
        check=False,
        RUN_ID="bad",
        MLOPS_TRAINING_EXIT=str(trained.returncode),
    )
    assert collected.returncode == 1
    assert (
        "Exception during training: There are no rows in /opt/ml/input/data/training."
        in (collected.stderr.strip().splitlines()[-1])
    )
    report = json.loads((store / "models" / "bad" / "report.json").read_text())
    assert (report["status"], report["exit_code"]) == ("failed", 255)
