"""A hyperparameter sweep in the training state machine (Amazon States Language, JSONPath).

    SweepTrials (Pass: the planned trials) -> Sweep (Distributed Map: each trial a child
    execution: Train [-> TrainOnDemand] -> TrialTrained, or record the failure -> TrialFailed)
    -> PickTrial (the platform's `pick-trial`, a callback) -> BestTrial (the chosen run becomes
    `$.run`) -> Gate, exactly as after a single training.

Why a Distributed Map and not an Inline one: a trial that fails must be tolerated up to
`tolerated_failures`, and only the Distributed mode has a failure threshold
(`ToleratedFailureCount`; an Inline Map fails as soon as one iteration fails). Each trial is then
a child execution with its own history, so a sweep of long trainings never nears the 25,000
events of one execution. Its child executions are STANDARD: `ecs:runTask.sync` (Run a Job) is not
supported in EXPRESS workflows.

Fields, and the page of the Step Functions Developer Guide each comes from:
- `ItemsPath` (a reference path to the array; in Distributed mode only for a JSON array from a
  previous state): "ItemsPath (Map, JSONPath only)", input-output-itemspath.html. The trials are
  that array, put in the state data by SweepTrials from the definition (`Items` is JSONata only).
- `ItemSelector` (each iteration's input; `$$.Map.Item.Value` the item, `$` the Map's input):
  "ItemSelector (Map)", input-output-itemselector.html.
- `ItemProcessor` with `ProcessorConfig` `{Mode: DISTRIBUTED, ExecutionType: STANDARD}`,
  `MaxConcurrency`, `ToleratedFailureCount`: "Using Map state in Distributed mode",
  state-map-distributed.html ("Distributed Map state fields"); the threshold and its error
  `States.ExceedToleratedFailureThreshold`: "Tolerated failure threshold for Distributed Map
  states", maprun-fail-threshold.html. botocore's service model names the same Map Run settings
  (`DescribeMapRun`/`UpdateMapRun`: `maxConcurrency` >= 0, `toleratedFailureCount` >= 0,
  `toleratedFailurePercentage` 0-100).
- the role: `states:StartExecution` on the state machine itself, `states:DescribeExecution` and
  `states:StopExecution` on its executions: "IAM policies for using Distributed Map states",
  iam-policies-eg-dist-map.html.

PickTrial returns the chosen run to the execution through a task token
(`ecs:runTask.waitForTaskToken`: "Run Amazon ECS or Fargate tasks with Step Functions",
connect-ecs.html; `$$.Task.Token` in the container's environment): an ECS task has no other
output than its description. The container calls SendTaskSuccess with the chosen run, or
SendTaskFailure; if it dies before either, the state fails at its TimeoutSeconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.settings.sweep import Sweep
from mlops_contract import Env

WAIT_FOR_TASK_TOKEN = "arn:aws:states:::ecs:runTask.waitForTaskToken"
EXCEEDED = "States.ExceedToleratedFailureThreshold"
"""The Map's error when more trials failed than it tolerates (maprun-fail-threshold.html)."""
PICK_TIMEOUT_SECONDS = 900
"""pick-trial reads a few small files: 15 minutes bounds a task that died without calling back."""
SWEEP_TRIALS = "SweepTrials"
SWEEP = "Sweep"
PICK_TRIAL = "PickTrial"
BEST_TRIAL = "BestTrial"
TRIAL_TRAINED = "TrialTrained"
TRIAL_FAILED = "TrialFailed"
STAGE_TRAINING = "stage-training"
"""The training task's staging container (documents/staging.py), which writes the trial's
hyperparameters.json from its MLOPS_HYPERPARAMETERS."""


