"""S3 in the plan's cost: the artifact bucket the stack declares priced from what it keeps (the
newest runs and the deleted ones' old versions) and the requests each promotion makes; an S3
channel's reads on every run (requests, transfer, and the NAT's processing when the tasks reach S3
through one), from the assumed channel size."""

from __future__ import annotations

import math

import pytest

from preflight import prices
from preflight.costs import estimate_cost
from preflight.offline import run_stack

# slow: each test evaluates whole stacks under the mocks (4-8 s each)
pytestmark = pytest.mark.slow

S3_CHANNEL = {"workload": {"training": {"channels": {"train": "s3://user-data/digits/"}}}}


def _lines(overrides: dict, assume: dict | None = None) -> tuple[dict, float]:
    estimate = estimate_cost(run_stack("digits", overrides=overrides), assume)
    runs = estimate.assumptions["training-pipeline.runs_per_month"]["value"]
    return {(line.resource, line.item): line for line in estimate.lines}, runs


def test_the_artifact_bucket_is_priced_from_what_it_keeps(digits_plan) -> None:
    estimate = estimate_cost(digits_plan, {"model_artifact_gb": 0.2})
    lines = {line.item: line for line in estimate.lines if line.resource == "artifacts-bucket"}
    runs = estimate.assumptions["training-pipeline.runs_per_month"]["value"]
    stored = lines["S3 Standard storage (exported models)"]
    assert stored.quantity == pytest.approx((10 + runs * 30 / (365 / 12)) * 0.2, rel=1e-3)
    assert stored.unit_usd == prices.PRICES["s3_standard_gb_month"].usd
    requests = lines["S3 PUT and LIST requests (exports)"]
    assert requests.quantity == pytest.approx(runs * 4 / 1000, rel=1e-3)
    bucket = next(r for r in digits_plan.resources if r.name == "artifacts-bucket")
    assert estimate.pricing[bucket.urn] == "priced"
    assert "model_artifact_gb" in estimate.assumptions


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_bucket_and_no_channel_cost_nothing(stack: str) -> None:
    estimate = estimate_cost(run_stack(stack))
    assert not [line for line in estimate.lines if line.item.startswith("S3 channel")]
    assert not {"s3_channel_gb", "model_artifact_gb"} & set(estimate.assumptions)


def test_an_s3_channel_costs_its_requests_on_every_run() -> None:
    lines, runs = _lines(S3_CHANNEL, {"s3_channel_gb": 2, "s3_channel_objects": 2500})
    train = [line for (resource, _), line in lines.items() if resource == "training-train"]
    by_item = {line.item: line for line in train}
    assert by_item["S3 channel LIST requests"].quantity == pytest.approx(
        runs * math.ceil(2500 / 1000) / 1000
    )
    assert by_item["S3 channel GET requests"].quantity == pytest.approx(runs * 2500 / 1000)
    assert by_item["S3 channel GET requests"].unit_usd == prices.PRICES["s3_get_thousand"].usd
    # The bytes cost nothing from S3 to a task in the same Region.
    assert "2 GB each run" in by_item["S3 channel GET requests"].note
    # digits has no NAT: its tasks reach S3 through their public IPs.
    assert "S3 channel bytes through the NAT gateway" not in by_item


def test_through_a_nat_gateway_the_channels_bytes_are_processed_there() -> None:
    overrides = {**S3_CHANNEL, "network": {"egress": "single-nat"}}
    lines, runs = _lines(overrides, {"s3_channel_gb": 3})
    nat = lines[("training-train", "S3 channel bytes through the NAT gateway")]
    assert nat.quantity == pytest.approx(runs * 3)
    assert nat.unit_usd == prices.PRICES["nat_gateway_gb"].usd
