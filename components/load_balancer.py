"""LoadBalancer: the inference service's edge, from the internet to the tasks' security group.

Creates, as children of the component (name `inference`: the names its resources had when
InferenceService owned them; each carries an alias to that old parent, components/moved.py):

- `<name>-alb-sg` (80/443 from `inference.allowed_cidrs`, out only to the tasks) and
  `<name>-task-sg`, the tasks' group (the container ports from the ALB's group only, the
  server's `internal_port` from the VPC's CIDR only, HTTPS out for ECR and
  logs);
- with `inference.access_logs`: `<name>-access-logs`, an SSE-S3 bucket (ALB access logs support
  no other encryption) with public access blocked, ownership enforced, versioning, expiry of
  logs and old versions, incomplete multipart uploads aborted, and the log-delivery bucket
  policy for the Region (its ELB account, or the log delivery service in newer Regions);
- `<name>-alb` with target groups `<name>-api` (the workload's `serving.health_path`) and one per
  sidecar served under a path (`<name>-<sidecar>`, checked on that path), listener
  `<name>-http` (forward, or a 301 to HTTPS), `<name>-https` with the certificate, and a
  `<name>-<sidecar>-rule` per such sidecar; with a traffic-shifting rollout
  (`inference.rollout.strategy` blue-green, canary or linear) also `<name>-<container>-alt`, the
  alternate group of each, and the production and test rules of components/traffic_shift.py; with
  `inference.waf`, `<name>-waf` and its association;
- with `inference.domain`: `<name>-certificate` (ACM, DNS-validated through `<name>-cert-dns`
  records in the Route 53 zone, awaited by `<name>-cert-validation`) and `<name>-alias`, an A
  alias record of the domain to the load balancer.

With `protection.retain_on_destroy` the ALB has deletion protection on and the access-log bucket
is not force-destroyed. InferenceService registers its tasks in `target_groups`, attaches
`task_security_group_id` and waits for `listeners`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import moved
from components.documents.inference import SERVER_CONTAINER
from components.documents.load_balancer import ALB_LOG_PREFIX, alb_access_log_bucket_policy
from components.network import HTTPS_PORT, Network, TcpRuleNames, allow_https_out, allow_tcp
from components.settings.serving import InferenceSettings
from components.settings.workload import ServingSpec, SidecarSpec
from components.traffic_shift import TrafficShift, declare_traffic_shift
from components.waf import declare_waf

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
"""TLS 1.3 and 1.2: the ELB-recommended policy for HTTPS listeners."""
DEREGISTRATION_DELAY = 30
"""Seconds: longer than the api's graceful shutdown (25 s), short enough for quick deploys."""
HTTP_PORT = 80


@dataclass
class LoadBalancerArgs:
    inference: InferenceSettings
    """`mlops:inference`: allowed_cidrs, certificate_arn, domain, hosted_zone, waf, access_logs,
    dashboard."""
    network: Network
    """The VPC and its public subnets."""
    https: bool
    """Serve HTTPS (`Settings.https`: a certificate or a domain), HTTP redirecting to it."""
    region: str
    """The Region, for the access-log delivery principal."""
    vpc_cidr: str
    """`network.cidr`: who may reach the api's internal port."""
    log_retention_days: int
    """`observability.log_retention_days`: how long access logs are kept."""
    serving: ServingSpec = field(default_factory=ServingSpec)
    """`workload.serving`: the server's port, internal port and health path."""
    sidecars: Sequence[SidecarSpec] = ()
    """The workload's sidecars (`Settings.sidecars`); those with a path get a target group."""
    retain_on_destroy: bool = False
    """`protection.retain_on_destroy`: ALB deletion protection, the log bucket kept."""
    capture_port: int | None = None
    """`inference.capture`: the server's traffic reaches it through the capture proxy, which
    listens on this port of the task (the server's target group forwards there)."""


