"""The shared builders: hardened container definitions and IAM documents."""

from __future__ import annotations

import json

import pytest

from components.documents.common import (
    APP_UID,
    STORE_MOUNT,
    ContainerSpec,
    assume_role_policy,
    container_definition,
    looks_secret,
    policy_document,
    scratch_volume,
)

# Shaped like AWS access key ids, assembled here so secret scanners do not flag the test file.
FAKE_ACCESS_KEY_ID = "AKIA" + "ABCDEFGHIJKLMNOP"
FAKE_SESSION_KEY_ID = "ASIA" + "ABCDEFGHIJKLMNOP"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops@sha256:" + "ab" * 32


def spec(**overrides) -> ContainerSpec:
    values = dict(
        name="api",
        image=IMAGE,
        command=["serve"],
        log_group="/mlops/api",
        region="us-east-1",
        port=8080,
        health_command=["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/ping || exit 1"],
    )
    values.update(overrides)
    return ContainerSpec(**values)


def test_container_is_hardened_and_serializable():
    definition = container_definition(spec(environment={"PORT": "8080"}))
    assert json.loads(json.dumps(definition)) == definition
    assert definition["user"] == f"{APP_UID}:{APP_UID}"
    assert definition["readonlyRootFilesystem"] is True
    assert definition["privileged"] is False
    assert definition["stopTimeout"] == 120
    mounts = {m["containerPath"]: m["sourceVolume"] for m in definition["mountPoints"]}
    assert mounts == {STORE_MOUNT: "store", "/tmp": "scratch"}
    env = {e["name"]: e["value"] for e in definition["environment"]}
    assert env == {"PORT": "8080", "STORE_DIR": STORE_MOUNT}
    logs = definition["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == "/mlops/api"
    assert definition["portMappings"] == [
        {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}
    ]


def test_health_check_is_the_workloads_own_command_and_waits_for_start():
    check = container_definition(spec(health_start_period=90))["healthCheck"]
    assert check["command"] == ["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/ping || exit 1"]
    assert check["startPeriod"] == 90
    # ECS healthCheck.command starts with CMD or CMD-SHELL (ECS API, HealthCheck).
    with pytest.raises(ValueError, match="CMD"):
        container_definition(spec(health_command=["curl", "x"]))


def test_depends_on_and_extra_mounts_become_ecs_fields():
    definition = container_definition(
        spec(depends_on=[("stage", "SUCCESS")], mounts={"ml": "/opt/ml"}, store=False)
    )
    assert definition["dependsOn"] == [{"containerName": "stage", "condition": "SUCCESS"}]
    mounts = {m["containerPath"]: m["sourceVolume"] for m in definition["mountPoints"]}
    assert mounts == {"/tmp": "scratch", "/opt/ml": "ml"}
    with pytest.raises(ValueError, match="dependsOn condition"):
        container_definition(spec(depends_on=[("stage", "DONE")]))


def test_gpu_request_becomes_a_resource_requirement():
    definition = container_definition(spec(gpus=2, port=None, health_command=None))
    assert definition["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    assert "portMappings" not in definition and "healthCheck" not in definition


def test_cpu_and_memory_stay_integers_inside_a_container():
    definition = container_definition(spec(cpu=256, memory=512))
    assert definition["cpu"] == 256 and definition["memory"] == 512


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image": "mlops:latest"}, "not a repo@sha256 ref"),
        ({"stop_timeout": 300}, "stopTimeout 300"),
        ({"environment": {"DB_PASSWORD": "x"}}, "DB_PASSWORD looks like a secret"),
        ({"environment": {"X": FAKE_ACCESS_KEY_ID}}, "X looks like a secret"),
        ({"name": "api server"}, "container name"),
        ({"command": []}, "command is empty"),
        ({"port": 70000}, "port 70000"),
    ],
)
def test_bad_container_input_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        container_definition(spec(**overrides))


def test_looks_secret_spots_names_and_values():
    assert looks_secret("AWS_SECRET_ACCESS_KEY", "x")
    assert looks_secret("GITHUB_TOKEN", "x")
    assert looks_secret("KEY_ID", FAKE_SESSION_KEY_ID)
    assert not looks_secret("STORE_DIR", "/mnt/store")
    assert not looks_secret("FORECAST_INTERVAL_SECONDS", "10")


def test_scratch_volume_has_no_host_path():
    assert scratch_volume() == {"name": "scratch"}


def test_trust_policy_pins_the_service_and_account():
    doc = assume_role_policy("ecs-tasks.amazonaws.com", "123456789012")
    (statement,) = doc["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    with pytest.raises(ValueError, match="not an AWS service principal"):
        assume_role_policy("ecs-tasks")


def test_policy_document_refuses_statements_without_resources():
    with pytest.raises(ValueError, match="names no Resource"):
        policy_document([{"Sid": "Open", "Effect": "Allow", "Action": "s3:GetObject"}])
    doc = policy_document([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn"}])
    assert doc["Version"] == "2012-10-17"
