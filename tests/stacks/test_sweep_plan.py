"""A sweep as the digits stack declares it (Pulumi.digits.yaml: a grid of six trials, two at once,
one failure tolerated): the state machine the program would send, its IAM, the gate task's plan,
what waits for what, and the plan's price. The forecaster stacks (dev, prod) cannot sweep: their
image reads no hyperparameters (tests/components/test_settings_sweep.py)."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from components.documents.sweep import CALLBACK_SID
from preflight import asl
from preflight import plan as plan_cli
from preflight.offline import Plan, run_stack

STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE = "aws:iam/role:Role"


@pytest.fixture(scope="module")
def digits() -> Plan:
    return run_stack("digits")


def definition(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.one(STATE_MACHINE, "training-pipeline").inputs["definition"])


def containers(plan: Plan, name: str) -> dict[str, dict[str, Any]]:
    raw = plan.one(TASK_DEFINITION, name).inputs["containerDefinitions"]
    return {c["name"]: c for c in (json.loads(raw) if isinstance(raw, str) else raw)}


def statements(plan: Plan, name: str) -> list[dict[str, Any]]:
    return json.loads(plan.one(POLICY, name).inputs["policy"])["Statement"]


def test_the_digits_pipeline_sweeps_six_trials_two_at_a_time(digits: Plan):
    states = definition(digits)["States"]
    trials = states["SweepTrials"]["Result"]["trials"]
    assert len(trials) == 6 and trials[0]["hyperparameters"]["num_round"] == 60
    sweep = states["Sweep"]
    assert sweep["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert (sweep["MaxConcurrency"], sweep["ToleratedFailureCount"]) == (2, 1)
    inner = sweep["ItemProcessor"]["States"]
    assert inner["Train"]["Parameters"]["TaskDefinition"] == "mlops-digits-training-train"
    assert states["PickTrial"]["Parameters"]["TaskDefinition"] == "mlops-digits-training-gate"
    assert states["BestTrial"]["Next"] == "Gate" and states["Gate"]["Next"] == "StartRollout"
    assert "Train" not in states  # every training is a trial


@pytest.mark.parametrize("stack", ["dev", "prod", "digits"])
def test_every_stacks_definition_is_one_step_functions_accepts(stack: str, digits: Plan):
    plan = digits if stack == "digits" else run_stack(stack)
    assert asl.check_definition(definition(plan)) == []
    if stack != "digits":
        assert "Sweep" not in definition(plan)["States"]  # the forecaster trains once


def test_the_gate_task_carries_the_same_plan_as_the_definition(digits: Plan):
    (gate,) = containers(digits, "training-gate").values()
    environment = {e["name"]: e["value"] for e in gate["environment"]}
    plan = json.loads(environment["MLOPS_SWEEP"])
    assert plan["trials"] == definition(digits)["States"]["SweepTrials"]["Result"]["trials"]
    assert plan["tolerated_failures"] == 1
    assert environment["AWS_REGION"] == "us-east-1"
    assert environment["MLOPS_OBJECTIVE_KEY"] == "accuracy"


def test_the_map_may_start_only_this_state_machines_executions(digits: Plan):
    machine = digits.one(STATE_MACHINE, "training-pipeline")
    start, follow = statements(digits, "training-sfn-sweep-policy")
    assert start["Action"] == "states:StartExecution"
    assert start["Resource"] == machine.outputs["arn"]
    name = machine.outputs["arn"].rsplit(":", 1)[1]
    assert follow["Resource"].endswith(f":execution:{name}/*")
    policy = digits.one(POLICY, "training-sfn-sweep-policy")
    assert policy.inputs["role"] == digits.one(ROLE, "training-sfn-role").id


def test_only_the_gate_task_may_call_back_and_the_train_task_may_not(digits: Plan):
    (callback,) = statements(digits, "training-gate-task-sweep")
    assert callback["Sid"] == CALLBACK_SID and callback["Resource"] == "*"
    gate_role = digits.one(ROLE, "training-gate-task-role")
    assert digits.one(POLICY, "training-gate-task-sweep").inputs["role"] == gate_role.id
    assert (
        digits.one(TASK_DEFINITION, "training-gate").inputs["taskRoleArn"]
        == (gate_role.outputs["arn"])
    )
    train_role = digits.one(TASK_DEFINITION, "training-train").inputs["taskRoleArn"]
    assert train_role != gate_role.outputs["arn"]
    train_policies = [
        p
        for p in digits.of_type(POLICY)
        if p.inputs["role"] == digits.one(ROLE, "training-task-role").id
    ]
    assert train_policies and not [
        p for p in train_policies if "states:" in json.dumps(json.loads(p.inputs["policy"]))
    ]


def test_the_first_image_push_waits_for_the_sweeps_permissions(digits: Plan):
    """A push starts a run: the run's Map and pick need their policies in place."""
    needed = {
        digits.one(POLICY, "training-sfn-sweep-policy").urn,
        digits.one(POLICY, "training-gate-task-sweep").urn,
    }
    image = digits.one("docker:index/image:Image", "image-cpu")
    assert needed <= set(image.depends_on)


def test_the_plan_shows_the_map_state_and_prices_every_trial():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plan_cli.main(["digits"]) == 0
    text = out.getvalue()
    line = next(line for line in text.splitlines() if "training-pipeline  [sfn" in line)
    details = text.splitlines()[text.splitlines().index(line) + 1]
    assert '"SweepTrials","Sweep","Train","TrialTrained","PickTrial","BestTrial"' in details
    priced = [line for line in text.splitlines() if "training-train " in line and " x " in line]
    assert priced and all("x 6 Map iterations (a sweep's trials)" in line for line in priced)


def test_a_sweep_costs_its_trials_times_one_training():
    single = plan_cli.build("digits", sets={"workload": {"training": {"sweep": None}}})
    swept = plan_cli.build("digits")

    def train_cost(report: Any) -> float:
        return sum(
            r["monthly_usd"] or 0
            for r in report.as_json()["resources"]
            if r["name"] == "training-train"
        )

    # Each figure is rounded to the cent.
    assert train_cost(swept) == pytest.approx(6 * train_cost(single), abs=0.04)
    assert train_cost(swept) > 5 * train_cost(single)
