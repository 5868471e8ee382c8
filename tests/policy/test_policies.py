"""The CrossGuard pack: each policy passes a compliant resource and stops a violating one.

The check functions in policy/checks.py get engine-shaped props (camelCase, JSON strings for
documents); the pack in policy/__main__.py wraps each one as a mandatory policy. The program's own
stacks must pass every policy.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy import checks
from preflight.offline import Plan
from preflight.plan import findings

PACK = Path(__file__).resolve().parents[2] / "policy"
OPTIONS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
SG = checks.SECURITY_GROUP
INGRESS = checks.INGRESS_RULE
TD = checks.TASK_DEFINITION


def task(containers: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    """Task definition props as the engine sends them: containerDefinitions is a JSON string."""
    return {"containerDefinitions": json.dumps(containers), **props}


def container(**overrides: Any) -> dict[str, Any]:
    """A container that passes every container policy; override one key to break one."""
    base: dict[str, Any] = {
        "name": "api",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "a" * 64,
        "user": "10001:10001",
        "readonlyRootFilesystem": True,
        "privileged": False,
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
        "healthCheck": {"command": ["CMD", "python", "-c", "..."]},
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/g"}},
        "environment": [{"name": "STORE_DIR", "value": "/mnt/store"}],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def policy_doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


EFS_VOLUME = {
    "name": "store",
    "efsVolumeConfiguration": {
        "fileSystemId": "fs-1",
        "transitEncryption": "ENABLED",
        "authorizationConfig": {"iam": "ENABLED", "accessPointId": "fsap-1"},
    },
}
GOOD_REPO = {
    "imageTagMutability": "IMMUTABLE",
    "imageScanningConfiguration": {"scanOnPush": True},
    "encryptionConfigurations": [{"encryptionType": "KMS"}],
}
ALLOW_READ = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}

# (policy, resource type, compliant props, violating props, words the message must contain)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "nfs-not-open-to-cidr",
        INGRESS,
        {
            "ipProtocol": "tcp",
            "fromPort": 2049.0,
            "toPort": 2049.0,
            "referencedSecurityGroupId": "sg-1",
        },
        {"ipProtocol": "tcp", "fromPort": 2049.0, "toPort": 2049.0, "cidrIpv4": "10.0.0.0/16"},
        "NFS (2049)",
    ),
    (
        "nfs-not-open-to-cidr",
        SG,
        {
            "ingress": [
                {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}
            ]
        },
        {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.0.0.0/8"]}]},
        "10.0.0.0/8",
    ),
    (
        "nfs-not-open-to-cidr",
        checks.SECURITY_GROUP_RULE,
        {
            "type": "egress",
            "protocol": "tcp",
            "fromPort": 2049,
            "toPort": 2049,
            "cidrBlocks": ["0.0.0.0/0"],
        },
        {
            "type": "ingress",
            "protocol": "tcp",
            "fromPort": 2000,
            "toPort": 3000,
            "cidrBlocks": ["0.0.0.0/0"],
        },
        "NFS",
    ),
    (
        "efs-encrypted",
        checks.EFS_FILE_SYSTEM,
        {"encrypted": True},
        {"encrypted": False},
        "encrypted",
    ),
    (
        "efs-access-point-enforces-identity",
        checks.EFS_ACCESS_POINT,
        {"posixUser": {"uid": 10001.0, "gid": 10001.0}, "rootDirectory": {"path": "/mlops"}},
        {"rootDirectory": {"path": "/"}},
        "POSIX user",
    ),
    (
        "efs-access-point-enforces-identity",
        checks.EFS_ACCESS_POINT,
        {"posixUser": {"uid": 10001, "gid": 10001}, "rootDirectory": {"path": "/data"}},
        {"posixUser": {"uid": 0, "gid": 0}, "rootDirectory": {"path": "/data"}},
        "uid 0",
    ),
    (
        "ecs-efs-volumes-encrypted",
        TD,
        {"volumes": [EFS_VOLUME, {"name": "scratch"}]},
        {"volumes": [{"name": "store", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]},
        "transitEncryption",
    ),
    (
        "ecr-repository-hardened",
        checks.ECR_REPOSITORY,
        GOOD_REPO,
        {**GOOD_REPO, "imageTagMutability": "MUTABLE"},
        "MUTABLE",
    ),
    (
        # Only a build-cache repository may let its tags move; exclusions are refused.
        "ecr-repository-hardened",
        checks.ECR_REPOSITORY,
        {**GOOD_REPO, "name": "mlops-dev-build-cache", "imageTagMutability": "MUTABLE"},
        {
            **GOOD_REPO,
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filter": "cache-*", "filterType": "WILDCARD"}],
        },
        "IMMUTABLE_WITH_EXCLUSION",
    ),
    (
        "ecr-repository-hardened",
        checks.ECR_REPOSITORY,
        GOOD_REPO,
        {"imageTagMutability": "IMMUTABLE"},
        "scanned on push",
    ),
    ("log-group-retention", checks.LOG_GROUP, {"retentionInDays": 7.0}, {}, "forever"),
    ("log-group-retention", checks.LOG_GROUP, {"retentionInDays": 90}, {"retentionInDays": 8}, "8"),
    (
        "container-log-configuration",
        TD,
        task([container()]),
        task([container(logConfiguration=None)]),
        "logDriver",
    ),
    (
        "container-health-check",
        TD,
        task([container(), container(name="worker", portMappings=None, healthCheck=None)]),
        task([container(healthCheck=None)]),
        "healthCheck",
    ),
    (
        "container-read-only-root",
        TD,
        task([container()]),
        task([container(readonlyRootFilesystem=False)]),
        "readonlyRootFilesystem",
    ),
    ("container-non-root", TD, task([container()]), task([container(user="0:0")]), "root"),
    ("container-non-root", TD, task([container()]), task([container(user=None)]), "no user"),
    (
        "workload-runs-as-root",
        TD,
        task([container()]),
        task([container(user="0:0", dockerLabels={checks.LABEL_ROOT_OPT_OUT: "true"})]),
        "run_as_root",
    ),
    (
        "promotion-without-objective",
        TD,
        task([container(environment=[{"name": "MLOPS_OBJECTIVE_KEY", "value": "accuracy"}])]),
        task([container(dockerLabels={checks.LABEL_PROMOTION: "every-trained-run"})]),
        "every-trained-run",
    ),
    (
        "container-not-privileged",
        TD,
        task([container()]),
        task([container(), container(name="sidecar", privileged=True)]),
        "sidecar: privileged",
    ),
    (
        "container-env-no-secrets",
        TD,
        task([container()]),
        task([container(environment=[{"name": "KEY_ID", "value": "AKIA" + "ABCDEFGHIJKLMNOP"}])]),
        "KEY_ID",
    ),
    (
        "container-env-no-secrets",
        TD,
        task([container(environment=[{"name": "PORT", "value": "8080"}])]),
        task([container(environment=[{"name": "DB_PASSWORD", "value": "hunter2"}])]),
        "DB_PASSWORD",
    ),
    (
        # The staging container's hyperparameters carry an AWS key id inside their JSON.
        "container-env-no-secrets",
        TD,
        task([container(environment=[{"name": "MLOPS_HYPERPARAMETERS", "value": '{"eta": 0.1}'}])]),
        task(
            [
                container(
                    environment=[
                        {
                            "name": "MLOPS_HYPERPARAMETERS",
                            "value": '{"eta": 0.1, "s3_key": "AKIA' + "ABCDEFGHIJKLMNOP" + '"}',
                        }
                    ]
                )
            ]
        ),
        "MLOPS_HYPERPARAMETERS",
    ),
    (
        # A URL with a password under an innocent name; a URL with only a user name is fine.
        "container-env-no-secrets",
        TD,
        task([container(environment=[{"name": "DB_URL", "value": "postgres://app@db/x"}])]),
        task(
            [container(environment=[{"name": "DB_URL", "value": "postgres://u:hunter2@host/db"}])]
        ),
        "DB_URL",
    ),
    (
        "iam-no-broad-managed-policies",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        {"policyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"},
        {"policyArn": "arn:aws:iam::aws:policy/AmazonS3FullAccess"},
        "AmazonS3FullAccess",
    ),
    (
        "iam-no-broad-managed-policies",
        checks.IAM_ROLE,
        {"managedPolicyArns": []},
        {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
        "AdministratorAccess",
    ),
    (
        "iam-no-wildcard-action",
        "aws:iam/rolePolicy:RolePolicy",
        {"policy": policy_doc(ALLOW_READ, {"Effect": "Deny", "Action": "*", "Resource": "*"})},
        {"policy": policy_doc({"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"})},
        "statement All",
    ),
    (
        "iam-no-wildcard-action",
        checks.IAM_ROLE,
        {"inlinePolicies": [{"name": "read", "policy": policy_doc(ALLOW_READ)}]},
        {
            "inlinePolicies": [
                {"name": "all", "policy": policy_doc({**ALLOW_READ, "Action": ["*"]})}
            ]
        },
        "Action '*'",
    ),
    (
        "iam-role-permissions-boundary",
        checks.IAM_ROLE,
        {"permissionsBoundary": "arn:aws:iam::123456789012:policy/mlops-dev-permissions-boundary"},
        {"assumeRolePolicy": "{}"},
        "no permissionsBoundary",
    ),
    (
        "iam-role-permissions-boundary",
        checks.IAM_ROLE,
        {"permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess"},
        {"permissionsBoundary": "PowerUserAccess"},
        "not a managed policy ARN",
    ),
    (
        "gpu-only-on-ec2",
        TD,
        task(
            [container(resourceRequirements=[{"type": "GPU", "value": "1"}])],
            requiresCompatibilities=["EC2"],
        ),
        task(
            [container(resourceRequirements=[{"type": "GPU", "value": "1"}])],
            requiresCompatibilities=["FARGATE"],
        ),
        "requests a GPU",
    ),
    (
        "ecs-service-circuit-breaker",
        checks.ECS_SERVICE,
        {"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        {"deploymentCircuitBreaker": {"enable": True, "rollback": False}},
        "rollback",
    ),
    (
        "imdsv2-required",
        checks.LAUNCH_TEMPLATE,
        {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"}},
        {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "optional"}},
        "IMDSv1",
    ),
]

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/alb/1"
HTTPS = {
    "loadBalancerArn": LB,
    "protocol": "HTTPS",
    "port": 443,
    "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/x",
    "defaultActions": [{"type": "forward", "targetGroupArn": "tg"}],
}
REDIRECT = {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443"}}
FORWARD = {"type": "forward", "targetGroupArn": "tg"}
LISTENER = "aws:lb/listener:Listener"
REPO = checks.ECR_REPOSITORY
LIFECYCLE = checks.ECR_LIFECYCLE_POLICY

StackCase = list[tuple[str, str, Mapping[str, Any]]]
# (policy, compliant stack, violating stack, words the message must contain)
STACK_CASES: list[tuple[str, StackCase, StackCase, str]] = [
    (
        "ecr-lifecycle-policy",
        [(REPO, "repo", {"name": "repo-1"}), (LIFECYCLE, "lc", {"repository": "repo-1"})],
        [
            (REPO, "repo", {"name": "repo-1"}),
            (REPO, "other", {"name": "repo-2"}),
            (LIFECYCLE, "lc", {"repository": "repo-1"}),
        ],
        "other has no lifecycle policy",
    ),
    (
        "https-when-certificate",
        [
            (LISTENER, "https", HTTPS),
            (
                LISTENER,
                "http",
                {"loadBalancerArn": LB, "protocol": "HTTP", "defaultActions": [REDIRECT]},
            ),
        ],
        [
            (LISTENER, "https", HTTPS),
            (
                LISTENER,
                "http",
                {"loadBalancerArn": LB, "protocol": "HTTP", "defaultActions": [FORWARD]},
            ),
        ],
        "http serves plain HTTP",
    ),
    (
        "https-when-certificate",
        [
            (
                LISTENER,
                "http",
                {"loadBalancerArn": LB, "protocol": "HTTP", "defaultActions": [FORWARD]},
            )
        ],
        [(LISTENER, "https", {**HTTPS, "protocol": "HTTP"})],
        "has a certificate but serves HTTP",
    ),
]


def resource_check(name: str) -> checks.Check:
    return next(c for c in checks.RESOURCE_CHECKS if c.name == name)


def stack_check(name: str) -> checks.StackCheck:
    return next(c for c in checks.STACK_CHECKS if c.name == name)


def stack(resources: StackCase) -> list[checks.StackResource]:
    return [checks.StackResource(t, n, p) for t, n, p in resources]


@pytest.fixture(scope="module")
def pack() -> dict[str, Any]:
    """policy/__main__.py's policies, loaded without starting the analyzer server."""
    return {
        # The directory, as the analyzer runs it (it goes first on sys.path, for `import checks`).
        p.name: p
        for p in runpy.run_path(str(PACK), run_name="pack")["POLICIES"]
    }


