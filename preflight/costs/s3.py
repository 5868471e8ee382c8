"""S3 beyond storage of logs: what training from S3 channels costs per run, and the artifact bucket
each model the platform makes current is exported to.

- S3 channels: a task definition whose `stage-training` container names `s3://` channels in
  `MLOPS_CHANNELS` reads each of them in full on every run of the pipeline that runs it: a LIST
  request per 1,000 objects and a GET per object, and the bytes, which cost nothing from S3 to
  a task in the same Region ("Data transferred from an Amazon S3 bucket to any AWS service(s)
  within the same AWS Region", aws.amazon.com/s3/pricing, is free: no line) but pass a NAT
  gateway, and are billed there, when the tasks reach S3 through one: the stack declares no S3
  gateway endpoint. The plan cannot know what a prefix
  holds: its size and object count are the assumptions `s3_channel_gb` and
  `s3_channel_objects`, and the bucket is assumed in the stack's Region.
- the artifact bucket (the bucket a container exports models to, `MLOPS_ARTIFACTS_BUCKET`): the
  newest `MLOPS_ARTIFACTS_KEEP` runs' archives, plus the deleted ones kept as noncurrent versions
  for the lifecycle rule's `noncurrentDays`, each `model_artifact_gb`; and per promotion three
  PUTs (model.tar.gz, report.json, decision.json) and a LIST (the older runs; DELETE requests are
  free). Every run is taken to promote (the most it can cost).

Prices (`preflight/prices.py`): `s3_standard_gb_month`, `s3_put_thousand`, `s3_get_thousand`
(aws.amazon.com/s3/pricing), `nat_gateway_gb`
(aws.amazon.com/vpc/pricing). Assumptions: `s3_channel_gb`, `s3_channel_objects`,
`model_artifact_gb`. Runs a month: `preflight.costs.orchestration`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from components.documents.staging import STAGE_TRAINING
from mlops_contract import Env
from policy import checks
from preflight.costs import orchestration
from preflight.costs.compute import TASK_DEFINITION
from preflight.costs.core import Ledger, as_list, as_number, get_path, resources_of
from preflight.costs.network import VPC
from preflight.costs.storage import BUCKETS
from preflight.offline import Plan, Resource

LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
PUTS_PER_PROMOTION = 3
LISTS_PER_PROMOTION = 1
DAYS_PER_MONTH = 365 / 12

PRICED: frozenset[str] = frozenset()
"""The buckets are storage's types (`preflight.costs.storage.BUCKETS`); this family adds their
lines."""
FREE: frozenset[str] = frozenset()


def _environment(container: Any) -> dict[str, str]:
    return {
        str(e.get("name")): str(e.get("value"))
        for e in as_list(container.get("environment"))
        if isinstance(e, dict)
    }


def _s3_channels(td: Resource) -> list[str]:
    for container in checks.containers(td.inputs):
        if container.get("name") != STAGE_TRAINING:
            continue
        try:
            channels = json.loads(_environment(container).get(Env.CHANNELS) or "{}")
        except ValueError:
            return []
        return [v for v in channels.values() if isinstance(v, str) and v.startswith("s3://")]
    return []


def _runs(plan: Plan, ledger: Ledger) -> float:
    machines = resources_of(plan, orchestration.STATE_MACHINE)
    return sum(orchestration.runs_per_month(plan, ledger, m, machines) for m in machines)


def _through_nat(plan: Plan) -> bool:
    return any(
        str(get_path(vpc.inputs, "natGateways.strategy") or "None") != "None"
        for vpc in resources_of(plan, VPC)
    )


def channels(plan: Plan, ledger: Ledger) -> None:
    """Each run's reads of its S3 channels, on the task definition that stages them."""
    found = [(td, uris) for td in resources_of(plan, TASK_DEFINITION) if (uris := _s3_channels(td))]
    if not found:
        return
    runs = _runs(plan, ledger)
    gb, objects = ledger.assume("s3_channel_gb"), ledger.assume("s3_channel_objects")
    for td, uris in found:
        each = f"{runs:.1f} runs x {len(uris)} S3 channel(s)"
        lists = runs * len(uris) * math.ceil(objects / 1000)
        ledger.add(td, "S3 channel LIST requests", lists / 1000, "s3_put_thousand", note=each)
        gets = runs * len(uris) * objects
        ledger.add(
            td,
            "S3 channel GET requests",
            gets / 1000,
            "s3_get_thousand",
            note=f"{each} of {objects:g} objects, {gb:g} GB each run (from S3 in the stack's "
            "Region the bytes are free; from another Region they are billed as transfer out)",
        )
        read = runs * len(uris) * gb
        if _through_nat(plan):
            ledger.add(
                td,
                "S3 channel bytes through the NAT gateway",
                read,
                "nat_gateway_gb",
                note="the tasks reach S3 through NAT: an S3 gateway endpoint (free) would not",
            )


def artifact_bucket_names(plan: Plan) -> dict[str, int]:
    """The buckets containers export models to, with how many runs each keeps."""
    names: dict[str, int] = {}
    for td in resources_of(plan, TASK_DEFINITION):
        for container in checks.containers(td.inputs):
            environment = _environment(container)
            if Env.ARTIFACTS_BUCKET in environment:
                keep = int(as_number(environment.get(Env.ARTIFACTS_KEEP), 10))
                names[environment[Env.ARTIFACTS_BUCKET]] = keep
    return names


def _noncurrent_days(plan: Plan, bucket: str) -> float:
    for lifecycle in resources_of(plan, LIFECYCLE):
        if lifecycle.inputs.get("bucket") != bucket:
            continue
        for rule in as_list(lifecycle.inputs.get("rules")):
            days = get_path(rule, "noncurrentVersionExpiration.noncurrentDays")
            if days is not None:
                return as_number(days)
    return 0.0


def artifact_buckets(plan: Plan, ledger: Ledger) -> None:
    """The artifact bucket: the archives it keeps and the requests each promotion makes."""
    names = artifact_bucket_names(plan)
    buckets = [b for b in resources_of(plan, *BUCKETS) if b.outputs.get("bucket") in names]
    if not buckets:
        return
    runs = _runs(plan, ledger)
    gb = ledger.assume("model_artifact_gb")
    for bucket in buckets:
        keep = names[str(bucket.outputs.get("bucket"))]
        days = _noncurrent_days(plan, str(bucket.outputs.get("bucket")))
        old = runs * days / DAYS_PER_MONTH if days else 0.0
        ledger.add(
            bucket,
            "S3 Standard storage (exported models)",
            (keep + old) * gb,
            "s3_standard_gb_month",
            note=f"{keep} kept + {old:.1f} deleted runs kept {days:g} days as old versions, "
            f"x {gb:g} GB",
        )
        requests = runs * (PUTS_PER_PROMOTION + LISTS_PER_PROMOTION)
        ledger.add(
            bucket,
            "S3 PUT and LIST requests (exports)",
            requests / 1000,
            "s3_put_thousand",
            note=f"{runs:.1f} promotions at most (every run) x "
            f"{PUTS_PER_PROMOTION + LISTS_PER_PROMOTION} requests",
        )