@dataclass(frozen=True)
class SweepRun:
    """What the state machine needs of a sweep, as plain values."""

    trials: Sequence[Mapping[str, Any]]
    """`{"id": "t01", "hyperparameters": {...}}` per trial, in order."""
    max_parallel: int
    tolerated_failures: int

    @classmethod
    def of(cls, sweep: Sweep) -> SweepRun:
        return cls(
            trials=[
                {"id": trial.id, "hyperparameters": dict(trial.hyperparameters)}
                for trial in sweep.trials
            ],
            max_parallel=sweep.max_parallel,
            tolerated_failures=sweep.tolerated_failures,
        )


def _with_trial_hyperparameters(state: Mapping[str, Any], family: str) -> dict[str, Any]:
    """A train task state that stages the trial's hyperparameters: RunTask's container override
    of stage-training sets MLOPS_HYPERPARAMETERS (an override replaces the task definition's
    value of the same name: ECS API Reference, "ContainerOverride", environment)."""
    state = json.loads(json.dumps(state))
    parameters = state.get("Parameters") or {}
    if state.get("Type") != "Task" or parameters.get("TaskDefinition") != family:
        return state
    for override in parameters["Overrides"]["ContainerOverrides"]:
        if override["Name"] == STAGE_TRAINING:
            override["Environment"].append(
                {
                    "Name": Env.HYPERPARAMETERS,
                    "Value.$": "States.JsonToString($.trial.hyperparameters)",
                }
            )
            break
    else:
        raise ValueError(f"the train task {family} has no {STAGE_TRAINING} container to override")
    return state


def trial_processor(
    train_states: Mapping[str, Mapping[str, Any]], *, start: str, train_family: str
) -> dict[str, Any]:
    """The Map's ItemProcessor: one trial's training, the states a single training runs
    (`train_states`, ending at TRIAL_TRAINED or, recorded, at TRIAL_FAILED), in a STANDARD
    child execution."""
    states = {
        name: _with_trial_hyperparameters(state, train_family)
        for name, state in train_states.items()
    }
    states[TRIAL_TRAINED] = {"Type": "Succeed", "Comment": "collect-training kept the trial"}
    # Failing the child execution is what the Map Run counts against ToleratedFailureCount.
    states[TRIAL_FAILED] = {
        "Type": "Fail",
        "Comment": "The trial's failure is in its run's report.json",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }
    return {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": start,
        "States": states,
    }


def sweep_states(
    run: SweepRun,
    *,
    processor: Mapping[str, Any],
    pick: Mapping[str, Any],
    after: str,
    notify: str,
) -> dict[str, dict[str, Any]]:
    """SweepTrials -> Sweep -> PickTrial -> BestTrial -> `after`; a Map Run past its threshold
    (or any other error of the Map) and a failed pick go to `notify` with the error at
    `$.error`. `pick` is the gate task's ECS state running `pick-trial` (its Next BEST_TRIAL)."""
    if not run.trials:
        raise ValueError("a sweep needs at least one trial")
    if not 1 <= run.max_parallel <= len(run.trials):
        raise ValueError(f"max_parallel {run.max_parallel}: 1 to {len(run.trials)}")
    if not 0 <= run.tolerated_failures < len(run.trials):
        raise ValueError(f"tolerated_failures {run.tolerated_failures}: 0 to {len(run.trials) - 1}")
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": notify}]
    return {
        SWEEP_TRIALS: {
            "Type": "Pass",
            "Comment": "The trials planned when the stack was deployed (settings/sweep.py)",
            "Result": {"trials": [dict(trial) for trial in run.trials]},
            "ResultPath": "$.sweep",
            "Next": SWEEP,
        },
        SWEEP: {
            "Type": "Map",
            "Comment": "Each trial a run of its own: <the execution's run id>-<trial id>",
            "ItemsPath": "$.sweep.trials",
            "ItemSelector": {
                "trial.$": "$$.Map.Item.Value",
                "trigger.$": "$.trigger",
                "run": {
                    "id.$": "States.Format('{}-{}', $.run.id, $$.Map.Item.Value.id)",
                    "date.$": "$.run.date",
                },
            },
            "ItemProcessor": dict(processor),
            "MaxConcurrency": run.max_parallel,
            "ToleratedFailureCount": run.tolerated_failures,
            # Each child's output is its input; pick-trial reads the trials' records in the
            # store, so the Map's result (and its 256 KiB limit) is not carried on.
            "ResultPath": None,
            "Catch": catch,
            "Next": PICK_TRIAL,
        },
        PICK_TRIAL: {
            **pick,
            "Resource": WAIT_FOR_TASK_TOKEN,
            "TimeoutSeconds": PICK_TIMEOUT_SECONDS,
            # pick-trial's SendTaskSuccess output: {run_id, trial, objective, hyperparameters}.
            "ResultPath": "$.sweep.best",
            "Catch": catch,
            "Next": BEST_TRIAL,
        },
        BEST_TRIAL: {
            "Type": "Pass",
            "Comment": "The gate and what follows it take the best trial as the run",
            "Parameters": {
                "id.$": "$.sweep.best.run_id",
                "date.$": "$.run.date",
                "sweep.$": "$.run.id",
            },
            "ResultPath": "$.run",
            "Next": after,
        },
    }