# --- each check, directly ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "type_", "good", "bad", "words"), CASES)
def test_resource_policy_passes_compliant_and_stops_violating(
    name: str, type_: str, good: dict[str, Any], bad: dict[str, Any], words: str
) -> None:
    check = resource_check(name)
    assert check.validate(type_, good) == []
    messages = check.validate(type_, bad)
    assert messages, f"{name} let a violating {type_} through"
    assert any(words in m for m in messages), messages


@pytest.mark.parametrize(("name", "good", "bad", "words"), STACK_CASES)
def test_stack_policy_passes_compliant_and_stops_violating(
    name: str, good: StackCase, bad: StackCase, words: str
) -> None:
    check = stack_check(name)
    assert check.validate(stack(good)) == []
    messages = check.validate(stack(bad))
    assert any(words in m for m in messages), messages


def test_every_policy_has_a_passing_and_a_violating_case() -> None:
    tested = {case[0] for case in CASES} | {case[0] for case in STACK_CASES}
    registered = {c.name for c in checks.RESOURCE_CHECKS} | {c.name for c in checks.STACK_CHECKS}
    assert tested == registered


def test_checks_ignore_types_they_do_not_govern() -> None:
    props = task([container(privileged=True, user="root")])
    assert checks.check_resource("aws:s3/bucket:Bucket", props) == []


