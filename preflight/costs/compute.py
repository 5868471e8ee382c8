"""Compute: ECS tasks on Fargate and Fargate Spot, and what they ask of EC2 capacity.

- inference services: running tasks from `desiredCount` clamped into the scaling target's
  min..max as its scheduled actions move them (played over the reference year), split across
  capacity providers by the strategy (base first, then weights), plus a public IPv4 per running
  task when tasks get public addresses;
- training runs: per run of a state machine (`preflight.costs.orchestration` counts them), each
  ECS step of its main path on the capacity the step asks for;
- the scheduled job and the model monitor: an EventBridge rule's ECS target, its fires a month
  x its task count, each run `step_hours_per_run` long (the model monitor's
  `model_monitor_minutes_per_run`).

Tasks on an EC2 capacity provider are not priced here: their task-hours and runs are handed to
`preflight.costs.ec2` (`TaskUsage`), which prices the instances under the provider.

Prices (`preflight/prices.py`): `fargate_vcpu_hour` and `fargate_gb_hour`
(aws.amazon.com/fargate/pricing, Linux/x86 on-demand), Fargate Spot at the
`fargate_spot_discount` assumption off them; `public_ipv4_hour` (aws.amazon.com/vpc/pricing).
Assumptions: `train_hours_per_run`, `step_hours_per_run`, `model_monitor_minutes_per_run`.
Capacity provider names: `components.aws_facts`; the model monitor's container name:
`components.documents.model_monitor`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.aws_facts import FARGATE, FARGATE_PROVIDERS, FARGATE_SPOT
from components.documents.model_monitor import MODEL_MONITOR_CONTAINER
from policy import checks
from preflight import prices
from preflight.costs import orchestration
from preflight.costs.core import (
    MONTHS_PER_YEAR,
    Ledger,
    as_list,
    as_number,
    get_path,
    json_document,
    resources_of,
)
from preflight.costs.orchestration import EVENT_RULE, EVENT_TARGET, STATE_MACHINE
from preflight.costs.schedules import (
    MINUTES_PER_YEAR,
    REFERENCE_YEAR,
    ScalingEvent,
    scaled_spans,
    schedule_fires,
)
from preflight.offline import Plan, Resource

SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
CLUSTER_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCHEDULED_ACTION = "aws:appautoscaling/scheduledAction:ScheduledAction"

PRICED = frozenset({SERVICE})
FREE = frozenset(
    {
        # A task definition's runs are priced on the service or state machine that runs it.
        TASK_DEFINITION,
        CLUSTER_PROVIDERS,
        SCALING_TARGET,
        "aws:appautoscaling/policy:Policy",
        SCHEDULED_ACTION,
    }
)


# --- capacity strategies -------------------------------------------------------------------------


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


def strategy_of(items: Any) -> list[Provider]:
    """A capacity provider strategy as the ECS API (camelCase) or ASL (PascalCase) spells it."""
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


def cluster_default_strategy(plan: Plan) -> list[Provider]:
    for providers in resources_of(plan, CLUSTER_PROVIDERS):
        strategy = strategy_of(providers.inputs.get("defaultCapacityProviderStrategies"))
        if strategy:
            return strategy
    return []


# --- task definitions ----------------------------------------------------------------------------


def task_definition(plan: Plan, reference: Any) -> Resource | None:
    """The task definition an ARN, family or `family:revision` names."""
    if not isinstance(reference, str) or not reference:
        return None
    for td in resources_of(plan, TASK_DEFINITION):
        props = {**td.inputs, **td.outputs}
        family = props.get("family")
        candidates = {props.get("arn"), props.get("arnWithoutRevision"), family}
        if reference in candidates or (family and reference.startswith(f"{family}:")):
            return td
    return None


def task_size(td: Resource) -> tuple[float, float]:
    """(vCPU, GB) of a task definition: task-level values, else the containers' sum."""
    cpu, memory = as_number(td.inputs.get("cpu")), as_number(td.inputs.get("memory"))
    containers = checks.containers(td.inputs)
    if not cpu:
        cpu = sum(as_number(c.get("cpu")) for c in containers)
    if not memory:
        memory = sum(as_number(c.get("memory") or c.get("memoryReservation")) for c in containers)
    return cpu / 1024, memory / 1024


# --- the tasks -----------------------------------------------------------------------------------


@dataclass
class TaskUsage:
    """What the tasks leave for other families to price."""

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


