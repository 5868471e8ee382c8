"""The inference service on its own GPU EC2 capacity: prod with `inference.capacity: gpu-ec2`
(GPU training too), and a test stack that serves on GPUs but trains on Fargate Spot."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from components.gpu_capacity import GPU_AMI_PARAMETER
from preflight.offline import SSM_VALUES, Plan, run_stack

ASG = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IMAGE = "docker:index/image:Image"
SERVING_ONLY = {
    "network": {"egress": "single-nat"},
    "inference": {
        "capacity": "gpu-ec2",
        "gpu": {
            "instance_types": ["g6.xlarge"],
            "min_instances": 1,
            "max_instances": 4,
            "on_demand_base": 1,
        },
    },
}


@pytest.fixture(scope="module")
def gpu_prod() -> Plan:
    return run_stack("prod", {"inference": {"capacity": "gpu-ec2"}})


@pytest.fixture(scope="module")
def serving_only() -> Plan:
    return run_stack("dev", SERVING_ONLY)


def containers(plan: Plan) -> dict[str, dict[str, Any]]:
    task = plan.one(TASK, "inference-task")
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def test_serving_has_its_own_group_and_provider_beside_trainings(gpu_prod: Plan):
    training = gpu_prod.one(ASG, "cluster-gpu-asg").inputs
    serving = gpu_prod.one(ASG, "cluster-serving-gpu-asg").inputs
    assert (training["minSize"], training["maxSize"]) == (0, 2)
    assert (serving["minSize"], serving["maxSize"]) == (2, 10)  # a warm minimum
    network = gpu_prod.one("awsx:ec2:Vpc")
    assert serving["vpcZoneIdentifiers"] == network.outputs["privateSubnetIds"]
    names = [gpu_prod.one(PROVIDER, p).outputs["name"] for p in ("cluster-gpu", "serving-gpu")]
    attached = gpu_prod.one(PROVIDERS, "cluster").inputs["capacityProviders"]
    assert attached == ["FARGATE", "FARGATE_SPOT", *names]


def test_serving_group_runs_an_on_demand_base_and_spot_above_it(gpu_prod: Plan):
    inputs = gpu_prod.one(ASG, "cluster-serving-gpu-asg").inputs
    policy = inputs["mixedInstancesPolicy"]
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == [
        "g4dn.xlarge",
        "g6.xlarge",
        "g5.xlarge",
    ]
    assert policy["instancesDistribution"] == {
        "onDemandBaseCapacity": 2,
        "onDemandPercentageAboveBaseCapacity": 0,
        "onDemandAllocationStrategy": "prioritized",
        "spotAllocationStrategy": "price-capacity-optimized",
    }
    assert inputs["capacityRebalance"] is True
    assert inputs["protectFromScaleIn"] is True  # managed termination protection needs it
    assert inputs["forceDelete"] is True  # destroy does not wait on protected instances
    assert "GroupInServiceInstances" in inputs["enabledMetrics"]


def test_serving_instances_boot_the_gpu_ami_with_imdsv2_and_an_encrypted_root(gpu_prod: Plan):
    template = gpu_prod.one(TEMPLATE, "serving-gpu").inputs
    assert template["imageId"] == SSM_VALUES[GPU_AMI_PARAMETER]
    assert template["metadataOptions"]["httpTokens"] == "required"
    (mapping,) = template["blockDeviceMappings"]
    assert mapping["ebs"]["encrypted"] == "true"
    (interface,) = template["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "false"
    lines = base64.b64decode(template["userData"]).decode().splitlines()
    assert "ECS_ENABLE_GPU_SUPPORT=true" in lines
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in lines


def test_serving_provider_scales_protects_and_drains(gpu_prod: Plan):
    provider = gpu_prod.one(PROVIDER, "serving-gpu").inputs["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == gpu_prod.one(ASG, "serving-gpu").outputs["arn"]
    assert provider["managedScaling"]["status"] == "ENABLED"
    assert provider["managedTerminationProtection"] == "ENABLED"
    assert provider["managedDraining"] == "ENABLED"


def test_task_definition_is_ec2_awsvpc_on_the_gpu_image(gpu_prod: Plan):
    task = gpu_prod.one(TASK, "inference-task").inputs
    assert task["requiresCompatibilities"] == ["EC2"]
    assert task["networkMode"] == "awsvpc"
    gpu_image = next(
        r for r in gpu_prod.of_type(IMAGE) if r.inputs["build"]["args"]["FLAVOUR"] == "gpu"
    )
    assert {c["image"] for c in containers(gpu_prod).values()} == {gpu_image.outputs["repoDigest"]}


def test_only_the_api_reserves_a_gpu(gpu_prod: Plan):
    found = containers(gpu_prod)
    assert found["api"]["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert "resourceRequirements" not in found["dashboard"]
    assert "resourceRequirements" not in found["forecaster"]


def test_service_places_on_the_serving_provider_spread_across_azs(gpu_prod: Plan):
    service = gpu_prod.one(SERVICE).inputs
    provider = gpu_prod.one(PROVIDER, "serving-gpu").outputs["name"]
    assert service["capacityProviderStrategies"] == [
        {"capacityProvider": provider, "base": 0, "weight": 1}
    ]
    assert service["orderedPlacementStrategies"][0] == {
        "type": "spread",
        "field": "attribute:ecs.availability-zone",
    }
    assert "platformVersion" not in service  # a Fargate-only parameter
    assert service["networkConfiguration"]["assignPublicIp"] is False
    for group in gpu_prod.of_type("aws:lb/targetGroup:TargetGroup"):
        assert group.inputs["targetType"] == "ip"  # awsvpc: each task has its own address


def test_service_autoscaling_is_the_same_as_on_fargate(gpu_prod: Plan, prod_plan: Plan):
    def scaling(plan: Plan) -> list[Any]:
        target = plan.one("aws:appautoscaling/target:Target").inputs
        policies = sorted(
            p.inputs["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"][
                "predefinedMetricType"
            ]
            for p in plan.of_type("aws:appautoscaling/policy:Policy")
        )
        return [target["minCapacity"], target["maxCapacity"], policies]

    assert scaling(gpu_prod) == scaling(prod_plan)


def test_alarms_watch_the_instances_as_well_as_the_tasks(gpu_prod: Plan):
    alarms = {a.name: a.inputs for a in gpu_prod.of_type(ALARM)}
    group = gpu_prod.one(ASG, "serving-gpu").outputs["name"]
    provider = gpu_prod.one(PROVIDER, "serving-gpu").outputs["name"]
    topic = gpu_prod.one("aws:sns/topic:Topic", "inference-alarms").outputs["arn"]
    below = alarms["inference-alarm-gpu-instances-below-min"]
    assert below["dimensions"] == {"AutoScalingGroupName": group}
    assert (below["metricName"], below["threshold"]) == ("GroupInServiceInstances", 2)
    short = alarms["inference-alarm-gpu-capacity-short"]
    assert short["namespace"] == "AWS/ECS/ManagedScaling"
    assert short["dimensions"]["CapacityProviderName"] == provider
    assert alarms["inference-alarm-gpu-status-check"]["dimensions"] == {
        "AutoScalingGroupName": group
    }
    for name in ("tasks-below-min", "cpu-high", "target-5xx"):
        assert f"inference-alarm-{name}" in alarms
    assert all(a["alarmActions"] == [topic] for n, a in alarms.items() if "gpu" in n)


def test_dashboard_shows_the_instances(gpu_prod: Plan):
    body = json.loads(gpu_prod.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    group = gpu_prod.one(ASG, "serving-gpu").outputs["name"]
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    assert ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", group] == (
        metrics[-5][:4]
    )
    assert any(m[1] == "CapacityProviderReservation" for m in metrics)


def test_a_stack_may_serve_on_gpus_and_train_on_fargate(serving_only: Plan):
    capacities = serving_only.of_type("mlops:index:GpuCapacity")
    assert [c.name for c in capacities] == ["cluster-serving-gpu"]
    flavours = sorted(r.inputs["build"]["args"]["FLAVOUR"] for r in serving_only.of_type(IMAGE))
    assert flavours == ["cpu", "cpu", "gpu", "gpu"]  # release + cache tag per flavour
    train = serving_only.one(TASK, "training-train").inputs
    assert train["requiresCompatibilities"] == ["FARGATE"]
    group = serving_only.one(ASG, "serving-gpu").inputs
    assert (group["minSize"], group["maxSize"]) == (1, 4)
    assert [
        o["instanceType"] for o in group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    ] == ["g6.xlarge"]
    assert containers(serving_only)["api"]["resourceRequirements"] == [
        {"type": "GPU", "value": "1"}
    ]


def test_fargate_serving_is_unchanged(prod_plan: Plan):
    service = prod_plan.one(SERVICE).inputs
    assert service["platformVersion"] == "LATEST"
    assert {s["capacityProvider"] for s in service["capacityProviderStrategies"]} == {
        "FARGATE",
        "FARGATE_SPOT",
    }
    assert "resourceRequirements" not in containers(prod_plan)["api"]
    assert not [r for r in prod_plan.of_type(ASG) if "serving" in r.name]
