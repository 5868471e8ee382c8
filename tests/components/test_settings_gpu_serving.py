"""`mlops:inference.capacity: gpu-ec2`: what the settings accept and refuse, against AWS's
published instance facts (not the module's own tables)."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components.settings.serving import GpuServingSettings, ServingCapacity
from components.settings.stack import parse
from tests.components.test_settings import stack_raw

# GPUs per instance type, from the EC2 User Guide's accelerated computing instance
# specifications (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html).
DOCUMENTED_GPUS = {
    "g4dn.xlarge": 1,
    "g4dn.12xlarge": 4,
    "g4dn.16xlarge": 1,
    "g5.xlarge": 1,
    "g5.12xlarge": 4,
    "g5.48xlarge": 8,
    "g6.xlarge": 1,
    "g6.12xlarge": 4,
    "g6.48xlarge": 8,
    "p3.2xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
}
# Maximum network interfaces, from the EC2 User Guide's "Maximum IP addresses per network
# interface" table (DescribeInstanceTypes NetworkInfo.MaximumNetworkInterfaces).
DOCUMENTED_ENIS = {"g4dn.xlarge": 3, "g4dn.12xlarge": 8, "g5.xlarge": 4, "g5.48xlarge": 7}


def gpu_prod(**gpu: Any) -> dict[str, Any]:
    """prod's stack file with inference on gpu-ec2 and the given `inference.gpu` keys."""
    raw = copy.deepcopy(stack_raw("prod"))
    raw["inference"]["capacity"] = "gpu-ec2"
    raw["inference"]["gpu"] = {**raw["inference"].get("gpu", {}), **gpu}
    return raw


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(pulumi.RunError) as error:
        parse(raw, stack="prod")
    return str(error.value)


def test_fargate_stays_the_default_and_both_stack_files_serve_on_fargate():
    assert parse({}).inference.capacity is ServingCapacity.FARGATE
    for stack in ("dev", "prod"):
        settings = parse(stack_raw(stack), stack=stack)
        assert settings.inference.capacity is ServingCapacity.FARGATE
        assert not settings.serving_gpu


def test_prod_with_gpu_serving_loads_its_gpu_keys():
    settings = parse(gpu_prod(), stack="prod")
    assert settings.serving_gpu and settings.image_flavours == ("cpu", "gpu")
    gpu = settings.inference.gpu
    assert gpu.gpus == 1
    assert gpu.min_instances >= 1 and gpu.on_demand_base >= 1
    assert gpu.on_demand_percent_above_base == 0  # Spot above the base


@pytest.mark.parametrize("instance", sorted(DOCUMENTED_GPUS))
def test_a_task_may_reserve_every_gpu_of_the_type_and_no_more(instance: str):
    count = DOCUMENTED_GPUS[instance]
    accepted = gpu_prod(instance_types=[instance], gpus=count, max_instances=100)
    accepted["inference"]["max"] = 2
    assert parse(accepted, stack="prod").inference.gpu.gpus == count
    too_many = copy.deepcopy(accepted)
    too_many["inference"]["gpu"]["gpus"] = count + 1
    message = refused(too_many)
    assert message.startswith(f"mlops:inference.gpu.gpus: {count + 1} is not allowed")
    assert f"{instance} has {count} GPU(s)" in message


def test_one_type_short_of_gpus_is_enough_to_refuse():
    message = refused(gpu_prod(instance_types=["g5.12xlarge", "g5.xlarge"], gpus=2))
    assert "mlops:inference.gpu.gpus: 2" in message and "g5.xlarge has 1 GPU(s)" in message


def test_awsvpc_eni_limit_caps_tasks_per_instance():
    # g5.48xlarge: 8 GPUs but 7 network interfaces, one of them the instance's own, so six
    # one-GPU awsvpc tasks fit, not eight.
    enis = DOCUMENTED_ENIS["g5.48xlarge"]
    raw = gpu_prod(
        instance_types=["g5.48xlarge"], gpus=1, min_instances=1, max_instances=1, on_demand_base=1
    )
    raw["inference"].update(min=1, desired=1, max=enis - 1)
    assert parse(raw, stack="prod").serving_gpu
    raw["inference"]["max"] = enis
    message = refused(raw)
    assert message.startswith("mlops:inference.gpu.max_instances: 1 is not allowed")
    assert f"{enis} network interfaces" in message and "holds 6 task(s)" in message