def tasks(plan: Plan, ledger: Ledger) -> TaskUsage:
    """Price every ECS task the plan runs: services, then training runs, then the scheduled
    job."""
    usage = TaskUsage()
    services(plan, ledger, usage)
    training_runs(plan, ledger, usage)
    scheduled_job(plan, ledger, usage)
    return usage


def fargate(
    ledger: Ledger,
    usage: TaskUsage,
    resource: Resource,
    td: Resource,
    hours: dict[str, float],
    what: str,
) -> None:
    """Fargate lines for expected task-hours per capacity provider; hours on any other provider
    go to `usage.ec2_hours`."""
    vcpu, gb = task_size(td)
    size = f"{vcpu:g} vCPU / {gb:g} GB"
    for provider, task_hours in sorted(hours.items()):
        if task_hours <= 0:
            continue
        if provider == FARGATE:
            ledger.add(resource, f"{what}: Fargate vCPU", task_hours * vcpu, "fargate_vcpu_hour")
            ledger.add(resource, f"{what}: Fargate memory", task_hours * gb, "fargate_gb_hour")
        elif provider == FARGATE_SPOT:
            factor = 1 - ledger.assume("fargate_spot_discount")
            note = f"{task_hours:.1f} task-hours of {size}"
            ledger.add(
                resource,
                f"{what}: Fargate Spot vCPU",
                task_hours * vcpu,
                "fargate_vcpu_hour",
                factor,
                note,
            )
            ledger.add(
                resource,
                f"{what}: Fargate Spot memory",
                task_hours * gb,
                "fargate_gb_hour",
                factor,
                note,
            )
        else:
            usage.ec2_hours[provider] += task_hours


# -- inference services


def services(plan: Plan, ledger: Ledger, usage: TaskUsage) -> None:
    for service in resources_of(plan, SERVICE):
        td = task_definition(plan, service.inputs.get("taskDefinition"))
        if td is None:
            ledger.unknown(service, "tasks", "its task definition is not in the plan")
            continue
        strategy = strategy_of(service.inputs.get("capacityProviderStrategies"))
        if not strategy and service.inputs.get("launchType") in (None, ""):
            strategy = cluster_default_strategy(plan)
        elif not strategy:
            strategy = [Provider(str(service.inputs["launchType"]), 0, 1)]
        hours, average, note, up = service_hours(plan, service, strategy)
        usage.serving_fraction[service.name] = up
        ledger.derive(f"{service.name}.tasks_running_average", average, note)
        usage.task_hours[td.urn] += sum(hours.values())
        fargate(ledger, usage, service, td, hours, "tasks")
        for provider in hours:
            if provider not in FARGATE_PROVIDERS:
                usage.ec2_services[provider] = td
        if get_path(service.inputs, "networkConfiguration.assignPublicIp") is True:
            ledger.add(
                service,
                "public IPv4 per running task",
                sum(hours.values()),
                "public_ipv4_hour",
                note="tasks in public subnets (no NAT) each hold a public address",
            )


