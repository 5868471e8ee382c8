"""InferenceService: the model served behind an Application Load Balancer on ECS.

On Fargate (`inference.capacity: fargate`, the default: on-demand base plus Fargate Spot), or on
its own GPU EC2 capacity provider (`gpu-ec2`, the cluster's `serving_capacity`): the gpu image,
an EC2-only task definition whose api reserves `inference.gpu.gpus` GPUs, tasks spread across AZs
and instances, and alarms and dashboard widgets on the instances too.

Creates, as children of the component:

- `<name>-logs-<container>`: a log group per container, with the stack's retention;
- `<name>-execution-role` (+ `-execution-policy`: pull from this stack's repository, write these
  log groups; `ecr:GetAuthorizationToken` is its only "*") and `<name>-task-role` (only the
  shared store's client statements, inline);
- `<name>-alb-sg` (80/443 from `inference.allowed_cidrs`, out only to the tasks) and
  `<name>-task-sg` (the container ports from the ALB's group only, the api's internal port for
  `/metrics` and `/model` from the VPC's CIDR only, HTTPS out for ECR and logs);
- with `inference.access_logs`: `<name>-access-logs`, an SSE-S3 bucket (ALB access logs support
  no other encryption) with public access blocked, ownership enforced, versioning, expiry of
  logs and old versions, incomplete multipart uploads aborted, and the log-delivery bucket
  policy for the Region (its ELB account, or the log delivery service in newer Regions);
- `<name>-alb` with target groups `<name>-api` (`/health`: a task waiting for its first model
  stays in rotation) and `<name>-dashboard` (`/dashboard/`), listener `<name>-http` (forward, or
  a 301 to HTTPS), `<name>-https` with the certificate, and the `/dashboard*` rule; with
  `inference.waf`, `<name>-waf` and its association;
- with `inference.domain`: `<name>-certificate` (ACM, DNS-validated through `<name>-cert-dns`
  records in the Route 53 zone, awaited by `<name>-cert-validation`) and `<name>-alias`, an A
  alias record of the domain to the load balancer;
- `<name>-task`: the task definition (api, dashboard, forecaster) and `<name>-service`;
  with gpu-ec2 the network mode stays awsvpc, so the target groups keep target type `ip` and
  the task keeps its own security group (see `_task_definition` for the ENI arithmetic);
- `<name>-alarms` (SNS topic, under the `<name>-alarms-key` CMK with
  `observability.alarm_topic_cmk`; email subscription when `observability.alarm_email` is set)
  and the `<name>-alarm-<role>` alarms (with gpu-ec2 also `gpu-capacity-short`,
  `gpu-status-check` and `gpu-instances-below-min` on the instances);
- `<name>-scaling-target`, CPU and request-count target tracking, one scheduled action per
  `inference.schedules` entry, and with `observability.cloudwatch_dashboard` the
  `<name>-dashboard-view` CloudWatch dashboard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.documents.alerts import AlarmSpec, alarm_topic_key_policy, alarm_topic_policy
from components.documents.common import STORE_VOLUME, scratch_volume
from components.documents.gpu import SPREAD_ACROSS_AZS, gpu_capacity_alarms, gpu_capacity_widgets
from components.documents.inference import (
    API_CONTAINER,
    API_HEALTH_PATH,
    API_INTERNAL_PORT,
    API_PORT,
    DASHBOARD_CONTAINER,
    DASHBOARD_PATH,
    DASHBOARD_PORT,
    FORECASTER_CONTAINER,
    INFERENCE_START_PERIOD,
    capacity_provider_strategy,
    inference_alarms,
    inference_containers,
    inference_dashboard,
)
from components.documents.load_balancer import ALB_LOG_PREFIX, alb_access_log_bucket_policy
from components.network import HTTPS_PORT, Network, TcpRuleNames, allow_https_out, allow_tcp
from components.settings.platform import ObservabilitySettings, ProtectionSettings
from components.settings.serving import InferenceSettings
from components.shared_store import SharedStore
from components.task_roles import TaskRoleSpec, ecs_task_roles

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
"""TLS 1.3 and 1.2: the ELB-recommended policy for HTTPS listeners."""
DEREGISTRATION_DELAY = 30
"""Seconds: longer than the api's graceful shutdown (25 s), short enough for quick deploys."""
SCALE_IN_COOLDOWN = 300
SCALE_OUT_COOLDOWN = 60
HTTP_PORT = 80


