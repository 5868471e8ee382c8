"""A sweep in the state machine, as pure functions (components/documents/sweep.py): the Map's
items, concurrency and failure threshold, each trial's run id and hyperparameters, the pick and
the gate on the chosen run; the definition accepted by preflight/asl.py's check and walked by
its evaluator; the Map's numbers within botocore's Step Functions model; the IAM it needs."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest

from components.documents.sweep import (
    CALLBACK_SID,
    EXCEEDED,
    WAIT_FOR_TASK_TOKEN,
    SweepRun,
    callback_statements,
    map_run_statements,
    sweep_gate_environment,
)
from components.documents.training import (
    FARGATE,
    FARGATE_SPOT,
    TRAINING_STEPS,
    PipelineSpec,
    training_state_machine,
)
from components.settings.sweep import parse_sweep
from preflight import asl

REGION, ACCOUNT = "us-east-1", "123456789012"
FAMILIES = {step: f"mlops-digits-training-{step}" for step in TRAINING_STEPS if step != "validate"}
SWEEP = parse_sweep(
    {
        "parameters": {"max_depth": [3, 5], "eta": [0.1, 0.3, 0.5]},
        "max_parallel": 2,
        "tolerated_failures": 1,
    },
    {"num_round": 60},
)
RUN = SweepRun.of(SWEEP)
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:training-pipeline-1234567"
SFN = botocore.session.get_session().get_service_model("stepfunctions")


def spec(capacity: str = FARGATE_SPOT, run: SweepRun | None = RUN, **changes: Any) -> PipelineSpec:
    values: dict[str, Any] = {
        "cluster_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/mlops",
        "families": FAMILIES,
        "subnets": ["subnet-a"],
        "security_groups": ["sg-task"],
        "assign_public_ip": True,
        "train_capacity": capacity,
        "topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms",
        "companions": {"train": ["stage-training", "collect-training"]},
        "sagemaker": True,
        "platform_gate": True,
        "sweep": run,
    }
    values.update(changes)
    return PipelineSpec(**values)


DEFINITION = training_state_machine(spec())
STATES = DEFINITION["States"]
MAP = STATES["Sweep"]


def overrides(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        o["Name"]: o.get("Environment", [])
        for o in state["Parameters"]["Overrides"]["ContainerOverrides"]
    }


def test_the_trials_are_the_planned_ones_in_the_definition():
    assert STATES["Prepare"]["Next"] == "SweepTrials"
    trials = STATES["SweepTrials"]["Result"]["trials"]
    assert [t["id"] for t in trials] == [t.id for t in SWEEP.trials]
    assert trials[0]["hyperparameters"] == {"num_round": 60, "max_depth": 3, "eta": 0.1}
    assert STATES["SweepTrials"]["ResultPath"] == "$.sweep"
    assert MAP["ItemsPath"] == "$.sweep.trials"


def test_a_distributed_map_at_most_max_parallel_at_once_tolerating_failures():
    assert MAP["Type"] == "Map"
    assert MAP["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",  # .sync integrations need a Standard workflow
    }
    assert MAP["MaxConcurrency"] == 2 and MAP["ToleratedFailureCount"] == 1
    assert "ToleratedFailurePercentage" not in MAP
    assert MAP["ResultPath"] is None and MAP["Next"] == "PickTrial"
    assert MAP["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}
    ]


@pytest.mark.parametrize(("parallel", "tolerated"), [(1, 0), (6, 5), (3, 2)])
def test_concurrency_and_tolerance_follow_the_settings(parallel, tolerated):
    run = SweepRun(RUN.trials, max_parallel=parallel, tolerated_failures=tolerated)
    state = training_state_machine(spec(run=run))["States"]["Sweep"]
    assert (state["MaxConcurrency"], state["ToleratedFailureCount"]) == (parallel, tolerated)


@pytest.mark.parametrize(("parallel", "tolerated"), [(0, 0), (7, 0), (2, 6), (2, -1)])
def test_impossible_limits_are_refused(parallel, tolerated):
    with pytest.raises(ValueError):
        training_state_machine(spec(run=SweepRun(RUN.trials, parallel, tolerated)))


def test_each_trial_is_a_run_of_its_own_with_its_hyperparameters():
    item = {"id": "t03", "hyperparameters": {"num_round": 60, "max_depth": 3, "eta": 0.3}}
    data = {
        "trigger": {"reason": "schedule", "image_digest": "deployed"},
        "run": {"id": "20261208T030000Z-exec", "date": "2026-12-08"},
        "sweep": {"trials": [item]},
    }
    context = {"Map": {"Item": {"Index": 2, "Value": item}}}
    iteration = asl.render(MAP["ItemSelector"], data, context)
    assert iteration == {
        "trial": item,
        "trigger": data["trigger"],
        "run": {"id": "20261208T030000Z-exec-t03", "date": "2026-12-08"},
    }
    train = MAP["ItemProcessor"]["States"]["Train"]
    environments = overrides(asl.render(train, iteration, {}))
    staged = {e["Name"]: e["Value"] for e in environments["stage-training"]}
    assert json.loads(staged["MLOPS_HYPERPARAMETERS"]) == item["hyperparameters"]
    assert staged["RUN_ID"] == "20261208T030000Z-exec-t03"
    trained = {e["Name"]: e["Value"] for e in environments["train"]}
    assert trained["RUN_ID"] == trained["TRAINING_JOB_NAME"] == "20261208T030000Z-exec-t03"


def test_a_trial_trains_as_a_single_run_does_and_a_failure_is_recorded_then_fails_the_child():
    inner = MAP["ItemProcessor"]["States"]
    assert MAP["ItemProcessor"]["StartAt"] == "Train"
    single = training_state_machine(spec(run=None))["States"]
    # The same task states as a single training, ending at the trial's Succeed or Fail.
    for name in ("Train", "SpotStopped", "TrainOnDemand", "TrainStopped", "RecordFailure"):
        assert inner[name]["Type"] == single[name]["Type"]
    assert inner["Train"]["Next"] == inner["TrainOnDemand"]["Next"] == "TrialTrained"
    assert inner["RecordFailure"]["Parameters"]["Overrides"]["ContainerOverrides"][0][
        "Command"
    ] == ["record-failure"]
    assert inner["RecordFailure"]["Next"] == "TrialFailed"
    assert inner["TrialTrained"] == {"Type": "Succeed", "Comment": inner["TrialTrained"]["Comment"]}
    assert inner["TrialFailed"]["Type"] == "Fail"
    assert inner["TrialFailed"]["ErrorPath"] == "$.error.Error"
    # No state of the iteration reports to SNS: the Map's threshold decides the run.
    assert "NotifyFailure" not in json.dumps(inner)


def test_on_demand_training_is_retried_once_inside_the_trial_too():
    inner = training_state_machine(spec(FARGATE))["States"]["Sweep"]["ItemProcessor"]["States"]
    assert "TrainOnDemand" not in inner
    assert [r["ErrorEquals"] for r in inner["Train"]["Retry"]] == [
        ["ECS.AmazonECSException"],
        ["States.TaskFailed"],
    ]


def test_the_pick_is_a_callback_from_the_gate_task_and_the_gate_takes_the_chosen_run():
    pick = STATES["PickTrial"]
    assert pick["Resource"] == WAIT_FOR_TASK_TOKEN
    assert pick["Parameters"]["TaskDefinition"] == FAMILIES["gate"]
    (gate,) = pick["Parameters"]["Overrides"]["ContainerOverrides"]
    assert gate["Command"] == ["pick-trial"]
    assert {"Name": "MLOPS_TASK_TOKEN", "Value.$": "$$.Task.Token"} in gate["Environment"]
    assert {"Name": "RUN_ID", "Value.$": "$.run.id"} in gate["Environment"]
    assert pick["ResultPath"] == "$.sweep.best" and pick["Next"] == "BestTrial"
    assert 0 < pick["TimeoutSeconds"] <= 3600
    assert pick["Catch"][0]["Next"] == "NotifyFailure"
    # BestTrial makes the chosen run the run: the gate and the rollout read $.run.id.
    data = {
        "run": {"id": "r", "date": "2026-12-08"},
        "sweep": {"best": {"run_id": "r-t04", "trial": "t04", "objective": 0.97}},
    }
    best = STATES["BestTrial"]
    after = asl.state_output(best, data, asl.state_input(best, data, {}), {})
    assert after["run"] == {"id": "r-t04", "date": "2026-12-08", "sweep": "r"}
    assert best["Next"] == "Gate"
    gate_env = overrides(STATES["Gate"])["gate"]
    assert {"Name": "RUN_ID", "Value.$": "$.run.id"} in gate_env


def test_a_sweep_needs_the_staged_contract_and_the_platform_gate():
    with pytest.raises(ValueError, match="sweep"):
        training_state_machine(spec(platform_gate=False))
    with pytest.raises(ValueError, match="sweep"):
        training_state_machine(spec(sagemaker=False))


def test_preflight_asl_accepts_the_definition_and_refuses_what_step_functions_refuses():
    assert asl.check_definition(DEFINITION) == []
    assert asl.check_definition(training_state_machine(spec(FARGATE))) == []
    inline = json.loads(json.dumps(DEFINITION))
    inline["States"]["Sweep"]["ItemProcessor"]["ProcessorConfig"] = {"Mode": "INLINE"}
    assert asl.check_definition(inline) == [
        "$.Sweep: ToleratedFailureCount exists only in Distributed mode"
    ]
    broken = json.loads(json.dumps(DEFINITION))
    broken["States"]["Sweep"]["ItemProcessor"]["ProcessorConfig"].pop("ExecutionType")
    broken["States"]["Sweep"]["MaxConcurrency"] = -1
    broken["States"]["Sweep"]["Tolerance"] = 1
    broken["States"]["PickTrial"]["Parameters"]["Overrides"]["ContainerOverrides"][0][
        "Environment"
    ].pop()
    broken["States"]["Sweep"]["ItemProcessor"]["States"]["Gate"] = {"Type": "Succeed"}
    problems = asl.check_definition(broken)
    assert "$.Sweep: Tolerance is not a field of a Map state" in problems
    assert "$.Sweep: a Distributed Map needs ExecutionType STANDARD or EXPRESS" in problems
    assert "$.Sweep: MaxConcurrency must be a whole number >= 0" in problems
    assert "$.PickTrial: a .waitForTaskToken task must pass $$.Task.Token" in problems
    assert "state name 'Gate' is used twice" in problems


def test_the_map_fields_fit_botocores_map_run_settings():
    """botocore's Step Functions model names the Distributed Map's run-time settings (the ASL
    fields' values become a Map Run's, UpdateMapRun changes them): their types and ranges."""
    members = SFN.operation_model("UpdateMapRun").input_shape.members
    assert {"maxConcurrency", "toleratedFailureCount", "toleratedFailurePercentage"} <= set(members)
    for field, name in (
        ("MaxConcurrency", "maxConcurrency"),
        ("ToleratedFailureCount", "toleratedFailureCount"),
    ):
        shape = members[name]
        assert shape.type_name in ("integer", "long") and shape.metadata["min"] == 0
        assert isinstance(MAP[field], int) and MAP[field] >= shape.metadata["min"]
    assert members["toleratedFailurePercentage"].metadata == {"min": 0, "max": 100}
    # The error a Map Run past its threshold fails with is one the guide predefines.
    assert EXCEEDED == "States.ExceedToleratedFailureThreshold"


def test_the_map_starts_and_follows_only_its_own_executions():
    start, follow = map_run_statements(MACHINE)
    assert start == {
        "Sid": "StartSweepTrials",
        "Effect": "Allow",
        "Action": "states:StartExecution",
        "Resource": MACHINE,
    }
    assert follow["Action"] == ["states:DescribeExecution", "states:StopExecution"]
    # A Distributed Map's child: execution:<state machine>/<Map Run label>:<id>.
    assert follow["Resource"] == (
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:training-pipeline-1234567/*"
    )
    with pytest.raises(ValueError):
        map_run_statements(f"arn:aws:sns:{REGION}:{ACCOUNT}:topic")


def test_the_callback_is_the_one_star_and_holds_only_send_task_actions():
    (statement,) = callback_statements()
    assert statement["Sid"] == CALLBACK_SID and statement["Resource"] == "*"
    assert statement["Action"] == ["states:SendTaskSuccess", "states:SendTaskFailure"]
    for action in ("SendTaskSuccess", "SendTaskFailure"):
        assert action in SFN.operation_names


def test_the_gate_task_carries_the_plan_pick_trial_reads():
    environment = sweep_gate_environment(RUN, REGION)
    plan = json.loads(environment["MLOPS_SWEEP"])
    assert plan == {"trials": [dict(t) for t in RUN.trials], "tolerated_failures": 1}
    assert environment["AWS_REGION"] == REGION
