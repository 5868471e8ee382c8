"""The monthly cost model behind `python -m preflight.plan`: what a plan costs to run.

`estimate_cost(plan)` reads what the program declares and prices it with `preflight/prices.py`:

- ECS services: expected running tasks from `desiredCount`, the scaling target's min..max and the
  scheduled actions that move them (played over a reference year), split across FARGATE and
  FARGATE_SPOT by the capacity strategy (base first, then weights), plus a public IPv4 per task
  when tasks get public addresses;
- training: runs a month from the schedule rules plus assumed image pushes and drift events; per
  run, each ECS step of the state machine's main path on the capacity it asks for, state
  transitions; GPU instances only for the expected training hours when the group's minimum is 0;
- scheduled tasks (the weekly ingest): an EventBridge rule's fires a month x its ECS target's
  task count, each for the assumed step hours, on the target's capacity providers;
- EC2 capacity: each Auto Scaling group priced by the tasks of the capacity providers over it:
  a service's group runs the larger of its warm minimum and what its tasks need (tasks per
  instance from GPUs, network interfaces, CPU and memory), on-demand up to the group's base and
  Spot above it as its instances distribution says; a training group only for its runs;
- NAT gateways from the VPC's NAT strategy, ALB hours, LCUs and node addresses, EFS storage and
  throughput, backups, ECR storage from the lifecycle policy's kept images, logs from the
  container-hours that write to each group, KMS keys, WAF ACLs, rules and requests, alarms,
  dashboards, Container Insights.

Every usage figure no program can know is a named assumption, reported with the estimate. A
resource type it cannot price is reported as unknown, never as $0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.documents.staging import COLLECT_TRAINING, STAGE_SERVING, STAGE_TRAINING
from policy import checks
from preflight import prices
from preflight.costs import compute, ec2, orchestration
from preflight.costs.compute import (
    CLUSTER_PROVIDERS,
    SCALING_TARGET,
    SCHEDULED_ACTION,
    SERVICE,
    TASK_DEFINITION,
    Provider,
    TaskUsage,
    split_tasks,
)
from preflight.costs.core import (
    COMPONENT_PREFIXES,
    MONTHS_PER_YEAR,
    CostLine,
    Estimate,
    Ledger,
    as_list,
    as_number,
    get_path,
    json_document,
    resources_of,
    verdicts,
)
from preflight.costs.ec2 import ASG, LAUNCH_TEMPLATE, ebs_gb, instance_types
from preflight.costs.orchestration import (
    EVENT_RULE,
    STATE_MACHINE,
    main_path_states,
)
from preflight.costs.schedules import schedule_fires
from preflight.offline import ROOT, Plan

__all__ = [
    "ASG",
    "CLUSTER",
    "CLUSTER_PROVIDERS",
    "COMPONENT_PREFIXES",
    "ECR_LIFECYCLE",
    "ECR_REPOSITORY",
    "EFS",
    "EFS_BACKUP",
    "EVENT_RULE",
    "FREE_TYPES",
    "LAUNCH_TEMPLATE",
    "LOAD_BALANCERS",
    "LOG_GROUP",
    "SCALING_TARGET",
    "SCHEDULED_ACTION",
    "SERVICE",
    "STATE_MACHINE",
    "TASK_DEFINITION",
    "VPC",
    "CostLine",
    "Estimate",
    "Provider",
    "as_list",
    "as_number",
    "ebs_gb",
    "estimate_cost",
    "get_path",
    "instance_types",
    "json_document",
    "kept_images",
    "main_path_states",
    "schedule_fires",
    "split_tasks",
]

IMAGE_SIZES = ROOT / "benchmarks" / "results" / "image.json"
"""Measured image sizes per flavour (the benchmarks' image footprint): ECR bills the compressed
layers it stores."""


# --- resource types ------------------------------------------------------------------------------

VPC = "awsx:ec2:Vpc"
CLUSTER = "aws:ecs/cluster:Cluster"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EFS = "aws:efs/fileSystem:FileSystem"
EFS_BACKUP = "aws:efs/backupPolicy:BackupPolicy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")

FREE_TYPES = (
    orchestration.FREE
    | compute.FREE
    | ec2.FREE
    | frozenset(
        {
            # No charge of their own (compute, storage and requests are priced where they happen).
            "aws:iam/role:Role",
            "aws:iam/policy:Policy",
            "aws:iam/rolePolicy:RolePolicy",
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "aws:iam/instanceProfile:InstanceProfile",
            "aws:iam/serviceLinkedRole:ServiceLinkedRole",
            "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
            "aws:ec2/subnet:Subnet",
            "aws:ec2/routeTable:RouteTable",
            "aws:ec2/route:Route",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/vpc:Vpc",
            "aws:efs/mountTarget:MountTarget",
            "aws:efs/accessPoint:AccessPoint",
            "aws:efs/fileSystemPolicy:FileSystemPolicy",
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            "aws:ecr/repositoryPolicy:RepositoryPolicy",
            "aws:lb/targetGroup:TargetGroup",
            "aws:lb/listener:Listener",
            "aws:lb/listenerRule:ListenerRule",
            "aws:lb/listenerCertificate:ListenerCertificate",
            "aws:cloudwatch/logStream:LogStream",
            "aws:s3/bucketPolicy:BucketPolicy",
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "aws:s3/bucketVersioning:BucketVersioning",
            "aws:wafv2/webAclAssociation:WebAclAssociation",
            "aws:kms/alias:Alias",
            "docker:index/image:Image",
            # Public ACM certificates are free; Route 53 bills the hosted zone (not declared here:
            # it exists before the stack) and queries, and alias queries to an ELB are free.
            "aws:acm/certificate:Certificate",
            "aws:acm/certificateValidation:CertificateValidation",
            "aws:route53/record:Record",
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        }
    )
)
"""Types with no charge of their own: compute, storage and requests are priced where they occur
(a task definition's runs on its service or state machine, a launch template's instances on its
Auto Scaling group, SNS alarm e-mails within the free tier)."""
PRICED_TYPES = (
    orchestration.PRICED
    | compute.PRICED
    | ec2.PRICED
    | frozenset(
        {
            VPC,
            LOG_GROUP,
            EFS,
            EFS_BACKUP,
            ECR_REPOSITORY,
            CLUSTER,
            *LOAD_BALANCERS,
            *BUCKETS,
            "aws:ec2/natGateway:NatGateway",
            "aws:ec2/eip:Eip",
            "aws:ec2/vpcEndpoint:VpcEndpoint",
            "aws:kms/key:Key",
            "aws:secretsmanager/secret:Secret",
            "aws:wafv2/webAcl:WebAcl",
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "aws:cloudwatch/dashboard:Dashboard",
        }
    )
)
"""Types the model prices: a resource of one with no line (a VPC without NAT) costs nothing."""


# --- the estimate --------------------------------------------------------------------------------


SHORT_CONTAINERS = frozenset({STAGE_TRAINING, STAGE_SERVING, COLLECT_TRAINING})
"""The platform's own containers that copy a run in or out and exit (components/documents/
staging.py): they log a few lines per task start, not for the task's hours, so their log lines
carry no container-hours. `dependsOn` alone cannot tell them from the workload's container
(ECS orders both with SUCCESS/COMPLETE conditions)."""


@dataclass
class _Model:
    plan: Plan
    ledger: Ledger
    usage: TaskUsage = field(default_factory=TaskUsage)

    # -- everything else, resource by resource

    def network(self) -> None:
        for vpc in resources_of(self.plan, VPC):
            strategy = str(get_path(vpc.inputs, "natGateways.strategy") or "None")
            azs = int(
                as_number(vpc.inputs.get("numberOfAvailabilityZones"))
                or len(as_list(vpc.inputs.get("availabilityZoneNames")))
                or 2
            )
            count = {"Single": 1, "OnePerAz": azs}.get(strategy, 0)
            if not count:
                continue
            note = f"natGateways.strategy {strategy} over {azs} AZs: {count} NAT gateway(s)"
            self.ledger.add(
                vpc, "NAT gateway hours", count * prices.HOURS_PER_MONTH, "nat_gateway_hour"
            )
            self.ledger.add(
                vpc,
                "NAT gateway data processed",
                self.ledger.assume("nat_gb_per_month"),
                "nat_gateway_gb",
                note=note,
            )
            self.ledger.add(
                vpc,
                "public IPv4 (NAT gateway Elastic IPs)",
                count * prices.HOURS_PER_MONTH,
                "public_ipv4_hour",
            )
        for nat in resources_of(self.plan, "aws:ec2/natGateway:NatGateway"):
            self.ledger.add(nat, "NAT gateway hours", prices.HOURS_PER_MONTH, "nat_gateway_hour")
        for eip in resources_of(self.plan, "aws:ec2/eip:Eip"):
            self.ledger.add(eip, "public IPv4", prices.HOURS_PER_MONTH, "public_ipv4_hour")
        for endpoint in resources_of(self.plan, "aws:ec2/vpcEndpoint:VpcEndpoint"):
            if endpoint.inputs.get("vpcEndpointType") == "Interface":
                zones = len(as_list(endpoint.inputs.get("subnetIds"))) or 1
                hours = zones * prices.HOURS_PER_MONTH
                self.ledger.add(endpoint, "interface endpoint AZ-hours", hours, "vpc_endpoint_hour")

    def load_balancers(self) -> None:
        for lb in resources_of(self.plan, *LOAD_BALANCERS):
            if lb.inputs.get("loadBalancerType", "application") != "application":
                self.ledger.unknown(
                    lb, f"{lb.inputs['loadBalancerType']} load balancer", "no price"
                )
                continue
            self.ledger.add(lb, "ALB hours", prices.HOURS_PER_MONTH, "alb_hour")
            lcus = self.ledger.assume("alb_lcus")
            # LCUs are billed for traffic processed: a service scaled to zero (dev at night and
            # at weekends) serves none. With no service in the plan, the whole month counts.
            serving = max(self.usage.serving_fraction.values(), default=1.0)
            self.ledger.add(
                lb,
                "ALB LCUs",
                lcus * prices.HOURS_PER_MONTH * serving,
                "alb_lcu_hour",
                note=f"{serving:.0%} of the month with a task serving",
            )
            if lb.inputs.get("internal") is not True:
                nodes = len(
                    as_list(lb.inputs.get("subnets")) or as_list(lb.inputs.get("subnetMappings"))
                )
                self.ledger.add(
                    lb,
                    "public IPv4 (one per ALB node)",
                    max(nodes, 1) * prices.HOURS_PER_MONTH,
                    "public_ipv4_hour",
                    note=f"internet-facing in {nodes} subnet(s)",
                )

    def log_groups(self) -> None:
        definitions = resources_of(self.plan, TASK_DEFINITION)
        for group in resources_of(self.plan, LOG_GROUP):
            name = group.outputs.get("name") or group.inputs.get("name")
            container_hours = 0.0
            used = staged = False
            for td in definitions:
                for container in checks.containers(td.inputs):
                    if get_path(container, "logConfiguration.options.awslogs-group") != name:
                        continue
                    used = True
                    if container.get("name") in SHORT_CONTAINERS:
                        staged = True  # seconds per task: a few lines, priced at none
                    else:
                        container_hours += self.usage.task_hours.get(td.urn, 0.0)
            if used:
                ingest = container_hours * self.ledger.assume("log_gb_per_container_hour")
                note = f"{container_hours:.1f} container-hours a month"
                if staged and not container_hours:
                    note = "only the platform's staging containers, seconds per task start"
            else:
                ingest = self.ledger.assume("log_gb_per_unused_group")
                note = "no task definition logs here"
            self.ledger.add(group, "log ingestion", ingest, "logs_ingest_gb", note=note)
            days = as_number(group.inputs.get("retentionInDays"))
            kept_months = (days or 365) / (365 / MONTHS_PER_YEAR)
            stored = ingest * self.ledger.assume("log_compression") * kept_months
            self.ledger.add(
                group,
                "log storage",
                stored,
                "logs_storage_gb_month",
                note=f"{days:g} days kept" if days else "never expires: priced at one year",
            )

    def storage(self) -> None:
        for fs in resources_of(self.plan, EFS):
            stored = self.ledger.assume("efs_stored_gb")
            transitions = [p for p in as_list(fs.inputs.get("lifecyclePolicies")) if p]
            to_ia = any(get_path(p, "transitionToIa") for p in transitions)
            share = self.ledger.assume("efs_ia_share") if to_ia else 0.0
            self.ledger.add(
                fs, "EFS Standard storage", stored * (1 - share), "efs_standard_gb_month"
            )
            if share:
                self.ledger.add(
                    fs, "EFS Infrequent Access storage", stored * share, "efs_ia_gb_month"
                )
            mode = fs.inputs.get("throughputMode", "bursting")
            if mode == "elastic":
                reads = self.ledger.assume("efs_read_gb_per_month")
                writes = self.ledger.assume("efs_write_gb_per_month")
                self.ledger.add(fs, "EFS Elastic Throughput reads", reads, "efs_elastic_read_gb")
                self.ledger.add(fs, "EFS Elastic Throughput writes", writes, "efs_elastic_write_gb")
            elif mode == "provisioned":
                self.ledger.unknown(fs, "EFS provisioned throughput", "no price")
        for backup in resources_of(self.plan, EFS_BACKUP):
            if get_path(backup.inputs, "backupPolicy.status") == "ENABLED":
                gb = self.ledger.assume("efs_stored_gb")
                self.ledger.add(backup, "EFS backups (AWS Backup warm)", gb, "efs_backup_gb_month")
        for repo in resources_of(self.plan, ECR_REPOSITORY):
            name = repo.outputs.get("name")
            kept = [
                item
                for policy in resources_of(self.plan, ECR_LIFECYCLE)
                if policy.inputs.get("repository") == name
                for item in kept_images(policy.inputs)
            ]
            # A rule only stores images if something pushes tags it selects (no gpu images
            # without GPU training); with no builds (a pinned image) every rule counts.
            tags = [
                str(image.inputs.get("imageName", "")).rsplit(":", 1)[-1]
                for image in resources_of(self.plan, "docker:index/image:Image")
                if str(image.inputs.get("imageName", "")).startswith(
                    str(repo.outputs.get("repositoryUrl", "-"))
                )
            ]
            if tags:
                kept = [k for k in kept if any(t.startswith(k[0]) for t in tags) or k[0] == "any"]
            gb = 0.0
            notes = []
            for prefix, count in kept:
                size = self.image_gb("gpu" if "gpu" in prefix else "cpu")
                gb += count * size
                notes.append(f"{count} {prefix}* x {size:.3g} GB")
            if not kept:
                count = self.ledger.assume("image_pushes_per_month") * MONTHS_PER_YEAR
                gb = count * self.image_gb("cpu")
                notes.append("no count-based lifecycle rule: a year of pushes")
            self.ledger.add(repo, "ECR image storage", gb, "ecr_gb_month", note="; ".join(notes))
        access_log_buckets = {
            get_path(lb.inputs, "accessLogs.bucket")
            for lb in resources_of(self.plan, *LOAD_BALANCERS)
        }
        for bucket in resources_of(self.plan, *BUCKETS):
            if bucket.outputs.get("bucket") in access_log_buckets:
                gb = self.ledger.assume("access_log_gb_month")
                self.ledger.add(
                    bucket, "S3 Standard storage (ALB access logs)", gb, "s3_standard_gb_month"
                )
            else:
                self.ledger.unknown(bucket, "S3 storage", "no usage assumption for this bucket")

    def image_gb(self, flavour: str) -> float:
        """GB ECR stores per image of `flavour`: the measured compressed size."""
        sizes = image_sizes()
        if flavour not in sizes:
            raise ValueError(f"{IMAGE_SIZES}: no size for the {flavour} image flavour")
        gb = sizes[flavour] / 1e9
        self.ledger.derive(
            f"{flavour}_image_gb",
            gb,
            f"GB per stored {flavour} image, compressed as ECR bills it "
            f"({IMAGE_SIZES.relative_to(IMAGE_SIZES.parents[2])}, measured {_measured()})",
        )
        return gb

    def per_resource(self) -> None:
        services = len(resources_of(self.plan, SERVICE))
        for cluster in resources_of(self.plan, CLUSTER):
            insights = {
                get_path(s, "value")
                for s in as_list(cluster.inputs.get("settings"))
                if get_path(s, "name") == "containerInsights"
            }
            if insights & {"enabled", "enhanced"}:
                metrics = self.ledger.assume("container_insights_metrics_per_cluster")
                metrics += services * self.ledger.assume("container_insights_metrics_per_service")
                self.ledger.add(
                    cluster,
                    "Container Insights metrics",
                    metrics,
                    "custom_metric_month",
                    note=f"{services} service(s); enhanced observability would cost more",
                )
        for key in resources_of(self.plan, "aws:kms/key:Key"):
            self.ledger.add(key, "KMS customer managed key", 1, "kms_key_month")
        orchestration.queues(self.plan, self.ledger)
        for secret in resources_of(self.plan, "aws:secretsmanager/secret:Secret"):
            self.ledger.add(secret, "secret", 1, "secret_month")
        for acl in resources_of(self.plan, "aws:wafv2/webAcl:WebAcl"):
            self.ledger.add(acl, "WAF web ACL", 1, "waf_web_acl_month")
            rules = len(as_list(acl.inputs.get("rules")))
            if rules:
                self.ledger.add(acl, "WAF rules", rules, "waf_rule_month")
            requests = self.ledger.assume("waf_million_requests_per_month")
            self.ledger.add(acl, "WAF requests", requests, "waf_million_requests")
        for alarm in resources_of(self.plan, "aws:cloudwatch/metricAlarm:MetricAlarm"):
            self.ledger.add(alarm, "metric alarm", 1, "alarm_month")
        for dashboard in resources_of(self.plan, "aws:cloudwatch/dashboard:Dashboard"):
            self.ledger.add(
                dashboard, "dashboard", 1, "dashboard_month", note="free tier not applied"
            )


def kept_images(inputs: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(tag prefix, images kept) for every count-based rule of an ECR lifecycle policy."""
    document = json_document(inputs.get("policy")) or {}
    kept = []
    for rule in as_list(document.get("rules")):
        selection = get_path(rule, "selection") or {}
        if selection.get("countType") == "imageCountMoreThan":
            prefixes = as_list(selection.get("tagPrefixList")) or ["any"]
            kept.append((str(prefixes[0]), int(as_number(selection.get("countNumber")))))
    return kept


