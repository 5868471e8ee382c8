"""The inference service: its containers, capacity strategy, alarms and dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.aws_facts import FARGATE, FARGATE_SPOT
from components.documents.alerts import AlarmSpec
from components.documents.common import STORE_WAIT_SECONDS, ContainerSpec, workload_container
from components.documents.gpu import SPREAD_ACROSS_AZS, gpu_capacity_widgets
from components.documents.model_monitor import model_monitor_widgets
from components.settings.workload import SecuritySpec, ServingSpec, SidecarSpec
from mlops_contract import Env

SERVER_CONTAINER = "api"
"""The workload's server: the container the load balancer forwards to."""


def inference_containers(
    image: Any,
    *,
    serving: ServingSpec,
    sidecars: Sequence[SidecarSpec],
    security: SecuritySpec,
    store: bool = True,
    log_level: str = "INFO",
    server_gpus: int = 0,
    extra: Sequence[ContainerSpec] = (),
    server_mounts: Mapping[str, str] | None = None,
    server_depends_on: Sequence[tuple[str, str]] = (),
    server_environment: Mapping[str, str] | None = None,
) -> list[ContainerSpec]:
    """The inference task's containers: the workload's server, then its sidecars
    (`workload.serving`, `workload.sidecars`), then `extra` platform containers.

    `server_gpus` (EC2 GPU capacity only) reserves GPUs for the server, the one container that
    predicts with the model. A container health check runs only where the workload gives
    `health_command` (the load balancer checks `serving.health_path` either way): a health check
    that kills a task waiting for its first model would replace every task of a new stack in a
    loop. Only the server is essential: a sidecar that exits is restarted in place (container
    restart policy), so a crash never costs serving capacity. `store`: the workload uses the
    shared store (contract `platform`), mounted at /mnt/store with STORE_DIR set.
    """
    common = {Env.LOG_LEVEL: log_level, Env.STORE_WAIT_SECONDS: str(STORE_WAIT_SECONDS)}
    server = workload_container(
        SERVER_CONTAINER,
        image,
        serving,
        security=security,
        store=store,
        platform_environment={**common, **(server_environment or {})},
        health_by_load_balancer=serving.health_command is None,
        port=serving.port,
        internal_port=serving.internal_port,
        health_command=serving.health_command,
        health_start_period=serving.start_period_seconds,
        gpus=server_gpus,
        mounts=server_mounts or {},
        depends_on=server_depends_on,
    )
    cars = [
        workload_container(
            car.name,
            image,
            car,
            security=security,
            store=store,
            platform_environment=common,
            health_by_load_balancer=car.port is not None and car.health_command is None,
            port=car.port,
            health_command=car.health_command,
            health_start_period=serving.start_period_seconds,
            essential=False,
        )
        for car in sidecars
    ]
    return [server, *cars, *extra]


def service_placement(on_ec2: bool) -> dict[str, Any]:
    """The service's placement arguments. Fargate: the platform version (Fargate only). EC2:
    spread across AZs, then instances."""
    if on_ec2:
        return {"ordered_placement_strategies": SPREAD_ACROSS_AZS}
    return {"platform_version": "LATEST"}


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
            {"capacity_provider": FARGATE, "base": on_demand_base, "weight": on_demand_weight}
        )
    if spot_weight:
        strategy.append({"capacity_provider": FARGATE_SPOT, "base": 0, "weight": spot_weight})
    return strategy


ALARM_SCOPES = ("target_group", "service")
P99_LATENCY_SECONDS = 1.0
CPU_HIGH_PERCENT = 90
TARGET_5XX_PER_MINUTE = 5


def inference_alarms(
    min_tasks: int, container_insights: bool = True, health_path: str = "/ping"
) -> list[AlarmSpec]:
    """The service's alarms: target 5xx, unhealthy hosts, p99 latency, CPU, tasks below min.

    The 5xx, unhealthy-host and p99-latency alarms double as deployment alarms (a new revision
    that answers errors, fails its checks or answers slowly is rolled back); the load balancer's
    health check is the workload's `health_path`. The tasks-below-min alarm reads Container
    Insights' RunningTaskCount, so it exists only with Container Insights and when `min_tasks >
    0` (pass the lowest minimum any schedule sets, so a scheduled scale-to-zero does not page);
    missing data there means no task reports at all, so it breaches.
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
            description=f"an api target fails the load balancer's {health_path} check",
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
            deployment=True,
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


def service_dashboard(
    region: str,
    load_balancer: str,
    target_group: str,
    cluster_name: str,
    service_name: str,
    *,
    gpu: tuple[str, str] | None = None,
    model_monitor_stack: str | None = None,
) -> dict[str, Any]:
    """The service's whole dashboard: `inference_dashboard`, then each part below the last: the
    serving GPU instances (`gpu`: their Auto Scaling group and capacity provider names) and the
    model monitor's metrics (`model_monitor_stack`: the `Stack` dimension it reports under)."""
    body = inference_dashboard(region, load_balancer, target_group, cluster_name, service_name)
    widgets = body["widgets"]

    def bottom() -> int:
        return max(w["y"] + w["height"] for w in widgets)

    if gpu is not None:
        widgets += gpu_capacity_widgets(region, gpu[0], cluster_name, gpu[1], bottom())
    if model_monitor_stack is not None:
        widgets += model_monitor_widgets(region, model_monitor_stack, bottom())
    return body
