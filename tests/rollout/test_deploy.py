"""The deploy function against botocore's Stubber: every request the function makes is checked
against the real ECS service model (a wrong or missing field fails the call) and compared with
what the test expects; every canned response is checked against the model too."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

import mlops_contract
from rollout import deploy

ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/mlops-prod"
SERVICE = "mlops-prod-inference"
SERVICE_ARN = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/mlops-prod/{SERVICE}"
OLD = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/{SERVICE}:7"
NEW = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/{SERVICE}:8"
DEPLOYMENT = (
    f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service-deployment/mlops-prod/{SERVICE}/EZe5RNVLH6PPzHXINuP28"
)
EARLIER_DEPLOYMENT = DEPLOYMENT.replace("EZe5RNVLH6PPzHXINuP28", "TFX5sH9q9XDboDTOv0rIt")
RUN = "20261201T100000Z-a1b2c3"
LOGS = {
    "logDriver": "awslogs",
    "options": {
        "awslogs-group": "/mlops/prod/inference",
        "awslogs-region": "eu-west-1",
        "awslogs-stream-prefix": "inference",
    },
}

TASK_DEFINITION = {
    "taskDefinitionArn": OLD,
    "family": SERVICE,
    "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/mlops-prod-inference-task",
    "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/mlops-prod-inference-execution",
    "networkMode": "awsvpc",
    "revision": 7,
    "containerDefinitions": [
        {
            "name": "stage-serving",
            "image": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mlops-platform@sha256:" + "a" * 64,
            "cpu": 0,
            "essential": False,
            "command": ["stage-serving"],
            "user": "0:0",
            "readonlyRootFilesystem": True,
            "environment": [
                {"name": "STORE_DIR", "value": "/mnt/store"},
                {"name": "MLOPS_WORKLOAD_UID", "value": "1000"},
            ],
            "mountPoints": [
                {"sourceVolume": "store", "containerPath": "/mnt/store", "readOnly": True},
                {"sourceVolume": "ml-model", "containerPath": "/opt/ml/model", "readOnly": False},
            ],
            "volumesFrom": [],
            "dockerLabels": {"mlops.staging": "true"},
            "logConfiguration": LOGS,
            "systemControls": [],
        },
        {
            "name": "serve",
            "image": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mlops-workload@sha256:" + "b" * 64,
            "cpu": 0,
            "essential": True,
            "command": ["serve"],
            "user": "1000:1000",
            "readonlyRootFilesystem": True,
            "portMappings": [
                {
                    "containerPort": 8080,
                    "hostPort": 8080,
                    "protocol": "tcp",
                    "name": "http",
                    "appProtocol": "http",
                }
            ],
            "environment": [{"name": "SM_MODEL_DIR", "value": "/opt/ml/model"}],
            "secrets": [
                {
                    "name": "API_TOKEN",
                    "valueFrom": (
                        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlops/api-token-AbCdEf"
                    ),
                }
            ],
            "mountPoints": [
                {"sourceVolume": "ml-model", "containerPath": "/opt/ml/model", "readOnly": True}
            ],
            "volumesFrom": [],
            "dependsOn": [{"containerName": "stage-serving", "condition": "SUCCESS"}],
            "healthCheck": {
                "command": ["CMD-SHELL", "curl -fs http://localhost:8080/ping || exit 1"],
                "interval": 10,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 60,
            },
            "stopTimeout": 30,
            "logConfiguration": LOGS,
            "systemControls": [],
        },
    ],
    "volumes": [
        {"name": "ml-model", "host": {}},
        {
            "name": "store",
            "efsVolumeConfiguration": {
                "fileSystemId": "fs-0123456789abcdef0",
                "rootDirectory": "/",
                "transitEncryption": "ENABLED",
                "authorizationConfig": {
                    "accessPointId": "fsap-0123456789abcdef0",
                    "iam": "ENABLED",
                },
            },
        },
    ],
    "status": "ACTIVE",
    "requiresAttributes": [
        {"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"},
        {"name": "ecs.capability.execution-role-awslogs"},
        {"name": "ecs.capability.efsAuth"},
        {"name": "ecs.capability.secrets.asm.environment-variables"},
        {"name": "ecs.capability.container-ordering"},
        {"name": "ecs.capability.efs"},
        {"name": "com.amazonaws.ecs.capability.task-iam-role"},
        {"name": "ecs.capability.task-eni"},
    ],
    "placementConstraints": [],
    "compatibilities": ["EC2", "FARGATE"],
    "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "1024",
    "memory": "2048",
    "ephemeralStorage": {"sizeInGiB": 21},
    "registeredAt": datetime(2026, 12, 1, 9, 58, tzinfo=UTC),
    "registeredBy": f"arn:aws:sts::{ACCOUNT}:assumed-role/mlops-deployer/pulumi",
    "enableFaultInjection": False,
}
READ_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
}
"""What DescribeTaskDefinition returns and RegisterTaskDefinition does not take."""
TAGS = [{"key": "mlops:stack", "value": "prod"}, {"key": "mlops:component", "value": "inference"}]
SERVICE_DESCRIPTION = {
    "serviceArn": SERVICE_ARN,
    "serviceName": SERVICE,
    "clusterArn": CLUSTER,
    "status": "ACTIVE",
    "desiredCount": 2,
    "runningCount": 2,
    "taskDefinition": OLD,
    "deploymentController": {"type": "ECS"},
    "deploymentConfiguration": {
        "strategy": "BLUE_GREEN",
        "bakeTimeInMinutes": 5,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    },
}
DEPLOY = {
    "action": "deploy",
    "cluster": CLUSTER,
    "service": SERVICE,
    "container": "stage-serving",
    "run_id": RUN,
}


@pytest.fixture
def ecs():
    return boto3.client(
        "ecs",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stub(ecs):
    with Stubber(ecs) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expected_registration(environment, tags=TAGS):
    """What RegisterTaskDefinition must receive: the description without its read-only fields,
    its tags, and the serving container's environment as given."""
    request = {k: copy.deepcopy(v) for k, v in TASK_DEFINITION.items() if k not in READ_ONLY}
    request["containerDefinitions"][0]["environment"] = environment
    if tags:
        request["tags"] = tags
    return request