class LoadBalancer(pulumi.ComponentResource):
    url: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    """`LoadBalancer` dimension of the ALB's CloudWatch metrics."""
    target_groups: dict[str, aws.lb.TargetGroup]
    """Per container: the server (`api`) and each sidecar served under a path."""
    ports: dict[str, int]
    """The container port each target group forwards to."""
    listeners: list[pulumi.Resource]
    """The listeners and rules: the service waits for them before registering targets."""
    task_security_group_id: pulumi.Output[str]
    traffic: TrafficShift | None
    """With a traffic-shifting rollout: the alternate groups and the production and test rules
    (components/traffic_shift.py)."""

    def __init__(
        self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:LoadBalancer", name, None, opts)
        self._name = name
        self._moved = moved.from_inference_service()
        self._child = self._opts()
        self._zone: pulumi.Output[str] | None = None
        self.traffic = None
        self._account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        inference = args.inference
        ports = {SERVER_CONTAINER: args.capture_port or args.serving.port}
        self._health = {SERVER_CONTAINER: args.serving.health_path}
        self._paths: dict[str, str] = {}
        for car in args.sidecars:
            if car.path is not None and car.port is not None:
                ports[car.name] = car.port
                self._health[car.name] = self._paths[car.name] = car.path

        alb_group, task_group = self._security_groups(args, ports)
        alb, target_groups, listeners = self._load_balancer(args, alb_group, ports)
        if inference.waf:
            declare_waf(name, alb, self._child)

        if inference.domain:
            self.url = pulumi.Output.from_input(f"https://{inference.domain}")
        else:
            self.url = pulumi.Output.concat(
                "https://" if inference.certificate_arn else "http://", alb.dns_name
            )
        self.dns_name = alb.dns_name
        self.arn_suffix = alb.arn_suffix
        self.target_groups = target_groups
        self.ports = ports
        self.listeners = listeners
        self.task_security_group_id = task_group.id
        self.register_outputs(
            {
                "url": self.url,
                "dns_name": self.dns_name,
                "arn_suffix": self.arn_suffix,
                "task_security_group_id": self.task_security_group_id,
            }
        )

    def _opts(self, **extra: Any) -> pulumi.ResourceOptions:
        """A child's options: this parent, and the alias to its InferenceService past."""
        return pulumi.ResourceOptions(parent=self, aliases=self._moved, **extra)

    def _security_groups(
        self, args: LoadBalancerArgs, ports: dict[str, int]
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
        # The server's internal port (`serving.internal_port`), which no target group forwards
        # to: reachable from inside the VPC (a Prometheus scraper, an operator's session), never
        # from the internet.
        if args.serving.internal_port is not None:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-task-in-internal",
                security_group_id=task_group.id,
                cidr_ipv4=args.vpc_cidr,
                ip_protocol="tcp",
                from_port=args.serving.internal_port,
                to_port=args.serving.internal_port,
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
        self, args: LoadBalancerArgs
    ) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
        name = self._name
        bucket = aws.s3.Bucket(
            f"{name}-access-logs",
            force_destroy=not args.retain_on_destroy,
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
        days = args.log_retention_days
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
            opts=self._opts(depends_on=[versioning]),
        )
        region = args.region
        policy = aws.s3.BucketPolicy(
            f"{name}-access-logs-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, self._account).apply(
                lambda v: json.dumps(alb_access_log_bucket_policy(v[0], v[1], region))
            ),
            opts=self._opts(depends_on=[public_access]),
        )
        # ELB checks that it can write to the bucket when logging is turned on.
        return bucket, [policy, ownership, encryption]

    def _load_balancer(
        self, args: LoadBalancerArgs, alb_group: aws.ec2.SecurityGroup, ports: dict[str, int]
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
            enable_deletion_protection=args.retain_on_destroy,
            access_logs=access_logs,
            opts=self._opts(depends_on=log_dependencies),
        )

        health = self._health

        def target_group(resource: str, container: str, port: int) -> aws.lb.TargetGroup:
            return aws.lb.TargetGroup(
                resource,
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

        target_groups = {
            container: target_group(f"{name}-{container}", container, port)
            for container, port in ports.items()
        }
        # Traffic shifting: each container's alternate group, where a new revision starts.
        alternates = (
            {
                container: target_group(f"{name}-{container}-alt", container, port)
                for container, port in ports.items()
            }
            if inference.rollout.strategy.shifts_traffic
            else {}
        )
        forward_api = [{"type": "forward", "target_group_arn": target_groups[SERVER_CONTAINER].arn}]

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
        if alternates:
            self.traffic = declare_traffic_shift(
                name,
                listener=front,
                primary=target_groups,
                alternate=alternates,
                paths=self._paths,
                opts=self._child,
            )
            listeners.extend(self.traffic.rules)
        for index, (container, path) in enumerate({} if alternates else self._paths.items()):
            listeners.append(
                aws.lb.ListenerRule(
                    f"{name}-{container}-rule",
                    listener_arn=front.arn,
                    priority=10 * (index + 1),
                    # `/ui/` -> `/ui*`: the path itself, with or without its slash, and below.
                    conditions=[{"path_pattern": {"values": [path.rstrip("/") + "*"]}}],
                    actions=[{"type": "forward", "target_group_arn": target_groups[container].arn}],
                    opts=self._child,
                )
            )
        if inference.domain:
            self._alias(args, alb)
        return alb, target_groups, listeners

    def _zone_id(self, args: LoadBalancerArgs) -> pulumi.Output[str]:
        if self._zone is None:
            # The public zone must exist in this account: preview fails here, naming it, if not.
            self._zone = aws.route53.get_zone_output(
                name=args.inference.hosted_zone,
                private_zone=False,
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).zone_id
        return self._zone

    def _certificate_arn(self, args: LoadBalancerArgs) -> pulumi.Input[str]:
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

    def _alias(self, args: LoadBalancerArgs, alb: aws.lb.LoadBalancer) -> None:
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
