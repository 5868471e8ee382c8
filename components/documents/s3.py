"""S3: what the training task role may read of its S3 channels, what the promoting role may write
to the artifact bucket, and the bucket's own policy and lifecycle rules (docs/s3.md).

IAM (Service Authorization Reference, "Actions, resources, and condition keys for Amazon S3"):
ListObjectsV2 is authorised as `s3:ListBucket` on the bucket, narrowed by the `s3:prefix`
condition key to the prefix the request lists; GetObject as `s3:GetObject` on the object's ARN
(`arn:aws:s3:::bucket/key`); a multipart upload's CreateMultipartUpload, UploadPart and
CompleteMultipartUpload as `s3:PutObject`, its abort as `s3:AbortMultipartUpload`; DeleteObjects
as `s3:DeleteObject` on each key. `s3:DeleteObject` without a version id only adds a delete
marker in a versioned bucket: removing a version for good is `s3:DeleteObjectVersion`, which no
role of the stack gets. SSE-KMS objects need `kms:Decrypt` on their key (S3 User Guide, "Using
server-side encryption with AWS KMS keys"), granted only through S3 (`kms:ViaService`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.documents.common import deny_insecure_transport, policy_document
from components.settings.channels import S3Prefix, kms_key_region
from mlops_contract import MODELS, Env

EXPORT_PREFIX = f"{MODELS}/"
"""Where the platform exports models in the artifact bucket: `models/<RUN_ID>/model.tar.gz`."""


def channel_read_statements(
    channels: Mapping[str, S3Prefix], kms_key_arn: str = ""
) -> list[dict[str, Any]]:
    """The training task role's reads of its S3 channels: list each bucket only under the
    channels' prefixes, read only the objects under them, and decrypt with the channels' key
    only through S3 in the key's Region."""
    if not channels:
        return []
    statements: list[dict[str, Any]] = []
    by_bucket: dict[str, list[str]] = {}
    for channel in channels.values():
        by_bucket.setdefault(channel.bucket, []).append(channel.prefix)
    for index, (bucket, prefixes) in enumerate(sorted(by_bucket.items())):
        statement: dict[str, Any] = {
            "Sid": f"ListChannels{index}",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
        }
        if "" not in prefixes:  # a whole-bucket channel lists the bucket
            patterns = sorted({f"{prefix}*" for prefix in prefixes})
            statement["Condition"] = {"StringLike": {"s3:prefix": patterns}}
        statements.append(statement)
    statements.append(
        {
            "Sid": "ReadChannels",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": sorted({channel.objects_arn for channel in channels.values()}),
        }
    )
    if kms_key_arn:
        statements.append(
            {
                "Sid": "DecryptChannels",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"s3.{kms_key_region(kms_key_arn)}.amazonaws.com"
                    }
                },
            }
        )
    return statements


def artifact_export_statements(bucket_arn: str) -> list[dict[str, Any]]:
    """The promoting role's writes to the artifact bucket: put (and abort a multipart upload)
    under models/, list models/ and delete older runs' objects there (delete markers)."""
    if not bucket_arn.startswith("arn:aws") or ":s3:::" not in bucket_arn:
        raise ValueError(f"{bucket_arn!r} is not an S3 bucket ARN")
    return [
        {
            "Sid": "ExportModels",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            "Resource": f"{bucket_arn}/{EXPORT_PREFIX}*",
        },
        {
            "Sid": "ListExportedModels",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{EXPORT_PREFIX}*"]}},
        },
    ]


def artifact_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """The artifact bucket's policy: nothing over plain HTTP. Who may write is the roles' own
    policies' business (the bucket grants nobody anything)."""
    if not bucket_arn.startswith("arn:aws") or ":s3:::" not in bucket_arn:
        raise ValueError(f"{bucket_arn!r} is not an S3 bucket ARN")
    return policy_document([deny_insecure_transport("s3:*", [bucket_arn, f"{bucket_arn}/*"])])


def artifact_lifecycle_rules(noncurrent_days: int) -> list[dict[str, Any]]:
    """The artifact bucket's lifecycle rules (pulumi-aws BucketLifecycleConfiguration `rules`).

    The export keeps the newest runs and deletes the others' objects, which versioning turns
    into noncurrent versions; they are removed `noncurrent_days` after (NoncurrentVersionExpiration
    `NoncurrentDays`). `NewerNoncurrentVersions` is left out on purpose: it counts versions of
    one key ("Specifies how many noncurrent versions Amazon S3 will retain. If there are this
    many more recent noncurrent versions, Amazon S3 will take the associated action", S3 API
    Reference, NoncurrentVersionExpiration), and every run has keys of its own, so a deleted
    run's only noncurrent version would never have a newer one and would be kept forever. The
    delete markers left once their versions are gone, and multipart uploads a stopped export
    never finished, are removed too."""
    if not 1 <= noncurrent_days <= 3650:
        raise ValueError(f"noncurrent_days {noncurrent_days} must be 1..3650")
    return [
        {
            "id": "expire-old-model-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        },
        {
            "id": "remove-expired-delete-markers",
            "status": "Enabled",
            "filter": {},
            "expiration": {"expired_object_delete_marker": True},
        },
    ]


def artifact_environment(bucket_name: Any, keep_last: int) -> dict[str, Any]:
    """What the promoting container is told: the bucket (an input until the task block renders
    the definition) and how many runs to keep."""
    return {Env.ARTIFACTS_BUCKET: bucket_name, Env.ARTIFACTS_KEEP: str(keep_last)}