def add_describes(stub, definition=TASK_DEFINITION, tags=TAGS, service=SERVICE_DESCRIPTION):
    stub.add_response(
        "describe_services", {"services": [service]}, {"cluster": CLUSTER, "services": [SERVICE]}
    )
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": definition, "tags": tags},
        {"taskDefinition": OLD, "include": ["TAGS"]},
    )


def add_register_and_update(stub, request, current_deployment=DEPLOYMENT):
    registered = {**TASK_DEFINITION, "taskDefinitionArn": NEW, "revision": 8}
    stub.add_response("register_task_definition", {"taskDefinition": registered}, request)
    updated = {**SERVICE_DESCRIPTION, "taskDefinition": NEW}
    if current_deployment:
        updated["currentServiceDeployment"] = current_deployment
    stub.add_response(
        "update_service",
        {"service": updated},
        {"cluster": CLUSTER, "service": SERVICE, "taskDefinition": NEW},
    )


# ------------------------------------------------------------------------------ deploy
def test_deploy_registers_the_definition_again_with_the_run_added_and_updates_the_service(
    ecs, stub, capsys
):
    add_describes(stub)
    environment = [
        *TASK_DEFINITION["containerDefinitions"][0]["environment"],
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
    ]
    add_register_and_update(stub, expected_registration(environment))

    result = deploy.handle(DEPLOY, ecs)

    assert result == {
        "task_definition": NEW,
        "previous_task_definition": OLD,
        "deployment": DEPLOYMENT,
    }
    assert json.loads(capsys.readouterr().out) == {"action": "deploy", **result}


def test_deploy_sends_back_exactly_what_register_task_definition_accepts(ecs, stub):
    """The read-only fields are dropped and everything else, including the fields newer than
    most hand lists (runtimePlatform, ephemeralStorage, enableFaultInjection), is carried."""
    add_describes(stub)
    environment = [
        *TASK_DEFINITION["containerDefinitions"][0]["environment"],
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
    ]
    request = expected_registration(environment)
    add_register_and_update(stub, request)

    deploy.handle(DEPLOY, ecs)

    assert set(TASK_DEFINITION) - set(request) == READ_ONLY
    assert {"runtimePlatform", "ephemeralStorage", "enableFaultInjection"} <= set(request)
    # The other container, its secrets and the volumes go back untouched.
    assert request["containerDefinitions"][1] == TASK_DEFINITION["containerDefinitions"][1]
    assert request["volumes"] == TASK_DEFINITION["volumes"]


