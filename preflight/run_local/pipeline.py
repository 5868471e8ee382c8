"""The stack's state machine, walked on this machine with Step Functions' semantics.

Pass and Choice states are evaluated as Step Functions evaluates them (preflight/asl.py). Each
`ecs:runTask` state runs its task locally with the overrides rendered from the definition and
its `TimeoutSeconds`; the stopped task is the state's result (Step Functions' `.sync` returns the
task description). The outcome follows the Amazon States Language specification
(https://states-language.net/spec.html, "Errors", "Retrying after error", "Fallback states"):

- the task fails with `States.TaskFailed` (an essential container exited non-zero, the task
  stopped otherwise, or a simulated Spot interruption) or `States.Timeout` (past
  `TimeoutSeconds`: Step Functions stops a `.sync` task, SIGTERM then SIGKILL after its
  containers' stopTimeout);
- the first Retrier whose `ErrorEquals` matches retries it after `IntervalSeconds` x
  `BackoffRate`^(attempt - 1), capped by `MaxDelaySeconds`, with full jitter when
  `JitterStrategy` is FULL, up to `MaxAttempts`; `States.ALL` matches every error and
  `States.TaskFailed` every error but `States.Timeout`; the waits are scaled by the session's
  `retry_scale` (1: as long as AWS waits);
- then the first Catcher whose `ErrorEquals` matches sends the state's input with the error
  (`{Error, Cause}`) at its `ResultPath` to its `Next` state; with none, the execution fails.

The retried and caught runs keep the execution's RUN_ID (its `Prepare` state fixed it). SNS
Publish is AWS-only: its rendered message is printed instead. A Lambda state invoking the
service's deploy function rolls the model out to the session's service (rollout.py).

A Map state runs its iterations on threads, at most `MaxConcurrency` at once, each iteration's
states walked as above (map_state.py). A `.waitForTaskToken` ECS state gives its container the
token (`$$.Task.Token`) and the session's callback endpoint (callback.py); the state's result is
what SendTaskSuccess returned, or SendTaskFailure's error.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from preflight import asl
from preflight.run_local.docker import RunLocalError
from preflight.run_local.rollout import LocalRollout, read_rollout
from preflight.run_local.session import Session

ECS_RUN_TASK = "arn:aws:states:::ecs:runTask"
WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
ALL = "States.ALL"
DEFAULT_TIMEOUT = 99999999
"""ASL: a Task state without TimeoutSeconds times out after 99999999 seconds."""


class StateFailed(Exception):
    """A state failed with an error name and cause, as Step Functions reports them."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def matches(error_equals: Sequence[str], error: str) -> bool:
    """Whether a Retrier's or Catcher's `ErrorEquals` matches `error`."""
    for name in error_equals:
        if name in (ALL, error):
            return True
        if name == TASK_FAILED and error != TIMEOUT:
            return True
    return False


def retry_delay(retrier: Mapping[str, Any], attempt: int) -> float:
    """Seconds before retry `attempt` (1-based) under one Retrier, before jitter."""
    delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** (attempt - 1)
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, retrier["MaxDelaySeconds"])
    return float(delay)


