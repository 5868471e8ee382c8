"""The training builders in components/documents.py, as plain data (no Pulumi)."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from app.settings import AppSettings
from components.documents.common import ContainerSpec, policy_document, render_containers
from components.documents.execution import execution_role_statements
from components.documents.gpu import gpu_user_data
from components.documents.training import (
    FARGATE,
    FARGATE_SPOT,
    STAR_RESOURCE_SIDS,
    STEP_TIMEOUT_SECONDS,
    TRAINING_STEPS,
    PipelineSpec,
    state_machine_role_statements,
    training_container,
    training_state_machine,
)
from components.documents.triggers import (
    ECR_PUSH_INPUT_PATHS,
    dead_letter_queue_policy,
    drift_pattern,
    ecr_push_pattern,
    start_execution_statements,
    trigger_input,
    trigger_input_template,
)
from components.settings.workload import SecuritySpec, StepSpec, TrainingSpec
from preflight import asl

REGION, ACCOUNT = "us-east-1", "123456789012"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/mlops"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/training-execution"
TASK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/training-task"
FAMILIES = {step: f"mlops-dev-training-{step}" for step in TRAINING_STEPS}
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlops@sha256:" + "a" * 64
DIGEST = "sha256:" + "b" * 64
ECS_STEPS = ("AwaitImage", "Validate", "Train", "TrainOnDemand", "Gate")

# AWS facts, from AWS's documents (never from components/documents.py):
# - AWS re:Post knowledge center, "ecs-fargate-runtask-capacity" ("How do I troubleshoot an
#   Amazon ECS RunTask API for a Fargate task that fails with a 'Capacity is unavailable'
#   error?"): "If you start RunTask from Step Functions and the task fails because of limited
#   capacity, then Step Functions records an ECS.AmazonECSException in its ErrorEquals field."
# - Step Functions Developer Guide, "Handling errors in Step Functions": the predefined error
#   names, all prefixed `States.`.
CAPACITY_REFUSED = "ECS.AmazonECSException"
PREDEFINED_ERRORS = {
    "States.ALL",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
}
DOCUMENTED_ERRORS = PREDEFINED_ERRORS | {CAPACITY_REFUSED}


def spec(capacity: str = FARGATE_SPOT, public_ip: bool = True, gpu: bool = False) -> PipelineSpec:
    return PipelineSpec(
        cluster_arn=CLUSTER_ARN,
        families=FAMILIES,
        subnets=["subnet-a", "subnet-b"],
        security_groups=["sg-task", "sg-store"],
        assign_public_ip=public_ip,
        train_capacity=capacity,
        topic_arn=TOPIC,
        gpu_train=gpu,
        # The reference workload's `steps.await_image` (workloads/forecaster.yaml).
        await_command=("check-image",),
    )


SPOT = training_state_machine(spec())["States"]
ON_DEMAND = training_state_machine(spec(FARGATE))["States"]
GPU = training_state_machine(spec("gpu-provider", public_ip=False, gpu=True))["States"]


def ecs_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: states[name] for name in ECS_STEPS if name in states}


def step_of(state: dict[str, Any]) -> str:
    """The pipeline step a Task state runs (its container override's name)."""
    return state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Name"]


def handler(
    state: dict[str, Any], error: str, retries_spent: bool = False
) -> tuple[str, dict[str, Any]]:
    """Where Step Functions sends `error` raised by `state`: the first matching retrier (its
    attempts) or else the first matching catcher (ASL spec: "Retrying after error", "Fallback
    states"). `States.TaskFailed` and `States.ALL` match any error but `States.Timeout` for
    TaskFailed. `retries_spent`: the matching retrier has used its attempts, so the error goes
    to the catchers."""

    def matches(names: list[str]) -> bool:
        if error in names or "States.ALL" in names:
            return True
        return "States.TaskFailed" in names and error != "States.Timeout"

    for retrier in state.get("Retry", []):
        if matches(retrier["ErrorEquals"]):
            if retries_spent:
                break
            return "retry", retrier
    for catcher in state.get("Catch", []):
        if matches(catcher["ErrorEquals"]):
            return "catch", catcher
    return "fail", {}


def intrinsic(text: str, data: dict[str, Any], context: dict[str, Any]) -> Any:
    """Evaluate a JSONPath-mode path or intrinsic function call, for the functions used here."""
    text = text.strip()
    if text.startswith("$$."):
        value: Any = context
        for key in text[3:].split("."):
            value = value[key]
        return value
    if text == "$":
        return data
    if text.startswith("$."):
        value = data
        for key in text[2:].split("."):
            value = value[key]
        return value
    if text.startswith("'"):
        return text[1:-1]
    if text.isdigit():
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    function, _, rest = text.partition("(")
    args, depth, quoted, current = [], 0, False, ""
    for char in rest[:-1]:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            args.append(current)
            current = ""
        else:
            current += char
    values = [intrinsic(arg, data, context) for arg in [*args, current]]
    if function == "States.StringSplit":
        return [part for part in re.split(f"[{re.escape(values[1])}]", values[0]) if part]
    if function == "States.ArrayGetItem":
        return values[0][values[1]]
    if function == "States.Format":
        return values[0].replace("{}", "%s") % tuple(values[1:])
    if function == "States.JsonMerge":
        return {**values[0], **values[1]}
    raise AssertionError(f"no evaluator for {function}")


def parameters(template: dict[str, Any], data: dict[str, Any], context: dict[str, Any]) -> Any:
    """A state's `Parameters` applied to its input (keys ending in `.$` are evaluated)."""
    result: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            result[key[:-2]] = intrinsic(value, data, context)
        elif isinstance(value, dict):
            result[key] = parameters(value, data, context)
        else:
            result[key] = value
    return result


def happy_path(states: dict[str, Any], start: str) -> list[str]:
    """The states an execution without errors goes through (Choice: its Default)."""
    path, name = [], start
    while name:
        path.append(name)
        state = states[name]
        name = state["Default"] if state["Type"] == "Choice" else state.get("Next")
    return path


# ------------------------------------------------------------------------------- the ASL


def test_every_error_name_is_one_aws_documents():
    for states in (SPOT, ON_DEMAND, GPU):
        for name, state in states.items():
            for handling in state.get("Retry", []) + state.get("Catch", []):
                unknown = set(handling["ErrorEquals"]) - DOCUMENTED_ERRORS
                assert not unknown, (name, unknown)


def test_steps_run_validate_then_train_then_gate():
    definition = training_state_machine(spec())
    path = happy_path(definition["States"], definition["StartAt"])
    assert path == ["Defaults", "Prepare", "PushedImage", "Validate", "Train", "Gate", "Succeeded"]
    assert SPOT["Succeeded"]["Type"] == "Succeed"


def test_an_image_push_checks_the_running_image_until_the_deploy_registered_it():
    for states in (SPOT, ON_DEMAND, GPU):
        choice = states["PushedImage"]["Choices"]
        assert choice == [
            {"Variable": "$.trigger.reason", "StringEquals": "image-push", "Next": "AwaitImage"}
        ]
        await_image = states["AwaitImage"]
        assert await_image["Next"] == "Validate"
        assert "Wait" not in {s["Type"] for s in states.values()}  # no fixed wait any more
        (override,) = await_image["Parameters"]["Overrides"]["ContainerOverrides"]
        assert override["Command"] == ["check-image"]
        env = {e["Name"]: e["Value.$"] for e in override["Environment"]}
        assert env["TRIGGER_IMAGE_DIGEST"] == "$.trigger.image_digest"
        # A task still on the old image exits 1: retried with backoff for many minutes.
        kind, retrier = handler(await_image, "States.TaskFailed")
        assert kind == "retry" and retrier["BackoffRate"] > 1
        waits = sum(
            retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n
            for n in range(retrier["MaxAttempts"])
        )
        assert 15 * 60 <= waits <= 40 * 60
        kind, where = handler(await_image, "States.TaskFailed", retries_spent=True)
        assert (kind, where["Next"]) == ("catch", "NotifyFailure")
    # The check runs on a step that runs the pushed flavour: train's gpu image on GPU stacks.
    assert SPOT["AwaitImage"]["Parameters"]["TaskDefinition"] == FAMILIES["validate"]
    assert GPU["AwaitImage"]["Parameters"]["TaskDefinition"] == FAMILIES["train"]


def prepared(execution_input: dict[str, Any], start: str, name: str) -> dict[str, Any]:
    """What Defaults then Prepare hand to the first step, for one execution."""
    context = {"Execution": {"Name": name, "StartTime": start}}
    data = execution_input
    for state in ("Defaults", "Prepare"):
        data = parameters(SPOT[state]["Parameters"], data, context)
    return data


def test_a_push_trigger_passes_its_reason_and_digest():
    data = prepared(
        {"reason": "image-push", "image_digest": DIGEST}, "2026-11-22T03:00:00.123Z", "e1"
    )
    assert data["trigger"] == {"reason": "image-push", "image_digest": DIGEST}


def test_defaults_fill_in_a_manual_start_without_input():
    data = prepared({}, "2026-11-22T03:00:00.123Z", "e1")
    assert data["trigger"] == {"reason": "manual", "image_digest": "deployed"}


@pytest.mark.parametrize("start", ["2026-11-22T03:04:05.678Z", "2026-11-22T03:04:05Z"])
def test_run_id_and_date_are_what_the_app_accepts_and_sort_by_time(start):
    name = "7f1c2a9e-3b4d-4e5f-8a6b-0c1d2e3f4a5b"  # EventBridge starts get a UUID name
    run = prepared({"reason": "schedule"}, start, name)["run"]
    assert run == {"id": f"20261122T030405Z-{name}", "date": "2026-11-22"}
    settings = AppSettings(run_id=run["id"], run_date=run["date"])
    assert settings.run_date == date(2026, 11, 22)
    later = prepared({}, "2026-11-22T13:00:00.000Z", "0-first-by-name")["run"]["id"]
    assert sorted([later, run["id"]]) == [run["id"], later]


@pytest.mark.parametrize("states", [SPOT, ON_DEMAND, GPU], ids=["spot", "fargate", "gpu"])
def test_every_step_is_a_sync_run_task_on_a_capacity_provider(states):
    for name, state in ecs_states(states).items():
        params = state["Parameters"]
        assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync", name
        assert params["Cluster"] == CLUSTER_ARN
        assert "LaunchType" not in params  # exclusive with a capacity provider strategy
        assert len(params["CapacityProviderStrategy"]) == 1
        network = params["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["Subnets"] == ["subnet-a", "subnet-b"]
        assert network["SecurityGroups"] == ["sg-task", "sg-store"]
        assert state["ResultPath"] is None
        assert state["TimeoutSeconds"] == STEP_TIMEOUT_SECONDS[step_of(state)]


def test_each_step_runs_its_own_family_and_container():
    for state in ecs_states(SPOT).values():
        step = step_of(state)
        params = state["Parameters"]
        assert params["TaskDefinition"] == FAMILIES[step]
        (override,) = params["Overrides"]["ContainerOverrides"]
        assert override["Name"] == step
        assert "Image" not in override  # RunTask cannot override the image


def test_capacity_per_step():
    def provider(state):
        return state["Parameters"]["CapacityProviderStrategy"][0]["CapacityProvider"]

    for states in (SPOT, ON_DEMAND, GPU):
        assert provider(states["Validate"]) == provider(states["Gate"]) == "FARGATE"
    assert provider(SPOT["Train"]) == "FARGATE_SPOT"
    assert provider(SPOT["TrainOnDemand"]) == "FARGATE"
    assert provider(ON_DEMAND["Train"]) == "FARGATE"
    assert provider(GPU["Train"]) == "gpu-provider"


def test_public_ip_follows_the_network():
    def public(states, name):
        return states[name]["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"][
            "AssignPublicIp"
        ]

    assert {public(SPOT, n) for n in ecs_states(SPOT)} == {"ENABLED"}
    assert {public(GPU, n) for n in ecs_states(GPU)} == {"DISABLED"}


def test_overrides_pass_the_run_id_date_and_trigger_prepared_once():
    for states in (SPOT, GPU):
        for name, state in ecs_states(states).items():
            (override,) = state["Parameters"]["Overrides"]["ContainerOverrides"]
            env = {e["Name"]: e["Value.$"] for e in override["Environment"]}
            # Only steps running the pushed flavour check its digest: on a GPU stack validate
            # and gate run the cpu image.
            checks = states is SPOT or override["Name"] == "train"
            assert env == {
                "RUN_ID": "$.run.id",
                "RUN_DATE": "$.run.date",
                "TRIGGER": "$.trigger.reason",
                **({"TRIGGER_IMAGE_DIGEST": "$.trigger.image_digest"} if checks else {}),
            }, name


def test_spot_capacity_refusal_retries_with_backoff_then_falls_back_to_on_demand_once():
    kind, retrier = handler(SPOT["Train"], CAPACITY_REFUSED)
    assert kind == "retry" and retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 2
    kind, where = handler(SPOT["Train"], CAPACITY_REFUSED, retries_spent=True)
    assert (kind, where["Next"]) == ("catch", "TrainOnDemand")
    # A stopped task is read: a Spot interruption goes to on-demand; a train that failed on
    # its own is not run again (preflight/asl.py evaluates the Choice as Step Functions does).
    kind, where = handler(SPOT["Train"], "States.TaskFailed")
    assert (kind, where["Next"], where["ResultPath"]) == ("catch", "SpotStopped", "$.error")

    def after(stop_code: str) -> str:
        cause = json.dumps({"StopCode": stop_code, "Containers": [{"Name": "train"}]})
        data = {"error": {"Error": "States.TaskFailed", "Cause": cause}}
        choice = SPOT["SpotStopped"]
        return next(
            (c["Next"] for c in choice["Choices"] if asl.choice_matches(c, data, {})),
            choice["Default"],
        )

    assert after("SpotInterruption") == "TrainOnDemand"
    assert after("EssentialContainerExited") == "NotifyFailure"
    assert SPOT["TrainOnDemand"]["Next"] == "Gate"
    # The fallback is the last one: on-demand capacity refusals retry, then report and fail.
    kind, retrier = handler(SPOT["TrainOnDemand"], CAPACITY_REFUSED)
    assert kind == "retry" and retrier["BackoffRate"] > 1
    for error in (CAPACITY_REFUSED, "States.TaskFailed"):
        kind, where = handler(SPOT["TrainOnDemand"], error, retries_spent=True)
        assert (kind, where["Next"]) == ("catch", "NotifyFailure"), error


def test_on_demand_and_gpu_train_resume_once_after_a_stopped_task():
    assert "TrainOnDemand" not in ON_DEMAND and "TrainOnDemand" not in GPU
    for states in (ON_DEMAND, GPU):
        kind, retrier = handler(states["Train"], "States.TaskFailed")
        assert kind == "retry" and retrier["MaxAttempts"] == 1
        # Specific retriers come before the TaskFailed wildcard, so they keep their budgets.
        assert handler(states["Train"], CAPACITY_REFUSED)[1]["ErrorEquals"] == [CAPACITY_REFUSED]


def test_bad_data_stops_the_pipeline_without_a_retry():
    for states in (SPOT, ON_DEMAND, GPU):
        for name in ("Validate", "Gate"):
            kind, where = handler(states[name], "States.TaskFailed")
            assert (kind, where["Next"]) == ("catch", "NotifyFailure"), name


def test_ecs_api_and_capacity_errors_retry_with_backoff_everywhere():
    for states in (SPOT, ON_DEMAND, GPU):
        for name, state in ecs_states(states).items():
            kind, retrier = handler(state, CAPACITY_REFUSED)
            assert kind == "retry" and retrier["BackoffRate"] == 2.0, name
            assert 2 <= retrier["MaxAttempts"] <= 5


def test_timeouts_are_reported_not_retried():
    for states in (SPOT, ON_DEMAND, GPU):
        for name, state in ecs_states(states).items():
            kind, where = handler(state, "States.Timeout")
            assert (kind, where["Next"]) == ("catch", "NotifyFailure"), name


def test_every_failure_is_published_then_fails_the_execution():
    notify = SPOT["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Parameters"]["TopicArn"] == TOPIC
    assert "Message.$" in notify["Parameters"]
    assert notify["Next"] == "Failed"
    assert [c["Next"] for c in notify["Catch"]] == ["Failed"]
    assert SPOT["Failed"]["Type"] == "Fail"
    for states in (SPOT, ON_DEMAND, GPU):
        for name, state in ecs_states(states).items():
            assert state["Catch"][-1] == {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.error",
                "Next": "NotifyFailure",
            }, name


def test_every_next_names_a_state():
    for states in (SPOT, ON_DEMAND, GPU):
        targets = {s.get("Next") for s in states.values()} | {
            c["Next"] for s in states.values() for c in s.get("Catch", []) + s.get("Choices", [])
        }
        assert targets - {None} <= set(states)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"families": {"validate": "v", "gate": "g"}}, "families"),
        ({"families": {"train": "t", "deploy": "d"}}, "families"),
        ({"subnets": []}, "subnet"),
        ({"topic_arn": "alarms"}, "SNS"),
        ({"step_capacity": FARGATE_SPOT}, "on-demand"),
        ({"train_capacity": "gpu-provider", "assign_public_ip": True}, "public IP"),
    ],
)
def test_bad_pipeline_specs_are_rejected(change, message):
    values = {**spec().__dict__, **change}
    with pytest.raises(ValueError, match=message):
        training_state_machine(PipelineSpec(**values))


