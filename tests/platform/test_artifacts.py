"""Each model that becomes current, exported as SageMaker's `model.tar.gz` to the stack's
artifact bucket (moto's S3 server, versioned as the stack declares the bucket): by the platform
gate of a stack without a rollout, by `finish-rollout` when a rollout succeeded, never for a run
kept or rolled back; its contents equal the run's model files byte for byte, report.json and
decision.json beside it; the newest runs kept; a failed export recorded and shouted, never
undoing the promotion; `export-model` exporting the current run again."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from tests.platform.conftest import Env
from tests.platform.moto_s3 import S3

# slow: each test starts moto's S3 server and runs the platform's command in a child process
pytestmark = pytest.mark.slow


def _bucket(s3: S3, request: pytest.FixtureRequest) -> str:
    name = "artifacts-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    return s3.bucket(name, versioned=True)


def _export(s3: S3, bucket: str, **extra: str) -> dict[str, str]:
    return s3.environ(MLOPS_ARTIFACTS_BUCKET=bucket, **extra)


def _get(s3: S3, bucket: str, key: str) -> bytes:
    return s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _archive(s3: S3, bucket: str, run: str) -> dict[str, bytes]:
    data = _get(s3, bucket, f"models/{run}/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        assert all(m.isfile() and not m.name.startswith(("/", ".")) for m in members)
        return {m.name: archive.extractfile(m).read() for m in members}  # type: ignore[union-attr]


def _model_files(env: Env, run: str) -> dict[str, bytes]:
    """The run's model files, as stage-serving hands them to a server."""
    root = env.models / run
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.relative_to(root).parts[0] not in ("report.json", "decision.json", "baseline")
    }


def test_the_gate_exports_what_it_promotes(
    env: Env, s3: S3, request: pytest.FixtureRequest
) -> None:
    bucket = _bucket(s3, request)
    env.train(
        "r1",
        {
            "model.json": b'{"w": 1}',
            "metrics.json": b'{"accuracy": 0.9}',
            "sub/vocab.txt": b"a\nb\n",
        },
    )
    assert env.collect("r1").returncode == 0
    (env.models / "r1" / "baseline").mkdir()
    (env.models / "r1" / "baseline" / "x.json").write_text("{}")

    gated = env.gate("r1", **_export(s3, bucket))

    assert gated.returncode == 0, gated.stderr
    assert env.current() == "r1"
    uri = f"s3://{bucket}/models/r1/model.tar.gz"
    assert f"; exported {uri} (" in gated.stdout, gated.stdout
    contents = _archive(s3, bucket, "r1")
    assert contents == _model_files(env, "r1")
    assert set(contents) == {"model.json", "metrics.json", "sub/vocab.txt"}
    report = json.loads(_get(s3, bucket, "models/r1/report.json"))
    assert report == json.loads((env.models / "r1" / "report.json").read_text())
    decision = env.decision("r1")
    assert json.loads(_get(s3, bucket, "models/r1/decision.json")) == decision
    artifact = decision["artifact"]
    data = _get(s3, bucket, "models/r1/model.tar.gz")
    assert artifact["status"] == "exported" and artifact["uri"] == uri
    assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert artifact["bytes"] == len(data) and artifact["files"] == 3
    head = s3.client.head_object(Bucket=bucket, Key="models/r1/model.tar.gz")
    assert artifact["version_id"] == head["VersionId"]

    # A retried gate keeps its decision and exports nothing again.
    again = env.gate("r1", **_export(s3, bucket))
    assert again.returncode == 0 and f"exported earlier to {uri}" in again.stdout
    versions = s3.client.list_object_versions(Bucket=bucket, Prefix="models/r1/model.tar.gz")
    assert len(versions["Versions"]) == 1


def test_a_kept_run_is_not_exported(env: Env, s3: S3, request: pytest.FixtureRequest) -> None:
    bucket = _bucket(s3, request)
    env.trained("r1", 0.9)
    assert env.gate("r1", **_export(s3, bucket)).returncode == 0
    env.trained("r2", 0.8)
    kept = env.gate("r2", **_export(s3, bucket))
    assert kept.returncode == 3 and "exported" not in kept.stdout
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(key.startswith("models/r1/") for key in keys), keys
    assert "artifact" not in env.decision("r2")


