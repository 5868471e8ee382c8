"""The digits stack (Pulumi.digits.yaml): the second reference workload, a SageMaker BYOC image
(examples/digits), deployed with no forecaster, dashboard, ingest or monitor resources; the
platform stages /opt/ml around it, gates on its accuracy and rolls a promoted model out to the
service before it becomes current."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from preflight import asl
from preflight import plan as plan_cli
from preflight.offline import ACCOUNT, REGION, Plan, run_stack

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
POLICY = "aws:iam/rolePolicy:RolePolicy"


SINGLE = {"workload": {"training": {"sweep": None}}}
"""The digits stack training once: its sweep's pipeline is tests/stacks/test_sweep_plan.py's."""


@pytest.fixture(scope="module")
def digits() -> Plan:
    return run_stack("digits", SINGLE)


def _containers(plan: Plan, name: str) -> dict[str, dict[str, Any]]:
    raw = plan.one(TASK_DEFINITION, name).inputs["containerDefinitions"]
    return {c["name"]: c for c in (json.loads(raw) if isinstance(raw, str) else raw)}


def test_the_plan_command_prints_the_stack_and_its_cost_without_the_forecasters_parts():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plan_cli.main(["digits"]) == 0
    text = out.getvalue()
    assert text.startswith("mlops digits: ") and "TOTAL digits: $" in text
    tree = text.split("Monthly cost estimate")[0].lower()
    for word in ("dashboard", "ingest", "monitor", "forecast"):
        assert word not in tree, word


def test_no_job_dashboard_or_sidecar_resources(digits: Plan):
    names = [r.name for r in digits.resources]
    assert not [n for n in names if n.startswith("monitoring")]
    assert not [n for n in names if "dashboard" in n or "ingest" in n]
    assert "ingest_task_definition_arn" not in digits.exports
    assert list(_containers(digits, "inference-task")) == ["api", "stage-serving"]


def test_training_is_staged_in_one_task_around_the_byoc_image(digits: Plan):
    containers = _containers(digits, "training-train")
    assert list(containers) == ["stage-training", "sync-checkpoints", "train", "collect-training"]
    stage, sync, train, collect = containers.values()
    # ECS dependsOn: stage SUCCESS -> sync START -> train (non-essential) COMPLETE -> collect
    # (essential). Shutdown reverses it: train gets SIGTERM before the sync that copies its
    # last checkpoint.
    assert train["dependsOn"] == [
        {"containerName": "stage-training", "condition": "SUCCESS"},
        {"containerName": "sync-checkpoints", "condition": "START"},
    ]
    assert sync["dependsOn"] == [{"containerName": "stage-training", "condition": "SUCCESS"}]
    assert collect["dependsOn"] == [{"containerName": "train", "condition": "COMPLETE"}]
    assert [c["essential"] for c in containers.values()] == [False, False, False, True]
    assert "restartPolicy" not in stage and "restartPolicy" not in train
    assert sync["command"] == ["sync-checkpoints"] and sync["user"] == "0:0"
    assert {m["containerPath"] for m in sync["mountPoints"]} >= {
        "/opt/ml/checkpoints",
        "/mnt/store",
    }
    # SageMaker's layout: input, model, output and checkpoints, each a task volume (not EFS),
    # and nothing over /opt/ml itself, so the image's own /opt/ml/code stays visible
    # (SageMaker Developer Guide, "your-algorithms-training-algo-running-container").
    volumes = digits.one(TASK_DEFINITION, "training-train").inputs["volumes"]
    ml = {v["name"]: v for v in volumes if v["name"].startswith("ml-")}
    assert sorted(ml) == ["ml-checkpoints", "ml-input", "ml-model", "ml-output"]
    assert not any("efsVolumeConfiguration" in v for v in ml.values())
    mounts = {m["containerPath"] for m in train["mountPoints"]}
    layout = {"/opt/ml/input", "/opt/ml/model", "/opt/ml/output", "/opt/ml/checkpoints"}
    assert layout <= mounts and "/opt/ml" not in mounts and "/mnt/store" not in mounts
    assert not any(m.startswith("/opt/ml/code") for m in mounts)
    assert {"/opt/ml/input", "/opt/ml/checkpoints", "/mnt/store"} <= {
        m["containerPath"] for m in stage["mountPoints"]
    }
    assert {"/opt/ml/model", "/opt/ml/output", "/mnt/store"} <= {
        m["containerPath"] for m in collect["mountPoints"]
    }
    assert train["command"] == ["train"]
    env = {e["name"]: e["value"] for e in stage["environment"]}
    assert json.loads(env["MLOPS_CHANNELS"]) == {"train": "datasets/digits"}
    assert env["MLOPS_WORKLOAD_UID"] == "10001"
    train_env = {e["name"]: e["value"] for e in train["environment"]}
    assert train_env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert train_env["SM_OUTPUT_DATA_DIR"] == "/opt/ml/output/data"
    # SageMaker's name of the job, the run's id, as the training toolkit reads it.
    definition = json.loads(digits.one(STATE_MACHINE, "training-pipeline").inputs["definition"])
    (override,) = [
        o
        for o in definition["States"]["Train"]["Parameters"]["Overrides"]["ContainerOverrides"]
        if o["Name"] == "train"
    ]
    assert {"Name": "TRAINING_JOB_NAME", "Value.$": "$.run.id"} in override["Environment"]


def test_serving_stages_the_promoted_model_before_the_server(digits: Plan):
    api, stage = _containers(digits, "inference-task").values()
    assert api["command"] == ["serve"] and "healthCheck" not in api
    assert api["dependsOn"] == [{"containerName": "stage-serving", "condition": "SUCCESS"}]
    assert stage["essential"] is False and "restartPolicy" not in stage
    target_group = digits.one("aws:lb/targetGroup:TargetGroup", "inference-api")
    assert target_group.inputs["healthCheck"]["path"] == "/ping"


def _next(state: dict, data: dict) -> str:
    """Where a Choice state goes with `data`, as Step Functions evaluates it (preflight/asl.py)."""
    return next(
        (c["Next"] for c in state["Choices"] if asl.choice_matches(c, data, {})), state["Default"]
    )


def test_the_pipeline_gates_on_accuracy_then_rolls_the_model_out_before_it_is_current(
    digits: Plan,
):
    definition = json.loads(digits.one(STATE_MACHINE, "training-pipeline").inputs["definition"])
    states = definition["States"]
    assert "Validate" not in states and "AwaitImage" not in states
    assert states["Train"]["Next"] == "Gate" and states["Gate"]["Next"] == "StartRollout"
    overrides = states["Train"]["Parameters"]["Overrides"]["ContainerOverrides"]
    assert [o["Name"] for o in overrides] == [
        "train",
        "stage-training",
        "sync-checkpoints",
        "collect-training",
    ]
    (gate,) = _containers(digits, "training-gate").values()
    env = {e["name"]: e["value"] for e in gate["environment"]}
    assert gate["command"] == ["gate"]
    assert (env["MLOPS_OBJECTIVE_KEY"], env["MLOPS_OBJECTIVE_DIRECTION"]) == (
        "accuracy",
        "maximize",
    )
    # A promoted run is the candidate: models/CURRENT changes when its rollout succeeds.
    assert env["MLOPS_ROLLOUT"] == "1"

    # The gate's exit 3 is a decision to keep the current model: the run ends there.
    def stopped(code: int) -> dict:
        task = {
            "StopCode": "EssentialContainerExited",
            "Containers": [{"Name": "gate", "ExitCode": code}],
        }
        return {
            "error": {
                "Error": "States.TaskFailed",
                "Cause": json.dumps(task, separators=(",", ":")),
            }
        }

    (caught,) = [c for c in states["Gate"]["Catch"] if c["ErrorEquals"] == ["States.TaskFailed"]]
    assert caught["Next"] == "GateStopped"
    kept, crashed = stopped(3), stopped(1)
    for data in (kept, crashed):
        assert _next(states["GateStopped"], data) == "ReadGateStop"
        data["gate_stop"] = {"task": json.loads(data["error"]["Cause"])}
    assert _next(states["GateKept"], kept) == "ModelKept"
    assert states["ModelKept"]["Type"] == "Succeed"
    assert _next(states["GateKept"], crashed) == "NotifyFailure"
    not_a_task = {"error": {"Error": "States.TaskFailed", "Cause": "ECS.AccessDeniedException"}}
    assert _next(states["GateStopped"], not_a_task) == "NotifyFailure"

    # Deploy: the service's deploy function rolls the candidate out; the pipeline polls the
    # deployment, commits on success, records the rollback and fails otherwise.
    function = digits.one("aws:lambda/function:Function", "inference-deploy")
    deploy = states["Deploy"]
    assert deploy["Resource"] == "arn:aws:states:::lambda:invoke"
    assert deploy["Parameters"]["FunctionName"] == function.outputs["arn"]
    payload = deploy["Parameters"]["Payload"]
    service = digits.one("aws:ecs/service:Service", "inference-service").inputs
    assert (payload["action"], payload["service"], payload["container"]) == (
        "deploy",
        service["name"],
        "stage-serving",
    )
    assert payload["run_id.$"] == "$.run.id"
    outcome = states["RolloutOutcome"]
    running = {"rollout": {"status": {"value": {"status": "IN_PROGRESS"}}, "polls": {"count": 1}}}
    assert _next(outcome, running) == "CountPoll"
    running["rollout"]["polls"]["count"] = 60  # 30 minutes of 30-second polls
    assert _next(outcome, running) == "StopRollout"
    for status, following in (("SUCCEEDED", "CommitModel"), ("FAILED", "RecordRollback")):
        data = {"rollout": {"status": {"value": {"status": status}}, "polls": {"count": 1}}}
        assert _next(outcome, data) == following
    commit = states["CommitModel"]["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert commit["Command"] == ["finish-rollout"]
    assert {"Name": "MLOPS_ROLLOUT_STATUS", "Value": "succeeded"} in commit["Environment"]
    assert states["RecordRollback"]["Next"] == "RolloutFailed"
    assert states["RolloutFailed"]["Next"] == "NotifyFailure"

    # The state machine may invoke exactly that function, and nothing in ECS directly.
    statements = json.loads(digits.one(POLICY, "training-sfn-policy").inputs["policy"])
    (invoke,) = [s for s in statements["Statement"] if s["Sid"] == "InvokeRolloutFunction"]
    assert (invoke["Action"], invoke["Resource"]) == (
        "lambda:InvokeFunction",
        function.outputs["arn"],
    )
    assert "ecs:UpdateService" not in json.dumps(statements)
    # The deploy function may roll exactly this service and revise exactly its family.
    deploy_policy = json.loads(digits.one(POLICY, "inference-deploy-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in deploy_policy["Statement"]}
    assert by_sid["RollTheService"]["Resource"] == (
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/"
        f"{digits.one('aws:ecs/cluster:Cluster').outputs['name']}/{service['name']}"
    )
    assert by_sid["PassItsTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_a_failed_train_is_recorded_in_the_run_then_reported(digits: Plan):
    definition = json.loads(digits.one(STATE_MACHINE, "training-pipeline").inputs["definition"])
    states = definition["States"]
    # Spot: an interruption moves to on-demand; a crash is recorded, not run again.
    task = {
        "StopCode": "EssentialContainerExited",
        "StoppedReason": "Essential container in task exited",
        "Containers": [
            {"Name": "train", "ExitCode": 1},
            {"Name": "collect-training", "ExitCode": 1},
        ],
    }
    data = {
        "error": {"Error": "States.TaskFailed", "Cause": json.dumps(task, separators=(",", ":"))}
    }
    assert _next(states["SpotStopped"], data) == "TrainStopped"
    spot = json.loads(
        data["error"]["Cause"].replace("EssentialContainerExited", "SpotInterruption")
    )
    interrupted = {"error": {"Cause": json.dumps(spot, separators=(",", ":"))}}
    assert _next(states["SpotStopped"], interrupted) == "TrainOnDemand"
    assert _next(states["TrainStopped"], data) == "ReadTrainStop"
    data["stopped"] = {"task": task}
    assert _next(states["TrainStopComplete"], data) == "TrainStopRecord"
    record = states["RecordFailure"]
    override = record["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert override["Command"] == ["record-failure"]
    assert {"Name": "MLOPS_TASK_STOP", "Value.$": "States.JsonToString($.stopped.record)"} in (
        override["Environment"]
    )
    assert record["Next"] == "NotifyFailure"
    assert record["Catch"][0]["Next"] == "NotifyFailure"
    # A train past its TimeoutSeconds: no task in the cause, the timeout recorded all the same.
    timeout = {"error": {"Error": "States.Timeout", "Cause": "State 'Train' has timed out"}}
    assert _next(states["TrainStopped"], timeout) == "TrainTimedOut"
    assert states["TrainTimedOut"]["Next"] == "RecordFailure"


def test_execution_roles_pull_the_workload_and_platform_repositories_only(digits: Plan):
    policy = json.loads(digits.one(POLICY, "training-execution-policy").inputs["policy"])
    (pull,) = [s for s in policy["Statement"] if s["Sid"] == "PullImages"]
    assert sorted(r.rsplit("/", 1)[1] for r in pull["Resource"]) == [
        "mlops-digits",
        "mlops-digits-platform",
    ]


def test_a_training_only_workload_has_no_service_load_balancer_or_rollout():
    plan = run_stack("digits", {"workload": {"serving": None}})
    types = {r.type for r in plan.resources}
    assert "aws:ecs/service:Service" not in types
    assert not types & {"aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"}
    assert not [r for r in plan.resources if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"]
    definition = json.loads(plan.one(STATE_MACHINE, "training-pipeline").inputs["definition"])
    assert "Deploy" not in definition["States"]
    assert definition["States"]["Gate"]["Next"] == "Succeeded"
    assert not plan.of_type("aws:lambda/function:Function")
    assert "url" not in plan.exports


def test_the_staging_containers_logs_are_not_billed_for_the_tasks_hours(digits: Plan):
    from preflight.costs import estimate_cost

    ingest = {
        line.resource: line for line in estimate_cost(digits).lines if line.item == "log ingestion"
    }
    # stage-serving exits before the api starts (dependsOn SUCCESS): a few lines per task start.
    assert ingest["inference-logs-stage-serving"].monthly_usd == 0
    assert "staging containers" in ingest["inference-logs-stage-serving"].note
    # The api runs for the service's hours: its group carries them.
    assert ingest["inference-logs-api"].monthly_usd > 0
    assert "container-hours" in ingest["inference-logs-api"].note


def test_the_serving_task_of_a_staged_model_can_only_read_the_store(digits: Plan):
    """stage-serving reads the promoted model; nothing in the serving task writes the store."""
    containers = _containers(digits, "inference-task")
    (store,) = [
        m for m in containers["stage-serving"]["mountPoints"] if m["sourceVolume"] == "store"
    ]
    assert store["readOnly"] is True
    assert not [m for m in containers["api"]["mountPoints"] if m["sourceVolume"] == "store"]
    role = digits.one("aws:iam/role:Role", "inference-task-role").outputs["arn"]
    policy = json.loads(digits.one(POLICY, "inference-task-store").inputs["policy"])
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"elasticfilesystem:ClientMount"}
    # Within one account a resource policy's allow suffices alone: the file system policy must
    # not grant the serving role ClientWrite either.
    fs = json.loads(digits.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"])
    for statement in fs["Statement"]:
        if statement["Effect"] == "Allow" and role in statement["Principal"]["AWS"]:
            assert statement["Action"] == "elasticfilesystem:ClientMount"
    writers = [s for s in fs["Statement"] if s.get("Sid") == "AllowClientsThroughAccessPoint"]
    assert writers and role not in writers[0]["Principal"]["AWS"]