def _overrides(
    parameters: Mapping[str, Any],
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """RunTask's containerOverrides: environment and command per container."""
    environments: dict[str, dict[str, str]] = {}
    commands: dict[str, list[str]] = {}
    for override in (parameters.get("Overrides") or {}).get("ContainerOverrides", []):
        environment = override.get("Environment", [])
        environments[override["Name"]] = {e["Name"]: str(e["Value"]) for e in environment}
        if override.get("Command"):
            commands[override["Name"]] = [str(part) for part in override["Command"]]
    return environments, commands


@dataclass
class Shared:
    """What every walk of one execution shares, its Map iterations' included."""

    spot_left: list[float]
    ran_steps: list[str] = field(default_factory=list)
    rollout: LocalRollout | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def execution_context(execution_input: Any, suffix: str) -> dict[str, Any]:
    """`$$.Execution` of a new execution (a Distributed Map's child gets one of its own)."""
    started = dt.datetime.now(dt.UTC)
    name = f"local-{started.strftime('%Y%m%d%H%M%S')}-{suffix}"
    return {
        "Execution": {
            "Id": f"local:{name}",
            "Name": name,
            "StartTime": started.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{started.microsecond // 1000:03d}Z",
            "Input": execution_input if execution_input is not None else {},
        }
    }


class Walk:
    """One execution of the state machine, or one iteration of a Map state in it (`machine`,
    `context` and `shared` given by the Map, `tag` naming the iteration in the log)."""

    def __init__(
        self,
        session: Session,
        only: str | None,
        execution_input: Any,
        *,
        machine: Mapping[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        shared: Shared | None = None,
        tag: str = "[pipeline]",
    ) -> None:
        self.session = session
        self.only = only
        self.out = session.out
        self.tag = tag
        self.families = {f.rsplit("-", 1)[-1]: f for f in session.view.tasks}
        self.machine = machine if machine is not None else session.view.state_machine
        self.context = (
            context
            if context is not None
            else execution_context(execution_input or {}, session.id)
        )
        self.data: Any = execution_input or {}
        self.child = shared is not None
        self.shared = shared or Shared(spot_left=list(session.spot_interruptions))
        self.steps: list[str] = []
        """The steps this walk ran (the execution's, with its iterations', are `ran_steps`)."""
        self.error = ""
        self.cause = ""
        """Why the walk failed (a Fail state's error and cause, or the uncaught error)."""
        self.aborted = threading.Event()
        """Set by a Map whose run failed: the walk stops its task and ends."""
        self.task: Any = None

    @property
    def ran_steps(self) -> list[str]:
        return self.shared.ran_steps

    def run(self) -> int:
        machine = self.machine
        name = machine["StartAt"]
        while True:
            if self.aborted.is_set():
                self.error, self.cause = "States.Aborted", "the Map Run failed"
                return 1
            state = machine["States"][name]
            kind = state["Type"]
            if kind == "Choice":
                following = next(
                    (
                        c["Next"]
                        for c in state["Choices"]
                        if asl.choice_matches(c, self.data, self.context)
                    ),
                    state.get("Default"),
                )
                if following is None:
                    raise RunLocalError(f"Choice {name}: no rule matched and no Default")
                name = following
                continue
            if kind == "Succeed":
                steps = self.steps if self.child else self.ran_steps
                self.out(f"{self.tag} {name}: succeeded ({', '.join(steps)})")
                return 0
            if kind == "Fail":
                self.error = self._optional(state.get("ErrorPath")) or state.get("Error", "")
                self.cause = self._optional(state.get("CausePath")) or state.get("Cause", "")
                self.out(f"{self.tag} {name}: failed ({self.error}: {_short(self.cause)})")
                return 1
            try:
                done = self._execute(name, state)
            except StateFailed as failure:
                recovered, following = self._recover(name, state, failure)
                if not recovered:
                    self.error, self.cause = failure.error, failure.cause
                    self.out(f"{self.tag} {name} failed ({failure.error}): nothing catches it")
                    return 1
                if following is None:
                    return 0
                name = following
                continue
            if done or state.get("End"):
                return 0
            name = state["Next"]

    def _optional(self, path: str | None) -> Any:
        if not path:
            return None
        try:
            return asl.read_path(path, self.data, self.context)
        except asl.AslError:
            return None

    # --- states ---

    def _execute(self, name: str, state: Mapping[str, Any]) -> bool:
        """Run one state, updating the data; True when a single-step walk is done."""
        kind = state["Type"]
        if kind == "Pass":
            effective = asl.state_input(state, self.data, self.context)
            result = state.get("Result", effective)
            self.data = asl.state_output(state, self.data, result, self.context)
            return False
        if kind == "Wait":
            self.out(f"{self.tag} {name}: Wait {state.get('Seconds', '?')} s skipped locally")
            self.data = asl.state_output(state, self.data, self.data, self.context)
            return False
        if kind == "Map":
            from preflight.run_local.map_state import run_map

            result = run_map(self, name, state)
            self.data = asl.state_output(state, self.data, result, self.context)
            return False
        if kind != "Task":
            raise RunLocalError(f"state {name}: type {kind} is not supported locally")
        resource = state["Resource"]
        context, token = self.context, None
        if resource.endswith(WAIT_FOR_TASK_TOKEN):
            token = self.session.callbacks.new_token()
            context = {**self.context, "Task": {"Token": token}}
        parameters = asl.state_input(state, self.data, context)
        if resource.startswith(ECS_RUN_TASK):
            return self._run_task(name, state, parameters, token)
        if resource == LAMBDA_INVOKE:
            result = self._invoke(name, parameters)
            self.data = asl.state_output(state, self.data, result, self.context)
            return False
        if resource == SNS_PUBLISH:
            self.out(
                f"{self.tag} {name}: sns:publish exists only on AWS; it would send to "
                f"{parameters.get('TopicArn')}: {parameters.get('Subject')}: "
                f"{_short(str(parameters.get('Message')), 600)}"
            )
        else:
            self.out(f"{self.tag} {name}: {resource} exists only on AWS, skipped")
        self.data = asl.state_output(state, self.data, None, self.context)
        return False

    def _run_task(
        self,
        name: str,
        state: Mapping[str, Any],
        parameters: Mapping[str, Any],
        token: str | None = None,
    ) -> bool:
        family = parameters["TaskDefinition"]
        if family not in self.session.view.tasks:
            raise RunLocalError(f"{name}: task definition {family} is not declared")
        step = next((s for s, f in self.families.items() if f == family), family)
        if self.only is not None and step != self.only:
            self.data = asl.state_output(state, self.data, None, self.context)
            return False
        providers = [
            entry.get("CapacityProvider")
            for entry in parameters.get("CapacityProviderStrategy", [])
        ]
        self.out(f"{self.tag} {name}: ecs:runTask {family} ({', '.join(map(str, providers))})")
        environments, commands = _overrides(parameters)
        if token is not None:
            # The container given the token calls back here instead of Step Functions.
            for environment in environments.values():
                if token in environment.values():
                    environment.update(self.session.callbacks.environment())
        task = self.session.task(family, environments, commands)
        timeout = float(state.get("TimeoutSeconds", DEFAULT_TIMEOUT))
        self.task = task
        task.start()
        if "FARGATE_SPOT" in providers:
            with self.shared.lock:
                interrupt = self.shared.spot_left.pop(0) if self.shared.spot_left else None
            if interrupt is not None:
                task.interrupt_after(interrupt)
        if self.aborted.is_set():
            task.stop(reason="the Map Run failed")
        outcome = task.wait(timeout)
        self.task = None
        self.steps.append(step)
        with self.shared.lock:
            self.ran_steps.append(step)
        codes = ", ".join(f"{n} {c}" for n, c in outcome.exit_codes.items())
        self.out(f"{self.tag} {name}: task stopped ({outcome.stop_code}; exit codes {codes})")
        if token is not None:
            return self._called_back(name, state, token, outcome, timeout)
        if outcome.timed_out:
            raise StateFailed(TIMEOUT, f"State '{name}' has timed out after {timeout:g} s")
        if outcome.failed:
            # Step Functions' cause: the stopped task as compact JSON.
            raise StateFailed(
                TASK_FAILED, json.dumps(outcome.description(), separators=(",", ":"))
            )
        self.data = asl.state_output(state, self.data, outcome.description(), self.context)
        return self.only is not None

    def _called_back(
        self, name: str, state: Mapping[str, Any], token: str, outcome: Any, timeout: float
    ) -> bool:
        """A `.waitForTaskToken` state's outcome is its callback's, whatever the task's exit."""
        callback = self.session.callbacks.result(token)
        if callback is None:
            why = (
                f"after {timeout:g} s"
                if outcome.timed_out
                else f"its task stopped ({outcome.stop_code}) without calling back; Step "
                f"Functions waits for the token until TimeoutSeconds ({timeout:g} s) and fails "
                "the state so, run_local does not wait"
            )
            raise StateFailed(TIMEOUT, f"State '{name}' has timed out: {why}")
        if not callback.succeeded:
            self.out(f"{self.tag} {name}: SendTaskFailure {callback.error}")
            raise StateFailed(callback.error, callback.cause)
        self.out(f"{self.tag} {name}: SendTaskSuccess {_short(json.dumps(callback.output))}")
        self.data = asl.state_output(state, self.data, callback.output, self.context)
        return self.only is not None

    def _invoke(self, name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """A Lambda state: the stack's function, run here (Step Functions' optimized integration
        returns `{"Payload": <the function's result>, ...}`)."""
        function = str(parameters.get("FunctionName"))
        module = self.session.view.functions.get(function)
        if module != "deploy":
            raise RunLocalError(f"{name}: {function} is not a function this walk can run")
        if self.shared.rollout is None:
            self.shared.rollout = LocalRollout(
                self.session, read_rollout(self.session.view.service)
            )
        payload = parameters.get("Payload") or {}
        self.out(f"{self.tag} {name}: lambda:invoke {module} {payload.get('action')}")
        return {"Payload": self.shared.rollout.invoke(payload), "StatusCode": 200}

    # --- errors ---

    def _recover(
        self, name: str, state: Mapping[str, Any], failure: StateFailed
    ) -> tuple[bool, str | None]:
        """Retry the state while a Retrier allows, then try its Catchers: (recovered, the next
        state or None at the end). Not recovered: the execution fails."""
        attempts: dict[int, int] = {}
        while True:
            index, retrier = next(
                (
                    (i, r)
                    for i, r in enumerate(state.get("Retry", []))
                    if matches(r["ErrorEquals"], failure.error)
                ),
                (-1, None),
            )
            if retrier is None or attempts.get(index, 0) >= retrier.get("MaxAttempts", 3):
                break
            attempts[index] = attempts.get(index, 0) + 1
            delay = retry_delay(retrier, attempts[index])
            if retrier.get("JitterStrategy") == "FULL":
                delay = random.uniform(0, delay)
            wait = delay * self.session.retry_scale
            self.out(
                f"{self.tag} {name} failed ({failure.error}): retry {attempts[index]} of "
                f"{retrier.get('MaxAttempts', 3)} in {delay:.0f} s"
                + (f" (waiting {wait:.1f} s here)" if self.session.retry_scale != 1 else "")
            )
            time.sleep(wait)
            try:
                self._execute(name, state)
            except StateFailed as again:
                failure = again
                continue
            return True, None if state.get("End") else state["Next"]
        for catcher in state.get("Catch", []):
            if matches(catcher["ErrorEquals"], failure.error):
                error = {"Error": failure.error, "Cause": failure.cause}
                path = catcher.get("ResultPath", "$")
                self.data = asl.state_output({"ResultPath": path}, self.data, error, self.context)
                self.out(
                    f"{self.tag} {name} failed ({failure.error}): caught, next {catcher['Next']}"
                )
                return True, catcher["Next"]
        return False, None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def walk_state_machine(
    session: Session, only: str | None = None, execution_input: Any = None
) -> int:
    """Walk the declared state machine, running each ECS task (or only the step `only`).

    Returns 0 when it reaches a Succeed state, 1 when it fails."""
    return Walk(session, only, execution_input).run()