def test_a_workload_with_only_train_runs_train_then_succeeds():
    """No validate, gate or await_image step (a BYOC image): Prepare goes straight to Train and
    Train to Succeeded; the train timeout is the workload's."""
    values = {
        **spec(FARGATE).__dict__,
        "families": {"train": "t"},
        "await_command": (),
        "train_timeout_seconds": 3600,
    }
    states = training_state_machine(PipelineSpec(**values))["States"]
    assert set(states) == {"Defaults", "Prepare", "Train", "NotifyFailure", "Failed", "Succeeded"}
    assert states["Prepare"]["Next"] == "Train" and states["Train"]["Next"] == "Succeeded"
    assert states["Train"]["TimeoutSeconds"] == 3600


# --------------------------------------------------------------------------- the containers

SECURITY = SecuritySpec()
GATE = StepSpec(("gate",))


def _rendered(spec: ContainerSpec) -> dict:
    (container,) = render_containers([spec], REGION, {spec.name: "/mlops/training"})
    return container


@pytest.mark.parametrize("step", TRAINING_STEPS)
def test_each_step_runs_python_m_app_step_hardened(step):
    container = _rendered(
        training_container(step, IMAGE, StepSpec((step,)), security=SECURITY, promote_margin=0.01)
    )
    assert container["name"] == step
    assert container["command"] == [step]
    assert container["user"] == "10001:10001"
    assert container["readonlyRootFilesystem"] is True
    assert {m["containerPath"] for m in container["mountPoints"]} == {"/mnt/store", "/tmp"}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["STORE_DIR"] == "/mnt/store"
    assert env["LOG_LEVEL"] == "INFO" and float(env["STORE_WAIT_SECONDS"]) > 0
    assert ("PROMOTE_MARGIN" in env) == (step == "gate")
    assert container["logConfiguration"]["options"]["awslogs-stream-prefix"] == step
    assert "resourceRequirements" not in container


