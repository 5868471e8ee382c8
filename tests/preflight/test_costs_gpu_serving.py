"""The cost of serving on GPU EC2, and `plan --set` what-ifs that price it without editing a
stack file."""

from __future__ import annotations

import pytest

from preflight import plan as plan_module
from preflight import prices
from preflight.costs import estimate_cost
from preflight.offline import Plan, run_stack

# us-east-1 Linux on-demand, aws.amazon.com/ec2/pricing/on-demand (the plan's price date).
G4DN_XLARGE_HOUR = 0.526


@pytest.fixture(scope="module")
def gpu_prod() -> Plan:
    return run_stack("prod", {"inference": {"capacity": "gpu-ec2"}})


def serving_lines(plan: Plan) -> dict[str, float]:
    return {
        line.item: line.quantity or 0.0
        for line in estimate_cost(plan).lines
        if line.resource == "cluster-serving-gpu-asg"
    }


def test_the_warm_minimum_runs_all_month_on_demand(gpu_prod: Plan) -> None:
    lines = {
        line.item: line
        for line in estimate_cost(gpu_prod).lines
        if line.resource == "cluster-serving-gpu-asg"
    }
    on_demand = next(v for k, v in lines.items() if "on-demand" in k)
    # prod: two tasks, one single-GPU g4dn.xlarge each, both within the on-demand base of 2.
    assert on_demand.quantity == pytest.approx(2 * prices.HOURS_PER_MONTH)
    assert on_demand.unit_usd == G4DN_XLARGE_HOUR
    assert "g4dn.xlarge" in on_demand.item


def test_instances_above_the_base_are_priced_as_spot(gpu_prod: Plan) -> None:
    estimate = estimate_cost(gpu_prod)
    spot = next(
        line
        for line in estimate.lines
        if line.resource == "cluster-serving-gpu-asg" and "Spot" in line.item
    )
    burst = prices.ASSUMPTIONS["gpu_serving_burst_instances"].value
    discount = prices.ASSUMPTIONS["ec2_spot_discount"].value
    assert spot.quantity == pytest.approx(burst * prices.HOURS_PER_MONTH)
    assert spot.unit_usd == pytest.approx(G4DN_XLARGE_HOUR * (1 - discount))
    assert {"ec2_spot_discount", "gpu_serving_burst_instances"} <= set(estimate.assumptions)


def test_root_volumes_follow_the_instance_hours(gpu_prod: Plan) -> None:
    lines = serving_lines(gpu_prod)
    instances = sum(q for item, q in lines.items() if item.startswith("EC2 ")) / (
        prices.HOURS_PER_MONTH
    )
    assert lines["EBS gp3 root volumes"] == pytest.approx(instances * 100)


def test_training_gpus_are_still_priced_by_their_runs(gpu_prod: Plan, prod_plan: Plan) -> None:
    def training(plan: Plan) -> float:
        return sum(
            line.monthly_usd or 0
            for line in estimate_cost(plan).lines
            if line.resource == "cluster-gpu-asg"
        )

    assert training(gpu_prod) == pytest.approx(training(prod_plan))
    assert 0 < training(prod_plan) < 50


def test_gpu_serving_costs_more_than_fargate_serving(gpu_prod: Plan, prod_plan: Plan) -> None:
    assert estimate_cost(gpu_prod).total > estimate_cost(prod_plan).total + 500
    assert estimate_cost(gpu_prod).unknown == []


def test_set_parses_yaml_values_into_nested_overrides() -> None:
    assert plan_module.parse_sets(
        [
            "inference.capacity=gpu-ec2",
            "inference.gpu.min_instances=3",
            "inference.gpu.instance_types=[g5.xlarge, g6.xlarge]",
            "store.backups=false",
        ]
    ) == {
        "inference": {
            "capacity": "gpu-ec2",
            "gpu": {"min_instances": 3, "instance_types": ["g5.xlarge", "g6.xlarge"]},
        },
        "store": {"backups": False},
    }
    for bad in ("capacity=gpu-ec2", "inference.capacity", "inference..gpus=1"):
        with pytest.raises(plan_module.PlanError, match=r"SECTION\.KEY=VALUE"):
            plan_module.parse_sets([bad])


def test_plan_set_prints_the_gpu_serving_lines_and_a_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert plan_module.main(["prod", "--set", "inference.capacity=gpu-ec2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("what-if over Pulumi.prod.yaml: --set inference.capacity=gpu-ec2")
    assert "EC2 g4dn.xlarge on-demand" in out and "EC2 g4dn.xlarge Spot" in out
    assert "cluster-serving-gpu-asg" in out
    assert "TOTAL prod: $" in out


def test_plan_set_merges_into_the_stack_files_nested_map(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["prod", "--set", "inference.capacity=gpu-ec2", "--set", "inference.gpu.min_instances=3"]
    assert plan_module.main(args) == 0
    out = capsys.readouterr().out
    # prod's other gpu keys (on_demand_base 2, max_instances 10) are kept.
    assert "minSize 3" in out and "on-demand base of 2" in out


def test_plan_set_refusal_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_module.main(["dev", "--set", "inference.capacity=gpu-ec2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "mlops:inference.capacity: 'gpu-ec2' is not allowed" in err