def test_deploy_replaces_the_run_a_previous_rollout_set(ecs, stub):
    definition = copy.deepcopy(TASK_DEFINITION)
    definition["containerDefinitions"][0]["environment"] = [
        {"name": "STORE_DIR", "value": "/mnt/store"},
        {"name": "MLOPS_SERVE_RUN", "value": "20261101T000000Z-old"},
        {"name": "MLOPS_WORKLOAD_UID", "value": "1000"},
        {"name": "MLOPS_SERVE_RUN", "value": "a-duplicate"},
    ]
    add_describes(stub, definition=definition)
    replaced = [
        {"name": "STORE_DIR", "value": "/mnt/store"},
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
        {"name": "MLOPS_WORKLOAD_UID", "value": "1000"},
    ]
    request = {k: copy.deepcopy(v) for k, v in definition.items() if k not in READ_ONLY}
    request["containerDefinitions"][0]["environment"] = replaced
    request["tags"] = TAGS
    add_register_and_update(stub, request)

    assert deploy.handle(DEPLOY, ecs)["task_definition"] == NEW


def test_deploy_adds_an_environment_to_a_container_without_one(ecs, stub):
    definition = copy.deepcopy(TASK_DEFINITION)
    del definition["containerDefinitions"][0]["environment"]
    add_describes(stub, definition=definition)
    request = {k: copy.deepcopy(v) for k, v in definition.items() if k not in READ_ONLY}
    request["containerDefinitions"][0]["environment"] = [{"name": "MLOPS_SERVE_RUN", "value": RUN}]
    request["tags"] = TAGS
    add_register_and_update(stub, request)

    deploy.handle(DEPLOY, ecs)


def test_deploy_refuses_a_definition_without_the_named_container(ecs, stub):
    add_describes(stub)

    with pytest.raises(ValueError, match=r"container 'stage-serving-x' is not in task definition"):
        deploy.handle({**DEPLOY, "container": "stage-serving-x"}, ecs)
    # Nothing was registered and the service was not touched: the stub has no calls left over
    # and would have refused any other.


