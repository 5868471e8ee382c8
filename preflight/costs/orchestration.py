"""Orchestration: Step Functions state transitions, how many runs a month the triggers start
(EventBridge rules and targets, EventBridge Scheduler schedules), and SQS queues (the dead-letter
queues). The ECS tasks a run starts are compute's (`preflight.costs.compute` asks this module for
the runs a month and a definition's ECS steps); SNS topics cost nothing here (alarm e-mails stay
within the free tier).

Prices (`preflight/prices.py`): `sfn_thousand_transitions` (aws.amazon.com/step-functions/pricing,
Standard workflows), `sqs_million_requests` (aws.amazon.com/sqs/pricing, Standard queue).
Assumptions: `image_pushes_per_month` and `drift_events_per_month` (the runs an event rule
starts), `sqs_million_requests_per_month`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from preflight.costs.core import Ledger, as_list, get_path, json_document, resources_of
from preflight.costs.schedules import fires_per_month
from preflight.offline import Plan, Resource

STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
SCHEDULER_SCHEDULE = "aws:scheduler/schedule:Schedule"
SQS_QUEUE = "aws:sqs/queue:Queue"

PRICED = frozenset({STATE_MACHINE, SQS_QUEUE})
FREE = frozenset(
    {
        # Rules and schedules cost nothing to exist; what they start is priced where it runs.
        EVENT_RULE,
        EVENT_TARGET,
        SCHEDULER_SCHEDULE,
        "aws:sns/topic:Topic",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:sqs/queuePolicy:QueuePolicy",
    }
)


# --- state machine definitions (ASL) -------------------------------------------------------------


def main_path_states(definition: Any) -> Iterator[str]:
    """State names on the main path of an ASL definition: from StartAt through Next, Default
    and Choices, into Parallel branches and Map iterators; not into Catch handlers (fallbacks)."""
    for name, _, _ in _main_path(definition):
        yield name


def _constant(path: Any, constants: Mapping[str, Any]) -> Any:
    """The value at `path` ($.a.b) that a Pass state's constant `Result` put there, or None."""
    if not isinstance(path, str):
        return None
    for where, value in constants.items():
        if path == where or path.startswith(where + "."):
            for key in path[len(where) :].split(".")[1:]:
                value = value.get(key) if isinstance(value, Mapping) else None
            return value
    return None


def _main_path(
    definition: Any, times: float = 1.0, constants: dict[str, Any] | None = None
) -> Iterator[tuple[str, Mapping[str, Any], float]]:
    """(name, state, how many times a run passes it): a Map's iterations count once per item
    when a Pass state on the main path put its items in the definition (a sweep's trials);
    otherwise once."""
    if not isinstance(definition, Mapping):
        return
    states = definition.get("States")
    if not isinstance(states, Mapping):
        return
    constants = {} if constants is None else constants
    queue = [definition.get("StartAt")]
    seen: set[str] = set()
    while queue:
        name = queue.pop(0)
        if not isinstance(name, str) or name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        yield name, state, times
        if state.get("Type") == "Pass" and "Result" in state:
            constants[str(state.get("ResultPath", "$"))] = state["Result"]
        for branch in as_list(state.get("Branches")):
            yield from _main_path(branch, times, constants)
        items = _constant(state.get("ItemsPath", "$"), constants)
        each = len(items) if isinstance(items, list) else 1
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), Mapping):
                yield from _main_path(state[key], times * each, constants)
        queue += [state.get("Next"), state.get("Default")]
        queue += [get_path(c, "Next") for c in as_list(state.get("Choices"))]


def ecs_steps(definition: Any) -> list[tuple[str, Mapping[str, Any], float]]:
    """(state name, `Parameters`, runs of it per execution) of every ECS RunTask state on the
    main path: a Map's inner steps run once per item (a sweep's trials)."""
    return [
        (name, state.get("Parameters") or {}, times)
        for name, state, times in _main_path(definition)
        if str(state.get("Resource", "")).startswith("arn:aws:states:::ecs:runTask")
    ]


def state_transitions(ledger: Ledger, machine: Resource, definition: Any, runs: float) -> None:
    """The transitions of `runs` executions a month along the definition's main path (a Map's
    inner states once per item)."""
    transitions = sum(times for _, _, times in _main_path(definition)) or 1
    ledger.add(
        machine,
        "state transitions",
        runs * transitions / 1000,
        "sfn_thousand_transitions",
        note=f"{runs:.1f} runs x {transitions:g} states on the main path (retries and "
        "fallbacks not counted)",
    )


# --- triggers: how often a run starts ------------------------------------------------------------


def rule_runs(ledger: Ledger, rule: Resource) -> float:
    """Times a month an EventBridge rule fires: its schedule's fires, else the assumed image
    pushes (an `aws.ecr` pattern) or drift events (any other pattern)."""
    if rule.inputs.get("state") == "DISABLED":
        return 0.0
    if rule.inputs.get("scheduleExpression"):
        return fires_per_month(str(rule.inputs["scheduleExpression"]))
    pattern = json_document(rule.inputs.get("eventPattern")) or {}
    sources = pattern.get("source") or []
    if "aws.ecr" in (sources if isinstance(sources, list) else [sources]):
        return ledger.assume("image_pushes_per_month")
    return ledger.assume("drift_events_per_month")


def runs_per_month(
    plan: Plan, ledger: Ledger, machine: Resource, machines: Sequence[Resource]
) -> float:
    """Executions a month of a state machine: the rules that target it (every rule when the plan
    has no targets and one machine) and its Scheduler schedules."""
    arn = machine.outputs.get("arn")
    targets = resources_of(plan, EVENT_TARGET)
    linked_rules = {t.inputs.get("rule") for t in targets if t.inputs.get("arn") == arn}
    runs = 0.0
    for rule in resources_of(plan, EVENT_RULE):
        rule_name = rule.outputs.get("name")
        if (targets or len(machines) > 1) and rule_name not in linked_rules:
            continue
        runs += rule_runs(ledger, rule)
    for schedule in resources_of(plan, SCHEDULER_SCHEDULE):
        if len(machines) == 1 or get_path(schedule.inputs, "target.arn") == arn:
            runs += fires_per_month(str(schedule.inputs.get("scheduleExpression", "")))
    ledger.derive(
        f"{machine.name}.runs_per_month",
        runs,
        "schedule fires a month plus the assumed image pushes and drift events",
    )
    return runs


# --- queues --------------------------------------------------------------------------------------


def queues(plan: Plan, ledger: Ledger) -> None:
    for queue in resources_of(plan, SQS_QUEUE):
        requests = ledger.assume("sqs_million_requests_per_month")
        ledger.add(queue, "SQS requests", requests, "sqs_million_requests")
