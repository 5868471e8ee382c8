"""Inference on GPU EC2: task placement, instance alarms and widgets, the instances' user data."""

from __future__ import annotations

import re
from typing import Any

from components.documents.alerts import AlarmSpec

SPREAD_ACROSS_AZS = [
    {"type": "spread", "field": "attribute:ecs.availability-zone"},
    {"type": "spread", "field": "instanceId"},
]
"""Task placement for the EC2 serving tasks (pulumi-aws input shape): across AZs first (a
service's default), then across the instances within each AZ: AWS's own example (ECS Developer
Guide, "Example Amazon ECS task placement strategies")."""
GPU_ALARM_SCOPES = ("auto_scaling_group", "capacity_provider")
CAPACITY_SHORT_MINUTES = 15


def gpu_capacity_alarms(min_instances: int) -> list[AlarmSpec]:
    """Alarms on the serving GPU instances, beside the service's own.

    - `gpu-capacity-short`: the capacity provider's `CapacityProviderReservation` (namespace
      `AWS/ECS/ManagedScaling`, dimensions ClusterName + CapacityProviderName) stays above 100:
      tasks wait for instances the group does not add (at `max_instances`, or no Spot or
      on-demand capacity for any listed type) (ECS Developer Guide, "Amazon ECS cluster auto
      scaling" / managed scaling metrics);
    - `gpu-status-check`: an instance of the group fails its EC2 status checks (`AWS/EC2`
      StatusCheckFailed by AutoScalingGroupName, 5-minute basic monitoring);
    - `gpu-instances-below-min` (only with a warm minimum): fewer in-service instances than
      `min_instances` for 10 minutes (`AWS/AutoScaling` GroupInServiceInstances; the group
      enables its metrics); missing data means the group reports nothing, so it breaches.

    Scope `auto_scaling_group` takes {"AutoScalingGroupName"}, `capacity_provider` takes
    {"ClusterName", "CapacityProviderName"}.
    """
    if min_instances < 0:
        raise ValueError(f"min_instances {min_instances} must not be negative")
    alarms = [
        AlarmSpec(
            role="gpu-capacity-short",
            description=(
                f"serving tasks waited over {CAPACITY_SHORT_MINUTES} min for GPU instances the "
                "group does not add (max_instances reached, or no capacity for its types)"
            ),
            namespace="AWS/ECS/ManagedScaling",
            metric_name="CapacityProviderReservation",
            scope="capacity_provider",
            statistic="Minimum",
            comparison_operator="GreaterThanThreshold",
            threshold=100,
            evaluation_periods=CAPACITY_SHORT_MINUTES,
            datapoints_to_alarm=CAPACITY_SHORT_MINUTES,
        ),
        AlarmSpec(
            role="gpu-status-check",
            description="a serving GPU instance fails its EC2 status checks",
            namespace="AWS/EC2",
            metric_name="StatusCheckFailed",
            scope="auto_scaling_group",
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            period=300,
            evaluation_periods=2,
            datapoints_to_alarm=2,
        ),
    ]
    if min_instances > 0:
        alarms.append(
            AlarmSpec(
                role="gpu-instances-below-min",
                description=f"fewer than {min_instances} serving GPU instances in service",
                namespace="AWS/AutoScaling",
                metric_name="GroupInServiceInstances",
                scope="auto_scaling_group",
                statistic="Minimum",
                comparison_operator="LessThanThreshold",
                threshold=min_instances,
                evaluation_periods=10,
                datapoints_to_alarm=10,
                treat_missing_data="breaching",
            )
        )
    return alarms


def gpu_capacity_widgets(
    region: str, group_name: str, cluster_name: str, provider_name: str, y: int
) -> list[dict[str, Any]]:
    """Dashboard widgets for the serving GPU instances, placed from row `y` down: instances in
    service / desired / pending, the capacity provider's reservation, instance CPU."""
    if not group_name or not provider_name:
        raise ValueError("the serving GPU widgets need the group and capacity provider names")
    group = ["AutoScalingGroupName", group_name]
    provider = ["ClusterName", cluster_name, "CapacityProviderName", provider_name]

    def widget(title: str, metrics: list[list[Any]], x: int, stat: str) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 8,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "view": "timeSeries",
                "stat": stat,
                "period": 60,
                "metrics": metrics,
            },
        }

    scaling = "AWS/AutoScaling"
    return [
        widget(
            "GPU instances",
            [
                [scaling, "GroupInServiceInstances", *group, {"label": "in service"}],
                [scaling, "GroupDesiredCapacity", *group, {"label": "desired"}],
                [scaling, "GroupPendingInstances", *group, {"label": "pending"}],
            ],
            0,
            "Average",
        ),
        widget(
            "GPU capacity reservation (%)",
            [["AWS/ECS/ManagedScaling", "CapacityProviderReservation", *provider]],
            8,
            "Average",
        ),
        widget("GPU instance CPU (%)", [["AWS/EC2", "CPUUtilization", *group]], 16, "Average"),
    ]


def gpu_user_data(cluster_name: str) -> str:
    """User data for GPU container instances: join the cluster with GPU support on.

    ECS agent configuration (ECS Developer Guide, "Amazon ECS container agent configuration"):
    - `ECS_ENABLE_GPU_SUPPORT`: advertise the GPUs so tasks can reserve them;
    - `ECS_ENABLE_SPOT_INSTANCE_DRAINING`: on a Spot two-minute interruption notice the agent
      sets the instance DRAINING, so ECS starts replacement tasks elsewhere and deregisters this
      one's targets (the serving group runs Spot above its on-demand base);
    - `ECS_IMAGE_PULL_BEHAVIOR=prefer-cached`: reuse the multi-GB CUDA image already on the host
      (tasks reference digests, so a cached image is the right one);
    - `ECS_AWSVPC_BLOCK_IMDS`: awsvpc tasks cannot reach the instance metadata service, so they
      never see the instance role's credentials.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", cluster_name):
        raise ValueError(f"{cluster_name!r} is not an ECS cluster name")
    settings = {
        "ECS_CLUSTER": cluster_name,
        "ECS_ENABLE_GPU_SUPPORT": "true",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING": "true",
        "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
        "ECS_AWSVPC_BLOCK_IMDS": "true",
    }
    lines = "\n".join(f"{key}={value}" for key, value in settings.items())
    return f"#!/bin/bash\ncat >> /etc/ecs/ecs.config <<'EOF'\n{lines}\nEOF\n"
