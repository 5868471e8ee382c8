"""Storage: the shared store (EFS Standard and Infrequent Access storage, Elastic Throughput reads
and writes), its AWS Backup copies, the images each ECR repository keeps (its lifecycle policy's
count rules x the measured image sizes) and S3 buckets (the load balancer's access logs).

Prices (`preflight/prices.py`): `efs_standard_gb_month`, `efs_ia_gb_month`,
`efs_elastic_read_gb`, `efs_elastic_write_gb` (aws.amazon.com/efs/pricing),
`efs_backup_gb_month` (aws.amazon.com/backup/pricing), `ecr_gb_month`
(aws.amazon.com/ecr/pricing), `s3_standard_gb_month` (aws.amazon.com/s3/pricing). Image sizes:
measured, `benchmarks/results/image.json` (written by `benchmarks/image.py`). Assumptions:
`efs_stored_gb`, `efs_ia_share`, `efs_read_gb_per_month`, `efs_write_gb_per_month`,
`image_pushes_per_month` (a repository without a count rule), `access_log_gb_month`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from preflight.costs.core import (
    MONTHS_PER_YEAR,
    Ledger,
    as_list,
    as_number,
    get_path,
    json_document,
    resources_of,
)
from preflight.costs.network import LOAD_BALANCERS
from preflight.offline import ROOT, Plan

EFS = "aws:efs/fileSystem:FileSystem"
EFS_BACKUP = "aws:efs/backupPolicy:BackupPolicy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
DOCKER_IMAGE = "docker:index/image:Image"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")

PRICED = frozenset({EFS, EFS_BACKUP, ECR_REPOSITORY, *BUCKETS})
FREE = frozenset(
    {
        "aws:efs/mountTarget:MountTarget",
        "aws:efs/accessPoint:AccessPoint",
        "aws:efs/fileSystemPolicy:FileSystemPolicy",
        ECR_LIFECYCLE,
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        # A build and push: what it stores is priced on its repository.
        DOCKER_IMAGE,
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
    }
)

IMAGE_SIZES = ROOT / "benchmarks" / "results" / "image.json"
"""Measured image sizes per flavour (the benchmarks' image footprint): ECR bills the compressed
layers it stores."""


def file_systems(plan: Plan, ledger: Ledger) -> None:
    """EFS storage by class and Elastic Throughput, then the file systems' backups."""
    for fs in resources_of(plan, EFS):
        stored = ledger.assume("efs_stored_gb")
        transitions = [p for p in as_list(fs.inputs.get("lifecyclePolicies")) if p]
        to_ia = any(get_path(p, "transitionToIa") for p in transitions)
        share = ledger.assume("efs_ia_share") if to_ia else 0.0
        ledger.add(fs, "EFS Standard storage", stored * (1 - share), "efs_standard_gb_month")
        if share:
            ledger.add(fs, "EFS Infrequent Access storage", stored * share, "efs_ia_gb_month")
        mode = fs.inputs.get("throughputMode", "bursting")
        if mode == "elastic":
            reads = ledger.assume("efs_read_gb_per_month")
            writes = ledger.assume("efs_write_gb_per_month")
            ledger.add(fs, "EFS Elastic Throughput reads", reads, "efs_elastic_read_gb")
            ledger.add(fs, "EFS Elastic Throughput writes", writes, "efs_elastic_write_gb")
        elif mode == "provisioned":
            ledger.unknown(fs, "EFS provisioned throughput", "no price")
    for backup in resources_of(plan, EFS_BACKUP):
        if get_path(backup.inputs, "backupPolicy.status") == "ENABLED":
            gb = ledger.assume("efs_stored_gb")
            ledger.add(backup, "EFS backups (AWS Backup warm)", gb, "efs_backup_gb_month")


def repositories(plan: Plan, ledger: Ledger) -> None:
    """ECR storage: the images each repository's lifecycle rules keep, of the flavours pushed."""
    for repo in resources_of(plan, ECR_REPOSITORY):
        name = repo.outputs.get("name")
        kept = [
            item
            for policy in resources_of(plan, ECR_LIFECYCLE)
            if policy.inputs.get("repository") == name
            for item in kept_images(policy.inputs)
        ]
        # A rule only stores images if something pushes tags it selects (no gpu images
        # without GPU training); with no builds (a pinned image) every rule counts.
        tags = [
            str(image.inputs.get("imageName", "")).rsplit(":", 1)[-1]
            for image in resources_of(plan, DOCKER_IMAGE)
            if str(image.inputs.get("imageName", "")).startswith(
                str(repo.outputs.get("repositoryUrl", "-"))
            )
        ]
        if tags:
            kept = [k for k in kept if any(t.startswith(k[0]) for t in tags) or k[0] == "any"]
        gb = 0.0
        notes = []
        for prefix, count in kept:
            size = image_gb(ledger, "gpu" if "gpu" in prefix else "cpu")
            gb += count * size
            notes.append(f"{count} {prefix}* x {size:.3g} GB")
        if not kept:
            count = ledger.assume("image_pushes_per_month") * MONTHS_PER_YEAR
            gb = count * image_gb(ledger, "cpu")
            notes.append("no count-based lifecycle rule: a year of pushes")
        ledger.add(repo, "ECR image storage", gb, "ecr_gb_month", note="; ".join(notes))


def buckets(plan: Plan, ledger: Ledger, priced_elsewhere: Collection[str] = ()) -> None:
    """S3 Standard storage of the buckets load balancers write access logs to; the buckets
    another family prices (`priced_elsewhere`, by name: the artifact bucket, preflight/costs/
    s3.py) are left to it; any other bucket is unknown (no usage assumption for it)."""
    access_log_buckets = {
        get_path(lb.inputs, "accessLogs.bucket") for lb in resources_of(plan, *LOAD_BALANCERS)
    }
    for bucket in resources_of(plan, *BUCKETS):
        if bucket.outputs.get("bucket") in priced_elsewhere:
            continue
        if bucket.outputs.get("bucket") in access_log_buckets:
            gb = ledger.assume("access_log_gb_month")
            ledger.add(bucket, "S3 Standard storage (ALB access logs)", gb, "s3_standard_gb_month")
        else:
            ledger.unknown(bucket, "S3 storage", "no usage assumption for this bucket")


def kept_images(inputs: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(tag prefix, images kept) for every count-based rule of an ECR lifecycle policy."""
    document = json_document(inputs.get("policy")) or {}
    kept = []
    for rule in as_list(document.get("rules")):
        selection = get_path(rule, "selection") or {}
        if selection.get("countType") == "imageCountMoreThan":
            prefixes = as_list(selection.get("tagPrefixList")) or ["any"]
            kept.append((str(prefixes[0]), int(as_number(selection.get("countNumber")))))
    return kept


# --- measured image sizes ------------------------------------------------------------------------


def image_gb(ledger: Ledger, flavour: str) -> float:
    """GB ECR stores per image of `flavour`: the measured compressed size (reported with the
    assumptions, with the date it was measured)."""
    sizes = image_sizes()
    if flavour not in sizes:
        raise ValueError(f"{IMAGE_SIZES}: no size for the {flavour} image flavour")
    gb = sizes[flavour] / 1e9
    ledger.derive(
        f"{flavour}_image_gb",
        gb,
        f"GB per stored {flavour} image, compressed as ECR bills it "
        f"({IMAGE_SIZES.relative_to(IMAGE_SIZES.parents[2])}, measured {_measured()})",
    )
    return gb


def _image_file() -> dict[str, Any]:
    try:
        document = json.loads(IMAGE_SIZES.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{IMAGE_SIZES} is missing: the ECR cost needs the measured image sizes "
            '({"measured": DATE, "flavours": {"cpu": {"compressed_bytes": N, ...}, ...}})'
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{IMAGE_SIZES} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("flavours"), dict):
        raise ValueError(f"{IMAGE_SIZES}: expected an object with a `flavours` map")
    return document


def _measured() -> str:
    return str(_image_file().get("measured", "?"))


def image_sizes() -> dict[str, int]:
    """Flavour -> compressed bytes, from `benchmarks/results/image.json`; ValueError naming the
    file and the field when it is missing or malformed."""
    sizes = {}
    for flavour, entry in _image_file()["flavours"].items():
        value = entry.get("compressed_bytes") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"{IMAGE_SIZES}: flavours.{flavour}.compressed_bytes is {value!r}; "
                "it must be a positive integer (bytes)"
            )
        sizes[flavour] = value
    return sizes