def test_gate_gets_the_promote_margin():
    container = _rendered(
        training_container("gate", IMAGE, GATE, security=SECURITY, promote_margin=0.01)
    )
    assert {"name": "PROMOTE_MARGIN", "value": "0.01"} in container["environment"]


def test_only_train_reserves_gpus():
    train = _rendered(training_container("train", IMAGE, TrainingSpec(), security=SECURITY, gpus=2))
    assert train["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    with pytest.raises(ValueError, match="GPU"):
        training_container("validate", IMAGE, StepSpec(("validate",)), security=SECURITY, gpus=1)
    with pytest.raises(ValueError, match="step"):
        training_container("serve", IMAGE, StepSpec(("serve",)), security=SECURITY)


# ----------------------------------------------------------------------- events and inputs

# The ECR User Guide's sample event for a completed image push ("Amazon ECR events and
# EventBridge", Event for a completed image push).
ECR_PUSH_EVENT = {
    "version": "0",
    "id": "13cde686-328b-6117-af20-0e5566167482",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": ACCOUNT,
    "time": "2019-11-16T01:54:34Z",
    "region": REGION,
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "mlops",
        "image-digest": DIGEST,
        "action-type": "PUSH",
        "image-tag": "cpu-0123456789abcdef",
    },
}


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for what these patterns use: value lists and `prefix` filters."""
    for key, wanted in pattern.items():
        if isinstance(wanted, dict):
            if not isinstance(event.get(key), dict) or not matches(wanted, event[key]):
                return False
            continue
        value = event.get(key)
        if not any(
            (isinstance(w, dict) and isinstance(value, str) and value.startswith(w["prefix"]))
            or w == value
            for w in wanted
        ):
            return False
    return True


def test_push_pattern_uses_the_documented_ecr_fields():
    pattern = ecr_push_pattern("mlops", "cpu-")
    assert pattern == {
        "source": ["aws.ecr"],
        "detail-type": ["ECR Image Action"],
        "detail": {
            "action-type": ["PUSH"],
            "result": ["SUCCESS"],
            "repository-name": ["mlops"],
            "image-tag": [{"prefix": "cpu-"}],
        },
    }
    assert matches(pattern, ECR_PUSH_EVENT)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repository-name", "other"),
        ("result", "FAILURE"),
        ("action-type", "DELETE"),
        ("image-tag", "cache-cpu"),  # the build-cache tag moves on every deploy
        ("image-tag", "gpu-0123456789abcdef"),
    ],
)
def test_push_pattern_ignores_other_pushes(field, value):
    event = json.loads(json.dumps(ECR_PUSH_EVENT))
    event["detail"][field] = value
    assert not matches(ecr_push_pattern("mlops", "cpu-"), event)


def test_drift_pattern():
    assert drift_pattern() == {
        "source": ["mlops.monitoring"],
        "detail-type": ["DataDriftDetected"],
    }


def test_push_input_template_passes_the_digest_and_the_reason():
    template = trigger_input_template("image-push", "digest")
    (path,) = ECR_PUSH_INPUT_PATHS.values()
    assert path == "$.detail.image-digest"
    rendered = template.replace("<digest>", ECR_PUSH_EVENT["detail"]["image-digest"])
    assert json.loads(rendered) == {"reason": "image-push", "image_digest": DIGEST}
    with pytest.raises(ValueError):
        trigger_input_template("image-push", "tag")


def test_constant_inputs_for_schedule_and_drift():
    assert trigger_input("schedule") == {"reason": "schedule", "image_digest": "deployed"}
    with pytest.raises(ValueError):
        trigger_input("Bad Reason")


# --------------------------------------------------------------------------------- IAM


def sfn_statements() -> list[dict[str, Any]]:
    return state_machine_role_statements(
        region=REGION,
        account=ACCOUNT,
        cluster_name="mlops",
        families=list(FAMILIES.values()),
        pass_role_arns=[EXECUTION_ROLE, TASK_ROLE],
        topic_arn=TOPIC,
        topic_key_arn=KEY,
    )


def by_sid(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_star_resources_only_where_aws_documents_them():
    for statements in (
        sfn_statements(),
        execution_role_statements(
            f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlops",
            [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/mlops/training:*"],
        ),
    ):
        policy_document(statements)  # every statement names a Resource
        for statement in statements:
            starred = any(r == "*" for r in as_list(statement["Resource"]))
            assert starred == (statement["Sid"] in STAR_RESOURCE_SIDS), statement["Sid"]


def test_documented_star_statements_hold_only_log_delivery_and_xray_actions():
    statements = by_sid(sfn_statements())
    assert all(a.startswith("logs:") for a in statements["DeliverExecutionLogs"]["Action"])
    assert "logs:CreateLogDelivery" in statements["DeliverExecutionLogs"]["Action"]
    assert all(a.startswith("xray:") for a in statements["TraceExecutions"]["Action"])


def test_pass_role_is_limited_to_the_two_task_roles_for_ecs_tasks():
    passing = [s for s in sfn_statements() if "iam:PassRole" in as_list(s["Action"])]
    assert len(passing) == 1
    assert passing[0]["Resource"] == sorted([EXECUTION_ROLE, TASK_ROLE])
    assert passing[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_run_task_only_on_the_pipeline_families_in_this_cluster():
    statement = by_sid(sfn_statements())["RunPipelineTasks"]
    prefix = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/"
    assert sorted(statement["Resource"]) == sorted(
        [prefix + f for f in FAMILIES.values()] + [prefix + f + ":*" for f in FAMILIES.values()]
    )
    assert statement["Condition"]["ArnEquals"]["ecs:cluster"] == CLUSTER_ARN
    follow = by_sid(sfn_statements())["FollowPipelineTasks"]
    assert follow["Resource"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/mlops/*"


def test_sync_events_publish_and_key():
    statements = sfn_statements()
    events = by_sid(statements)["SyncEcsTaskEvents"]
    assert events["Resource"] == (
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForECSTaskRule"
    )
    assert sorted(events["Action"]) == [
        "events:DescribeRule",
        "events:PutRule",
        "events:PutTargets",
    ]
    actions = {a: s["Resource"] for s in statements for a in as_list(s["Action"])}
    assert actions["sns:Publish"] == TOPIC
    assert actions["kms:GenerateDataKey*"] == actions["kms:Decrypt"] == KEY


def test_bad_role_arns_are_rejected():
    with pytest.raises(ValueError, match="role"):
        state_machine_role_statements(
            region=REGION,
            account=ACCOUNT,
            cluster_name="mlops",
            families=["f"],
            pass_role_arns=["*"],
            topic_arn=TOPIC,
            topic_key_arn=KEY,
        )


def test_events_role_starts_only_this_state_machine():
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:training"
    assert start_execution_statements(arn) == [
        {
            "Sid": "StartTraining",
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": arn,
        }
    ]
    with pytest.raises(ValueError):
        start_execution_statements("*")


def test_execution_role_pulls_one_repository_and_writes_one_log_group():
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlops"
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/mlops/training:*"
    statements = by_sid(execution_role_statements(repo, [group]))
    assert statements["PullImages"]["Resource"] == repo
    assert statements["WriteTaskLogs"]["Resource"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/mlops/training:log-stream:*"
    )
    assert statements["PullImagesToken"]["Action"] == "ecr:GetAuthorizationToken"


def test_dead_letter_queue_accepts_only_eventbridge_for_these_rules():
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"
    rules = [
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/b",
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/a",
    ]
    (statement,) = dead_letter_queue_policy(queue, rules)["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == queue
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": sorted(rules)}}
    with pytest.raises(ValueError):
        dead_letter_queue_policy(queue, [])


# ------------------------------------------------------------------------------ GPU hosts


def test_gpu_user_data_joins_the_cluster_with_gpus_and_cached_pulls():
    script = gpu_user_data("mlops-cluster")
    assert script.startswith("#!/bin/bash\n")
    assert "/etc/ecs/ecs.config" in script
    for line in (
        "ECS_CLUSTER=mlops-cluster",
        "ECS_ENABLE_GPU_SUPPORT=true",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
    ):
        assert line in script.splitlines()
    assert script.isascii()
    with pytest.raises(ValueError):
        gpu_user_data("bad name; rm -rf /")