def test_a_model_of_several_parts_is_streamed_as_a_multipart_upload(
    env: Env, s3: S3, request: pytest.FixtureRequest
) -> None:
    bucket = _bucket(s3, request)
    weights = os.urandom(9 << 20)  # incompressible: more than one 8 MiB part once gzipped
    env.train("r1", {"weights.bin": weights, "metrics.json": b'{"accuracy": 0.9}'})
    assert env.collect("r1").returncode == 0
    gated = env.gate("r1", **_export(s3, bucket))
    assert gated.returncode == 0, gated.stderr
    assert _archive(s3, bucket, "r1")["weights.bin"] == weights
    parts = s3.client.head_object(Bucket=bucket, Key="models/r1/model.tar.gz", PartNumber=1)
    assert parts["PartsCount"] == 2


def test_finish_rollout_exports_a_run_whose_rollout_succeeded_only(
    env: Env, s3: S3, request: pytest.FixtureRequest
) -> None:
    bucket = _bucket(s3, request)
    for run, status in (("r1", "succeeded"), ("r2", "failed")):
        env.trained(run, 0.9 if run == "r1" else 0.95)
        gated = env.gate(run, MLOPS_ROLLOUT="1", **_export(s3, bucket))
        assert gated.returncode == 0 and "exported" not in gated.stdout, gated.stdout
        finished = env.run(
            "finish-rollout",
            RUN_ID=run,
            MLOPS_ROLLOUT_STATUS=status,
            MLOPS_ROLLOUT_REASON="alarm",
            **_export(s3, bucket),
        )
        assert finished.returncode == 0, finished.stderr
    assert env.current() == "r1"
    assert _archive(s3, bucket, "r1") == _model_files(env, "r1")
    assert env.decision("r1")["artifact"]["status"] == "exported"
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert not [key for key in keys if key.startswith("models/r2/")], keys


def test_a_failed_export_is_recorded_and_shouted_and_the_promotion_stands(env: Env, s3: S3) -> None:
    env.trained("r1", 0.9)
    gated = env.gate("r1", **_export(s3, "no-such-artifact-bucket"))

    assert gated.returncode == 0, gated.stderr
    assert env.current() == "r1"
    uri = "s3://no-such-artifact-bucket/models/r1/model.tar.gz"
    (line,) = gated.stderr.strip().splitlines()
    assert line.startswith(
        f"gate: ERROR: run r1 is current but its model was NOT exported to {uri}"
    )
    assert "the bucket does not exist (NoSuchBucket" in line
    assert "export-model" in line
    artifact = env.decision("r1")["artifact"]
    assert artifact["status"] == "failed" and artifact["uri"] == uri
    assert "NoSuchBucket" in artifact["reason"]
    assert f"NOT exported to {uri}" in gated.stdout


def test_export_model_exports_the_current_run_again(
    env: Env, s3: S3, request: pytest.FixtureRequest
) -> None:
    env.trained("r1", 0.9)
    assert env.gate("r1", **_export(s3, "no-such-artifact-bucket")).returncode == 0
    bucket = _bucket(s3, request)

    first = env.run("export-model", **_export(s3, bucket))
    second = env.run("export-model", **_export(s3, bucket))

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.startswith(f"run r1; exported s3://{bucket}/models/r1/model.tar.gz")
    versions = s3.client.list_object_versions(Bucket=bucket, Prefix="models/r1/model.tar.gz")
    assert len(versions["Versions"]) == 2
    assert env.decision("r1")["artifact"]["status"] == "exported"
    missing = env.run("export-model", **_export(s3, "no-such-artifact-bucket"))
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr.splitlines()[-1]
    unset = env.run("export-model", **s3.environ())
    assert unset.returncode == 1
    assert unset.stderr.strip() == (
        "export-model: MLOPS_ARTIFACTS_BUCKET is not set: the stack has no artifact bucket"
    )


def test_the_newest_runs_are_kept_and_older_ones_deleted_as_versions(
    env: Env, s3: S3, request: pytest.FixtureRequest
) -> None:
    bucket = _bucket(s3, request)
    for index, run in enumerate(("r1", "r2", "r3")):
        env.trained(run, 0.5 + index / 10)
        gated = env.gate(run, **_export(s3, bucket, MLOPS_ARTIFACTS_KEEP="2"))
        assert gated.returncode == 0, gated.stderr
    assert "1 older run(s) deleted, 2 kept" in gated.stdout, gated.stdout
    listed = s3.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"].split("/")[1] for o in listed} == {"r2", "r3"}
    # A delete in the versioned bucket is a delete marker: r1 stays recoverable until the
    # lifecycle rule's noncurrent days pass.
    versions = s3.client.list_object_versions(Bucket=bucket, Prefix="models/r1/")
    assert {m["Key"] for m in versions["DeleteMarkers"]} == {
        "models/r1/model.tar.gz",
        "models/r1/report.json",
        "models/r1/decision.json",
    }
    assert len(versions["Versions"]) == 3
