"""Reading how an ECS task stopped, in the pipeline (Amazon States Language, JSONPath).

Step Functions fails an `ecs:runTask.sync` state with `States.TaskFailed` when any container of
the task exits non-zero, and its `Cause` is the stopped task as DescribeTasks describes it, as a
JSON string with PascalCase fields (`StopCode`, `StoppedReason`, `Containers[].Name`,
`Containers[].ExitCode`; Step Functions Developer Guide, "Run Amazon ECS or Fargate tasks with
Step Functions"; the pattern of reading it, aws-samples' "retry by stoppedReason" state machines).
A `Cause` that is not such a task (an ECS API error caught by the same `States.TaskFailed`
matcher) is never parsed: `States.StringToJson` on it would fail the execution with
`States.Runtime`, which no Catch can handle, so a Choice first checks that it looks like one.

Three readings:
- the platform gate exits `KEPT_EXIT` when it decided to keep the current model: a decision,
  not a failure (`gate_states`);
- a Fargate Spot train task stopped by an interruption (`StopCode` `SpotInterruption`) moves to
  on-demand; a train that failed on its own does not run again there (`spot_states`);
- a failed train task's stop code, reason and exit codes go into the run's record (the
  platform's `record-failure`) before the failure is reported, and so does a timeout
  (`train_failure_states`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_contract import KEPT_EXIT, Env

TASK_JSON = '{*"Containers":*}'
"""`StringMatches` pattern of a stopped task's description (`*` is the only wildcard)."""
SPOT_INTERRUPTION = ('*"StopCode":"SpotInterruption"*', '*"StopCode": "SpotInterruption"*')
"""ECS Developer Guide, "Amazon ECS stopped tasks error codes": `SpotInterruption` (the cause's
JSON compact or spaced)."""


def _is_task(path: str) -> dict[str, Any]:
    return {"Variable": path, "StringMatches": TASK_JSON}


def gate_states(*, kept: str, notify: str) -> dict[str, dict[str, Any]]:
    """After the gate task failed (`$.error`): its exit code KEPT_EXIT ends the run at `kept`;
    anything else goes to `notify`."""
    return {
        "GateStopped": {
            "Type": "Choice",
            "Choices": [{**_is_task("$.error.Cause"), "Next": "ReadGateStop"}],
            "Default": notify,
        },
        "ReadGateStop": {
            "Type": "Pass",
            "Parameters": {"task.$": "States.StringToJson($.error.Cause)"},
            "ResultPath": "$.gate_stop",
            "Next": "GateKept",
        },
        "GateKept": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.gate_stop.task.Containers[0].ExitCode", "IsPresent": True},
                        {
                            "Variable": "$.gate_stop.task.Containers[0].ExitCode",
                            "NumericEquals": KEPT_EXIT,
                        },
                    ],
                    "Next": kept,
                }
            ],
            "Default": notify,
        },
        kept: {"Type": "Succeed", "Comment": "The gate decided: the current model stays"},
    }


def spot_states(*, on_demand: str, failed: str) -> dict[str, dict[str, Any]]:
    """After a Fargate Spot train task failed (`$.error`): interrupted → `on_demand`, else
    `failed`."""
    return {
        "SpotStopped": {
            "Type": "Choice",
            "Choices": [
                {
                    "Or": [
                        {"Variable": "$.error.Cause", "StringMatches": pattern}
                        for pattern in SPOT_INTERRUPTION
                    ],
                    "Next": on_demand,
                }
            ],
            "Default": failed,
        }
    }


def train_failure_states(
    *, record: Mapping[str, Any], notify: str, recorded: str = "RecordFailure"
) -> dict[str, dict[str, Any]]:
    """After the train task failed (`$.error`): when the cause is a stopped task with its stop
    code, reason and containers, `record` (an ECS task state running `record-failure`, reading
    `$.stopped.record`) writes them into the run's report; then, either way, `notify`."""
    fields = ("StopCode", "StoppedReason", "Containers")
    return {
        "TrainStopped": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.error.Error",
                    "StringEquals": "States.Timeout",
                    "Next": "TrainTimedOut",
                },
                {**_is_task("$.error.Cause"), "Next": "ReadTrainStop"},
            ],
            "Default": notify,
        },
        # Past TimeoutSeconds Step Functions stops the task (StopTask: stop code UserInitiated)
        # and its cause names the timeout, not the task: the record says that much.
        "TrainTimedOut": {
            "Type": "Pass",
            "Parameters": {
                "stop_code": "UserInitiated",
                "stopped_reason.$": "$.error.Cause",
                "containers": [],
            },
            "ResultPath": "$.stopped.record",
            "Next": recorded,
        },
        "ReadTrainStop": {
            "Type": "Pass",
            "Parameters": {"task.$": "States.StringToJson($.error.Cause)"},
            "ResultPath": "$.stopped",
            "Next": "TrainStopComplete",
        },
        "TrainStopComplete": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": f"$.stopped.task.{name}", "IsPresent": True} for name in fields
                    ],
                    "Next": "TrainStopRecord",
                }
            ],
            "Default": notify,
        },
        "TrainStopRecord": {
            "Type": "Pass",
            "Parameters": {
                "stop_code.$": "$.stopped.task.StopCode",
                "stopped_reason.$": "$.stopped.task.StoppedReason",
                "containers.$": "$.stopped.task.Containers",
            },
            "ResultPath": "$.stopped.record",
            "Next": recorded,
        },
        recorded: {
            **record,
            # Recorded or not, the run failed: report the original error.
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": notify}
            ],
            "Next": notify,
        },
    }


def record_failure_environment(step: str) -> list[dict[str, Any]]:
    """The `record-failure` command's inputs, as RunTask environment overrides."""
    return [
        {"Name": Env.FAILED_STEP, "Value": step},
        {"Name": Env.TASK_STOP, "Value.$": "States.JsonToString($.stopped.record)"},
    ]