def test_deploy_refuses_a_run_the_container_takes_from_a_secret(ecs, stub):
    definition = copy.deepcopy(TASK_DEFINITION)
    definition["containerDefinitions"][0]["secrets"] = [
        {"name": "MLOPS_SERVE_RUN", "valueFrom": f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/run"}
    ]
    add_describes(stub, definition=definition)

    with pytest.raises(ValueError, match="takes MLOPS_SERVE_RUN from a secret"):
        deploy.handle(DEPLOY, ecs)


def test_deploy_keeps_the_callers_tags_and_drops_aws_reserved_ones(ecs, stub):
    tags = [*TAGS, {"key": "aws:cloudformation:stack-name", "value": "x"}]
    add_describes(stub, tags=tags)
    environment = [
        *TASK_DEFINITION["containerDefinitions"][0]["environment"],
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
    ]
    add_register_and_update(stub, expected_registration(environment, tags=TAGS))

    deploy.handle(DEPLOY, ecs)


def test_deploy_sends_no_tags_for_an_untagged_definition(ecs, stub):
    add_describes(stub, tags=[])
    environment = [
        *TASK_DEFINITION["containerDefinitions"][0]["environment"],
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
    ]
    add_register_and_update(stub, expected_registration(environment, tags=[]))

    deploy.handle(DEPLOY, ecs)


@pytest.mark.parametrize(
    ("service", "failures", "message"),
    [
        (None, [{"arn": SERVICE_ARN, "reason": "MISSING"}], "was not found: MISSING"),
        ({**SERVICE_DESCRIPTION, "status": "DRAINING"}, [], "is DRAINING, not ACTIVE"),
        (
            {**SERVICE_DESCRIPTION, "deploymentController": {"type": "CODE_DEPLOY"}},
            [],
            "uses the CODE_DEPLOY deployment controller",
        ),
    ],
)
def test_deploy_refuses_a_service_it_cannot_roll(ecs, stub, service, failures, message):
    stub.add_response(
        "describe_services",
        {"services": [service] if service else [], "failures": failures},
        {"cluster": CLUSTER, "services": [SERVICE]},
    )

    with pytest.raises(ValueError, match=message):
        deploy.handle(DEPLOY, ecs)


def _deploy_without_current_deployment(stub):
    add_describes(stub)
    environment = [
        *TASK_DEFINITION["containerDefinitions"][0]["environment"],
        {"name": "MLOPS_SERVE_RUN", "value": RUN},
    ]
    add_register_and_update(stub, expected_registration(environment), current_deployment=None)


def _list_params():
    return {"cluster": CLUSTER, "service": SERVICE, "createdAt": {"after": ANY}}


def test_deploy_takes_the_newest_listed_deployment_when_the_service_does_not_name_it(ecs, stub):
    """botocore before 1.41.1 has no Service `currentServiceDeployment`."""
    _deploy_without_current_deployment(stub)
    now = datetime.now(UTC)
    briefs = [
        {"serviceDeploymentArn": EARLIER_DEPLOYMENT, "createdAt": now - timedelta(hours=1)},
        {"serviceDeploymentArn": DEPLOYMENT, "createdAt": now + timedelta(seconds=1)},
    ]
    stub.add_response("list_service_deployments", {"serviceDeployments": briefs}, _list_params())

    assert deploy.handle(DEPLOY, ecs)["deployment"] == DEPLOYMENT


def test_the_listing_asks_for_deployments_created_since_the_update(ecs, stub, monkeypatch):
    _deploy_without_current_deployment(stub)
    sent = {}
    original = ecs.list_service_deployments

    def recording(**kwargs):
        sent.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(ecs, "list_service_deployments", recording)
    stub.add_response(
        "list_service_deployments",
        {
            "serviceDeployments": [
                {"serviceDeploymentArn": DEPLOYMENT, "createdAt": datetime.now(UTC)}
            ]
        },
        _list_params(),
    )
    before = datetime.now(UTC)

    deploy.handle(DEPLOY, ecs)

    after = sent["createdAt"]["after"]
    assert before - deploy.CLOCK_ALLOWANCE <= after <= datetime.now(UTC)


def test_the_listing_is_asked_again_until_the_deployment_shows(ecs, stub):
    _deploy_without_current_deployment(stub)
    stub.add_response("list_service_deployments", {"serviceDeployments": []}, _list_params())
    stub.add_response("list_service_deployments", {"serviceDeployments": []}, _list_params())
    stub.add_response(
        "list_service_deployments",
        {
            "serviceDeployments": [
                {"serviceDeploymentArn": DEPLOYMENT, "createdAt": datetime.now(UTC)}
            ]
        },
        _list_params(),
    )
    pauses = []

    assert deploy.handle(DEPLOY, ecs, sleep=pauses.append)["deployment"] == DEPLOYMENT
    assert pauses == [deploy.LIST_PAUSE_SECONDS] * 2


def test_the_listing_gives_up_after_its_tries(ecs, stub):
    _deploy_without_current_deployment(stub)
    for _ in range(deploy.LIST_ATTEMPTS):
        stub.add_response("list_service_deployments", {"serviceDeployments": []}, _list_params())
    pauses = []

    with pytest.raises(RuntimeError, match="showed no deployment"):
        deploy.handle(DEPLOY, ecs, sleep=pauses.append)
    assert len(pauses) == deploy.LIST_ATTEMPTS - 1


# ------------------------------------------------------------------------------ a newer ECS
def _raw(value):
    """`value` as ECS's JSON protocol sends it (timestamps in epoch seconds)."""
    return json.dumps(value, default=lambda t: t.timestamp()).encode()


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data


def test_a_definition_with_fields_botocore_does_not_know_is_refused(ecs):
    """Parsed by botocore, an unknown field would vanish and the new revision would lack it.
    Here the responses go through botocore's real parser (raw HTTP bodies, no Stubber)."""
    definition = copy.deepcopy(TASK_DEFINITION)
    definition["containerDefinitions"][1]["futureSetting"] = {"enabled": True}
    definition["futureTaskSetting"] = "on"
    bodies = {
        "DescribeServices": _raw({"services": [SERVICE_DESCRIPTION], "failures": []}),
        "DescribeTaskDefinition": _raw({"taskDefinition": definition, "tags": TAGS}),
    }
    calls = []

    def send(request, **_):
        operation = request.headers["X-Amz-Target"].decode().rpartition(".")[2]
        calls.append(operation)
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 200, headers, _Body(bodies[operation]))

    ecs.meta.events.register("before-send.ecs", send)

    with pytest.raises(ValueError) as refused:
        deploy.handle(DEPLOY, ecs)
    assert (
        "(taskDefinition.containerDefinitions[].futureSetting, taskDefinition.futureTaskSetting)"
        in str(refused.value)
    )
    assert calls == ["DescribeServices", "DescribeTaskDefinition"]