def test_privileged_is_caught_even_as_a_string() -> None:
    # Some scanners only look for the boolean; the JSON may carry either.
    props = task([container(privileged="true")])
    assert checks.container_not_privileged(TD, props)


def test_secret_env_message_names_the_variable_never_the_value() -> None:
    props = task([container(environment=[{"name": "API_TOKEN", "value": "s3cr3t-value"}])])
    (message,) = checks.container_env_no_secrets(TD, props)
    assert "API_TOKEN" in message
    assert "s3cr3t-value" not in message


def test_unknown_preview_values_reach_the_sdk() -> None:
    """An unknown containerDefinitions (image digest not built yet) must raise the SDK's
    UnknownValueError, which CrossGuard turns into "not run during preview", not a pass."""
    props = unknown_checking_proxy({"containerDefinitions": UNKNOWN_STRING_VALUE})
    with pytest.raises(UnknownValueError):
        checks.container_non_root(TD, props)


# --- the pack ----------------------------------------------------------------------------------


def test_pack_has_at_least_14_mandatory_policies(pack: dict[str, Any]) -> None:
    assert len(pack) >= 14
    advisory = {
        name for name, p in pack.items() if p.enforcement_level is EnforcementLevel.ADVISORY
    }
    assert advisory == {"workload-runs-as-root", "promotion-without-objective"}
    mandatory = [p for p in pack.values() if p.enforcement_level is EnforcementLevel.MANDATORY]
    assert len(mandatory) == len(pack) - 2 >= 14
    assert all(p.description for p in pack.values())