@dataclass
class InferenceServiceArgs:
    stack: str
    region: str
    inference: InferenceSettings
    """`mlops:inference`: sizes, scaling, the edge (HTTPS, WAF, access logs), the dashboard."""
    observability: ObservabilitySettings
    """`mlops:observability`: log retention, alarm email and key, Container Insights, dashboard."""
    protection: ProtectionSettings
    """`mlops:protection`: retain the ALB and access logs; roll back on deployment alarms."""
    gpu: bool
    """The service runs on the cluster's serving GPU capacity (`Settings.serving_gpu`)."""
    https: bool
    """The load balancer serves HTTPS (`Settings.https`: a certificate or a domain)."""
    vpc_cidr: str
    """`network.cidr`: who may reach the api's internal port."""
    network: Network
    """Public subnets for the ALB, task subnets and public-IP mode for the tasks."""
    cluster: Cluster
    """The ECS cluster and its capacity providers."""
    store: SharedStore
    """The EFS store every container mounts at /mnt/store."""
    image_ref: pulumi.Input[str]
    """The image by digest (`repo@sha256:...`): the cpu flavour on Fargate, the gpu flavour (CUDA
    XGBoost) with `inference.capacity: gpu-ec2`."""
    repository_arn: pulumi.Input[str]
    """The ECR repository the image is pulled from (the execution role may pull only there)."""


