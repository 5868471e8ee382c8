"""Rollouts: what the service's deployments add (components/documents/rollout.py).

- Overlap: every deployment runs the new revision's tasks beside the old ones, from their start
  through the checks (`deployment_start_minutes`) and the bake (a canary's or linear steps' bake
  and `bakeTimeInMinutes`), priced as the service's tasks are (same size, same capacity split).
  Deployments a month: the assumed `deployments_per_month` (image updates) plus, where the
  pipeline rolls models out (a `Deploy` state), its runs a month.
- The rollout functions: Lambda requests and Arm GB-seconds (`lambda_seconds_per_invocation`):
  the deploy function once per model rollout plus a status call every 30 s of it, the sample
  check once per deployment. The free tier is not counted.

Prices (`preflight/prices.py`): `fargate_vcpu_hour`, `fargate_gb_hour` (through compute),
`lambda_million_requests`, `lambda_arm_gb_second` (aws.amazon.com/lambda/pricing).
"""

from __future__ import annotations

import math
from typing import Any

from preflight.costs import compute, orchestration
from preflight.costs.core import Ledger, as_number, get_path, json_document, resources_of
from preflight.offline import Plan, Resource

FUNCTION = "aws:lambda/function:Function"
PRICED = frozenset({FUNCTION})
FREE = frozenset()
POLL_SECONDS = 30


def bake_minutes(config: Any) -> float:
    """What a successful deployment waits after its checks: canary bake, linear steps, bake."""
    strategy = str(get_path(config, "strategy") or "ROLLING")
    minutes = as_number(get_path(config, "bakeTimeInMinutes"), 0)
    if strategy == "CANARY":
        minutes += as_number(get_path(config, "canaryConfiguration.canaryBakeTimeInMinutes"), 0)
    if strategy == "LINEAR":
        step = as_number(get_path(config, "linearConfiguration.stepPercent"), 100) or 100
        steps = math.ceil(100 / step)
        minutes += (steps - 1) * as_number(
            get_path(config, "linearConfiguration.stepBakeTimeInMinutes"), 0
        )
    return minutes


def model_rollouts(plan: Plan, ledger: Ledger) -> float:
    """Runs a month of the state machines that roll a model out (a `Deploy` state)."""
    machines = resources_of(plan, orchestration.STATE_MACHINE)
    runs = 0.0
    for machine in machines:
        definition = json_document(machine.inputs.get("definition")) or {}
        if "Deploy" in (definition.get("States") or {}):
            runs += orchestration.runs_per_month(plan, ledger, machine, machines)
    return runs


def rollouts(plan: Plan, ledger: Ledger, usage: compute.TaskUsage) -> None:
    models = model_rollouts(plan, ledger)
    start = ledger.assume("deployment_start_minutes")
    services = resources_of(plan, compute.SERVICE)
    minutes_per_deployment = 0.0
    deployments = 0.0
    for service in services:
        td = compute.task_definition(plan, service.inputs.get("taskDefinition"))
        if td is None:
            continue
        deployments = ledger.assume("deployments_per_month") + models
        minutes_per_deployment = start + bake_minutes(service.inputs.get("deploymentConfiguration"))
        average = ledger.assumptions.get(f"{service.name}.tasks_running_average", {}).get(
            "value", as_number(service.inputs.get("desiredCount"), 1)
        )
        strategy = compute.strategy_of(service.inputs.get("capacityProviderStrategies"))
        if not strategy:
            strategy = compute.cluster_default_strategy(plan)
        # On Fargate only: GPU instances are priced by their group, whose spare capacity is
        # what the new tasks start on.
        hours = {
            provider: count * deployments * minutes_per_deployment / 60
            for provider, count in compute.split_tasks(max(average, 1.0), strategy).items()
            if provider in compute.FARGATE_PROVIDERS
        }
        ledger.derive(
            f"{service.name}.deployment_overlap_hours",
            sum(hours.values()),
            f"{deployments:g} deployments a month x {minutes_per_deployment:g} minutes of the "
            "new revision's tasks beside the old",
        )
        compute.fargate(ledger, usage, service, td, hours, "deployment overlap")
    for function in resources_of(plan, FUNCTION):
        _function(ledger, function, models, deployments, minutes_per_deployment)


def _function(
    ledger: Ledger, function: Resource, models: float, deployments: float, minutes: float
) -> None:
    module = str(function.inputs.get("handler", "")).split(".", 1)[0]
    if module == "deploy":
        polls = math.ceil(minutes * 60 / POLL_SECONDS) + 1
        invocations = models * (1 + polls)
        what = f"{models:g} model rollouts x (1 deploy + {polls} status calls)"
    else:
        invocations = deployments
        what = f"{deployments:g} deployments x 1 sample check"
    seconds = ledger.assume("lambda_seconds_per_invocation")
    gb = as_number(function.inputs.get("memorySize"), 128) / 1024
    ledger.add(function, "requests", invocations / 1e6, "lambda_million_requests", note=what)
    ledger.add(
        function,
        "duration (Arm)",
        invocations * seconds * gb,
        "lambda_arm_gb_second",
        note=f"{invocations:g} invocations x {seconds:g} s x {gb:g} GB",
    )
