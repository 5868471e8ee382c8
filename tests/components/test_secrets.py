"""Secrets: `secrets` on `workload.training`, `.serving`, `.sidecars[]` and `.job`, as the task
definitions' `secrets` (`valueFrom`), read by exactly the execution roles that need them, within
a boundary that allows exactly those; plain credentials in config refused, naming the key.

The valueFrom format and the execution role's permissions are AWS's: ECS Developer Guide,
"Retrieve Secrets Manager secrets through environment variables" (`arn:aws:secretsmanager:region:
aws_account_id:secret:secret-name:json-key:version-stage:version-id`) and "Amazon ECS task
execution IAM role" (`secretsmanager:GetSecretValue`, `ssm:GetParameters`, `kms:Decrypt` only for
a customer managed key)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.settings.secrets import SecretRef
from components.settings.stack import parse
from preflight.offline import ACCOUNT, REGION, Plan
from tests.components.test_permissions_boundary import allowed

SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-AbCdEf"
API = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/api-Zz9Yx8"
PARAMETER = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/mlops/license"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/other-QqQqQq"

DIGITS_SECRETS = {
    "workload": {
        "training": {"secrets": {"DB_PASSWORD": SECRET}},
        "serving": {
            "secrets": {
                "API_TOKEN": {"arn": API, "key": "token", "version_stage": "AWSCURRENT"},
                "LICENSE": {"arn": PARAMETER, "kms_key": KEY},
            }
        },
    }
}


def _workload(**training: Any) -> dict[str, Any]:
    return {
        "contract": "sagemaker",
        "image": {"build": {"context": "examples/digits"}},
        "training": training,
        "objective": {"key": "accuracy"},
    }


# --- config -------------------------------------------------------------------------------------


def test_each_form_of_a_secret_is_read_and_renders_ecs_value_from():
    workload = parse(
        {"workload": {**_workload(), "serving": DIGITS_SECRETS["workload"]["serving"]}}
    ).workload
    secrets = workload.serving.secrets
    assert secrets["API_TOKEN"] == SecretRef(arn=API, key="token", version_stage="AWSCURRENT")
    # json-key, version-stage, version-id, empty fields kept in place.
    assert secrets["API_TOKEN"].value_from == f"{API}:token:AWSCURRENT:"
    assert secrets["LICENSE"].value_from == PARAMETER and secrets["LICENSE"].kms_key == KEY
    assert SecretRef(arn=SECRET).value_from == SECRET


@pytest.mark.parametrize(
    ("secrets", "words"),
    [
        ({"DB": "prod/db"}, "full ARN"),
        ({"DB": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db"}, "six characters"),
        ({"DB": {"arn": PARAMETER, "key": "password"}}, "Secrets Manager secrets only"),
        (
            {"DB": {"arn": SECRET, "version_stage": "AWSCURRENT", "version_id": "a" * 32}},
            "not both",
        ),
        ({"DB": {"key": "password"}}, "ARN is required"),
        ({"DB": {"arn": SECRET, "kms_key": "alias/mine"}}, "KMS key ARN"),
        ({"DB": {"arn": SECRET, "rotate": True}}, "unknown key"),
        ({"RUN_ID": SECRET}, "the platform sets it"),
        ({"SM_TOKEN": SECRET}, "the platform sets it"),
        ({"lower": SECRET}, "variable name"),
    ],
)
def test_a_bad_secret_is_refused_naming_its_key(secrets: dict[str, Any], words: str):
    with pytest.raises(pulumi.RunError, match=r"mlops:workload\.training\.secrets") as error:
        parse({"workload": _workload(secrets=secrets)})
    assert words in str(error.value)


def test_a_variable_is_environment_or_secret_not_both():
    with pytest.raises(pulumi.RunError, match=r"training\.secrets\.DB.*one or the other"):
        parse({"workload": _workload(environment={"DB": "x"}, secrets={"DB": SECRET})})


@pytest.mark.parametrize(
    ("where", "value", "why"),
    [
        ("environment", "AKIA" + "Q" * 16, "AWS access key id"),
        ("environment", "region=us-east-1 key=ASIA" + "Z" * 16, "AWS access key id"),
        ("environment", "postgres://app:hunter2@db.internal:5432/db", "URL with a password"),
        ("hyperparameters", "AKIA" + "Q" * 16, "AWS access key id"),
        ("hyperparameters", "https://user:pw@example.org/data", "URL with a password"),
    ],
)
def test_a_credential_in_plain_config_is_refused_without_echoing_it(
    where: str, value: str, why: str
):
    with pytest.raises(pulumi.RunError) as error:
        parse({"workload": _workload(**{where: {"DB_URL": value}})})
    message = str(error.value)
    assert f"mlops:workload.training.{where}.DB_URL" in message
    assert why in message and "secrets" in message
    assert value not in message


def test_urls_and_keys_without_credentials_are_fine():
    parse(
        {
            "workload": _workload(
                environment={"SOURCE": "https://user@example.org/x", "KEY_PREFIX": "AKIA"},
                hyperparameters={"url": "s3://bucket/key:with@sign"},
            )
        }
    )


# --- the plan -----------------------------------------------------------------------------------


def _containers(resource) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(resource.inputs["containerDefinitions"])}


def _policy(plan: Plan, name: str) -> dict[str, Any]:
    (policy,) = [r for r in plan.resources if r.name == name]
    return json.loads(policy.inputs["policy"])


@pytest.fixture
def digits_with_secrets(build) -> Plan:
    """The digits pipeline (the `sagemaker` contract) with its neighbours, the served task
    included (the promotion rolls it), declaring secrets on training and serving."""
    return build("training_task", "digits", DIGITS_SECRETS).plan


def test_the_workload_containers_get_value_from_and_the_platform_containers_nothing(
    digits_with_secrets: Plan,
):
    plan = digits_with_secrets
    train = _containers(plan.one("aws:ecs/taskDefinition:TaskDefinition", "training-train"))
    assert train["train"]["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": SECRET}]
    assert "secrets" not in train["stage-training"] and "secrets" not in train["collect-training"]
    served = _containers(plan.one("aws:ecs/taskDefinition:TaskDefinition", "inference-task"))
    assert served["api"]["secrets"] == [
        {"name": "API_TOKEN", "valueFrom": f"{API}:token:AWSCURRENT:"},
        {"name": "LICENSE", "valueFrom": PARAMETER},
    ]
    assert "secrets" not in served["stage-serving"]
    # Never as plain environment.
    for container in [*train.values(), *served.values()]:
        names = {e["name"] for e in container["environment"]}
        assert not names & {"DB_PASSWORD", "API_TOKEN", "LICENSE"}


def test_each_execution_role_reads_exactly_its_tasks_secrets(digits_with_secrets: Plan):
    plan = digits_with_secrets
    training = _policy(plan, "training-execution-policy")
    inference = _policy(plan, "inference-execution-policy")
    assert allowed([training], None, "secretsmanager:GetSecretValue", SECRET)
    assert not allowed([training], None, "secretsmanager:GetSecretValue", API)
    assert not allowed([training], None, "secretsmanager:GetSecretValue", OTHER)
    assert allowed([inference], None, "secretsmanager:GetSecretValue", API)
    assert not allowed([inference], None, "secretsmanager:GetSecretValue", SECRET)
    assert allowed([inference], None, "ssm:GetParameters", PARAMETER)
    assert not allowed([inference], None, "ssm:GetParameters", PARAMETER + "-other")
    # kms:Decrypt only on the key the parameter names, and only through SSM in its Region.
    via_ssm = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
    assert allowed([inference], None, "kms:Decrypt", KEY, via_ssm)
    assert not allowed([inference], None, "kms:Decrypt", KEY, {"kms:ViaService": "s3.x"})
    assert not allowed([training], None, "kms:Decrypt", KEY, via_ssm)
    # The task roles (what the workload's code may do) read no secret at all.
    for role in ("training-task-store", "inference-task-store"):
        assert not allowed([_policy(plan, role)], None, "secretsmanager:GetSecretValue", SECRET)


def test_the_boundary_allows_exactly_the_named_secrets(digits_with_secrets: Plan):
    boundary = _policy(digits_with_secrets, "boundary-policy")
    everything = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}
    ]}  # fmt: skip
    for arn in (SECRET, API):
        assert allowed([everything], boundary, "secretsmanager:GetSecretValue", arn)
    assert allowed([everything], boundary, "ssm:GetParameters", PARAMETER)
    assert not allowed([everything], boundary, "secretsmanager:GetSecretValue", OTHER)
    assert not allowed([everything], boundary, "ssm:GetParameters", PARAMETER + "-other")


def test_a_stack_without_secrets_reads_none(build):
    plan = build("training_task", "digits").plan
    for name in ("training-execution-policy", "inference-execution-policy", "boundary-policy"):
        document = _policy(plan, name)
        assert not any("secretsmanager" in json.dumps(s) for s in document["Statement"]), name


def test_sidecar_and_job_secrets_reach_their_containers_only(build):
    token = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:noaa-Token1"
    plan = build(
        "monitoring",
        "dev",
        {"workload": {"job": {"secrets": {"NOAA_TOKEN": token}}}},
    ).plan
    (job,) = _containers(plan.one("aws:ecs/taskDefinition:TaskDefinition", "monitoring")).values()
    assert job["secrets"] == [{"name": "NOAA_TOKEN", "valueFrom": token}]
    assert allowed(
        [_policy(plan, "monitoring-execution-policy")], None, "secretsmanager:GetSecretValue", token
    )
