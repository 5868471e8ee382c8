"""ModelArtifacts: the stack's S3 bucket of exported models, SageMaker's `model.tar.gz` of every
model the platform made current (docs/s3.md).

Creates, as children of the component:

- `<name>-bucket`: the bucket (auto-named; force-destroyed with the stack unless
  `protection.retain_on_destroy`);
- `<name>-public`: every public access block on;
- `<name>-ownership`: `BucketOwnerEnforced` (ACLs off: the bucket policy and IAM decide);
- `<name>-encryption`: SSE-S3 (AES256) by default. Not SSE-KMS with a key of the stack: a
  customer managed key costs $1 a month and a request charge, and every reader (a SageMaker
  execution role deploying the model in another account) would need its key policy too, for no
  protection IAM and the bucket policy do not already give a model artifact;
- `<name>-versioning`: an overwritten or deleted artifact stays recoverable;
- `<name>-lifecycle`: old versions removed `artifacts.noncurrent_days` after they stopped
  being current, then their delete markers; unfinished multipart uploads after a day
  (documents/s3.py `artifact_lifecycle_rules`);
- `<name>-policy`: TLS only.

The platform's promoting role (the training pipeline's gate task, components/training_task.py)
is the only one allowed to write under `models/`, by its own policy
(`artifact_export_statements`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.documents.s3 import (
    EXPORT_PREFIX,
    artifact_bucket_policy,
    artifact_lifecycle_rules,
)
from components.settings.artifacts import ArtifactsSettings


@dataclass
class ModelArtifactsArgs:
    settings: ArtifactsSettings
    """`mlops:artifacts`: how many runs the export keeps, how long old versions stay."""
    retain_on_destroy: bool
    """`protection.retain_on_destroy`: the bucket is not force-destroyed with the stack."""


class ModelArtifacts(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    uri: pulumi.Output[str]
    """`s3://<bucket>/models/`: where each exported run's `model.tar.gz` is."""

    def __init__(
        self, name: str, args: ModelArtifactsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:ModelArtifacts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket", force_destroy=not args.retain_on_destroy, opts=child
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=artifact_lifecycle_rules(args.settings.noncurrent_days),
            # S3 rejects a lifecycle rule on noncurrent versions before versioning is set.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(artifact_bucket_policy(arn))),
            # The public access block first: a policy put before it is judged without it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.uri = bucket.bucket.apply(lambda b: f"s3://{b}/{EXPORT_PREFIX}")
        self.register_outputs(
            {"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn, "uri": self.uri}
        )