def service_hours(
    plan: Plan, service: Resource, strategy: Sequence[Provider]
) -> tuple[dict[str, float], float, str, float]:
    """Expected task-hours a month per capacity provider, from desiredCount, the scaling
    target's min..max and the scheduled actions that move them; the average task count; a
    note; and the share of the time at least one task runs."""
    desired = as_number(service.inputs.get("desiredCount"), 1)
    name = str(service.outputs.get("name") or service.name)
    target = next(
        (
            t
            for t in resources_of(plan, SCALING_TARGET)
            if str(t.inputs.get("resourceId", "")).endswith(f"/{name}")
        ),
        None,
    )
    low = as_number(target.inputs.get("minCapacity"), desired) if target else desired
    high = as_number(target.inputs.get("maxCapacity"), desired) if target else desired
    events: list[ScalingEvent] = []
    actions = [
        a
        for a in resources_of(plan, SCHEDULED_ACTION)
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
        for provider, count in split_tasks(running, strategy).items():
            per_provider[provider] += count * minutes
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


# -- training runs: the ECS steps of each state machine's runs


def training_runs(plan: Plan, ledger: Ledger, usage: TaskUsage) -> None:
    machines = resources_of(plan, STATE_MACHINE)
    service_tds = {
        td.urn
        for s in resources_of(plan, SERVICE)
        if (td := task_definition(plan, s.inputs.get("taskDefinition")))
    }
    for machine in machines:
        definition = json_document(machine.inputs.get("definition"))
        runs = orchestration.runs_per_month(plan, ledger, machine, machines)
        orchestration.state_transitions(ledger, machine, definition, runs)
        steps = [
            (name, task_definition(plan, p.get("TaskDefinition")), p, times)
            for name, p, times in orchestration.ecs_steps(definition)
        ]
        found = [(name, td, p, times) for name, td, p, times in steps if td is not None]
        if not found:
            # The definition names its tasks dynamically: every task definition no service
            # runs is taken to run once per execution.
            found = [
                (td.name.rsplit("-", 1)[-1], td, {}, 1.0)
                for td in resources_of(plan, TASK_DEFINITION)
                if td.urn not in service_tds
            ]
        for step, td, parameters, times in found:
            _training_step(plan, ledger, usage, step, td, parameters, runs, times)


def _training_step(
    plan: Plan,
    ledger: Ledger,
    usage: TaskUsage,
    step: str,
    td: Resource,
    parameters: Mapping[str, Any],
    runs: float,
    times: float = 1.0,
) -> None:
    """`times`: how often one run runs the step (a sweep's Map runs Train once per trial)."""
    # The step's name says what it does (Validate, Train, Gate); only training runs long.
    key = "train_hours_per_run" if "train" in step.lower() else "step_hours_per_run"
    hours = runs * times * ledger.assume(key)
    strategy = strategy_of(parameters.get("CapacityProviderStrategy"))
    if not strategy and parameters.get("LaunchType"):
        strategy = [Provider(str(parameters["LaunchType"]), 0, 1)]
    if not strategy:
        compatibilities = as_list(td.inputs.get("requiresCompatibilities"))
        strategy = (
            [Provider("EC2", 0, 1)]
            if compatibilities == ["EC2"]
            else cluster_default_strategy(plan)
        )
    split = split_tasks(1, strategy)
    usage.task_hours[td.urn] += hours
    # Runs on an EC2 capacity provider each start (and later drain) an instance.
    for provider, share in split.items():
        if provider not in FARGATE_PROVIDERS:
            usage.ec2_runs[provider] += runs * times * share
    per_provider = {p: hours * share for p, share in split.items()}
    each = f" x {times:g} Map iterations (a sweep's trials)" if times != 1 else ""
    what = f"{runs:.1f} runs{each} x {ledger.assumptions[key]['value']} h"
    fargate(ledger, usage, td, td, per_provider, what)


# -- the scheduled tasks: EventBridge rules that run an ECS task directly (the ingest task, the
# model monitor)


def is_model_monitor(td: Resource) -> bool:
    """The platform's model monitor's task definition (its one container's name)."""
    return any(c.get("name") == MODEL_MONITOR_CONTAINER for c in checks.containers(td.inputs))


def scheduled_job(plan: Plan, ledger: Ledger, usage: TaskUsage) -> None:
    rules = {rule.outputs.get("name"): rule for rule in resources_of(plan, EVENT_RULE)}
    for target in resources_of(plan, EVENT_TARGET):
        ecs = target.inputs.get("ecsTarget")
        rule = rules.get(target.inputs.get("rule"))
        if not ecs or rule is None:
            continue
        td = task_definition(plan, get_path(ecs, "taskDefinitionArn"))
        if td is None:
            ledger.unknown(target, "scheduled tasks", "its task definition is not in the plan")
            continue
        count = as_number(get_path(ecs, "taskCount"), 1.0)
        runs = orchestration.rule_runs(ledger, rule) * count
        if is_model_monitor(td):
            minutes = ledger.assume("model_monitor_minutes_per_run")
            hours, each = runs * minutes / 60, f"{minutes:g} min"
        else:
            step_hours = ledger.assume("step_hours_per_run")
            hours, each = runs * step_hours, f"{step_hours} h"
        strategy = strategy_of(get_path(ecs, "capacityProviderStrategies"))
        if not strategy and get_path(ecs, "launchType"):
            strategy = [Provider(str(get_path(ecs, "launchType")), 0, 1)]
        split = split_tasks(1, strategy or cluster_default_strategy(plan))
        usage.task_hours[td.urn] += hours
        per_provider = {p: hours * share for p, share in split.items()}
        fargate(ledger, usage, td, td, per_provider, f"{runs:.1f} scheduled runs x {each}")