def test_gpus_bind_before_enis_on_a_four_gpu_type():
    raw = gpu_prod(instance_types=["g4dn.12xlarge"], gpus=1, min_instances=1, max_instances=2)
    raw["inference"].update(min=1, desired=1, max=8)
    assert parse(raw, stack="prod").serving_gpu  # 4 GPUs < 8 - 1 interfaces: 4 per instance
    raw["inference"]["max"] = 9
    message = refused(raw)
    assert "holds 4 task(s)" in message and "4 GPU(s)" in message


def test_the_service_maximum_must_fit_the_group_maximum():
    message = refused(gpu_prod(instance_types=["g5.xlarge"], max_instances=3))
    assert message.startswith("mlops:inference.gpu.max_instances: 3 is not allowed")
    assert "inference.max is 10 tasks" in message


def test_gpu_serving_without_nat_egress_is_refused():
    raw = copy.deepcopy(stack_raw("dev"))
    raw["inference"]["capacity"] = "gpu-ec2"
    message = refused(raw)
    assert message.startswith("mlops:inference.capacity: 'gpu-ec2' is not allowed")
    assert "network.egress" in message and "public-ip" in message


def test_the_task_size_must_fit_the_instance_not_fargate():
    raw = gpu_prod(instance_types=["g4dn.xlarge"])  # 4 vCPUs, 16 GiB
    raw["inference"].update(cpu=3000, memory=12000)  # no Fargate size, fine on EC2
    assert parse(raw, stack="prod").inference.cpu == 3000
    raw["inference"]["cpu"] = 5000
    assert refused(raw).startswith("mlops:inference.cpu: 5000 is not allowed")
    raw["inference"].update(cpu=1024, memory=16384)
    assert refused(raw).startswith("mlops:inference.memory: 16384 is not allowed")


def test_gpu_keys_are_checked_even_on_fargate():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["inference"]["gpu"] = {"instance_types": ["m5.xlarge"]}
    message = refused(raw)
    assert message.startswith("mlops:inference.gpu.instance_types[0]: 'm5.xlarge'")
    raw["inference"]["gpu"] = {"min_instance": 1}
    assert "did you mean `min_instances`?" in refused(raw)
    raw["inference"]["gpu"] = {"min_instances": 5, "max_instances": 4}
    assert refused(raw).startswith("mlops:inference.gpu.min_instances: 5 is not allowed")
    raw["inference"]["gpu"] = {"on_demand_percent_above_base": 101}
    assert refused(raw).startswith("mlops:inference.gpu.on_demand_percent_above_base: 101")


def test_capacity_accepts_only_fargate_or_gpu_ec2():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["inference"]["capacity"] = "fargate-spot"
    message = refused(raw)
    assert message == (
        "mlops:inference.capacity: 'fargate-spot' is not allowed; allowed: fargate, gpu-ec2"
    )


def test_a_pinned_gpu_serving_stack_needs_the_gpu_digest():
    raw = copy.deepcopy(stack_raw("dev"))
    raw["network"]["egress"] = "single-nat"
    raw["inference"]["capacity"] = "gpu-ec2"
    raw["image"]["pin"] = "sha256:" + "a" * 64
    assert refused(raw).startswith("mlops:image.gpu_pin: '' is not allowed")
    raw["image"]["gpu_pin"] = "sha256:" + "b" * 64
    assert "gpu" in parse(raw).image_flavours


def test_defaults_are_cheap_single_gpu_types_cheapest_first():
    gpu = GpuServingSettings()
    assert gpu.instance_types[0] == "g4dn.xlarge"
    assert all(DOCUMENTED_GPUS.get(t, 1) == 1 for t in gpu.instance_types)
