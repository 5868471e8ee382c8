"""Training where the data lives, under run_local: the digits stack (examples/digits, SageMaker
contract) with its `train` channel an S3 prefix, in moto's S3 server on Docker's bridge gateway
(where a task's containers reach the host). The session gives every container the server's
endpoint (AWS_ENDPOINT_URL_S3) and keys, as ECS gives them the task role's credentials.

1. The stack's own pipeline stages the prefix's CSV files into /opt/ml/input/data/train/, the
   unchanged image trains on them (its metrics say from how many CSV files), the platform
   computes their baseline and promotes the model; finish-rollout (no service runs yet: nothing to
   roll) makes it current and exports it to the stack's artifact bucket, declared by the stack,
   created in moto as the stack would have it (versioned): `models/<RUN_ID>/model.tar.gz`, whose
   contents equal the run's model files in the store byte for byte, report.json and
   decision.json beside it.
2. A channel naming a prefix that holds nothing fails the run at stage-training, naming the
   channel and why.

A denied read needs S3 to refuse the task role; moto's server does that only with its IAM
enforcement on from its start (one setting for the whole process), so it is tested against the
platform's command itself (tests/platform/test_s3_channels.py,
test_a_denied_read_fails_naming_the_channel)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from preflight.offline import run_stack
from preflight.run_local import Session, StackView, read_stack, remove_session
from preflight.run_local.docker import bridge_gateway
from preflight.run_local.pipeline import walk_state_machine
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

DATA = "digits-data"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def s3() -> Iterator[tuple[str, Any]]:
    """moto's S3 on Docker's bridge gateway, and a client of it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=bridge_gateway(), port=0)
    server.start()
    endpoint = f"http://{bridge_gateway()}:{server._server.server_port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield endpoint, client
    finally:
        server.stop()


def _stack(prefix: str) -> StackView:
    channels = {"train": f"s3://{DATA}/{prefix}"}
    # One training a run (the stack's sweep is tests/containers/test_sweep.py's).
    training = {"channels": channels, "sweep": None}
    return read_stack(run_stack("digits", {"workload": {"training": training}}))


def _artifact_bucket(view: StackView) -> str:
    (gate,) = [c for spec in view.tasks.values() for c in spec.containers if c["name"] == "gate"]
    return next(e["value"] for e in gate["environment"] if e["name"] == "MLOPS_ARTIFACTS_BUCKET")


def _session(view: StackView, store: Path, base: str, endpoint: str, out: Lines) -> Session:
    environment = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": "us-east-1", **KEYS}
    return Session(
        view=view,
        store=store,
        base_image=base,
        publish_ephemeral=True,
        out=out,
        environment=environment,
    )


def _model_files(run: Path) -> dict[str, bytes]:
    """The run's model files, as stage-serving hands them to a server."""
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file()
        and p.relative_to(run).parts[0] not in ("report.json", "decision.json", "baseline")
    }


def test_digits_trains_from_s3_and_its_model_is_exported(
    base: str, platform_image: str, tmp_path_factory: pytest.TempPathFactory, s3: Any
) -> None:
    from sklearn.datasets import load_digits

    endpoint, client = s3
    view = _stack("digits/")
    artifacts = _artifact_bucket(view)
    client.create_bucket(Bucket=DATA)
    client.create_bucket(Bucket=artifacts)
    client.put_bucket_versioning(Bucket=artifacts, VersioningConfiguration={"Status": "Enabled"})
    digits = load_digits()
    order = np.random.default_rng(3).permutation(len(digits.target))[:1200]
    rows = np.column_stack([digits.data[order], digits.target[order]]).astype(int)
    for index, part in enumerate(np.array_split(rows, 2)):
        body = io.StringIO()
        np.savetxt(body, part, fmt="%d", delimiter=",")
        client.put_object(Bucket=DATA, Key=f"digits/train-{index}.csv", Body=body.getvalue())
    client.put_object(Bucket=DATA, Key="digits-old/train.csv", Body=b"not this channel")
    store = tmp_path_factory.mktemp("digits-s3")
    channel_dir(view, store, "datasets")  # the access point's root, as EFS creates it
    root = store_root(view, store)
    out = Lines()
    session = _session(view, store, base, endpoint, out)
    try:
        assert walk_state_machine(session) == 0, out.text()
    finally:
        remove_session(session.id)

    log = out.text()
    assert "[stage-training] staged run" in log and "1 channel(s), 2 file(s)" in log, log
    run = (root / "models" / "CURRENT").read_text().strip()
    model = root / "models" / run
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["data"] == "2 CSV file(s)" and metrics["accuracy"] > 0.9, metrics
    report = json.loads((model / "report.json").read_text())
    assert report["baseline"]["channels"]["train"]["rows"] == 1200, report["baseline"]
    decision = json.loads((model / "decision.json").read_text())
    assert decision["promoted"] is True and decision["rollout"]["status"] == "succeeded"
    uri = f"s3://{artifacts}/models/{run}/model.tar.gz"
    assert decision["artifact"]["status"] == "exported" and decision["artifact"]["uri"] == uri
    assert f"exported {uri}" in log, log

    archive = client.get_object(Bucket=artifacts, Key=f"models/{run}/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        exported = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert exported == _model_files(model)
    assert set(exported) >= {"metrics.json"} and len(exported) >= 2, sorted(exported)
    beside = client.get_object(Bucket=artifacts, Key=f"models/{run}/decision.json")["Body"].read()
    assert json.loads(beside) == decision
    assert (
        json.loads(
            client.get_object(Bucket=artifacts, Key=f"models/{run}/report.json")["Body"].read()
        )
        == report
    )


def test_a_missing_prefix_fails_the_run_naming_the_channel(
    base: str, platform_image: str, tmp_path_factory: pytest.TempPathFactory, s3: Any
) -> None:
    endpoint, client = s3
    view = _stack("nothing-here/")
    client.create_bucket(Bucket=DATA)
    client.put_object(Bucket=DATA, Key="digits/train.csv", Body=b"1,2\n")
    store = tmp_path_factory.mktemp("digits-s3-missing")
    channel_dir(view, store, "datasets")
    out = Lines()
    session = _session(view, store, base, endpoint, out)
    try:
        assert walk_state_machine(session) == 1, out.text()
    finally:
        remove_session(session.id)
    log = out.text()
    expected = (
        f"stage-training: MLOPS_CHANNELS: channel 'train' (s3://{DATA}/nothing-here/): no "
        "objects under this prefix (it is missing or empty)"
    )
    assert expected in log, log
    assert not (store_root(view, store) / "models" / "CURRENT").exists()
