"""The artifact bucket and who may touch it, and the S3 channels' IAM, under the recording mocks:
the bucket hardened as the docs say (versioned, SSE-S3, public access blocked, TLS only, old
versions expired after `artifacts.noncurrent_days`), the gate task alone writing its `models/`
with a role of its own (never the train task's, whose containers are the workload's), and the
training task role reading exactly the S3 channels' prefixes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.documents.s3 import (
    artifact_export_statements,
    artifact_lifecycle_rules,
    channel_read_statements,
)
from components.settings.channels import S3Prefix
from preflight.offline import Plan, run_stack

BUCKET = "aws:s3/bucket:Bucket"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
S3_CHANNEL = {
    "workload": {
        "training": {
            "channels": {"train": "s3://user-data/digits/train/", "extra": "datasets/digits"},
            "channels_kms_key_arn": KEY,
        }
    }
}


def _policy(resource: Any) -> dict[str, Any]:
    document = resource.inputs["policy"]
    return json.loads(document) if isinstance(document, str) else document


def _statements(plan: Plan, name: str) -> list[dict[str, Any]]:
    return _policy(plan.one(ROLE_POLICY, name))["Statement"]


def _environment(plan: Plan, family_suffix: str, container: str) -> dict[str, str]:
    (task,) = [t for t in plan.of_type(TASK_DEFINITION) if t.name == f"training-{family_suffix}"]
    definitions = task.inputs["containerDefinitions"]
    definitions = json.loads(definitions) if isinstance(definitions, str) else definitions
    (found,) = [d for d in definitions if d["name"] == container]
    return {e["name"]: e["value"] for e in found["environment"]}


def _role_of(plan: Plan, step: str) -> str:
    (task,) = [t for t in plan.of_type(TASK_DEFINITION) if t.name == f"training-{step}"]
    return task.inputs["taskRoleArn"]


def test_the_bucket_is_versioned_encrypted_private_and_tls_only(build) -> None:
    built = build("model_artifacts", "digits")
    bucket = built.one(BUCKET, "artifacts-bucket")
    assert bucket.inputs["forceDestroy"] is True  # digits: retain_on_destroy false
    public = built.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        public.inputs[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    ownership = built.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    encryption = built.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    versioning = built.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    lifecycle = built.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {r["id"]: r for r in lifecycle.inputs["rules"]}
    assert rules["expire-old-model-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": 30
    }
    assert (
        "newerNoncurrentVersions"
        not in rules["expire-old-model-versions"]["noncurrentVersionExpiration"]
    )
    assert rules["remove-expired-delete-markers"]["expiration"] == {
        "expiredObjectDeleteMarker": True
    }
    policy = _policy(built.one("aws:s3/bucketPolicy:BucketPolicy"))
    (deny,) = policy["Statement"]
    arn = bucket.outputs["arn"]
    assert deny["Effect"] == "Deny" and deny["Resource"] == [arn, f"{arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_keep_last_and_noncurrent_days_reach_the_gate_and_the_bucket(build) -> None:
    built = build("training_task", "digits", {"artifacts": {"keep_last": 3, "noncurrent_days": 7}})
    environment = _environment(built.plan, "gate", "gate")
    bucket = built.plan.one(BUCKET, "artifacts-bucket").outputs["bucket"]
    assert environment["MLOPS_ARTIFACTS_BUCKET"] == bucket
    assert environment["MLOPS_ARTIFACTS_KEEP"] == "3"
    lifecycle = built.plan.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "artifacts"
    )
    assert lifecycle.inputs["rules"][0]["noncurrentVersionExpiration"] == {"noncurrentDays": 7}


def test_only_the_gate_task_may_write_the_bucket_with_a_role_of_its_own(build) -> None:
    plan = build("training_task", "digits").plan
    gate_role = _role_of(plan, "gate")
    assert "training-gate-task-role" in gate_role
    assert _role_of(plan, "train") != gate_role
    bucket_arn = plan.one(BUCKET, "artifacts-bucket").outputs["arn"]
    assert _statements(plan, "training-gate-export") == artifact_export_statements(bucket_arn)
    (export,) = [s for s in artifact_export_statements(bucket_arn) if s["Sid"] == "ExportModels"]
    assert export["Resource"] == f"{bucket_arn}/models/*"
    assert "s3:DeleteObjectVersion" not in json.dumps(artifact_export_statements(bucket_arn))
    # No other policy of the stack names the bucket: the train task's role cannot write it.
    writers = [
        p.name
        for p in plan.of_type(ROLE_POLICY)
        if bucket_arn in json.dumps(_policy(p)) and "s3:PutObject" in json.dumps(_policy(p))
    ]
    assert writers == ["training-gate-export"]
    # The gate task's role still mounts and writes the store, and the state machine may pass it.
    assert plan.one(ROLE_POLICY, "training-gate-task-store")
    passed = [
        s for s in _statements(plan, "training-sfn-policy") if s.get("Action") == "iam:PassRole"
    ]
    assert any(gate_role in s["Resource"] for s in passed), passed


def test_the_store_lets_the_gate_role_mount_and_write(build) -> None:
    plan = build("training_task", "digits").plan
    policy = json.loads(plan.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"])
    assert _role_of(plan, "gate") in json.dumps(policy)


def test_without_the_export_the_gate_shares_the_task_role(build) -> None:
    # Nor a sweep: pick-trial's callback gives the gate a role of its own too.
    single = {"artifacts": {"export": False}, "workload": {"training": {"sweep": None}}}
    plan = build("training_task", "digits", single).plan
    assert _role_of(plan, "gate") == _role_of(plan, "train")
    assert not [r for r in plan.of_type(BUCKET) if r.name.startswith("artifacts")]
    assert "MLOPS_ARTIFACTS_BUCKET" not in _environment(plan, "gate", "gate")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_workload_with_its_own_gate_has_no_bucket(stack: str) -> None:
    plan = run_stack(stack)
    assert not plan.of_type("mlops:index:ModelArtifacts")
    assert not [r for r in plan.of_type(ROLE_POLICY) if r.name == "training-gate-export"]


def test_the_task_role_reads_exactly_the_s3_channels(build) -> None:
    plan = build("training_task", "digits", S3_CHANNEL).plan
    statements = _statements(plan, "training-task-channels")
    assert statements == channel_read_statements(
        {"train": S3Prefix("user-data", "digits/train/")}, KEY
    )
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ListChannels0"]["Resource"] == "arn:aws:s3:::user-data"
    assert by_sid["ListChannels0"]["Condition"] == {"StringLike": {"s3:prefix": ["digits/train/*"]}}
    assert by_sid["ReadChannels"]["Resource"] == ["arn:aws:s3:::user-data/digits/train/*"]
    assert by_sid["DecryptChannels"] == {
        "Sid": "DecryptChannels",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": KEY,
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    }
    # The staging container is told the URI as it is written.
    channels = json.loads(_environment(plan, "train", "stage-training")["MLOPS_CHANNELS"])
    assert channels == {"extra": "datasets/digits", "train": "s3://user-data/digits/train/"}
    # The train task's role reads; the gate's own role does not.
    reader = plan.one(ROLE_POLICY, "training-task-channels").inputs["role"]
    assert reader in _role_of(plan, "train") and reader not in _role_of(plan, "gate")


def test_channel_statements_group_by_bucket_and_a_whole_bucket_lists_it_all() -> None:
    statements = channel_read_statements(
        {
            "a": S3Prefix("one", "x/"),
            "b": S3Prefix("one", "y/z/"),
            "c": S3Prefix("two", ""),
        }
    )
    assert statements[0]["Condition"]["StringLike"]["s3:prefix"] == ["x/*", "y/z/*"]
    assert statements[1] == {
        "Sid": "ListChannels1",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::two",
    }
    assert statements[2]["Resource"] == [
        "arn:aws:s3:::one/x/*",
        "arn:aws:s3:::one/y/z/*",
        "arn:aws:s3:::two/*",
    ]
    assert channel_read_statements({}) == []


def test_the_lifecycle_refuses_days_s3_would_refuse() -> None:
    with pytest.raises(ValueError, match=r"1\.\.3650"):
        artifact_lifecycle_rules(0)