def test_a_definition_botocore_knows_entirely_passes_the_guard(ecs):
    output = ecs.meta.service_model.operation_model("DescribeTaskDefinition").output_shape
    raw = json.loads(_raw({"taskDefinition": TASK_DEFINITION, "tags": TAGS}))
    assert deploy.unmodelled_fields(raw, output) == []
    raw["taskDefinition"]["volumes"][1]["efsVolumeConfiguration"]["newKnob"] = 1
    assert deploy.unmodelled_fields(raw, output) == [
        "taskDefinition.volumes[].efsVolumeConfiguration.newKnob"
    ]


# ------------------------------------------------------------------------------ status
@pytest.mark.parametrize(
    ("ecs_status", "mapped"),
    [
        ("PENDING", "IN_PROGRESS"),
        ("IN_PROGRESS", "IN_PROGRESS"),
        ("SUCCESSFUL", "SUCCEEDED"),
        ("STOP_REQUESTED", "FAILED"),
        ("STOPPED", "FAILED"),
        ("ROLLBACK_REQUESTED", "FAILED"),
        ("ROLLBACK_IN_PROGRESS", "FAILED"),
        ("ROLLBACK_SUCCESSFUL", "FAILED"),
        ("ROLLBACK_FAILED", "FAILED"),
    ],
)
def test_status_maps_each_ecs_state(ecs, stub, ecs_status, mapped):
    stub.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [
                {
                    "serviceDeploymentArn": DEPLOYMENT,
                    "serviceArn": SERVICE_ARN,
                    "clusterArn": CLUSTER,
                    "status": ecs_status,
                    "statusReason": "the deployment's own words",
                }
            ],
            "failures": [],
        },
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )

    result = deploy.handle({"action": "status", "deployment": DEPLOYMENT}, ecs)

    assert result == {
        "status": mapped,
        "ecs_status": ecs_status,
        "reason": "the deployment's own words",
    }


def test_every_status_botocore_knows_is_mapped(ecs):
    """A status ECS adds shows up here first (an unknown one is waited on, not guessed)."""
    known = ecs.meta.service_model.shape_for("ServiceDeploymentStatus").enum
    mapped = deploy.IN_PROGRESS_STATES | deploy.SUCCEEDED_STATES | deploy.FAILED_STATES
    assert set(known) == mapped
    assert len(mapped) == 9


def test_status_gives_the_rollback_reason(ecs, stub):
    stub.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [
                {
                    "serviceDeploymentArn": DEPLOYMENT,
                    "status": "ROLLBACK_SUCCESSFUL",
                    "statusReason": "Service deployment rolled back.",
                    "rollback": {
                        "reason": "Lifecycle hook POST_TEST_TRAFFIC_SHIFT returned FAILED",
                        "startedAt": datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
                        "serviceRevisionArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service-revision/"
                        f"mlops-prod/{SERVICE}/1920498462936580504",
                    },
                }
            ]
        },
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )

    result = deploy.handle({"action": "status", "deployment": DEPLOYMENT}, ecs)

    assert result["status"] == "FAILED"
    assert result["reason"] == (
        "Service deployment rolled back. "
        "(rollback: Lifecycle hook POST_TEST_TRAFFIC_SHIFT returned FAILED)"
    )


def test_a_deployment_ecs_does_not_know_has_failed(ecs, stub):
    stub.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [],
            "failures": [{"arn": DEPLOYMENT, "reason": "MISSING", "detail": "not found"}],
        },
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )

    result = deploy.handle({"action": "status", "deployment": DEPLOYMENT}, ecs)

    assert result == {
        "status": "FAILED",
        "ecs_status": None,
        "reason": f"ECS has no service deployment {DEPLOYMENT}: MISSING not found",
    }


def test_a_status_newer_than_this_code_is_waited_on():
    ecs = SimpleNamespace(
        describe_service_deployments=lambda **_: {
            "serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": "PAUSED"}]
        }
    )
    result = deploy.status(ecs, DEPLOYMENT)
    assert result["status"] == "IN_PROGRESS"
    assert "unknown ECS status 'PAUSED'" in result["reason"]


# ------------------------------------------------------------------------------ stop
STOP = {"action": "stop", "deployment": DEPLOYMENT, "waited_seconds": 1800}