def pick_trial_environment() -> list[dict[str, Any]]:
    """The callback's token for pick-trial, as a RunTask environment override (connect-ecs.html:
    `"Value.$": "$$.Task.Token"`)."""
    return [{"Name": Env.TASK_TOKEN, "Value.$": "$$.Task.Token"}]


def sweep_gate_environment(run: SweepRun, region: str) -> dict[str, str]:
    """What the gate task's container adds for pick-trial: the planned trials and the tolerated
    failures (MLOPS_SWEEP, fixed when the stack is deployed, as the definition's), and the Region
    its Step Functions client calls back to."""
    plan = {
        "trials": [dict(trial) for trial in run.trials],
        "tolerated_failures": run.tolerated_failures,
    }
    return {
        Env.SWEEP: json.dumps(plan, sort_keys=True, separators=(",", ":")),
        Env.AWS_REGION: region,
    }


def map_run_statements(state_machine_arn: str) -> list[dict[str, Any]]:
    """The state machine role's permissions for its Distributed Map: start its own child
    executions, follow and stop them (iam-policies-eg-dist-map.html; a child's ARN is
    `execution:<state machine>/<Map Run label>:<id>`, the Service Authorization Reference's
    "labelled execution")."""
    prefix, kind, name = state_machine_arn.rsplit(":", 2)
    if kind != "stateMachine" or not prefix.startswith("arn:aws") or ":states:" not in prefix:
        raise ValueError(f"{state_machine_arn!r} is not a state machine ARN")
    return [
        {
            "Sid": "StartSweepTrials",
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": state_machine_arn,
        },
        {
            "Sid": "FollowSweepTrials",
            "Effect": "Allow",
            "Action": ["states:DescribeExecution", "states:StopExecution"],
            "Resource": f"{prefix}:execution:{name}/*",
        },
    ]


CALLBACK_SID = "ReturnPickedTrial"
PICK_ROLE = (
    "The platform gate, finish-rollout and a sweep's pick-trial: mount and write the shared "
    "store, return the picked trial to Step Functions"
)
"""The gate task's own role with a sweep: the callback's permission must not reach the workload's
train task (components/task_block.py, `TaskSpec.own_role`)."""


def callback_statements() -> list[dict[str, Any]]:
    """The task role's permission for pick-trial's callback. Documented exception: SendTaskSuccess
    and SendTaskFailure take no resource type (Service Authorization Reference, "Actions,
    resources, and condition keys for AWS Step Functions"): the task token names the task, and
    only the PickTrial state passes one, to the gate task's container."""
    return [
        {
            "Sid": CALLBACK_SID,
            "Effect": "Allow",
            "Action": ["states:SendTaskSuccess", "states:SendTaskFailure"],
            "Resource": "*",
        }
    ]
