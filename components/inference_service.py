"""InferenceService: the model served on ECS behind the stack's load balancer.

On Fargate (`inference.capacity: fargate`, the default: on-demand base plus Fargate Spot), or on
its own GPU EC2 capacity provider (`gpu-ec2`, the cluster's `serving_capacity`): the gpu image,
an EC2-only task definition whose api reserves `inference.gpu.gpus` GPUs, tasks spread across AZs
and instances, and alarms and dashboard widgets on the instances too.

It is given the edge (`LoadBalancer`: security groups, ALB, target groups, listeners, certificate,
WAF) and the alarm topic (`AlarmTopic`), and creates, as children of the component:

- through the task block (components/task_block.py): `<name>-logs-<container>`, a log group per
  container; `<name>-execution-role` and `<name>-task-role` (+ their policies); `<name>-task`,
  the task definition (the workload's server `api`, its sidecars, and with the `sagemaker`
  contract the platform's `stage-serving`);
- `<name>-service`, its tasks registered in the load balancer's target groups; with gpu-ec2 the
  network mode stays awsvpc, so the target groups keep target type `ip` and the task keeps its
  own security group (see `_task` for the ENI arithmetic);
- the `<name>-alarm-<role>` alarms on the alarm topic (with gpu-ec2 also `gpu-capacity-short`,
  `gpu-status-check` and `gpu-instances-below-min` on the instances); the deployment alarms
  (and `-alt`, the same on the alternate target group with traffic shifting) roll a deployment
  back in every stack;
- the rollout's parts (components/service_rollout.py): with `inference.rollout` blue-green,
  canary or linear the role ECS shifts traffic with; with `workload.serving.samples` the
  sample-check hook; with the `sagemaker` contract the deploy function the pipeline calls;
- scaling (components/inference_scaling.py): `<name>-scaling-target`, CPU and request-count
  target tracking, one scheduled action per `inference.schedules` entry; and with
  `observability.cloudwatch_dashboard` the `<name>-dashboard-view` CloudWatch dashboard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alarm_topic import AlarmTopic
from components.cluster import Cluster
from components.documents.alerts import AlarmSpec
from components.documents.capture import CAPTURE_CONTAINER, CAPTURE_VOLUME, capture_proxy_spec
from components.documents.gpu import gpu_capacity_alarms
from components.documents.inference import (
    SERVER_CONTAINER,
    capacity_provider_strategy,
    inference_alarms,
    inference_containers,
    service_dashboard,
    service_placement,
)
from components.documents.rollout import deployment_configuration
from components.documents.staging import SERVING_VOLUMES, STAGE_SERVING, stage_serving_spec
from components.inference_scaling import declare_scaling
from components.load_balancer import LoadBalancer
from components.network import Network
from components.service_rollout import RolloutArgs, declare_rollout
from components.settings.capture import CaptureSettings
from components.settings.decisions import Placement
from components.settings.serving import InferenceSettings
from components.settings.workload import SecuritySpec, ServingSpec, SidecarSpec
from components.shared_store import SharedStore
from components.task_block import TaskBlock, TaskBlockArgs, TaskSpec
from mlops_contract import sagemaker_environment


@dataclass
class InferenceServiceArgs:
    stack: str
    region: str
    inference: InferenceSettings
    """`mlops:inference`: sizes, capacity strategy, scaling, containers."""
    placement: Placement
    """Where the service runs (the wiring's decision): Fargate, or the cluster's serving GPU
    capacity reserving `inference.gpu.gpus` per task."""
    network: Network
    """Task subnets and public-IP mode for the tasks."""
    cluster: Cluster
    """The ECS cluster and its capacity providers."""
    store: SharedStore
    """The EFS store every container mounts at /mnt/store."""
    load_balancer: LoadBalancer
    """The edge: target groups to register in, the tasks' security group, listeners to await."""
    alarm_topic: AlarmTopic
    """Where the alarms notify."""
    image_ref: pulumi.Input[str]
    """The image by digest (`repo@sha256:...`): the cpu flavour on Fargate, the gpu flavour (CUDA
    XGBoost) with `inference.capacity: gpu-ec2`."""
    repository_arns: Sequence[pulumi.Input[str]]
    """The ECR repositories the images are pulled from (the execution role may pull only
    there); none for an image in another registry."""
    log_retention_days: int
    """`observability.log_retention_days`."""
    container_insights: bool = False
    """`observability.container_insights`: the tasks-below-min alarm reads its metrics."""
    cloudwatch_dashboard: bool = False
    """`observability.cloudwatch_dashboard`: a CloudWatch dashboard of the service."""
    serving: ServingSpec = field(default_factory=ServingSpec)
    """`workload.serving`: the server's command, ports, health and environment."""
    sidecars: Sequence[SidecarSpec] = ()
    """The workload's sidecars deployed (`Settings.sidecars`)."""
    security: SecuritySpec = field(default_factory=SecuritySpec)
    """`workload.security`: the containers' user and root file system."""
    store_mounted: bool = True
    """The workload uses the shared store itself (contract `platform`)."""
    staged: bool = False
    """The `sagemaker` contract: the platform image's `stage-serving` container stages the
    promoted model into /opt/ml/model before the server starts (documents/staging.py)."""
    platform_image: pulumi.Input[str] | None = None
    """The platform image by digest (with `staged` or `capture`)."""
    capture: CaptureSettings | None = None
    """`inference.capture` when on: the platform's proxy in front of the server records a share
    of its requests to `capture/` (documents/capture.py)."""
    model_monitor: bool = False
    """The platform's model monitor runs: the dashboard shows its metrics."""


class InferenceService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    log_group_names: pulumi.Output[dict[str, str]]
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    task_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:InferenceService", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        inference = args.inference
        edge = args.load_balancer
        if args.placement.on_ec2 and args.cluster.serving_capacity is None:
            raise ValueError(f"InferenceService {name}: gpu-ec2 needs the cluster's serving GPUs")
        if (args.staged or args.capture) and args.platform_image is None:
            raise ValueError(f"InferenceService {name}: staging or capture needs the platform")
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id

        block = TaskBlock(
            name,
            TaskBlockArgs(
                region=args.region,
                account=self._account,
                store=args.store,
                repository_arns=args.repository_arns,
                log_retention_days=args.log_retention_days,
                tasks=[self._task(args)],
                execution_description=(
                    "Pulls the image and writes container logs for the inference tasks"
                ),
                task_description=(
                    "What the inference containers may do: mount and write the shared store"
                ),
                log_group_per_container=True,
                # A staged server's task only reads the store (stage-serving); the workload's
                # own containers (contract `platform`) write there.
                store_write=args.store_mounted,
            ),
            self._child,
        )
        log_groups = block.log_groups
        task_definition = block.task_definitions["task"]
        if args.capture is not None:  # the proxy writes capture/, nothing else of the store
            args.store.allow_capture(f"{name}-task-capture", block.task_role, self._child)

        topic_arn = args.alarm_topic.topic_arn
        alarm_specs = inference_alarms(
            min([inference.min, *(schedule.min for schedule in inference.schedules)]),
            container_insights=args.container_insights,
            health_path=args.serving.health_path,
        )
        api_targets = edge.target_groups[SERVER_CONTAINER]
        target_group_dims = {
            "LoadBalancer": edge.arn_suffix,
            "TargetGroup": api_targets.arn_suffix,
        }
        alternates = edge.traffic.alternate_target_groups if edge.traffic else {}
        deployment_alarms = [
            self._alarm(spec, target_group_dims, topic_arn)
            for spec in alarm_specs
            if spec.deployment
        ]
        if alternates:
            # The new revision starts behind the alternate group; the groups trade places on
            # every deployment, so both are watched.
            alternate_dims = {
                "LoadBalancer": edge.arn_suffix,
                "TargetGroup": alternates[SERVER_CONTAINER].arn_suffix,
            }
            deployment_alarms += [
                self._alarm(spec, alternate_dims, topic_arn, suffix="-alt")
                for spec in alarm_specs
                if spec.deployment
            ]

        # A staged (`sagemaker`) service is named up front: the pipeline that rolls it is
        # declared before the image its tasks run is built, so it cannot wait for the service.
        fixed = f"{pulumi.get_project()}-{args.stack}-{name}" if args.staged else None
        family = f"{pulumi.get_project()}-{args.stack}-{name}"
        rollout = inference.rollout
        parts = declare_rollout(
            name,
            RolloutArgs(
                stack=args.stack,
                region=args.region,
                account=self._account,
                rollout=rollout,
                samples=args.serving.samples,
                base_url=edge.url,
                traffic=edge.traffic,
                target_group_arns=[
                    group.arn for group in [*edge.target_groups.values(), *alternates.values()]
                ],
                log_retention_days=args.log_retention_days,
                deploy=(
                    {
                        "cluster_name": args.cluster.cluster_name,
                        "service_name": fixed,
                        "family": family,
                        "role_arns": [block.execution_role.arn, block.task_role.arn],
                    }
                    if fixed
                    else None
                ),
            ),
            self._child,
        )
        deployment = deployment_configuration(
            rollout,
            alarm_names=[alarm.name for alarm in deployment_alarms],
            hook=parts.lifecycle_hook,
        )

        def balanced(container: str, port: int) -> dict[str, Any]:
            # With capture the server's target group forwards to the proxy in front of it.
            front = args.capture is not None and container == SERVER_CONTAINER
            receiver = CAPTURE_CONTAINER if front else container
            entry: dict[str, Any] = {
                "target_group_arn": edge.target_groups[container].arn,
                "container_name": receiver,
                "container_port": port,
            }
            if edge.traffic is not None:
                entry["advanced_configuration"] = {
                    "alternate_target_group_arn": alternates[container].arn,
                    "production_listener_rule": edge.traffic.production_rules[container].arn,
                    "test_listener_rule": edge.traffic.test_rules[container].arn,
                    "role_arn": parts.load_balancer_role_arn,
                }
            return entry

        service = aws.ecs.Service(
            f"{name}-service",
            **({"name": fixed} if fixed else {}),
            cluster=args.cluster.cluster_arn,
            task_definition=task_definition.arn,
            desired_count=inference.desired,
            capacity_provider_strategies=_service_strategy(args),
            **service_placement(args.placement.on_ec2),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            # The strategy (inference.rollout), its hook, the circuit breaker and the deployment
            # alarms: a failed check or an alarm rolls back, in every stack
            # (documents/rollout.py).
            **deployment,
            # Covers the container start period (store wait + model load) before the ALB's
            # failing health checks count against a new task.
            health_check_grace_period_seconds=args.serving.start_period_seconds,
            availability_zone_rebalancing="ENABLED",
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            load_balancers=[balanced(container, port) for container, port in edge.ports.items()],
            network_configuration={
                "subnets": args.network.task_subnet_ids,
                # EC2 tasks cannot have one (settings require NAT egress with gpu-ec2).
                "assign_public_ip": args.network.assign_public_ip and not args.placement.on_ec2,
                "security_groups": [
                    edge.task_security_group_id,
                    args.store.client_security_group_id,
                ],
            },
            # pulumi-aws: updating the capacity provider strategy requires a forced deployment.
            force_new_deployment=True,
            # Not waiting for steady state keeps `pulumi up` (and CI) short: a rolling deploy
            # takes minutes, and the circuit breaker and deployment alarms judge it.
            wait_for_steady_state=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Tasks mount EFS at start (a mount target must exist in their subnet) and the
                # target groups must be attached to the ALB (listeners and rule) before ECS
                # registers targets.
                depends_on=[*args.store.mount_targets, *edge.listeners],
                # Autoscaling owns the desired count after creation.
                ignore_changes=["desired_count"],
            ),
        )
        service_dims = {"ClusterName": args.cluster.cluster_name, "ServiceName": service.name}
        for spec in alarm_specs:
            if not spec.deployment:
                dims = target_group_dims if spec.scope == "target_group" else service_dims
                self._alarm(spec, dims, topic_arn)

        if args.placement.on_ec2:
            self._gpu_alarms(args, topic_arn)
        declare_scaling(
            name,
            inference,
            args.cluster.cluster_name,
            service,
            pulumi.Output.concat(edge.arn_suffix, "/", api_targets.arn_suffix),
            self._child,
        )
        if args.cloudwatch_dashboard:
            self._dashboard(args, service, edge.arn_suffix, api_targets)

        self.url = edge.url
        self.service_name = service.name
        self.rolled_service_name = fixed or ""
        """The staged service's name, known before it exists ("" otherwise)."""
        self.rollout_function_arn = parts.deploy_function_arn
        """The function the pipeline rolls a promoted model out with (staged only)."""
        # ECS service ARN format: arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE.
        self.service_arn = pulumi.Output.concat(
            "arn:aws:ecs:",
            args.region,
            ":",
            self._account,
            ":service/",
            args.cluster.cluster_name,
            "/",
            fixed or service.name,
        )
        self.log_group_names = pulumi.Output.all(
            **{container: group.name for container, group in log_groups.items()}
        )
        self.task_role_arn = block.task_role.arn
        self.execution_role_arn = block.execution_role.arn
        self.task_security_group_id = edge.task_security_group_id
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "log_group_names": self.log_group_names,
                "task_role_arn": self.task_role_arn,
                "execution_role_arn": self.execution_role_arn,
                "task_security_group_id": self.task_security_group_id,
            }
        )

    # ------------------------------------------------------------------------------ pieces

    def _task(self, args: InferenceServiceArgs) -> TaskSpec:
        """The service's task: the workload's server and sidecars (and with the `sagemaker`
        contract the platform's stage-serving before the server), sized by `inference`.

        awsvpc on EC2 too. An instance holds ENIs - 1 such tasks (ENI trunking is an account
        setting we do not own); settings/serving.py refuses instance types and counts that cannot
        place `inference.max` tasks. With one GPU per task on the default xlarge types, the GPU
        binds first (1 task per instance; g4dn.xlarge has 3 ENIs, g5/g6.xlarge 4), so bridge
        mode and its dynamic host ports would buy nothing."""
        inference = args.inference
        placement = args.placement
        staged = args.staged
        extra = [stage_serving_spec(args.platform_image, args.security)] if staged else []
        volumes: list[str | dict[str, Any]] = list(SERVING_VOLUMES) if staged else []
        if args.capture is not None:
            extra.append(capture_proxy_spec(args.platform_image, args.capture, args.serving.port))
            volumes.append(args.store.capture_volume(CAPTURE_VOLUME))
        containers = inference_containers(
            args.image_ref,
            serving=args.serving,
            sidecars=args.sidecars,
            security=args.security,
            store=args.store_mounted,
            server_gpus=placement.gpus,
            extra=extra,
            server_mounts=SERVING_VOLUMES if staged else None,
            server_depends_on=[(STAGE_SERVING, "SUCCESS")] if staged else (),
            server_environment=sagemaker_environment() if staged else None,
        )
        return TaskSpec(
            suffix="task",
            # One family per project, stack and service.
            family=f"{pulumi.get_project()}-{args.stack}-{self._name}",
            cpu=inference.cpu,
            memory=inference.memory,
            placement=placement,
            containers=containers,
            volumes=volumes,
        )

    def _alarm(
        self,
        spec: AlarmSpec,
        dimensions: dict[str, Any],
        topic_arn: pulumi.Input[str],
        suffix: str = "",
    ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-alarm-{spec.role}{suffix}",
            dimensions=dimensions,
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            **spec.args(),
            opts=self._child,
        )

    def _gpu_alarms(self, args: InferenceServiceArgs, topic_arn: pulumi.Input[str]) -> None:
        capacity = args.cluster.serving_capacity
        assert capacity is not None and args.cluster.serving_capacity_provider_name is not None
        dimensions = {
            "auto_scaling_group": {"AutoScalingGroupName": capacity.auto_scaling_group_name},
            "capacity_provider": {
                "ClusterName": args.cluster.cluster_name,
                "CapacityProviderName": args.cluster.serving_capacity_provider_name,
            },
        }
        for spec in gpu_capacity_alarms(args.inference.gpu.min_instances):
            self._alarm(spec, dimensions[spec.scope], topic_arn)

    def _dashboard(
        self,
        args: InferenceServiceArgs,
        service: aws.ecs.Service,
        alb_arn_suffix: pulumi.Output[str],
        api_targets: aws.lb.TargetGroup,
    ) -> None:
        capacity = args.cluster.serving_capacity
        gpu_names = (
            [capacity.auto_scaling_group_name, args.cluster.serving_capacity_provider_name]
            if capacity is not None
            else []
        )

        def body_of(values: list[Any]) -> str:
            return json.dumps(
                service_dashboard(
                    args.region,
                    *values[:4],
                    gpu=(values[4], values[5]) if gpu_names else None,
                    model_monitor_stack=args.stack if args.model_monitor else None,
                )
            )

        body = pulumi.Output.all(
            alb_arn_suffix,
            api_targets.arn_suffix,
            args.cluster.cluster_name,
            service.name,
            *gpu_names,
        ).apply(body_of)
        aws.cloudwatch.Dashboard(
            f"{self._name}-dashboard-view",
            # `dashboard_name` is required.
            dashboard_name=f"{pulumi.get_project()}-{args.stack}-{self._name}",
            dashboard_body=body,
            opts=self._child,
        )


