"""Network: the egress mode decides NAT gateways, subnet types and where tasks run (the stacks
whole, and the component built alone for a third mode)."""

from __future__ import annotations


def vpc_inputs(plan):
    return plan.one("awsx:ec2:Vpc").inputs


def test_dev_has_no_nat_and_runs_tasks_in_public_subnets(dev_plan):
    vpc = vpc_inputs(dev_plan)
    assert vpc["natGateways"] == {"strategy": "None"}
    assert [s["type"] for s in vpc["subnetSpecs"]] == ["Public"]
    assert vpc["numberOfAvailabilityZones"] == 2
    assert dev_plan.exports["task_subnet_ids"][0].startswith("subnet-pub")
    assert len(dev_plan.exports["task_subnet_ids"]) == 2


def test_prod_has_a_nat_per_az_and_runs_tasks_in_private_subnets(prod_plan):
    vpc = vpc_inputs(prod_plan)
    assert vpc["natGateways"] == {"strategy": "OnePerAz"}
    assert [s["type"] for s in vpc["subnetSpecs"]] == ["Public", "Private"]
    assert vpc["numberOfAvailabilityZones"] == 3
    assert all(s.startswith("subnet-prv") for s in prod_plan.exports["task_subnet_ids"])
    assert len(prod_plan.exports["task_subnet_ids"]) == 3


def test_single_nat_egress_declares_one_shared_gateway(build):
    vpc = vpc_inputs(build("network", "dev", {"network": {"egress": "single-nat"}}))
    assert vpc["natGateways"] == {"strategy": "Single"}
    assert [s["type"] for s in vpc["subnetSpecs"]] == ["Public", "Private"]


def test_vpc_follows_awsx_rules_the_mocks_cannot_check(plan):
    vpc = vpc_inputs(plan)
    # awsx: availabilityZoneNames and numberOfAvailabilityZones are mutually exclusive, and the
    # default Legacy subnet strategy is deprecated.
    assert "availabilityZoneNames" not in vpc
    assert vpc["subnetStrategy"] == "Auto"
    assert vpc["enableDnsHostnames"] is True and vpc["enableDnsSupport"] is True


def test_subnets_fit_inside_the_vpc(plan):
    vpc = vpc_inputs(plan)
    prefix = int(vpc["cidrBlock"].split("/")[1])
    per_az = sum(2 ** (32 - int(s["cidrMask"])) for s in vpc["subnetSpecs"])
    assert per_az * vpc["numberOfAvailabilityZones"] <= 2 ** (32 - prefix)
    assert all(int(s["cidrMask"]) <= 28 for s in vpc["subnetSpecs"])
