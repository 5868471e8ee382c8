"""The inference service: its containers, capacity strategy, alarms and dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.documents.alerts import AlarmSpec
from components.documents.common import STORE_WAIT_SECONDS, ContainerSpec, container_definition

API_CONTAINER = "api"
DASHBOARD_CONTAINER = "dashboard"
FORECASTER_CONTAINER = "forecaster"
API_PORT = 8080
API_INTERNAL_PORT = 8081
"""The api's `/metrics` and `/model` (the app's INTERNAL_PORT): reachable from the VPC's CIDR,
never through the load balancer, whose target group forwards API_PORT only."""
DASHBOARD_PORT = 8050
API_HEALTH_PATH = "/health"
"""200 while the process serves, model or not: the container health check and the load
balancer's. A task waiting for its first model stays in rotation and answers `/predict` with 503
and Retry-After; checking `/ready` instead would have ECS replace every task of a new stack (no
model can exist before the first training run) and fail its very first deployment."""
DASHBOARD_PATH = "/dashboard/"
INFERENCE_START_PERIOD = 120
"""Container health-check grace: the store wait plus imports and the model load, which run before
the server listens (`app/serve.py`); also the service's load-balancer grace period."""


def inference_containers(
    image: str,
    log_groups: Mapping[str, str],
    region: str,
    *,
    dashboard: bool,
    forecast_interval_seconds: int,
    log_level: str = "INFO",
    api_gpus: int = 0,
) -> list[dict[str, Any]]:
    """The inference task's container definitions: api, optional dashboard, forecaster.

    `api_gpus` (EC2 GPU capacity only) reserves GPUs for the api, the one container that predicts
    with the model; the dashboard and the forecaster (which calls the api) need none.

    `log_groups` maps each container name to its CloudWatch log group. The api's container health
    check probes `/health` (liveness), not `/ready`: with `/ready`, every task of a stack whose
    first model is not promoted yet, or whose promoted model fails to load, would be killed and
    replaced in a loop although it is healthy and keeps serving the last good model (see
    `API_HEALTH_PATH`). Only the api is essential: the dashboard and
    the forecaster are restarted in place when they exit (container restart policy), so a crash
    in either never costs serving capacity.
    """
    if forecast_interval_seconds < 1:
        raise ValueError(f"forecast interval {forecast_interval_seconds} must be at least 1 s")
    names = [API_CONTAINER, *([DASHBOARD_CONTAINER] if dashboard else []), FORECASTER_CONTAINER]
    missing = [n for n in names if not log_groups.get(n)]
    if missing:
        raise ValueError(f"no log group for container(s) {', '.join(missing)}")
    common = {"LOG_LEVEL": log_level, "STORE_WAIT_SECONDS": str(STORE_WAIT_SECONDS)}
    specs = [
        ContainerSpec(
            name=API_CONTAINER,
            image=image,
            command=["serve"],
            log_group=log_groups[API_CONTAINER],
            region=region,
            port=API_PORT,
            internal_port=API_INTERNAL_PORT,
            health_path=API_HEALTH_PATH,
            health_start_period=INFERENCE_START_PERIOD,
            environment={
                **common,
                "PORT": str(API_PORT),
                "INTERNAL_PORT": str(API_INTERNAL_PORT),
            },
            gpus=api_gpus,
        )
    ]
    if dashboard:
        specs.append(
            ContainerSpec(
                name=DASHBOARD_CONTAINER,
                image=image,
                command=["dashboard"],
                log_group=log_groups[DASHBOARD_CONTAINER],
                region=region,
                port=DASHBOARD_PORT,
                health_path=DASHBOARD_PATH,
                health_start_period=INFERENCE_START_PERIOD,
                environment={**common, "DASHBOARD_PORT": str(DASHBOARD_PORT)},
                essential=False,
            )
        )
    specs.append(
        ContainerSpec(
            name=FORECASTER_CONTAINER,
            image=image,
            command=["forecast"],
            log_group=log_groups[FORECASTER_CONTAINER],
            region=region,
            environment={**common, "FORECAST_INTERVAL_SECONDS": str(forecast_interval_seconds)},
            essential=False,
        )
    )
    return [container_definition(spec) for spec in specs]


def capacity_provider_strategy(
    on_demand_base: int, on_demand_weight: int, spot_weight: int
) -> list[dict[str, Any]]:
    """The service's capacity provider strategy (pulumi-aws input shape).

    FARGATE carries the base (tasks that always run on demand); a provider with weight 0 and no
    base would never get a task, so it is left out. ECS allows a base on one provider only and
    needs a positive weight somewhere.
    """
    if min(on_demand_base, on_demand_weight, spot_weight) < 0:
        raise ValueError("capacity base and weights must not be negative")
    if on_demand_weight == 0 and spot_weight == 0:
        raise ValueError("on_demand_weight and spot_weight cannot both be 0")
    strategy: list[dict[str, Any]] = []
    if on_demand_base or on_demand_weight:
        strategy.append(
            {"capacity_provider": "FARGATE", "base": on_demand_base, "weight": on_demand_weight}
        )
    if spot_weight:
        strategy.append({"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": spot_weight})
    return strategy


