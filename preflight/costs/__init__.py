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
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.aws_facts import (
    FARGATE,
    FARGATE_PROVIDERS,
    FARGATE_SPOT,
    GPU_INSTANCES,
    tasks_per_instance,
)
from components.documents.staging import COLLECT_TRAINING, STAGE_SERVING, STAGE_TRAINING
from policy import checks
from preflight import prices
from preflight.costs import orchestration
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
from preflight.costs.orchestration import (
    EVENT_RULE,
    EVENT_TARGET,
    STATE_MACHINE,
    main_path_states,
)
from preflight.costs.schedules import (
    MINUTES_PER_YEAR,
    REFERENCE_YEAR,
    ScalingEvent,
    scaled_spans,
    schedule_fires,
)
from preflight.offline import ROOT, Plan, Resource

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
SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
CLUSTER = "aws:ecs/cluster:Cluster"
CLUSTER_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCHEDULED_ACTION = "aws:appautoscaling/scheduledAction:ScheduledAction"
ASG = "aws:autoscaling/group:Group"
CAPACITY_PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EFS = "aws:efs/fileSystem:FileSystem"
EFS_BACKUP = "aws:efs/backupPolicy:BackupPolicy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")

FREE_TYPES = orchestration.FREE | frozenset(
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
        "aws:ec2/launchTemplate:LaunchTemplate",
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
        "aws:ecs/taskDefinition:TaskDefinition",
        "aws:ecs/capacityProvider:CapacityProvider",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:lb/targetGroup:TargetGroup",
        "aws:lb/listener:Listener",
        "aws:lb/listenerRule:ListenerRule",
        "aws:lb/listenerCertificate:ListenerCertificate",
        "aws:appautoscaling/target:Target",
        "aws:appautoscaling/policy:Policy",
        "aws:appautoscaling/scheduledAction:ScheduledAction",
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
"""Types with no charge of their own: compute, storage and requests are priced where they occur
(a task definition's runs on its service or state machine, a launch template's instances on its
Auto Scaling group, SNS alarm e-mails within the free tier)."""
PRICED_TYPES = orchestration.PRICED | frozenset(
    {
        VPC,
        SERVICE,
        ASG,
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
"""Types the model prices: a resource of one with no line (a VPC without NAT) costs nothing."""


# --- capacity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    name: str
    base: float
    weight: float


def split_tasks(count: float, strategy: Sequence[Provider]) -> dict[str, float]:
    """Expected tasks per capacity provider for `count` running tasks (ECS: base first, then
    the rest in proportion to the weights)."""
    if not strategy:
        return {FARGATE: count}
    split = dict.fromkeys((p.name for p in strategy), 0.0)
    left = count
    for provider in strategy:
        taken = min(left, provider.base)
        split[provider.name] += taken
        left -= taken
    total_weight = sum(p.weight for p in strategy)
    for provider in strategy:
        if total_weight:
            split[provider.name] += left * provider.weight / total_weight
    return split


def _strategy(items: Any) -> list[Provider]:
    return [
        Provider(
            str(get_path(i, "capacityProvider") or get_path(i, "CapacityProvider")),
            as_number(
                get_path(i, "base") if get_path(i, "base") is not None else get_path(i, "Base")
            ),
            as_number(
                get_path(i, "weight")
                if get_path(i, "weight") is not None
                else get_path(i, "Weight"),
                1.0,
            ),
        )
        for i in as_list(items)
    ]


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
    task_hours: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Task definition URN -> expected task-hours a month (feeds the log estimate)."""
    ec2_hours: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """EC2 capacity provider -> expected task-hours a month on it (feeds its instances)."""
    ec2_runs: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """EC2 capacity provider -> expected training runs a month that start an instance."""
    ec2_services: dict[str, Resource] = field(default_factory=dict)
    """EC2 capacity provider -> the task definition a service keeps running on it."""
    serving_fraction: dict[str, float] = field(default_factory=dict)
    """Service name -> share of the month it runs at least one task (feeds ALB LCUs)."""

    # -- lookups

    def _props(self, resource: Resource) -> dict[str, Any]:
        return {**resource.inputs, **resource.outputs}

    def task_definition(self, reference: Any) -> Resource | None:
        if not isinstance(reference, str) or not reference:
            return None
        for td in resources_of(self.plan, TASK_DEFINITION):
            props = self._props(td)
            family = props.get("family")
            candidates = {props.get("arn"), props.get("arnWithoutRevision"), family}
            if reference in candidates or (family and reference.startswith(f"{family}:")):
                return td
        return None

    def cluster_default_strategy(self) -> list[Provider]:
        for providers in resources_of(self.plan, CLUSTER_PROVIDERS):
            strategy = _strategy(providers.inputs.get("defaultCapacityProviderStrategies"))
            if strategy:
                return strategy
        return []

    @staticmethod
    def task_size(td: Resource) -> tuple[float, float]:
        """(vCPU, GB) of a task definition: task-level values, else the containers' sum."""
        cpu, memory = as_number(td.inputs.get("cpu")), as_number(td.inputs.get("memory"))
        containers = checks.containers(td.inputs)
        if not cpu:
            cpu = sum(as_number(c.get("cpu")) for c in containers)
        if not memory:
            memory = sum(
                as_number(c.get("memory") or c.get("memoryReservation")) for c in containers
            )
        return cpu / 1024, memory / 1024

    def fargate(self, resource: Resource, td: Resource, hours: dict[str, float], what: str) -> None:
        """Fargate lines for expected task-hours per capacity provider."""
        vcpu, gb = self.task_size(td)
        size = f"{vcpu:g} vCPU / {gb:g} GB"
        for provider, task_hours in sorted(hours.items()):
            if task_hours <= 0:
                continue
            if provider == FARGATE:
                self.ledger.add(
                    resource, f"{what}: Fargate vCPU", task_hours * vcpu, "fargate_vcpu_hour"
                )
                self.ledger.add(
                    resource, f"{what}: Fargate memory", task_hours * gb, "fargate_gb_hour"
                )
            elif provider == FARGATE_SPOT:
                factor = 1 - self.ledger.assume("fargate_spot_discount")
                note = f"{task_hours:.1f} task-hours of {size}"
                self.ledger.add(
                    resource,
                    f"{what}: Fargate Spot vCPU",
                    task_hours * vcpu,
                    "fargate_vcpu_hour",
                    factor,
                    note,
                )
                self.ledger.add(
                    resource,
                    f"{what}: Fargate Spot memory",
                    task_hours * gb,
                    "fargate_gb_hour",
                    factor,
                    note,
                )
            else:
                self.ec2_hours[provider] += task_hours

    # -- inference services

    def services(self) -> None:
        for service in resources_of(self.plan, SERVICE):
            td = self.task_definition(service.inputs.get("taskDefinition"))
            if td is None:
                self.ledger.unknown(service, "tasks", "its task definition is not in the plan")
                continue
            strategy = _strategy(service.inputs.get("capacityProviderStrategies"))
            if not strategy and service.inputs.get("launchType") in (None, ""):
                strategy = self.cluster_default_strategy()
            elif not strategy:
                strategy = [Provider(str(service.inputs["launchType"]), 0, 1)]
            hours, average, note, up = self.service_hours(service, strategy)
            self.serving_fraction[service.name] = up
            self.ledger.derive(f"{service.name}.tasks_running_average", average, note)
            self.task_hours[td.urn] += sum(hours.values())
            self.fargate(service, td, hours, "tasks")
            for provider in hours:
                if provider not in FARGATE_PROVIDERS:
                    self.ec2_services[provider] = td
            if get_path(service.inputs, "networkConfiguration.assignPublicIp") is True:
                self.ledger.add(
                    service,
                    "public IPv4 per running task",
                    sum(hours.values()),
                    "public_ipv4_hour",
                    note="tasks in public subnets (no NAT) each hold a public address",
                )

    def service_hours(
        self, service: Resource, strategy: Sequence[Provider]
    ) -> tuple[dict[str, float], float, str, float]:
        """Expected task-hours a month per capacity provider, from desiredCount, the scaling
        target's min..max and the scheduled actions that move them; the average task count; a
        note; and the share of the time at least one task runs."""
        desired = as_number(service.inputs.get("desiredCount"), 1)
        name = str(service.outputs.get("name") or service.name)
        target = next(
            (
                t
                for t in resources_of(self.plan, SCALING_TARGET)
                if str(t.inputs.get("resourceId", "")).endswith(f"/{name}")
            ),
            None,
        )
        low = as_number(target.inputs.get("minCapacity"), desired) if target else desired
        high = as_number(target.inputs.get("maxCapacity"), desired) if target else desired
        events: list[ScalingEvent] = []
        actions = [
            a
            for a in resources_of(self.plan, SCHEDULED_ACTION)
            if target is not None and a.inputs.get("resourceId") == target.inputs.get("resourceId")
        ]
        for action in actions:
            new_low = get_path(action.inputs, "scalableTargetAction.minCapacity")
            new_high = get_path(action.inputs, "scalableTargetAction.maxCapacity")
            for minute in schedule_fires(str(action.inputs.get("schedule", ""))):
                events.append((minute, new_low, new_high))
        per_provider: dict[str, float] = defaultdict(float)
        task_minutes = 0.0
        up_minutes = 0.0
        for running, minutes in scaled_spans(desired, low, high, events):
            for provider, tasks in split_tasks(running, strategy).items():
                per_provider[provider] += tasks * minutes
            task_minutes += running * minutes
            up_minutes += minutes if running > 0 else 0
        average = task_minutes / MINUTES_PER_YEAR
        month = {p: m / 60 / MONTHS_PER_YEAR for p, m in per_provider.items()}
        note = (
            f"desiredCount {desired:g} clamped to the scaling range, moved by "
            f"{len(actions)} scheduled action(s) over {REFERENCE_YEAR} (their time zone, DST "
            f"ignored): {average * prices.HOURS_PER_MONTH:.1f} task-hours a month; "
            "load-driven scale-out above that is not priced"
        )
        return month, average, note, up_minutes / MINUTES_PER_YEAR

    # -- training: state machines, their task runs, GPU instances

    def training(self) -> None:
        machines = resources_of(self.plan, STATE_MACHINE)
        service_tds = {
            td.urn
            for s in resources_of(self.plan, SERVICE)
            if (td := self.task_definition(s.inputs.get("taskDefinition")))
        }
        for machine in machines:
            definition = json_document(machine.inputs.get("definition"))
            runs = orchestration.runs_per_month(self.plan, self.ledger, machine, machines)
            orchestration.state_transitions(self.ledger, machine, definition, runs)
            steps = [
                (name, self.task_definition(p.get("TaskDefinition")), p)
                for name, p in orchestration.ecs_steps(definition)
            ]
            found = [(name, td, p) for name, td, p in steps if td is not None]
            if not found:
                # The definition names its tasks dynamically: every task definition no service
                # runs is taken to run once per execution.
                found = [
                    (td.name.rsplit("-", 1)[-1], td, {})
                    for td in resources_of(self.plan, TASK_DEFINITION)
                    if td.urn not in service_tds
                ]
            for step, td, parameters in found:
                self.training_step(step, td, parameters, runs)

    def training_step(
        self, step: str, td: Resource, parameters: Mapping[str, Any], runs: float
    ) -> None:
        # The step's name says what it does (Validate, Train, Gate); only training runs long.
        key = "train_hours_per_run" if "train" in step.lower() else "step_hours_per_run"
        hours = runs * self.ledger.assume(key)
        strategy = _strategy(parameters.get("CapacityProviderStrategy"))
        if not strategy and parameters.get("LaunchType"):
            strategy = [Provider(str(parameters["LaunchType"]), 0, 1)]
        if not strategy:
            compatibilities = as_list(td.inputs.get("requiresCompatibilities"))
            strategy = (
                [Provider("EC2", 0, 1)]
                if compatibilities == ["EC2"]
                else self.cluster_default_strategy()
            )
        split = split_tasks(1, strategy)
        self.task_hours[td.urn] += hours
        # Runs on an EC2 capacity provider each start (and later drain) an instance.
        for provider, share in split.items():
            if provider not in FARGATE_PROVIDERS:
                self.ec2_runs[provider] += runs * share
        per_provider = {p: hours * share for p, share in split.items()}
        self.fargate(
            td, td, per_provider, f"{runs:.1f} runs x {self.ledger.assumptions[key]['value']} h"
        )

    # -- scheduled tasks: EventBridge rules that run an ECS task directly (the ingest task)

    def scheduled_tasks(self) -> None:
        rules = {rule.outputs.get("name"): rule for rule in resources_of(self.plan, EVENT_RULE)}
        for target in resources_of(self.plan, EVENT_TARGET):
            ecs = target.inputs.get("ecsTarget")
            rule = rules.get(target.inputs.get("rule"))
            if not ecs or rule is None:
                continue
            td = self.task_definition(get_path(ecs, "taskDefinitionArn"))
            if td is None:
                self.ledger.unknown(
                    target, "scheduled tasks", "its task definition is not in the plan"
                )
                continue
            runs = orchestration.rule_runs(self.ledger, rule) * as_number(
                get_path(ecs, "taskCount"), 1.0
            )
            hours = runs * self.ledger.assume("step_hours_per_run")
            strategy = _strategy(get_path(ecs, "capacityProviderStrategies"))
            if not strategy and get_path(ecs, "launchType"):
                strategy = [Provider(str(get_path(ecs, "launchType")), 0, 1)]
            split = split_tasks(1, strategy or self.cluster_default_strategy())
            self.task_hours[td.urn] += hours
            per_provider = {p: hours * share for p, share in split.items()}
            step_hours = self.ledger.assumptions["step_hours_per_run"]["value"]
            note = f"{runs:.1f} scheduled runs x {step_hours} h"
            self.fargate(td, td, per_provider, note)

    def providers_of(self, group: Resource) -> set[str]:
        """Names of the ECS capacity providers over an Auto Scaling group."""
        arn = group.outputs.get("arn")
        return {
            str(provider.outputs.get("name") or provider.name)
            for provider in resources_of(self.plan, CAPACITY_PROVIDER)
            if arn
            and get_path(provider.inputs, "autoScalingGroupProvider.autoScalingGroupArn") == arn
        }

    def auto_scaling_groups(self) -> None:
        groups = resources_of(self.plan, ASG)
        demand = {group.urn: self.providers_of(group) for group in groups}
        known = set().union(*demand.values()) if demand else set()
        # Tasks on EC2 the plan cannot tie to a group (a bare EC2 launch type) go to the first
        # group that scales from zero, as a training group does.
        orphans = {p for p in [*self.ec2_hours, *self.ec2_runs] if p not in known}
        from_zero = [g for g in groups if not as_number(g.inputs.get("minSize"))] or groups
        if orphans and from_zero:
            demand[from_zero[0].urn] = demand[from_zero[0].urn] | orphans
        for group in groups:
            self.auto_scaling_group(group, demand[group.urn])

    def auto_scaling_group(self, group: Resource, providers: set[str]) -> None:
        types = instance_types(group.inputs)
        template = self.launch_template(group)
        if not types and template is not None:
            types = [str(template.inputs.get("instanceType"))]
        instance = types[0] if types else ""
        minimum = as_number(group.inputs.get("minSize"))
        task_hours = sum(self.ec2_hours.get(p, 0.0) for p in providers)
        runs = sum(self.ec2_runs.get(p, 0.0) for p in providers)
        served = [self.ec2_services[p] for p in providers if p in self.ec2_services]
        hours = minimum * prices.HOURS_PER_MONTH
        note = f"minSize {minimum:g}: always on"
        if served:
            per = tasks_per_instance_of(served[0], instance)
            burst = self.ledger.assume("gpu_serving_burst_instances")
            hours = max(hours, task_hours / per) + burst * prices.HOURS_PER_MONTH
            note = (
                f"the larger of minSize {minimum:g} always on (the warm minimum) and "
                f"{task_hours:.1f} service task-hours at {per:g} task(s) per {instance}, plus "
                f"{burst:g} instance(s) of load-driven scale-out on average"
            )
        elif task_hours or runs:
            overhead = self.ledger.assume("gpu_instance_overhead_hours_per_run")
            hours += task_hours + runs * overhead
            note = (
                f"minSize {minimum:g}: only the expected training hours "
                f"({task_hours:.1f} task-hours + {overhead} h boot and scale-in per run)"
            )
        if hours <= 0:
            return
        price = prices.EC2_ON_DEMAND_HOUR.get(instance)
        if price is None:
            self.ledger.unknown(group, f"EC2 {instance or '?'} instance-hours", "no price")
        else:
            on_demand, spot = purchase_split(group.inputs, hours)
            first = f"first of {', '.join(types)}"
            if on_demand:
                self.ledger.lines.append(
                    CostLine(
                        group.name,
                        group.type,
                        f"EC2 {instance} on-demand ({first})",
                        on_demand,
                        "instance-hour",
                        price,
                        on_demand * price,
                        note,
                    )
                )
            if spot:
                discount = self.ledger.assume("ec2_spot_discount")
                base = as_number(
                    get_path(
                        group.inputs,
                        "mixedInstancesPolicy.instancesDistribution.onDemandBaseCapacity",
                    )
                )
                self.ledger.lines.append(
                    CostLine(
                        group.name,
                        group.type,
                        f"EC2 {instance} Spot above the on-demand base of {base:g} ({first})",
                        spot,
                        "instance-hour",
                        round(price * (1 - discount), 6),
                        spot * price * (1 - discount),
                        note,
                    )
                )
        if template is not None and ebs_gb(template.inputs):
            gb_months = ebs_gb(template.inputs) * hours / prices.HOURS_PER_MONTH
            self.ledger.add(group, "EBS gp3 root volumes", gb_months, "ebs_gp3_gb_month")

    def launch_template(self, group: Resource) -> Resource | None:
        spec = group.inputs.get("launchTemplate") or get_path(
            group.inputs, "mixedInstancesPolicy.launchTemplate.launchTemplateSpecification"
        )
        ident = get_path(spec, "id") or get_path(spec, "launchTemplateId")
        templates = resources_of(self.plan, LAUNCH_TEMPLATE)
        found = [t for t in templates if t.id == ident]
        return found[0] if found else (templates[0] if len(templates) == 1 else None)

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
            serving = max(self.serving_fraction.values(), default=1.0)
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
                        container_hours += self.task_hours.get(td.urn, 0.0)
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


def purchase_split(inputs: Mapping[str, Any], hours: float) -> tuple[float, float]:
    """(on-demand, Spot) instance-hours of a group running `hours` a month: the first
    `onDemandBaseCapacity` instances on-demand, `onDemandPercentageAboveBaseCapacity` percent of
    the rest (EC2 Auto Scaling "instances distribution"); no mixed policy: all on-demand."""
    distribution = get_path(inputs, "mixedInstancesPolicy.instancesDistribution")
    if not isinstance(distribution, Mapping):
        return hours, 0.0
    instances = hours / prices.HOURS_PER_MONTH
    base = as_number(distribution.get("onDemandBaseCapacity"))
    percent = as_number(distribution.get("onDemandPercentageAboveBaseCapacity"), 100.0)
    on_demand = min(instances, base) + max(instances - base, 0.0) * percent / 100
    return on_demand * prices.HOURS_PER_MONTH, (instances - on_demand) * prices.HOURS_PER_MONTH


def tasks_per_instance_of(td: Resource, instance: str) -> float:
    """How many tasks of this definition one instance of the type holds (the program's own
    placement arithmetic, `components.aws_facts.tasks_per_instance`); 1 for a type it lacks."""
    if instance not in GPU_INSTANCES:
        return 1.0
    containers = checks.containers(td.inputs)
    gpus = sum(
        as_number(get_path(r, "value"))
        for c in containers
        for r in as_list(c.get("resourceRequirements"))
        if get_path(r, "type") == "GPU"
    )
    vcpu, gb = _Model.task_size(td)
    fits, _ = tasks_per_instance(
        instance, int(gpus) or 1, max(int(vcpu * 1024), 1), max(int(gb * 1024), 1)
    )
    return float(max(fits, 1))


def instance_types(inputs: Mapping[str, Any]) -> list[str]:
    overrides = as_list(get_path(inputs, "mixedInstancesPolicy.launchTemplate.overrides"))
    return [str(get_path(o, "instanceType")) for o in overrides if get_path(o, "instanceType")]


def ebs_gb(inputs: Mapping[str, Any]) -> float:
    return sum(
        as_number(get_path(m, "ebs.volumeSize")) for m in as_list(inputs.get("blockDeviceMappings"))
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
    model.services()
    model.training()
    model.scheduled_tasks()
    model.auto_scaling_groups()
    model.load_balancers()
    model.log_groups()
    model.storage()
    model.per_resource()
    pricing = verdicts(plan, model.ledger, PRICED_TYPES, FREE_TYPES)
    ledger = model.ledger
    return Estimate(ledger.lines, dict(sorted(ledger.assumptions.items())), pricing)