class InferenceService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    log_group_names: pulumi.Output[dict[str, str]]
    task_role_arn: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]
    alarm_topic_key_arn: pulumi.Output[str]
    """The alarm topic's CMK, "" without one: a publisher's role needs
    `documents.alarm_publisher_statements`."""
    task_security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:InferenceService", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._zone: pulumi.Output[str] | None = None
        inference = args.inference
        if args.gpu and args.cluster.serving_capacity is None:
            raise ValueError(f"InferenceService {name}: gpu-ec2 needs the cluster's serving GPUs")
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        ports = {API_CONTAINER: API_PORT}
        if inference.dashboard:
            ports[DASHBOARD_CONTAINER] = DASHBOARD_PORT

        log_groups = self._log_groups(args)
        execution_role, task_role = self._roles(args, log_groups)
        alb_group, task_group = self._security_groups(args, ports)
        alb, target_groups, listeners = self._load_balancer(args, alb_group, ports)
        if inference.waf:
            self._waf(alb)
        task_definition = self._task_definition(args, log_groups, execution_role, task_role)

        key, topic = self._alarm_topic(args)
        alarm_specs = inference_alarms(
            min([inference.min, *(schedule.min for schedule in inference.schedules)]),
            container_insights=args.observability.container_insights,
        )
        target_group_dims = {
            "LoadBalancer": alb.arn_suffix,
            "TargetGroup": target_groups[API_CONTAINER].arn_suffix,
        }
        deployment_alarms = [
            self._alarm(spec, target_group_dims, topic) for spec in alarm_specs if spec.deployment
        ]

        service = aws.ecs.Service(
            f"{name}-service",
            cluster=args.cluster.cluster_arn,
            task_definition=task_definition.arn,
            desired_count=inference.desired,
            capacity_provider_strategies=_service_strategy(args),
            **_placement(args),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # Deployment alarms always mark a bad deployment failed; they roll it back only on
            # a protected (production) stack: dev leaves the failed deployment up to debug.
            alarms={
                "alarm_names": [alarm.name for alarm in deployment_alarms],
                "enable": True,
                "rollback": args.protection.rollback_on_alarm,
            },
            # Covers the container start period (store wait + model load) before the ALB's
            # failing /health checks count against a new task.
            health_check_grace_period_seconds=INFERENCE_START_PERIOD,
            availability_zone_rebalancing="ENABLED",
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            load_balancers=[
                {
                    "target_group_arn": target_groups[container].arn,
                    "container_name": container,
                    "container_port": port,
                }
                for container, port in ports.items()
            ],
            network_configuration={
                "subnets": args.network.task_subnet_ids,
                # EC2 tasks cannot have one (settings require NAT egress with gpu-ec2).
                "assign_public_ip": args.network.assign_public_ip and not args.gpu,
                "security_groups": [task_group.id, args.store.client_security_group_id],
            },
            # pulumi-aws: updating the capacity provider strategy requires a forced deployment.
            force_new_deployment=True,
            # Not waiting for steady state keeps `pulumi up` (and CI) short: a rolling deploy
            # takes minutes, and the circuit breaker and deployment alarms judge it. A new
            # stack's tasks pass the /health check without a model, so its first deployment
            # reaches steady state before the first training run has promoted one.
            wait_for_steady_state=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Tasks mount EFS at start (a mount target must exist in their subnet) and the
                # target groups must be attached to the ALB (listeners and rule) before ECS
                # registers targets.
                depends_on=[*args.store.mount_targets, *listeners],
                # Autoscaling owns the desired count after creation.
                ignore_changes=["desired_count"],
            ),
        )
        service_dims = {"ClusterName": args.cluster.cluster_name, "ServiceName": service.name}
        for spec in alarm_specs:
            if not spec.deployment:
                dims = target_group_dims if spec.scope == "target_group" else service_dims
                self._alarm(spec, dims, topic)

        if args.gpu:
            self._gpu_alarms(args, topic)
        self._autoscaling(args, service, alb, target_groups[API_CONTAINER])
        if args.observability.cloudwatch_dashboard:
            self._dashboard(args, service, alb, target_groups[API_CONTAINER])

        if inference.domain:
            self.url = pulumi.Output.from_input(f"https://{inference.domain}")
        else:
            self.url = pulumi.Output.concat(
                "https://" if inference.certificate_arn else "http://", alb.dns_name
            )
        self.service_name = service.name
        self.log_group_names = pulumi.Output.all(
            **{container: group.name for container, group in log_groups.items()}
        )
        self.task_role_arn = task_role.arn
        self.execution_role_arn = execution_role.arn
        self.alarm_topic_arn = topic.arn
        self.alarm_topic_key_arn = key.arn if key is not None else pulumi.Output.from_input("")
        self.task_security_group_id = task_group.id
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "log_group_names": self.log_group_names,
                "task_role_arn": self.task_role_arn,
                "execution_role_arn": self.execution_role_arn,
                "alarm_topic_arn": self.alarm_topic_arn,
                "alarm_topic_key_arn": self.alarm_topic_key_arn,
                "task_security_group_id": self.task_security_group_id,
            }
        )

    # ------------------------------------------------------------------------------ pieces

    def _log_groups(self, args: InferenceServiceArgs) -> dict[str, aws.cloudwatch.LogGroup]:
        containers = [API_CONTAINER, FORECASTER_CONTAINER]
        if args.inference.dashboard:
            containers.insert(1, DASHBOARD_CONTAINER)
        return {
            container: aws.cloudwatch.LogGroup(
                f"{self._name}-logs-{container}",
                retention_in_days=args.observability.log_retention_days,
                opts=self._child,
            )
            for container in containers
        }

    def _roles(
        self, args: InferenceServiceArgs, log_groups: dict[str, aws.cloudwatch.LogGroup]
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        return ecs_task_roles(
            TaskRoleSpec(
                name=self._name,
                account=self._account,
                repository_arn=args.repository_arn,
                log_group_arns=[group.arn for group in log_groups.values()],
                store=args.store,
                execution_description=(
                    "Pulls the image and writes container logs for the inference tasks"
                ),
                task_description=(
                    "What the inference containers may do: mount and write the shared store"
                ),
            ),
            self._child,
        )

    def _security_groups(
        self, args: InferenceServiceArgs, ports: dict[str, int]
    ) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        name = self._name
        inference = args.inference
        alb_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=args.network.vpc_id,
            description="Inference ALB: HTTP(S) from the allowed CIDRs, out to the tasks only",
            opts=self._child,
        )
        task_group = aws.ec2.SecurityGroup(
            f"{name}-task-sg",
            vpc_id=args.network.vpc_id,
            description="Inference tasks: container ports from the ALB only",
            opts=self._child,
        )
        # Standalone rules (pulumi-aws recommends aws.vpc.SecurityGroup{Ingress,Egress}Rule over
        # inline rules); the provider drops AWS's default allow-all egress of a new group.
        listener_ports = [HTTP_PORT] + ([HTTPS_PORT] if args.https else [])
        for port in listener_ports:
            for index, cidr in enumerate(inference.allowed_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{port}-{index}",
                    security_group_id=alb_group.id,
                    cidr_ipv4=cidr,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    description=f"Port {port} from an allowed CIDR",
                    opts=self._child,
                )
        for container, port in ports.items():
            allow_tcp(
                port,
                source=alb_group,
                target=task_group,
                names=TcpRuleNames(
                    egress=f"{name}-alb-to-{container}",
                    egress_description=f"To the {container} containers",
                    ingress=f"{name}-task-from-alb-{container}",
                    ingress_description=f"{container} from the load balancer",
                ),
                opts=self._child,
            )
        # /metrics and /model answer only on the api's internal port, which no target group
        # forwards to: reachable from inside the VPC (a Prometheus scraper, an operator's
        # session), never from the internet.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-task-in-internal",
            security_group_id=task_group.id,
            cidr_ipv4=args.vpc_cidr,
            ip_protocol="tcp",
            from_port=API_INTERNAL_PORT,
            to_port=API_INTERNAL_PORT,
            description="api /metrics and /model from inside the VPC",
            opts=self._child,
        )
        allow_https_out(
            f"{name}-task-out-https",
            task_group,
            "HTTPS to ECR, S3 (image layers) and CloudWatch Logs",
            self._child,
        )
        return alb_group, task_group

    def _access_log_bucket(
        self, args: InferenceServiceArgs
    ) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
        name = self._name
        bucket = aws.s3.Bucket(
            f"{name}-access-logs",
            force_destroy=not args.protection.retain_on_destroy,
            opts=self._child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-access-logs-public",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._child,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-access-logs-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=self._child,
        )
        # ELB User Guide, "Enable access logs for your Application Load Balancer": the only
        # server-side encryption access logs support is SSE-S3 (AES256), not SSE-KMS.
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-access-logs-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=self._child,
        )
        # Versioning keeps an overwritten or deleted log recoverable until it expires.
        versioning = aws.s3.BucketVersioning(
            f"{name}-access-logs-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=self._child,
        )
        days = args.observability.log_retention_days
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-access-logs-expiry",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    # Every object: logs under the prefix, and anything else written there.
                    "filter": {},
                    "expiration": {"days": days},
                    "noncurrent_version_expiration": {"noncurrent_days": 1},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                },
                {
                    # Expired objects leave delete markers behind in a versioned bucket.
                    "id": "remove-expired-delete-markers",
                    "status": "Enabled",
                    "filter": {},
                    "expiration": {"expired_object_delete_marker": True},
                },
            ],
            # S3 rejects a lifecycle rule on noncurrent versions before versioning is set.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        region = args.region
        policy = aws.s3.BucketPolicy(
            f"{name}-access-logs-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, self._account).apply(
                lambda v: json.dumps(alb_access_log_bucket_policy(v[0], v[1], region))
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        # ELB checks that it can write to the bucket when logging is turned on.
        return bucket, [policy, ownership, encryption]

    def _load_balancer(
        self, args: InferenceServiceArgs, alb_group: aws.ec2.SecurityGroup, ports: dict[str, int]
    ) -> tuple[aws.lb.LoadBalancer, dict[str, aws.lb.TargetGroup], list[pulumi.Resource]]:
        name = self._name
        inference = args.inference
        access_logs = None
        log_dependencies: list[pulumi.Resource] = []
        if inference.access_logs:
            bucket, log_dependencies = self._access_log_bucket(args)
            access_logs = {"bucket": bucket.bucket, "prefix": ALB_LOG_PREFIX, "enabled": True}
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.network.public_subnet_ids,
            security_groups=[alb_group.id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode="defensive",
            enable_deletion_protection=args.protection.retain_on_destroy,
            access_logs=access_logs,
            opts=pulumi.ResourceOptions(parent=self, depends_on=log_dependencies),
        )

        health = {
            API_CONTAINER: API_HEALTH_PATH,
            DASHBOARD_CONTAINER: DASHBOARD_PATH,
        }
        target_groups = {
            container: aws.lb.TargetGroup(
                f"{name}-{container}",
                target_type="ip",
                port=port,
                protocol="HTTP",
                vpc_id=args.network.vpc_id,
                deregistration_delay=DEREGISTRATION_DELAY,
                health_check={
                    "path": health[container],
                    "port": "traffic-port",
                    "protocol": "HTTP",
                    "matcher": "200",
                    "interval": 10,
                    "timeout": 5,
                    "healthy_threshold": 2,
                    "unhealthy_threshold": 3,
                },
                opts=self._child,
            )
            for container, port in ports.items()
        }
        forward_api = [{"type": "forward", "target_group_arn": target_groups[API_CONTAINER].arn}]

        listeners: list[pulumi.Resource] = []
        if args.https:
            front = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=HTTPS_PORT,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=self._certificate_arn(args),
                default_actions=forward_api,
                opts=self._child,
            )
            http_actions: list[dict[str, Any]] = [
                {
                    "type": "redirect",
                    "redirect": {
                        "port": str(HTTPS_PORT),
                        "protocol": "HTTPS",
                        "status_code": "HTTP_301",
                    },
                }
            ]
            listeners.append(front)
        else:
            http_actions = forward_api
        http = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=http_actions,
            opts=self._child,
        )
        listeners.append(http)
        if not args.https:
            front = http
        if DASHBOARD_CONTAINER in target_groups:
            listeners.append(
                aws.lb.ListenerRule(
                    f"{name}-dashboard-rule",
                    listener_arn=front.arn,
                    priority=10,
                    conditions=[{"path_pattern": {"values": ["/dashboard*"]}}],
                    actions=[
                        {
                            "type": "forward",
                            "target_group_arn": target_groups[DASHBOARD_CONTAINER].arn,
                        }
                    ],
                    opts=self._child,
                )
            )
        if inference.domain:
            self._alias(args, alb)
        return alb, target_groups, listeners

    def _zone_id(self, args: InferenceServiceArgs) -> pulumi.Output[str]:
        if self._zone is None:
            # The public zone must exist in this account: preview fails here, naming it, if not.
            self._zone = aws.route53.get_zone_output(
                name=args.inference.hosted_zone,
                private_zone=False,
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).zone_id
        return self._zone

    def _certificate_arn(self, args: InferenceServiceArgs) -> pulumi.Input[str]:
        """The existing certificate, or a new one for `inference.domain`, validated by DNS.

        ACM User Guide, "DNS validation": ACM names one CNAME per domain
        (`domain_validation_options`); once it resolves, ACM issues the certificate.
        `acm.CertificateValidation` waits for that, so the HTTPS listener never gets a
        certificate that is still pending.
        """
        inference = args.inference
        if inference.certificate_arn:
            return inference.certificate_arn
        name = self._name
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=inference.domain,
            validation_method="DNS",
            opts=self._child,
        )
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-cert-dns",
            zone_id=self._zone_id(args),
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,  # the same CNAME serves every certificate of this name
            opts=self._child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-cert-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=self._child,
        )
        return validation.certificate_arn

    def _alias(self, args: InferenceServiceArgs, alb: aws.lb.LoadBalancer) -> None:
        """`inference.domain` as an alias A record of the load balancer (Route 53 Developer
        Guide, "Routing traffic to an ELB load balancer": alias name and hosted zone id)."""
        aws.route53.Record(
            f"{self._name}-alias",
            zone_id=self._zone_id(args),
            name=args.inference.domain,
            type="A",
            aliases=[
                {"name": alb.dns_name, "zone_id": alb.zone_id, "evaluate_target_health": True}
            ],
            opts=self._child,
        )

    def _waf(self, alb: aws.lb.LoadBalancer) -> None:
        def visibility(metric: str) -> dict[str, Any]:
            return {
                "cloudwatch_metrics_enabled": True,
                "metric_name": metric,
                "sampled_requests_enabled": True,
            }

        def managed(
            group: str, priority: int, overrides: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
            statement: dict[str, Any] = {"vendor_name": "AWS", "name": group}
            if overrides:
                statement["rule_action_overrides"] = overrides
            return {
                "name": group,
                "priority": priority,
                "override_action": {"none": {}},
                "statement": {"managed_rule_group_statement": statement},
                "visibility_config": visibility(group),
            }

        acl = aws.wafv2.WebAcl(
            f"{self._name}-waf",
            scope="REGIONAL",
            default_action={"allow": {}},
            rules=[
                # The common rule set blocks bodies over 8 KB (SizeRestrictions_BODY); a /predict
                # batch of long histories is bigger, so that rule only counts.
                managed(
                    "AWSManagedRulesCommonRuleSet",
                    0,
                    [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}],
                ),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 1),
            ],
            visibility_config=visibility("inference-alb"),
            opts=self._child,
        )
        aws.wafv2.WebAclAssociation(
            f"{self._name}-waf-association",
            resource_arn=alb.arn,
            web_acl_arn=acl.arn,
            opts=self._child,
        )

    def _task_definition(
        self,
        args: InferenceServiceArgs,
        log_groups: dict[str, aws.cloudwatch.LogGroup],
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
    ) -> aws.ecs.TaskDefinition:
        inference = args.inference
        names = list(log_groups)
        containers = pulumi.Output.all(args.image_ref, *(log_groups[n].name for n in names)).apply(
            lambda values: json.dumps(
                inference_containers(
                    values[0],
                    dict(zip(names, values[1:], strict=True)),
                    args.region,
                    dashboard=inference.dashboard,
                    forecast_interval_seconds=inference.forecast_interval_seconds,
                    api_gpus=inference.gpu.gpus if args.gpu else 0,
                )
            )
        )
        return aws.ecs.TaskDefinition(
            f"{self._name}-task",
            # `family` is required; one per project, stack and service.
            family=f"{pulumi.get_project()}-{args.stack}-{self._name}",
            # awsvpc on EC2 too: each task gets its own ENI, security group and private IP, the
            # target groups stay `ip`, and the agent can block the instance metadata service
            # (ECS_AWSVPC_BLOCK_IMDS). An instance holds ENIs - 1 such tasks (ENI trunking is an
            # account setting we do not own); settings/serving.py refuses instance types and counts
            # that cannot place `inference.max` tasks. With one GPU per task on the default
            # xlarge types, the GPU binds first (1 task per instance; g4dn.xlarge has 3 ENIs,
            # g5/g6.xlarge 4), so bridge mode and its dynamic host ports would buy nothing.
            network_mode="awsvpc",
            cpu=str(inference.cpu),
            memory=str(inference.memory),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=containers,
            volumes=[args.store.volume(STORE_VOLUME), scratch_volume()],
            **(
                # GPUs exist only on EC2 capacity: the serving GPU instances.
                {"requires_compatibilities": ["EC2"]}
                if args.gpu
                else {
                    "requires_compatibilities": ["FARGATE"],
                    "runtime_platform": {
                        "operating_system_family": "LINUX",
                        "cpu_architecture": "X86_64",
                    },
                }
            ),
            opts=self._child,
        )

    def _alarm_topic(self, args: InferenceServiceArgs) -> tuple[aws.kms.Key | None, aws.sns.Topic]:
        name = self._name
        key = None
        if args.observability.alarm_topic_cmk:
            key = aws.kms.Key(
                f"{name}-alarms-key",
                description="Encrypts the inference alarm topic",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=self._account.apply(lambda a: json.dumps(alarm_topic_key_policy(a))),
                opts=self._child,
            )
        # Without the CMK the topic is unencrypted: CloudWatch alarms cannot publish to a topic
        # under the AWS-managed `aws/sns` key (its key policy cannot grant them), and alarm
        # messages carry metric names and thresholds, no data.
        topic = aws.sns.Topic(
            f"{name}-alarms", kms_master_key_id=key.arn if key else None, opts=self._child
        )
        aws.sns.TopicPolicy(
            f"{name}-alarms-policy",
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, self._account).apply(
                lambda v: json.dumps(alarm_topic_policy(v[0], v[1]))
            ),
            opts=self._child,
        )
        if args.observability.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.observability.alarm_email,
                opts=self._child,
            )
        return key, topic

    def _alarm(
        self, spec: AlarmSpec, dimensions: dict[str, Any], topic: aws.sns.Topic
    ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-alarm-{spec.role}",
            dimensions=dimensions,
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            **spec.args(),
            opts=self._child,
        )

    def _gpu_alarms(self, args: InferenceServiceArgs, topic: aws.sns.Topic) -> None:
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
            self._alarm(spec, dimensions[spec.scope], topic)

    def _autoscaling(
        self,
        args: InferenceServiceArgs,
        service: aws.ecs.Service,
        alb: aws.lb.LoadBalancer,
        api_targets: aws.lb.TargetGroup,
    ) -> None:
        name = self._name
        inference = args.inference
        target = aws.appautoscaling.Target(
            f"{name}-scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat(
                "service/", args.cluster.cluster_name, "/", service.name
            ),
            min_capacity=inference.min,
            max_capacity=inference.max,
            opts=self._child,
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
                # Application Auto Scaling "PredefinedMetricSpecification": the ALB's and the
                # target group's ARN suffixes joined by "/".
                pulumi.Output.concat(alb.arn_suffix, "/", api_targets.arn_suffix),
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
                opts=self._child,
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
                opts=self._child,
            )

    def _dashboard(
        self,
        args: InferenceServiceArgs,
        service: aws.ecs.Service,
        alb: aws.lb.LoadBalancer,
        api_targets: aws.lb.TargetGroup,
    ) -> None:
        capacity = args.cluster.serving_capacity
        gpu_names = (
            [capacity.auto_scaling_group_name, args.cluster.serving_capacity_provider_name]
            if capacity is not None
            else []
        )

        def body_of(values: list[Any]) -> str:
            region = args.region
            body = inference_dashboard(region, *values[:4])
            if gpu_names:
                bottom = max(w["y"] + w["height"] for w in body["widgets"])
                body["widgets"] += gpu_capacity_widgets(
                    region, values[4], values[2], values[5], bottom
                )
            return json.dumps(body)

        body = pulumi.Output.all(
            alb.arn_suffix,
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
    if cluster.serving_capacity_provider_name is not None:
        return cluster.serving_capacity_provider_name.apply(
            lambda name: [
                aws.ecs.ServiceCapacityProviderStrategyArgs(
                    capacity_provider=name, base=0, weight=1
                )
            ]
        )
    return cluster.capacity_provider_names.apply(lambda names: _strategy(names, args))


def _placement(args: InferenceServiceArgs) -> dict[str, Any]:
    """Fargate: the platform version (Fargate only). EC2: spread across AZs, then instances."""
    if args.gpu:
        return {"ordered_placement_strategies": SPREAD_ACROSS_AZS}
    return {"platform_version": "LATEST"}


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