def _service_strategy(
    args: InferenceServiceArgs,
) -> pulumi.Output[list[aws.ecs.ServiceCapacityProviderStrategyArgs]]:
    """Fargate's on-demand/Spot strategy, or with gpu-ec2 the serving GPU provider alone: a
    strategy cannot mix Fargate and Auto Scaling group providers, and the on-demand/Spot split
    of the GPU instances is the group's own (`inference.gpu.on_demand_base`)."""
    cluster = args.cluster
    if args.placement.on_ec2:
        assert cluster.serving_capacity_provider_name is not None  # checked at construction
        return cluster.serving_capacity_provider_name.apply(
            lambda name: [
                aws.ecs.ServiceCapacityProviderStrategyArgs(
                    capacity_provider=name, base=0, weight=1
                )
            ]
        )
    return cluster.capacity_provider_names.apply(lambda names: _strategy(names, args))


def _strategy(
    available: list[str], args: InferenceServiceArgs
) -> list[aws.ecs.ServiceCapacityProviderStrategyArgs]:
    """The capacity provider strategy, checked against the providers the cluster offers."""
    inference = args.inference
    strategy = capacity_provider_strategy(
        inference.on_demand_base, inference.on_demand_weight, inference.spot_weight
    )
    for entry in strategy:
        if entry["capacity_provider"] not in available:
            raise ValueError(
                f"capacity provider {entry['capacity_provider']} is not attached to the cluster "
                f"(it offers {', '.join(available)})"
            )
    return [aws.ecs.ServiceCapacityProviderStrategyArgs(**entry) for entry in strategy]
