"""run_local's Map state (preflight/run_local/map_state.py) and `.waitForTaskToken` states, walked
with tasks that stand in for Docker: iterations on threads at most MaxConcurrency at once, each
with Step Functions' semantics, the Distributed Map's failure threshold, an Inline Map failing on
its first failure, the output the iterations' outputs; a callback's output as the state's
result. The real tasks: tests/containers/test_sweep.py."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from preflight.run_local.callback import CallbackEndpoint
from preflight.run_local.pipeline import Walk
from preflight.run_local.task import ESSENTIAL_EXITED, TaskOutcome

FAMILY = "mlops-test-training-train"


class FakeTask:
    """Runs for `seconds`, exiting 1 when RUN_ID ends with a failing trial's id; records how
    many tasks ran at once. With `call_back`, it answers its task token first."""

    def __init__(self, session: FakeSession, environment: dict[str, dict[str, str]]):
        self.session = session
        self.environment = environment["train"]
        self.stopped = threading.Event()

    def start(self) -> None:
        with self.session.lock:
            self.session.running += 1
            self.session.peak = max(self.session.peak, self.session.running)

    def wait(self, timeout: float) -> TaskOutcome:
        run = self.environment.get("RUN_ID", "")
        token = self.environment.get("TOKEN")
        failed = any(run.endswith(trial) for trial in self.session.failing)
        self.stopped.wait(self.session.fail_seconds if failed else self.session.seconds)
        with self.session.lock:
            self.session.running -= 1
            self.session.runs.append(run)
        if token is not None:
            self.session.call_back(token, self.environment)
        failed = failed or self.stopped.is_set()
        return TaskOutcome(FAMILY, {"train": 1 if failed else 0}, ESSENTIAL_EXITED, "done")

    def stop(self, code: str = "", reason: str = "") -> None:
        self.session.stopped += 1
        self.stopped.set()

    def interrupt_after(self, seconds: float) -> None:
        raise AssertionError("no Spot here")


@dataclass
class FakeView:
    state_machine: dict[str, Any]
    tasks: dict[str, Any] = field(default_factory=lambda: {FAMILY: object()})


@dataclass
class FakeSession:
    view: FakeView
    failing: tuple[str, ...] = ()
    seconds: float = 0.2
    fail_seconds: float = 0.2
    spot_interruptions: tuple[float, ...] = ()
    id: str = "test"
    retry_scale: float = 0.0
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    peak: int = 0
    stopped: int = 0
    runs: list[str] = field(default_factory=list)
    endpoint: CallbackEndpoint | None = None
    answer: dict[str, Any] | None = None

    def out(self, line: str) -> None:
        self.lines.append(line)

    def task(self, family: str, environments: Any, commands: Any) -> FakeTask:
        return FakeTask(self, environments)

    @property
    def callbacks(self) -> CallbackEndpoint:
        if self.endpoint is None:
            self.endpoint = CallbackEndpoint("127.0.0.1")
        return self.endpoint

    def call_back(self, token: str, environment: dict[str, str]) -> None:
        assert environment["AWS_ENDPOINT_URL_SFN"] == self.callbacks.url
        if self.answer is not None:
            action, body = self.answer["action"], {**self.answer["body"], "taskToken": token}
            self.callbacks.answer(action, json.dumps(body).encode())


def train(next_state: str = "Done") -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {
            "TaskDefinition": FAMILY,
            "Overrides": {
                "ContainerOverrides": [
                    {"Name": "train", "Environment": [{"Name": "RUN_ID", "Value.$": "$.run"}]}
                ]
            },
        },
        "ResultPath": None,
        "Next": next_state,
    }


def machine(mode: str = "DISTRIBUTED", **fields: Any) -> dict[str, Any]:
    config = {"Mode": mode, **({"ExecutionType": "STANDARD"} if mode == "DISTRIBUTED" else {})}
    return {
        "StartAt": "Trials",
        "States": {
            "Trials": {
                "Type": "Pass",
                "Result": [f"t{n}" for n in range(1, 7)],
                "ResultPath": "$.trials",
                "Next": "Sweep",
            },
            "Sweep": {
                "Type": "Map",
                "ItemsPath": "$.trials",
                "ItemSelector": {
                    "run.$": "States.Format('r-{}', $$.Map.Item.Value)",
                    "index.$": "$$.Map.Item.Index",
                },
                "ItemProcessor": {
                    "ProcessorConfig": config,
                    "StartAt": "Train",
                    "States": {"Train": train(), "Done": {"Type": "Succeed"}},
                },
                "ResultPath": "$.results",
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "No"}],
                "Next": "Yes",
                **fields,
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        },
    }


def walk(session: FakeSession, execution_input: Any = None) -> tuple[int, Walk]:
    execution = Walk(session, None, execution_input or {})  # type: ignore[arg-type]
    return execution.run(), execution


def test_iterations_run_on_threads_at_most_max_concurrency_at_once():
    session = FakeSession(FakeView(machine(MaxConcurrency=2)))
    code, execution = walk(session)
    assert code == 0 and session.peak == 2
    assert sorted(session.runs) == [f"r-t{n}" for n in range(1, 7)]
    # The output: the iterations' outputs in item order (each child's input, as ResultPath
    # null passes it on).
    assert execution.data["results"] == [{"run": f"r-t{n}", "index": n - 1} for n in range(1, 7)]
    started = [line for line in session.lines if " started at " in line]
    assert len(started) == 6 and "Sweep[0 " not in started[0]
    assert any("Sweep[5]" in line and "succeeded at" in line for line in session.lines)


def test_without_max_concurrency_every_iteration_runs_at_once():
    session = FakeSession(FakeView(machine()))
    assert walk(session)[0] == 0 and session.peak == 6


def test_failures_up_to_the_tolerated_count_leave_the_map_succeeding():
    session = FakeSession(FakeView(machine(MaxConcurrency=2, ToleratedFailureCount=2)))
    session.failing = ("t2", "t5")
    code, execution = walk(session)
    assert code == 0
    failed = [r for r in execution.data["results"] if "Error" in r]
    assert [r["Error"] for r in failed] == ["States.TaskFailed", "States.TaskFailed"]
    assert len(session.runs) == 6


def test_one_failure_past_the_threshold_fails_the_map_and_starts_no_more():
    session = FakeSession(FakeView(machine(MaxConcurrency=1, ToleratedFailureCount=1)))
    session.failing = ("t1", "t2")
    code, execution = walk(session)
    assert code == 1 and execution.error == "States.ExceedToleratedFailureThreshold"
    assert "2 of 6 iterations failed, past the tolerated 1" in execution.cause
    assert session.runs == ["r-t1", "r-t2"]  # the rest never started


def test_a_percentage_threshold_counts_the_share_of_failed_items():
    session = FakeSession(FakeView(machine(ToleratedFailurePercentage=40)))
    session.failing = ("t1", "t2")  # 33 % of 6
    assert walk(session)[0] == 0
    session = FakeSession(FakeView(machine(ToleratedFailurePercentage=40)))
    session.failing = ("t1", "t2", "t3")  # 50 %
    assert walk(session)[0] == 1


def test_a_map_run_past_its_threshold_stops_the_iterations_still_running():
    session = FakeSession(FakeView(machine(MaxConcurrency=3)), seconds=30, fail_seconds=0.1)
    session.failing = ("t1",)
    started = time.monotonic()
    code, execution = walk(session)
    assert code == 1 and execution.error == "States.ExceedToleratedFailureThreshold"
    # t2 and t3, started with t1, are stopped (aborted) instead of running their 30 s; t4-t6
    # never start.
    assert session.stopped == 2 and sorted(session.runs) == ["r-t1", "r-t2", "r-t3"]
    assert time.monotonic() - started < 10


def test_an_inline_map_fails_with_its_first_failed_iteration_and_has_no_threshold():
    session = FakeSession(FakeView(machine("INLINE", MaxConcurrency=2)))
    session.failing = ("t3",)
    code, execution = walk(session)
    assert code == 1 and execution.error == "States.TaskFailed"
    session = FakeSession(FakeView(machine("INLINE", ToleratedFailureCount=1)))
    with pytest.raises(Exception, match="exists only in Distributed mode"):
        walk(session)


def test_a_distributed_child_is_an_execution_of_its_own():
    definition = machine(MaxConcurrency=2)
    definition["States"]["Sweep"]["ItemProcessor"]["States"]["Train"] = {
        "Type": "Pass",
        "Parameters": {"name.$": "$$.Execution.Name"},
        "Next": "Done",
    }
    session = FakeSession(FakeView(definition))
    code, execution = walk(session)
    names = [r["name"] for r in execution.data["results"]]
    assert code == 0 and len(set(names)) == 6
    assert execution.context["Execution"]["Name"] not in names


def callback_machine() -> dict[str, Any]:
    state = train("Done")
    state["Resource"] = "arn:aws:states:::ecs:runTask.waitForTaskToken"
    state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"].append(
        {"Name": "TOKEN", "Value.$": "$$.Task.Token"}
    )
    state["ResultPath"] = "$.picked"
    state["TimeoutSeconds"] = 900
    return {"StartAt": "Pick", "States": {"Pick": state, "Done": {"Type": "Succeed"}}}


def test_a_callback_state_takes_what_send_task_success_returned():
    session = FakeSession(FakeView(callback_machine()))
    session.answer = {"action": "SendTaskSuccess", "body": {"output": '{"run_id": "r-t4"}'}}
    code, execution = walk(session, {"run": "r"})
    assert code == 0 and execution.data["picked"] == {"run_id": "r-t4"}
    session.endpoint.close()


def test_a_callback_state_fails_with_send_task_failures_error():
    session = FakeSession(FakeView(callback_machine()))
    session.answer = {
        "action": "SendTaskFailure",
        "body": {"error": "Sweep.NoTrialToPick", "cause": "nothing trained"},
    }
    code, execution = walk(session, {"run": "r"})
    assert (code, execution.error, execution.cause) == (1, "Sweep.NoTrialToPick", "nothing trained")
    session.endpoint.close()


def test_a_task_that_stops_without_calling_back_times_the_state_out():
    session = FakeSession(FakeView(callback_machine()))
    started = time.monotonic()
    code, execution = walk(session, {"run": "r"})
    assert code == 1 and execution.error == "States.Timeout"
    assert "without calling back" in execution.cause and "900 s" in execution.cause
    assert time.monotonic() - started < 10  # run_local does not wait the 900 s
    session.endpoint.close()