def test_stop_rolls_the_deployment_back(ecs, stub):
    stub.add_response(
        "stop_service_deployment",
        {"serviceDeploymentArn": DEPLOYMENT},
        {"serviceDeploymentArn": DEPLOYMENT, "stopType": "ROLLBACK"},
    )

    assert deploy.handle(STOP, ecs) == {
        "status": "FAILED",
        "reason": "the rollout did not finish within 1800 s: stopped and rolled back",
    }


def _refused_stop(stub, now):
    stub.add_client_error(
        "stop_service_deployment",
        service_error_code="ConflictException",
        service_message="The service deployment is not in a state that can be stopped.",
        expected_params={"serviceDeploymentArn": DEPLOYMENT, "stopType": "ROLLBACK"},
    )
    stub.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": now}]},
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )


def test_a_deployment_that_finished_before_the_stop_is_reported_as_it_ended(ecs, stub):
    """The candidate went live after the last poll: recording a failure would be false."""
    _refused_stop(stub, "SUCCESSFUL")

    result = deploy.handle(STOP, ecs)

    assert result["status"] == "SUCCEEDED"
    assert result["ecs_status"] == "SUCCESSFUL"
    assert "the stop was refused (ConflictException" in result["reason"]


def test_a_refused_stop_of_a_deployment_still_running_is_an_error(ecs, stub):
    _refused_stop(stub, "IN_PROGRESS")

    with pytest.raises(ClientError, match="ConflictException"):
        deploy.handle(STOP, ecs)


# ------------------------------------------------------------------------------ the event
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "the event must be a JSON object, not list"),
        ({}, r"event.action: None is not one of deploy, status, stop"),
        ({"action": "promote"}, r"event.action: 'promote' is not one of"),
        (
            {**DEPLOY, "cluster": "mlops-prod"},
            r"event.cluster: 'mlops-prod' is not an ECS cluster ARN",
        ),
        ({**DEPLOY, "service": "a/b"}, r"event.service: 'a/b' is not an ECS service name"),
        ({**DEPLOY, "container": ""}, r"event.container: '' is not a container name"),
        ({**DEPLOY, "run_id": "../etc"}, r"event.run_id: '../etc' is not a run id"),
        ({**DEPLOY, "run_id": 7}, r"event.run_id: 7 is not a run id"),
        (
            {k: v for k, v in DEPLOY.items() if k != "run_id"},
            r"event.run_id is missing: action 'deploy' needs cluster, service, container, run_id",
        ),
        ({"action": "status"}, r"event.deployment is missing"),
        ({"action": "status", "deployment": OLD}, r"is not an ECS service deployment ARN"),
        ({**STOP, "waited_seconds": -1}, r"event.waited_seconds: -1 is not a whole number"),
        ({**STOP, "waited_seconds": True}, r"event.waited_seconds: True is not a whole number"),
        ({**STOP, "waited_seconds": "60"}, r"event.waited_seconds: '60' is not a whole number"),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(ecs, stub, event, message):
    with pytest.raises(ValueError, match=message):
        deploy.handle(event, ecs)


def test_other_fields_of_the_state_input_are_ignored(ecs, stub):
    stub.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": "IN_PROGRESS"}]},
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )
    event = {**DEPLOY, "action": "status", "deployment": DEPLOYMENT, "waited_seconds": 30}

    assert deploy.handle(event, ecs)["status"] == "IN_PROGRESS"


def test_the_run_id_rule_is_the_contracts():
    assert deploy.RUN_ID_PATTERN == mlops_contract.RUN_ID_PATTERN
    assert deploy.SERVE_RUN == mlops_contract.Env.SERVE_RUN


def test_a_botocore_without_service_deployments_is_named(monkeypatch):
    monkeypatch.setattr(deploy.botocore, "__version__", "1.35.51")
    old = SimpleNamespace(
        meta=SimpleNamespace(
            service_model=SimpleNamespace(operation_names=["DescribeServices", "UpdateService"])
        )
    )
    with pytest.raises(RuntimeError, match=r"botocore 1\.35\.51 has no ListServiceDeployments"):
        deploy.handle({"action": "status", "deployment": DEPLOYMENT}, old)


def test_the_lambda_handler_uses_its_own_client(ecs, stub, monkeypatch):
    monkeypatch.setattr(deploy, "_ecs", lambda: ecs)
    stub.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": "SUCCESSFUL"}]},
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )

    assert deploy.handler({"action": "status", "deployment": DEPLOYMENT}, None)["status"] == (
        "SUCCEEDED"
    )
