"""Cluster: the ECS cluster every service and task runs in.

Creates, as children of the component:

- `<name>-cluster`: an ECS cluster, with Container Insights when
  `observability.container_insights` is set (per-service CPU, memory and task count metrics,
  billed as custom metrics; the tasks-below-min alarm reads `ECS/ContainerInsights`);
- `<name>-providers`: the cluster's capacity providers, FARGATE and FARGATE_SPOT, with an
  on-demand default strategy for tasks started without one;
- `<name>-gpu` (GpuCapacity, only when `training.capacity` is gpu-ec2): GPU container instances
  for training and their EC2 capacity provider, attached with the Fargate ones;
- `<name>-serving-gpu` (GpuCapacity, only when `inference.capacity` is gpu-ec2): the inference
  service's own GPU instances (warm minimum, on-demand base, Spot above) and capacity provider.

`capacity_provider_names` resolves only once the providers are attached, so a service or task
whose strategy is built from it cannot be created before the cluster can place it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.aws_facts import FARGATE, FARGATE_PROVIDERS
from components.gpu_capacity import GpuCapacity, GpuCapacityArgs
from components.network import Network
from components.settings.pipeline import TrainingSettings
from components.settings.serving import GpuServingSettings


@dataclass
class ClusterArgs:
    network: Network
    """The VPC and subnets capacity that runs on EC2 instances lives in."""
    gpu_instance_security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    """Extra security groups for GPU container instances (the shared store's client group)."""
    container_insights: bool = False
    """`observability.container_insights`: ECS Container Insights on the cluster."""
    gpu_training: TrainingSettings | None = None
    """`mlops:training` when it runs on GPU EC2 (`Settings.training_gpu`): its instances and
    provider attach; None: none."""
    gpu_serving: GpuServingSettings | None = None
    """`inference.gpu` when the service runs on GPU EC2 (`Settings.serving_gpu`); None: none."""


class Cluster(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    capacity_provider_names: pulumi.Output[list[str]]
    gpu_capacity_provider_name: pulumi.Output[str] | None
    """The GPU provider's name once attached to the cluster; None unless training is gpu-ec2."""
    serving_capacity: GpuCapacity | None
    """The inference service's GPU capacity; None unless inference is gpu-ec2."""
    serving_capacity_provider_name: pulumi.Output[str] | None
    """Its provider's name once attached to the cluster; None unless inference is gpu-ec2."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[
                {
                    "name": "containerInsights",
                    "value": "enabled" if args.container_insights else "disabled",
                }
            ],
            opts=child,
        )

        # Every provider the cluster offers; EC2 capacity providers are appended to this list.
        providers: list[pulumi.Input[str]] = list(FARGATE_PROVIDERS)
        where = {
            "cluster_name": cluster.name,
            "vpc_id": args.network.vpc_id,
            "subnet_ids": args.network.private_subnet_ids,
            "security_group_ids": list(args.gpu_instance_security_group_ids),
        }
        gpu: GpuCapacity | None = None
        if args.gpu_training is not None:
            gpu = GpuCapacity(
                f"{name}-gpu",
                GpuCapacityArgs.for_training(args.gpu_training, **where),
                opts=child,
            )
            providers.append(gpu.capacity_provider_name)
        serving: GpuCapacity | None = None
        if args.gpu_serving is not None:
            serving = GpuCapacity(
                f"{name}-serving-gpu",
                GpuCapacityArgs.for_serving(args.gpu_serving, **where),
                opts=child,
            )
            providers.append(serving.capacity_provider_name)

        attachment = aws.ecs.ClusterCapacityProviders(
            f"{name}-providers",
            cluster_name=cluster.name,
            capacity_providers=providers,
            # Tasks started without a strategy run on demand: Spot is an explicit choice.
            default_capacity_provider_strategies=[
                {"capacity_provider": FARGATE, "base": 0, "weight": 1}
            ],
            opts=child,
        )

        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.capacity_provider_names = attachment.capacity_providers.apply(
            lambda names: list(names or [])
        )
        self.gpu_capacity_provider_name = _once_attached(gpu, attachment)
        self.serving_capacity = serving
        self.serving_capacity_provider_name = _once_attached(serving, attachment)
        self.register_outputs(
            {
                "cluster_arn": self.cluster_arn,
                "cluster_name": self.cluster_name,
                "capacity_provider_names": self.capacity_provider_names,
                "gpu_capacity_provider_name": self.gpu_capacity_provider_name,
                "serving_capacity_provider_name": self.serving_capacity_provider_name,
            }
        )


def _once_attached(
    capacity: GpuCapacity | None, attachment: aws.ecs.ClusterCapacityProviders
) -> pulumi.Output[str] | None:
    """The provider's name, resolving only once the cluster offers it (a service or task using
    it earlier would fail to place)."""
    if capacity is None:
        return None
    return pulumi.Output.all(capacity.capacity_provider_name, attachment.id).apply(lambda v: v[0])