def test_pack_project_file_is_a_python_pack() -> None:
    text = (PACK / "PulumiPolicy.yaml").read_text()
    assert "name: python" in text
    requirements = (PACK / "requirements.txt").read_text().split()
    assert "pulumi==3.272.0" in requirements
    assert "pulumi-policy==1.21.0" in requirements


@pytest.mark.parametrize(("name", "type_", "good", "bad", "words"), CASES)
def test_pack_reports_violations_through_the_sdk(
    pack: dict[str, Any],
    name: str,
    type_: str,
    good: dict[str, Any],
    bad: dict[str, Any],
    words: str,
) -> None:
    policy = pack[name]
    assert isinstance(policy, ResourceValidationPolicy)
    for props, violates in ((good, False), (bad, True)):
        reported: list[str] = []
        args = ResourceValidationArgs(
            type_,
            unknown_checking_proxy(props),
            f"urn:pulumi:dev::mlops::{type_}::r",
            "r",
            OPTIONS,
            None,
        )
        policy.validate(args, lambda message, urn=None, r=reported: r.append(message))
        assert bool(reported) is violates, (name, props, reported)


@pytest.mark.parametrize(("name", "good", "bad", "words"), STACK_CASES)
def test_pack_stack_policies_report_through_the_sdk(
    pack: dict[str, Any], name: str, good: StackCase, bad: StackCase, words: str
) -> None:
    policy = pack[name]
    assert isinstance(policy, StackValidationPolicy)
    for resources, violates in ((good, False), (bad, True)):
        reported: list[str] = []
        policy_resources = [
            PolicyResource(
                t,
                unknown_checking_proxy(dict(p)),
                f"urn:pulumi:dev::mlops::{t}::{n}",
                n,
                OPTIONS,
                None,
                None,
                [],
                {},
            )
            for t, n, p in resources
        ]
        policy.validate(
            StackValidationArgs(policy_resources),
            lambda message, urn=None, r=reported: r.append(message),
        )
        assert bool(reported) is violates, (name, resources, reported)