def _image_file() -> dict[str, Any]:
    try:
        document = json.loads(IMAGE_SIZES.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{IMAGE_SIZES} is missing: the ECR cost needs the measured image sizes "
            '({"measured": DATE, "flavours": {"cpu": {"compressed_bytes": N, ...}, ...}})'
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{IMAGE_SIZES} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("flavours"), dict):
        raise ValueError(f"{IMAGE_SIZES}: expected an object with a `flavours` map")
    return document


def _measured() -> str:
    return str(_image_file().get("measured", "?"))


def image_sizes() -> dict[str, int]:
    """Flavour -> compressed bytes, from `benchmarks/results/image.json`; ValueError naming the
    file and the field when it is missing or malformed."""
    sizes = {}
    for flavour, entry in _image_file()["flavours"].items():
        value = entry.get("compressed_bytes") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"{IMAGE_SIZES}: flavours.{flavour}.compressed_bytes is {value!r}; "
                "it must be a positive integer (bytes)"
            )
        sizes[flavour] = value
    return sizes


def estimate_cost(plan: Plan, overrides: Mapping[str, float] | None = None) -> Estimate:
    """The monthly cost of a plan, itemised, with the assumptions it used.

    `overrides` replaces assumption values by name (keys of `prices.ASSUMPTIONS`).
    """
    unknown = set(overrides or {}) - prices.ASSUMPTIONS.keys()
    if unknown:
        raise KeyError(f"no assumption {', '.join(sorted(unknown))}")
    model = _Model(plan, Ledger(dict(overrides or {})))
    model.ledger.assume("fargate_spot_discount")  # always stated: it decides what Spot is worth
    model.network()
    model.usage = compute.tasks(plan, model.ledger)
    ec2.auto_scaling_groups(plan, model.ledger, model.usage)
    model.load_balancers()
    model.log_groups()
    model.storage()
    model.per_resource()
    pricing = verdicts(plan, model.ledger, PRICED_TYPES, FREE_TYPES)
    ledger = model.ledger
    return Estimate(ledger.lines, dict(sorted(ledger.assumptions.items())), pricing)
