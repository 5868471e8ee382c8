"""GpuCapacity under mocks: prod's GPU container instances and their capacity provider; dev has
none."""

from __future__ import annotations

import base64
import json

import pytest

from components.gpu_capacity import (
    ECS_INSTANCE_POLICY,
    GPU_AMI_PARAMETER,
    GpuCapacity,
    GpuCapacityArgs,
)
from components.settings.pipeline import TrainingSettings
from preflight.offline import SSM_VALUES, Plan, run_program

TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
GPU_TYPES = {
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:autoscaling/group:Group",
    "aws:ecs/capacityProvider:CapacityProvider",
    "aws:iam/instanceProfile:InstanceProfile",
    "mlops:index:GpuCapacity",
}


def test_dev_has_no_gpu_resources(dev_plan: Plan):
    assert not [r for r in dev_plan.resources if r.type in GPU_TYPES]
    assert not [c for c in dev_plan.calls if c[0] == "aws:ssm/getParameter:getParameter"]
    providers = dev_plan.one(PROVIDERS, "cluster")
    assert providers.inputs["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]


def test_the_ami_is_the_ecs_gpu_ami_from_ssm(prod_plan: Plan):
    calls = [c for c in prod_plan.calls if c[0] == "aws:ssm/getParameter:getParameter"]
    assert [c[1]["name"] for c in calls] == [GPU_AMI_PARAMETER]
    assert GPU_AMI_PARAMETER == (
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    )
    template = prod_plan.one(TEMPLATE, "gpu")
    assert template.inputs["imageId"] == SSM_VALUES[GPU_AMI_PARAMETER]


def test_launch_template_requires_imdsv2_one_hop_and_no_public_ip(prod_plan: Plan):
    inputs = prod_plan.one(TEMPLATE, "gpu").inputs
    assert inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    (interface,) = inputs["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "false"
    assert "vpcSecurityGroupIds" not in inputs  # groups go on the interface when it is given


def test_root_volume_is_encrypted_gp3_big_enough_for_cuda(prod_plan: Plan):
    (mapping,) = prod_plan.one(TEMPLATE, "gpu").inputs["blockDeviceMappings"]
    assert mapping["deviceName"] == "/dev/xvda"
    ebs = mapping["ebs"]
    assert ebs["volumeType"] == "gp3" and ebs["encrypted"] == "true"
    assert ebs["volumeSize"] >= 100


def test_user_data_joins_this_cluster_with_gpu_support(prod_plan: Plan):
    cluster = prod_plan.one("aws:ecs/cluster:Cluster", "cluster")
    script = base64.b64decode(prod_plan.one(TEMPLATE, "gpu").inputs["userData"]).decode()
    lines = script.splitlines()
    assert f"ECS_CLUSTER={cluster.outputs['name']}" in lines
    assert "ECS_ENABLE_GPU_SUPPORT=true" in lines
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in lines
    assert "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached" in lines


def test_instance_profile_has_only_the_ecs_for_ec2_managed_policy(prod_plan: Plan):
    profile = prod_plan.one("aws:iam/instanceProfile:InstanceProfile", "gpu")
    role = prod_plan.one("aws:iam/role:Role", "gpu-instance-role")
    assert profile.inputs["role"] == role.outputs["name"]
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    attachments = [
        r.inputs["policyArn"]
        for r in prod_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.inputs["role"] == role.outputs["name"]
    ]
    assert attachments == [ECS_INSTANCE_POLICY]
    assert not [
        r
        for r in prod_plan.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.inputs["role"] in (role.id, role.outputs["name"])
    ]
    template = prod_plan.one(TEMPLATE, "gpu")
    assert template.inputs["iamInstanceProfile"] == {"arn": profile.outputs["arn"]}


def test_instances_send_https_only_and_reach_the_store(prod_plan: Plan):
    group = prod_plan.one(GROUP, "gpu-instance-sg")
    store_clients = prod_plan.one(GROUP, "store-client-sg")
    (interface,) = prod_plan.one(TEMPLATE, "gpu").inputs["networkInterfaces"]
    assert interface["securityGroups"] == [group.id, store_clients.id]
    egress = [
        r.inputs for r in prod_plan.of_type(EGRESS) if r.inputs["securityGroupId"] == group.id
    ]
    assert [(r["ipProtocol"], r["fromPort"], r["toPort"]) for r in egress] == [("tcp", 443, 443)]
    assert not [r for r in prod_plan.of_type(INGRESS) if r.inputs["securityGroupId"] == group.id]


def test_asg_spans_the_private_subnets_from_zero_to_max(prod_plan: Plan):
    inputs = prod_plan.one(ASG, "gpu").inputs
    network = prod_plan.one("awsx:ec2:Vpc")
    assert inputs["vpcZoneIdentifiers"] == network.outputs["privateSubnetIds"]
    assert (inputs["minSize"], inputs["maxSize"]) == (0, 2)
    assert inputs["protectFromScaleIn"] is True
    # Deletable with protected instances running: `pulumi destroy` does not wait on them.
    assert inputs["forceDelete"] is True
    assert {"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True} in inputs["tags"]


def test_every_configured_gpu_type_is_an_override(prod_plan: Plan):
    policy = prod_plan.one(ASG, "gpu").inputs["mixedInstancesPolicy"]
    overrides = [o["instanceType"] for o in policy["launchTemplate"]["overrides"]]
    assert overrides == ["g5.xlarge", "g6.xlarge", "g4dn.xlarge"]
    template = prod_plan.one(TEMPLATE, "gpu")
    spec = policy["launchTemplate"]["launchTemplateSpecification"]
    assert spec["launchTemplateId"] == template.id
    assert policy["instancesDistribution"]["onDemandPercentageAboveBaseCapacity"] == 100


def test_capacity_provider_manages_scaling_termination_and_draining(prod_plan: Plan):
    provider = prod_plan.one(PROVIDER, "gpu").inputs["autoScalingGroupProvider"]
    asg = prod_plan.one(ASG, "gpu")
    assert provider["autoScalingGroupArn"] == asg.outputs["arn"]
    assert provider["managedScaling"]["status"] == "ENABLED"
    assert provider["managedScaling"]["targetCapacity"] == 100
    assert provider["managedTerminationProtection"] == "ENABLED"
    assert provider["managedDraining"] == "ENABLED"


def test_the_provider_is_attached_to_the_cluster(prod_plan: Plan):
    provider = prod_plan.one(PROVIDER, "gpu")
    providers = prod_plan.one(PROVIDERS, "cluster")
    assert providers.inputs["capacityProviders"] == [
        "FARGATE",
        "FARGATE_SPOT",
        provider.outputs["name"],
    ]
    gpu = prod_plan.one("mlops:index:GpuCapacity", "gpu")
    assert gpu.parent == prod_plan.one("mlops:index:Cluster", "cluster").urn
    assert {r.type for r in prod_plan.children_of(gpu.urn)} >= GPU_TYPES - {gpu.type}


def test_gpu_capacity_refuses_fargate_training():
    with pytest.raises(ValueError, match="gpu-ec2"):
        GpuCapacityArgs.for_training(
            TrainingSettings(),  # fargate-spot
            cluster_name="mlops",
            vpc_id="vpc-1",
            subnet_ids=["subnet-1"],
        )


def test_gpu_capacity_refuses_a_minimum_above_the_maximum():
    def program() -> None:
        GpuCapacity(
            "gpu",
            GpuCapacityArgs(
                instance_types=["g5.xlarge"],
                min_instances=3,
                max_instances=2,
                cluster_name="mlops",
                vpc_id="vpc-1",
                subnet_ids=["subnet-1"],
            ),
        )

    with pytest.raises(ValueError, match="min_instances 3"):
        run_program(program)


def test_training_group_is_on_demand_only_and_deletable(prod_plan: Plan):
    inputs = prod_plan.one(ASG, "cluster-gpu-asg").inputs
    assert inputs["forceDelete"] is True
    assert inputs["capacityRebalance"] is False
    distribution = inputs["mixedInstancesPolicy"]["instancesDistribution"]
    assert "spotAllocationStrategy" not in distribution