# --- the program ---------------------------------------------------------------------------------


def test_the_stack_passes_every_policy(plan: Plan) -> None:
    assert findings(plan) == []


def test_pack_serves_the_engine_like_crossguard_runs_it(tmp_path: Path) -> None:
    """Start the pack the way the Python analyzer plugin does (`python -m pulumi.policy ENGINE
    DIR`), then ask it over gRPC what the engine asks: its policies, and a resource's verdict.
    The pack is a copy of policy/ alone, as `pulumi policy publish` uploads it: it must import
    nothing from the repository around it."""
    import shutil

    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=shutil.copytree(PACK, tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__")),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = server.stdout.readline().strip()  # the pack prints its port, then serves
        assert port.isdigit(), server.stderr.read()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
            assert info.name == "mlops"
            assert len(info.policies) == len(checks.RESOURCE_CHECKS) + len(checks.STACK_CHECKS)
            props = struct_pb2.Struct()
            props.update(task([container(privileged=True)]))
            verdict = stub.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=TD, properties=props, urn=f"urn:pulumi:dev::mlops::{TD}::t", name="t"
                ),
                timeout=10,
            )
        assert [d.policyName for d in verdict.diagnostics] == ["container-not-privileged"]
        mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
        assert verdict.diagnostics[0].enforcementLevel == mandatory
    finally:
        server.kill()
        server.wait(timeout=10)


# --- the workload's opt-outs (mlops:workload) -----------------------------------------------------


def test_the_root_opt_out_is_advisory_and_anything_else_as_root_is_refused():
    opted_out = container(
        user="0:0",
        readonlyRootFilesystem=False,
        dockerLabels={checks.LABEL_ROOT_OPT_OUT: "true"},
    )
    props = task([opted_out])
    assert checks.container_non_root(TD, props) == []
    assert checks.container_read_only_root(TD, props) == []
    assert checks.workload_runs_as_root(TD, props)
    by_name = {check.name: check for check in checks.RESOURCE_CHECKS}
    assert by_name["workload-runs-as-root"].advisory
    assert not by_name["container-non-root"].advisory
    # A staging container (root, to hand files to the workload's uid) keeps a read-only root;
    # with a writable one, or unlabelled, root is refused.
    staging = {"dockerLabels": {checks.LABEL_STAGING: "true"}, "user": "0:0"}
    assert checks.container_non_root(TD, task([container(**staging)])) == []
    writable = container(**staging, readonlyRootFilesystem=False)
    assert checks.container_non_root(TD, task([writable]))
    assert checks.container_non_root(TD, task([container(user="0:0")]))


def test_a_server_checked_by_its_target_group_needs_no_container_health_check():
    bare = {k: v for k, v in container().items() if k != "healthCheck"}
    assert checks.container_health_check(TD, task([bare]))
    labelled = {**bare, "dockerLabels": {checks.LABEL_HEALTH: "load-balancer"}}
    assert checks.container_health_check(TD, task([labelled])) == []
