"""The inference service's scaling: Application Auto Scaling on its desired count.

Declared by InferenceService as its own children (the names are unchanged): `<name>-scaling-target`
(min..max from `inference.min`/`inference.max`), target tracking on CPU (`inference.cpu_target`)
and on ALB requests per target (`inference.requests_per_target`), and one scheduled action per
`inference.schedules` entry (UTC).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from components.settings.serving import InferenceSettings

SCALE_IN_COOLDOWN = 300
SCALE_OUT_COOLDOWN = 60


def declare_scaling(
    name: str,
    inference: InferenceSettings,
    cluster_name: pulumi.Input[str],
    service: aws.ecs.Service,
    request_label: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> None:
    """Declare the service's scalable target, its two target-tracking policies and one
    scheduled action per `inference.schedules` entry, as children named `<name>-...`.

    `request_label` is the ALBRequestCountPerTarget resource label: the ALB's and the api
    target group's ARN suffixes joined by "/" (Application Auto Scaling
    "PredefinedMetricSpecification").
    """
    target = aws.appautoscaling.Target(
        f"{name}-scaling-target",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster_name, "/", service.name),
        min_capacity=inference.min,
        max_capacity=inference.max,
        opts=opts,
    )
    scaled = {
        "resource_id": target.resource_id,
        "scalable_dimension": target.scalable_dimension,
        "service_namespace": target.service_namespace,
    }
    metrics = {
        "cpu": (inference.cpu_target, "ECSServiceAverageCPUUtilization", None),
        "requests": (
            inference.requests_per_target,
            "ALBRequestCountPerTarget",
            request_label,
        ),
    }
    for role, (target_value, metric, label) in metrics.items():
        predefined: dict[str, Any] = {"predefined_metric_type": metric}
        if label is not None:
            predefined["resource_label"] = label
        aws.appautoscaling.Policy(
            f"{name}-scale-{role}",
            policy_type="TargetTrackingScaling",
            target_tracking_scaling_policy_configuration={
                "target_value": target_value,
                "predefined_metric_specification": predefined,
                "scale_in_cooldown": SCALE_IN_COOLDOWN,
                "scale_out_cooldown": SCALE_OUT_COOLDOWN,
            },
            **scaled,
            opts=opts,
        )
    for schedule in inference.schedules:
        aws.appautoscaling.ScheduledAction(
            f"{name}-schedule-{schedule.name}",
            schedule=schedule.cron,
            timezone="UTC",
            scalable_target_action={
                "min_capacity": schedule.min,
                "max_capacity": schedule.max,
            },
            **scaled,
            opts=opts,
        )