ALARM_SCOPES = ("target_group", "service")
P99_LATENCY_SECONDS = 1.0
CPU_HIGH_PERCENT = 90
TARGET_5XX_PER_MINUTE = 5


def inference_alarms(min_tasks: int, container_insights: bool = True) -> list[AlarmSpec]:
    """The service's alarms: target 5xx, unhealthy hosts, p99 latency, CPU, tasks below min.

    The 5xx and unhealthy-host alarms double as deployment alarms; the load balancer's health
    check is `API_HEALTH_PATH`, so a task waiting for its first model is a healthy host and a new
    stack's first deployment can succeed. The tasks-below-min alarm reads Container Insights'
    RunningTaskCount, so it exists only with Container Insights and when `min_tasks > 0` (pass
    the lowest minimum any schedule sets, so a scheduled scale-to-zero does not page); missing
    data there means no task reports at all, so it breaches.
    """
    if min_tasks < 0:
        raise ValueError(f"min_tasks {min_tasks} must not be negative")
    alarms = [
        AlarmSpec(
            role="target-5xx",
            description=f"api targets answered over {TARGET_5XX_PER_MINUTE} 5xx a minute",
            namespace="AWS/ApplicationELB",
            metric_name="HTTPCode_Target_5XX_Count",
            scope="target_group",
            statistic="Sum",
            comparison_operator="GreaterThanThreshold",
            threshold=TARGET_5XX_PER_MINUTE,
            deployment=True,
        ),
        AlarmSpec(
            role="unhealthy-hosts",
            description=f"an api target fails the load balancer's {API_HEALTH_PATH} check",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            scope="target_group",
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            deployment=True,
        ),
        AlarmSpec(
            role="p99-latency",
            description=f"p99 target response time above {P99_LATENCY_SECONDS:g} s",
            namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime",
            scope="target_group",
            extended_statistic="p99",
            comparison_operator="GreaterThanThreshold",
            threshold=P99_LATENCY_SECONDS,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        ),
        AlarmSpec(
            role="cpu-high",
            description=f"service CPU above {CPU_HIGH_PERCENT}%: scaling is not keeping up",
            namespace="AWS/ECS",
            metric_name="CPUUtilization",
            scope="service",
            statistic="Average",
            comparison_operator="GreaterThanThreshold",
            threshold=CPU_HIGH_PERCENT,
            evaluation_periods=5,
            datapoints_to_alarm=5,
        ),
    ]
    if min_tasks > 0 and container_insights:
        alarms.append(
            AlarmSpec(
                role="tasks-below-min",
                description=f"fewer than {min_tasks} running tasks",
                namespace="ECS/ContainerInsights",
                metric_name="RunningTaskCount",
                scope="service",
                statistic="Minimum",
                comparison_operator="LessThanThreshold",
                threshold=min_tasks,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                treat_missing_data="breaching",
            )
        )
    return alarms


def inference_dashboard(
    region: str,
    load_balancer: str,
    target_group: str,
    cluster_name: str,
    service_name: str,
) -> dict[str, Any]:
    """CloudWatch dashboard body: requests, latency p50/p99, 5xx, CPU/memory, task count."""
    if not load_balancer.startswith("app/") or not target_group.startswith("targetgroup/"):
        raise ValueError("load_balancer and target_group must be ALB and target group ARN suffixes")
    alb = ["LoadBalancer", load_balancer, "TargetGroup", target_group]
    svc = ["ClusterName", cluster_name, "ServiceName", service_name]

    def widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
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

    elb = "AWS/ApplicationELB"
    return {
        "widgets": [
            widget("Requests", [[elb, "RequestCount", *alb]], 0, 0, "Sum"),
            widget(
                "Latency p50 / p99 (s)",
                [
                    [elb, "TargetResponseTime", *alb, {"stat": "p50", "label": "p50"}],
                    [elb, "TargetResponseTime", *alb, {"stat": "p99", "label": "p99"}],
                ],
                12,
                0,
                "p99",
            ),
            widget(
                "5xx",
                [
                    [elb, "HTTPCode_Target_5XX_Count", *alb, {"label": "targets"}],
                    [elb, "HTTPCode_ELB_5XX_Count", *alb[:2], {"label": "ALB"}],
                ],
                0,
                6,
                "Sum",
            ),
            widget(
                "CPU / memory (%)",
                [
                    ["AWS/ECS", "CPUUtilization", *svc, {"label": "CPU"}],
                    ["AWS/ECS", "MemoryUtilization", *svc, {"label": "memory"}],
                ],
                12,
                6,
                "Average",
            ),
            widget(
                "Tasks",
                [
                    ["ECS/ContainerInsights", "RunningTaskCount", *svc, {"label": "running"}],
                    ["ECS/ContainerInsights", "DesiredTaskCount", *svc, {"label": "desired"}],
                    [elb, "HealthyHostCount", *alb, {"label": "healthy targets"}],
                ],
                0,
                12,
                "Average",
            ),
        ]
    }
