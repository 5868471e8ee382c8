"""The monthly cost model: prices, schedules, capacity, and what each stack's config costs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from preflight import prices
from preflight.costs import CostLine, Provider, estimate_cost, schedule_fires, split_tasks, storage
from preflight.offline import Plan, Resource, run_stack
from preflight.plan import Report, render

WEEKS_PER_MONTH = 365 / 7 / 12


def lines_of(plan: Plan, resource_name: str) -> dict[str, CostLine]:
    return {line.item: line for line in estimate_cost(plan).lines if line.resource == resource_name}


# --- the price table ---------------------------------------------------------------------------


def test_price_table_covers_every_line_the_issue_asks_for() -> None:
    required = {
        "fargate_vcpu_hour",
        "fargate_gb_hour",
        "nat_gateway_hour",
        "nat_gateway_gb",
        "alb_hour",
        "alb_lcu_hour",
        "public_ipv4_hour",
        "efs_standard_gb_month",
        "logs_ingest_gb",
        "logs_storage_gb_month",
        "kms_key_month",
        "waf_web_acl_month",
        "waf_rule_month",
        "waf_million_requests",
        "sfn_thousand_transitions",
        "ecr_gb_month",
    }
    assert required <= prices.PRICES.keys()
    assert all(p.usd > 0 and p.source for p in prices.PRICES.values())
    assert {"g5.xlarge", "g6.xlarge", "g4dn.xlarge"} <= prices.EC2_ON_DEMAND_HOUR.keys()
    assert prices.ASSUMPTIONS["fargate_spot_discount"].value == 0.70
    assert prices.PRICES_DATE


# --- schedules and capacity ----------------------------------------------------------------------


def test_cron_fires_follow_aws_fields() -> None:
    assert len(schedule_fires("cron(0 20 * * ? *)")) == 365
    assert len(schedule_fires("cron(0 7 ? * MON-FRI *)")) == 261  # weekdays of 2027
    assert len(schedule_fires("cron(0 3 ? * SUN *)")) == 52
    assert len(schedule_fires("cron(0/15 * * * ? *)")) == 365 * 96
    assert len(schedule_fires("cron(0 3 1 * ? *)")) == 12
    assert len(schedule_fires("rate(1 day)")) == 365
    assert schedule_fires("at(2027-01-01T00:00:00)") == []


def test_tasks_split_base_first_then_by_weight() -> None:
    prod = [Provider("FARGATE", 2, 1), Provider("FARGATE_SPOT", 0, 3)]
    assert split_tasks(2, prod) == {"FARGATE": 2, "FARGATE_SPOT": 0}
    assert split_tasks(6, prod) == {"FARGATE": 3, "FARGATE_SPOT": 3}
    assert split_tasks(1, [Provider("FARGATE_SPOT", 0, 1)]) == {"FARGATE_SPOT": 1}


# --- the estimate follows the config -------------------------------------------------------------


def test_dev_costs_less_than_prod(dev_plan: Plan, prod_plan: Plan) -> None:
    assert 0 < estimate_cost(dev_plan).total < estimate_cost(prod_plan).total


def test_dev_runs_no_task_at_night_nor_at_weekends(dev_plan: Plan) -> None:
    estimate = estimate_cost(dev_plan)
    weekly = 13 * 5  # 07:00-20:00 on weekdays, nothing else
    average = estimate.assumptions["inference-service.tasks_running_average"]["value"]
    assert average == pytest.approx(weekly / (7 * 24), abs=0.002)
    spot = lines_of(dev_plan, "inference-service")["tasks: Fargate Spot vCPU"]
    assert spot.quantity == pytest.approx(weekly * WEEKS_PER_MONTH * 0.5, rel=0.01)  # 0.5 vCPU


def test_dev_without_schedules_runs_all_month() -> None:
    plan = run_stack("dev", overrides={"inference": {"schedules": []}})
    average = estimate_cost(plan).assumptions["inference-service.tasks_running_average"]["value"]
    assert average == 1.0


def test_spot_share_and_discount_follow_the_capacity_strategy(
    dev_plan: Plan, prod_plan: Plan
) -> None:
    dev = lines_of(dev_plan, "inference-service")
    spot_price = prices.PRICES["fargate_vcpu_hour"].usd * 0.3
    assert dev["tasks: Fargate Spot vCPU"].unit_usd == pytest.approx(spot_price)
    assert "tasks: Fargate vCPU" not in dev
    prod = lines_of(prod_plan, "inference-service")
    # Two tasks, both inside the on-demand base of 2: no Spot at the scaling floor.
    assert prod["tasks: Fargate vCPU"].quantity == pytest.approx(2 * 1 * 730)
    assert "tasks: Fargate Spot vCPU" not in prod


def test_public_ipv4_per_task_only_without_nat(dev_plan: Plan, prod_plan: Plan) -> None:
    dev = lines_of(dev_plan, "inference-service")["public IPv4 per running task"]
    assert dev.quantity == pytest.approx(13 * 5 * WEEKS_PER_MONTH, rel=0.01)
    assert "public IPv4 per running task" not in lines_of(prod_plan, "inference-service")


def test_nat_gateways_follow_the_egress_mode(dev_plan: Plan, prod_plan: Plan) -> None:
    assert lines_of(dev_plan, "network-vpc") == {}
    prod = lines_of(prod_plan, "network-vpc")
    assert prod["NAT gateway hours"].quantity == 3 * 730  # nat-per-az over 3 AZs
    assert prod["public IPv4 (NAT gateway Elastic IPs)"].quantity == 3 * 730


def test_gpu_group_with_min_zero_costs_only_expected_training_hours(prod_plan: Plan) -> None:
    estimate = estimate_cost(prod_plan)
    runs = estimate.assumptions["training-pipeline.runs_per_month"]["value"]
    weekly = 52 / 12  # cron(0 3 ? * SUN *)
    assert runs == pytest.approx(weekly + 4 + 1, rel=0.01)  # + image pushes + drift events
    (line,) = [
        line for line in estimate.lines if line.resource == "cluster-gpu-asg" and "EC2" in line.item
    ]
    # Train, plus the image check (AwaitImage) that runs on the GPU provider on a gpu-ec2
    # stack: priced as a 0.1 h step with its own instance overhead on every run, an
    # over-estimate (it runs only after pushes, on the instance Train then reuses).
    assert line.quantity == pytest.approx(runs * (0.5 + 0.25) + runs * (0.1 + 0.25), rel=0.01)
    assert "only the expected training hours" in line.note
    assert line.unit_usd == prices.EC2_ON_DEMAND_HOUR["g5.xlarge"]


def test_per_resource_lines_count_what_the_plan_declares(prod_plan: Plan) -> None:
    estimate = estimate_cost(prod_plan)
    keys = [line for line in estimate.lines if line.item == "KMS customer managed key"]
    assert len(keys) == len(prod_plan.of_type("aws:kms/key:Key"))
    waf = lines_of(prod_plan, "inference-waf")
    rules = prod_plan.one("aws:wafv2/webAcl:WebAcl").inputs["rules"]
    assert waf["WAF rules"].quantity == len(rules)
    alb = lines_of(prod_plan, "inference-alb")
    assert alb["public IPv4 (one per ALB node)"].quantity == 3 * 730


# The measured sizes, read here straight from the benchmark's result file (bytes, compressed).
MEASURED = json.loads(
    (Path(__file__).resolve().parents[2] / "benchmarks/results/image.json").read_text()
)["flavours"]
CPU_GB = MEASURED["cpu"]["compressed_bytes"] / 1e9
GPU_GB = MEASURED["gpu"]["compressed_bytes"] / 1e9


def test_ecr_storage_prices_the_measured_image_sizes_of_the_flavours_pushed(
    dev_plan: Plan, prod_plan: Plan
) -> None:
    dev = lines_of(dev_plan, "image-repo")["ECR image storage"]
    assert dev.quantity == pytest.approx(20 * CPU_GB)  # keep_images 20, cpu images only
    prod = lines_of(prod_plan, "image-repo")["ECR image storage"]
    assert prod.quantity == pytest.approx(50 * CPU_GB + 50 * GPU_GB)
    cache = lines_of(prod_plan, "image-cache")["ECR image storage"]
    assert cache.quantity == pytest.approx(CPU_GB + GPU_GB)  # one build cache per flavour
    assumptions = estimate_cost(dev_plan).assumptions
    assert "image_gb" not in assumptions and "measured" in assumptions["cpu_image_gb"]["note"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is missing"),
        ("{", "is not JSON"),
        ('{"flavours": {"cpu": {"uncompressed_bytes": 5}}}', "flavours.cpu.compressed_bytes"),
        ('{"flavours": {"cpu": {"compressed_bytes": -1}}}', "positive integer"),
        ('{"measured": "x"}', "flavours"),
    ],
)
def test_a_missing_or_malformed_size_file_is_a_clear_error(
    dev_plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content, message
) -> None:
    path = tmp_path / "image.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(storage, "IMAGE_SIZES", path)
    with pytest.raises(ValueError, match=re.escape(message)):
        estimate_cost(dev_plan)


def test_alb_capacity_units_are_priced_only_while_a_task_serves(dev_plan: Plan, prod_plan):
    dev = lines_of(dev_plan, "inference-alb")["ALB LCUs"]
    # dev serves weekdays 07:00-20:00 UTC: 282.8 of 730 hours.
    assert dev.quantity == pytest.approx(282.75, rel=0.01)
    prod = lines_of(prod_plan, "inference-alb")["ALB LCUs"]
    assert prod.quantity == pytest.approx(730)  # never below two tasks


def test_dev_stays_within_35_dollars_and_prices_its_per_stack_choices(
    dev_plan: Plan, prod_plan: Plan
) -> None:
    assert estimate_cost(dev_plan).total <= 35.00
    for plan, paid in ((dev_plan, False), (prod_plan, True)):
        items = {line.item for line in estimate_cost(plan).lines}
        assert ("Container Insights metrics" in items) is paid
        assert ("dashboard" in items) is paid
        assert ("KMS customer managed key" in items) is paid


def test_unknown_type_is_unknown_never_zero(dev_plan: Plan) -> None:
    odd = Resource("aws:mq/broker:Broker", "queue", "urn:x", "", {"engineType": "RabbitMQ"}, {})
    plan = Plan("dev", [*dev_plan.resources, odd], {}, [])
    estimate = estimate_cost(plan)
    (line,) = [line for line in estimate.lines if line.resource == "queue"]
    assert line.monthly_usd is None
    assert estimate.pricing["urn:x"] == "unknown"
    assert estimate.total == estimate_cost(dev_plan).total
    assert "+ 1 unknown" in render(Report(plan, estimate, []))


def test_overridden_assumption_changes_the_estimate(prod_plan: Plan) -> None:
    base = estimate_cost(prod_plan)
    longer = estimate_cost(prod_plan, {"train_hours_per_run": 2})
    assert longer.total > base.total
    with pytest.raises(KeyError):
        estimate_cost(prod_plan, {"no_such_thing": 1})


def test_both_stacks_are_fully_priced(plan: Plan) -> None:
    """A new resource type needs a price (preflight/prices.py) or a place in FREE_TYPES."""
    unknown = sorted({(line.type, line.item) for line in estimate_cost(plan).unknown})
    assert unknown == []
