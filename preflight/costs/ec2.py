"""EC2 capacity: the (GPU) instances of each Auto Scaling group under an ECS capacity provider,
and their root volumes.

Each group is priced by the tasks of the capacity providers over it (`compute.TaskUsage`):

- a serving group runs the larger of its warm minimum and what its service's tasks need (tasks
  per instance from GPUs, network interfaces, CPU and memory: the program's own placement
  arithmetic, `components.aws_facts.tasks_per_instance`), plus the assumed load-driven
  scale-out;
- a training group (minimum 0) runs only for its runs: the expected task-hours plus boot and
  scale-in per run;
- on-demand up to the group's base, Spot above it, as its instances distribution says.

Prices (`preflight/prices.py`): `EC2_ON_DEMAND_HOUR` (aws.amazon.com/ec2/pricing/on-demand,
Linux), Spot at the `ec2_spot_discount` assumption off it; `ebs_gp3_gb_month`
(aws.amazon.com/ebs/pricing). Assumptions: `gpu_serving_burst_instances`,
`gpu_instance_overhead_hours_per_run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.aws_facts import GPU_INSTANCES, tasks_per_instance
from policy import checks
from preflight import prices
from preflight.costs.compute import TaskUsage, task_size
from preflight.costs.core import CostLine, Ledger, as_list, as_number, get_path, resources_of
from preflight.offline import Plan, Resource

ASG = "aws:autoscaling/group:Group"
CAPACITY_PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"

PRICED = frozenset({ASG})
FREE = frozenset(
    {
        # Priced through the group: its instances are the launch template's.
        CAPACITY_PROVIDER,
        LAUNCH_TEMPLATE,
    }
)


def auto_scaling_groups(plan: Plan, ledger: Ledger, usage: TaskUsage) -> None:
    groups = resources_of(plan, ASG)
    demand = {group.urn: providers_of(plan, group) for group in groups}
    known = set().union(*demand.values()) if demand else set()
    # Tasks on EC2 the plan cannot tie to a group (a bare EC2 launch type) go to the first
    # group that scales from zero, as a training group does.
    orphans = {p for p in [*usage.ec2_hours, *usage.ec2_runs] if p not in known}
    from_zero = [g for g in groups if not as_number(g.inputs.get("minSize"))] or groups
    if orphans and from_zero:
        demand[from_zero[0].urn] = demand[from_zero[0].urn] | orphans
    for group in groups:
        _auto_scaling_group(plan, ledger, usage, group, demand[group.urn])


def _auto_scaling_group(
    plan: Plan, ledger: Ledger, usage: TaskUsage, group: Resource, providers: set[str]
) -> None:
    types = instance_types(group.inputs)
    template = launch_template(plan, group)
    if not types and template is not None:
        types = [str(template.inputs.get("instanceType"))]
    instance = types[0] if types else ""
    minimum = as_number(group.inputs.get("minSize"))
    task_hours = sum(usage.ec2_hours.get(p, 0.0) for p in providers)
    runs = sum(usage.ec2_runs.get(p, 0.0) for p in providers)
    served = [usage.ec2_services[p] for p in providers if p in usage.ec2_services]
    hours = minimum * prices.HOURS_PER_MONTH
    note = f"minSize {minimum:g}: always on"
    if served:
        per = tasks_per_instance_of(served[0], instance)
        burst = ledger.assume("gpu_serving_burst_instances")
        hours = max(hours, task_hours / per) + burst * prices.HOURS_PER_MONTH
        note = (
            f"the larger of minSize {minimum:g} always on (the warm minimum) and "
            f"{task_hours:.1f} service task-hours at {per:g} task(s) per {instance}, plus "
            f"{burst:g} instance(s) of load-driven scale-out on average"
        )
    elif task_hours or runs:
        overhead = ledger.assume("gpu_instance_overhead_hours_per_run")
        hours += task_hours + runs * overhead
        note = (
            f"minSize {minimum:g}: only the expected training hours "
            f"({task_hours:.1f} task-hours + {overhead} h boot and scale-in per run)"
        )
    if hours <= 0:
        return
    price = prices.EC2_ON_DEMAND_HOUR.get(instance)
    if price is None:
        ledger.unknown(group, f"EC2 {instance or '?'} instance-hours", "no price")
    else:
        on_demand, spot = purchase_split(group.inputs, hours)
        first = f"first of {', '.join(types)}"
        if on_demand:
            ledger.lines.append(
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
            discount = ledger.assume("ec2_spot_discount")
            base = as_number(
                get_path(
                    group.inputs, "mixedInstancesPolicy.instancesDistribution.onDemandBaseCapacity"
                )
            )
            ledger.lines.append(
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
        ledger.add(group, "EBS gp3 root volumes", gb_months, "ebs_gp3_gb_month")


def providers_of(plan: Plan, group: Resource) -> set[str]:
    """Names of the ECS capacity providers over an Auto Scaling group."""
    arn = group.outputs.get("arn")
    return {
        str(provider.outputs.get("name") or provider.name)
        for provider in resources_of(plan, CAPACITY_PROVIDER)
        if arn and get_path(provider.inputs, "autoScalingGroupProvider.autoScalingGroupArn") == arn
    }


def launch_template(plan: Plan, group: Resource) -> Resource | None:
    """The group's launch template (the only one, when the group's reference cannot be told)."""
    spec = group.inputs.get("launchTemplate") or get_path(
        group.inputs, "mixedInstancesPolicy.launchTemplate.launchTemplateSpecification"
    )
    ident = get_path(spec, "id") or get_path(spec, "launchTemplateId")
    templates = resources_of(plan, LAUNCH_TEMPLATE)
    found = [t for t in templates if t.id == ident]
    return found[0] if found else (templates[0] if len(templates) == 1 else None)


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
    vcpu, gb = task_size(td)
    fits, _ = tasks_per_instance(
        instance, int(gpus) or 1, max(int(vcpu * 1024), 1), max(int(gb * 1024), 1)
    )
    return float(max(fits, 1))


def instance_types(inputs: Mapping[str, Any]) -> list[str]:
    """The instance types of a group's mixed instances policy, in its order of preference."""
    overrides = as_list(get_path(inputs, "mixedInstancesPolicy.launchTemplate.overrides"))
    return [str(get_path(o, "instanceType")) for o in overrides if get_path(o, "instanceType")]


def ebs_gb(inputs: Mapping[str, Any]) -> float:
    """GB of EBS a launch template gives each instance."""
    return sum(
        as_number(get_path(m, "ebs.volumeSize")) for m in as_list(inputs.get("blockDeviceMappings"))
    )
