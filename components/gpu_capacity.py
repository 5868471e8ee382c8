"""GpuCapacity: EC2 GPU container instances behind an ECS capacity provider.

One per role: `gpu-ec2` training (scales from zero, on-demand) and `gpu-ec2` serving (a warm
minimum, an on-demand base with Spot above it). Each has its own Auto Scaling group, so a training
run never takes a serving instance and serving's minimum never idles for training.

Creates, as children of the component:

- `<name>-instance-role` (+ `<name>-instance-ecs`, `<name>-profile`): the instance profile, with
  only the AWS-managed `AmazonEC2ContainerServiceforEC2Role` (register with the cluster, pull
  from ECR, write logs); tasks use their own roles and cannot reach the instance's credentials;
- `<name>-instance-sg` (+ `<name>-https-out`): the hosts' group, HTTPS out only (ECS, ECR, S3,
  CloudWatch through the NAT gateway), nothing in;
- `<name>-lt`: a launch template on the ECS GPU-optimized Amazon Linux 2023 AMI (read from its
  public SSM parameter at deploy), IMDSv2 only with a hop limit of 1, an encrypted gp3 root
  volume sized for CUDA images, no public IP, and user data joining the cluster with GPU support
  and Spot draining;
- `<name>-asg`: an Auto Scaling group in the private subnets, `min_instances..max_instances`,
  one launch template override per instance type (on-demand in that order of preference, Spot
  price-capacity-optimized), the first `on_demand_base` instances on-demand and
  `on_demand_percent_above_base` of the rest, Capacity Rebalancing when it runs Spot, new
  instances protected from scale-in, deletable with instances running (`force_delete`, so
  `pulumi destroy` never waits on protected instances);
- `<name>-provider`: the ECS capacity provider with managed scaling, managed termination
  protection and managed draining, which the cluster attaches.

Managed scaling keeps the group at what the provider's tasks need, never below `min_instances`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import assume_role_policy
from components.documents.gpu import gpu_user_data
from components.network import allow_https_out
from components.settings.pipeline import Capacity, TrainingSettings
from components.settings.serving import GpuServingSettings

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
"""Public SSM parameter with the current ECS GPU-optimized AMI (ECS Developer Guide, "Retrieving
Amazon ECS-optimized Linux AMI metadata")."""
ECS_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
ROOT_DEVICE = "/dev/xvda"
"""The root device name of Amazon Linux 2023 AMIs."""
ROOT_VOLUME_GIB = 100
"""CUDA images are several GB compressed and the AMI's default 30 GiB fills after a few pulls."""
INSTANCE_WARMUP_SECONDS = 300
"""A GPU instance takes minutes to boot, load the driver and register with the cluster."""
GROUP_METRICS = (
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
)
"""Auto Scaling group metrics published to CloudWatch (`AWS/AutoScaling`, at no charge)."""


@dataclass
class GpuCapacityArgs:
    instance_types: Sequence[str]
    """x86_64 NVIDIA GPU instance types (settings.GPU_INSTANCES), in order of preference."""
    max_instances: int
    """The group's maximum."""
    cluster_name: pulumi.Input[str]
    """The ECS cluster the instances join (`ECS_CLUSTER` in the user data)."""
    vpc_id: pulumi.Input[str]
    """The VPC of the instances' security group."""
    subnet_ids: pulumi.Input[list[str]]
    """Private subnets with NAT egress: the instances get no public IP."""
    min_instances: int = 0
    """The warm minimum: 0 scales to nothing while no task needs an instance."""
    on_demand_base: int = 0
    """The first instances the group launches on-demand."""
    on_demand_percent_above_base: int = 100
    """Share of the instances above the base that are on-demand; the rest are Spot."""
    security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    """Extra groups for the instances, e.g. the shared store's client group: the EFS mount of a
    task on EC2 is set up from the container instance, which then needs NFS to the mount targets
    (AWS re:Post knowledge center, "Mount Amazon EFS on an ECS container or task on EC2")."""

    @classmethod
    def for_training(cls, settings: TrainingSettings, **where: Any) -> GpuCapacityArgs:
        """`gpu-ec2` training: on-demand only, from zero (a run is hours and cannot resume)."""
        if settings.capacity is not Capacity.GPU_EC2:
            raise ValueError(
                f"mlops:training.capacity is {settings.capacity.value}; GPU instances exist only "
                "for gpu-ec2"
            )
        return cls(
            instance_types=settings.gpu_instance_types,
            max_instances=settings.max_instances,
            **where,
        )

    @classmethod
    def for_serving(cls, settings: GpuServingSettings, **where: Any) -> GpuCapacityArgs:
        """`gpu-ec2` serving: a warm minimum, an on-demand base, Spot above it."""
        return cls(
            instance_types=settings.instance_types,
            max_instances=settings.max_instances,
            min_instances=settings.min_instances,
            on_demand_base=settings.on_demand_base,
            on_demand_percent_above_base=settings.on_demand_percent_above_base,
            **where,
        )

    @property
    def uses_spot(self) -> bool:
        return self.on_demand_percent_above_base < 100 and self.max_instances > self.on_demand_base


class GpuCapacity(pulumi.ComponentResource):
    capacity_provider_name: pulumi.Output[str]
    auto_scaling_group_arn: pulumi.Output[str]
    auto_scaling_group_name: pulumi.Output[str]
    instance_role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: GpuCapacityArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:GpuCapacity", name, None, opts)
        if not args.instance_types:
            raise ValueError(f"GpuCapacity {name}: list at least one GPU instance type")
        if not 0 <= args.min_instances <= args.max_instances:
            raise ValueError(
                f"GpuCapacity {name}: min_instances {args.min_instances} must be within "
                f"0..max_instances ({args.max_instances})"
            )
        child = pulumi.ResourceOptions(parent=self)

        ami = aws.ssm.get_parameter_output(
            name=GPU_AMI_PARAMETER, opts=pulumi.InvokeOutputOptions(parent=self)
        )

        role = aws.iam.Role(
            f"{name}-instance-role",
            assume_role_policy=json.dumps(assume_role_policy("ec2.amazonaws.com")),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-instance-ecs", role=role.name, policy_arn=ECS_INSTANCE_POLICY, opts=child
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)

        group = aws.ec2.SecurityGroup(
            f"{name}-instance-sg",
            vpc_id=args.vpc_id,
            description="GPU container instances: HTTPS out to AWS APIs only",
            opts=child,
        )
        allow_https_out(
            f"{name}-https-out",
            group,
            "ECS, ECR, S3 and CloudWatch endpoints through the NAT gateway",
            child,
        )

        user_data = pulumi.Output.from_input(args.cluster_name).apply(
            lambda cluster: base64.b64encode(gpu_user_data(cluster).encode()).decode()
        )
        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=ami.value,
            iam_instance_profile={"arn": profile.arn},
            # IMDSv2 only; hop limit 1 keeps the token (and the instance role) away from anything
            # one network hop further, such as containers on a bridge network.
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "volume_size": ROOT_VOLUME_GIB,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            network_interfaces=[
                {
                    "device_index": 0,
                    "associate_public_ip_address": "false",
                    "delete_on_termination": "true",
                    "security_groups": [group.id, *args.security_group_ids],
                }
            ],
            user_data=user_data,
            update_default_version=True,
            opts=child,
        )

        distribution: dict[str, Any] = {
            "on_demand_base_capacity": args.on_demand_base,
            "on_demand_percentage_above_base_capacity": args.on_demand_percent_above_base,
            "on_demand_allocation_strategy": "prioritized",
        }
        if args.uses_spot:
            # AWS's recommended Spot strategy: the pools least likely to be interrupted, at the
            # lowest price among them (EC2 Auto Scaling User Guide, "Allocation strategies").
            distribution["spot_allocation_strategy"] = "price-capacity-optimized"
        asg = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=args.min_instances,
            max_size=args.max_instances,
            vpc_zone_identifiers=args.subnet_ids,
            # Managed termination protection needs scale-in protection on the group and on every
            # instance (ECS API reference, "AutoScalingGroupProvider").
            protect_from_scale_in=True,
            # Deleting the group terminates its instances without waiting for them to drain:
            # scale-in protection would otherwise keep `pulumi destroy` waiting for instances
            # nothing ever terminates (pulumi-aws autoscaling.Group `force_delete`).
            force_delete=True,
            # A Spot instance with a rebalance recommendation is replaced before it is
            # interrupted; the old one drains through managed draining (EC2 Auto Scaling User
            # Guide, "Use Capacity Rebalancing to handle Amazon EC2 Spot Interruptions").
            capacity_rebalance=args.uses_spot,
            # Group metrics (1-minute, free) feed the serving alarms and dashboard.
            enabled_metrics=list(GROUP_METRICS),
            metrics_granularity="1Minute",
            mixed_instances_policy={
                "launch_template": {
                    "launch_template_specification": {
                        "launch_template_id": template.id,
                        "version": template.latest_version.apply(str),
                    },
                    "overrides": [
                        {"instance_type": instance_type} for instance_type in args.instance_types
                    ],
                },
                "instances_distribution": distribution,
            },
            # ECS adds this tag when the capacity provider is created; declaring it keeps Pulumi
            # from removing it and propagates it to instances (pulumi-aws ecs.CapacityProvider).
            tags=[{"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True}],
            opts=child,
        )

        provider = aws.ecs.CapacityProvider(
            f"{name}-provider",
            auto_scaling_group_provider={
                "auto_scaling_group_arn": asg.arn,
                "managed_termination_protection": "ENABLED",
                "managed_draining": "ENABLED",
                "managed_scaling": {
                    "status": "ENABLED",
                    "target_capacity": 100,
                    "minimum_scaling_step_size": 1,
                    "maximum_scaling_step_size": args.max_instances,
                    "instance_warmup_period": INSTANCE_WARMUP_SECONDS,
                },
            },
            opts=child,
        )

        self.capacity_provider_name = provider.name
        self.auto_scaling_group_arn = asg.arn
        self.auto_scaling_group_name = asg.name
        self.instance_role_arn = role.arn
        self.register_outputs(
            {
                "capacity_provider_name": self.capacity_provider_name,
                "auto_scaling_group_arn": self.auto_scaling_group_arn,
                "auto_scaling_group_name": self.auto_scaling_group_name,
                "instance_role_arn": self.instance_role_arn,
            }
        )
