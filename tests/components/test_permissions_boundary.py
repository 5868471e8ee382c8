"""The permissions boundary: every role carries it, the deploy role cannot escape it.

The stacks are evaluated with CI trust on (so the GitHub roles exist); the policies they would
send are checked against the IAM policy grammar and the documented actions and condition keys
(tests/components/iam_reference.py), and evaluated the way IAM evaluates an identity policy under
a permissions boundary (IAM User Guide, "Policy evaluation logic": an explicit deny in either
wins; otherwise the request needs an allow in the identity policy AND in the boundary).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from components import permissions_boundary as pb
from components.documents.ci import ci_deploy_statements
from components.documents.common import policy_document
from preflight.offline import ACCOUNT, REGION, Plan, run_stack
from tests.components import iam_reference as ref

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
REPOSITORY = "acme/mlops"


def boundary_for(stack: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/mlops-{stack}-{REGION}-permissions-boundary"


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request) -> Plan:
    return run_stack(request.param, {"ci": {"repository": REPOSITORY}})


# --- a small IAM evaluator: what a request is allowed under identity policies and a boundary ---


def _list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(
    condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]
) -> bool:
    """IAM User Guide, "Condition operators": a key absent from the request makes a positive
    operator false and a negated one (StringNotEquals, ArnNotEquals) true."""
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            actual = context.get(key)
            values = _list(expected)
            if operator in ("StringEquals", "ArnEquals"):
                if actual is None or actual not in values:
                    return False
            elif operator in ("StringLike", "ArnLike"):
                if actual is None or not any(fnmatch.fnmatchcase(actual, v) for v in values):
                    return False
            elif operator in ("StringNotEquals", "ArnNotEquals"):
                if actual is not None and actual in values:
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def decision(
    document: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]
) -> str | None:
    """ "Deny", "Allow" or None (no statement applies) for one request against one policy."""
    result = None
    for statement in document["Statement"]:
        if not any(
            fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _list(statement["Action"])
        ):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _list(statement["Resource"])):
            continue
        if not _condition_holds(statement.get("Condition", {}), context):
            continue
        if statement["Effect"] == "Deny":
            return "Deny"
        result = "Allow"
    return result


def allowed(
    identity: Iterable[Mapping[str, Any]],
    boundary: Mapping[str, Any] | None,
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    context = context or {}
    decisions = [decision(d, action, resource, context) for d in identity]
    if boundary is not None and decision(boundary, action, resource, context) != "Allow":
        return False
    return "Deny" not in decisions and "Allow" in decisions


def policy_of(plan: Plan, name: str) -> dict[str, Any]:
    return json.loads(plan.one(ROLE_POLICY, name).inputs["policy"])


def boundary_of(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.one(MANAGED_POLICY, "boundary-policy").inputs["policy"])


def identity_documents(plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    """Every identity policy the program writes: the roles' inline policies and the boundary."""
    return [
        (r.name, json.loads(r.inputs["policy"]))
        for r in plan.resources
        if r.type in (ROLE_POLICY, MANAGED_POLICY)
    ]


# --- every role carries the boundary ------------------------------------------------------------


def test_every_role_of_both_stacks_carries_the_stacks_boundary(stack: Plan):
    roles = stack.of_type(ROLE)
    # dev: 9 workload roles + 2 CI roles; prod adds the GPU instance role.
    assert len(roles) >= 11
    policy = stack.one(MANAGED_POLICY, "boundary-policy")
    assert policy.inputs["name"] == boundary_for(stack.stack).rsplit("/", 1)[1]
    for role in roles:
        assert role.inputs.get("permissionsBoundary") == boundary_for(stack.stack), role.name
        # CreateRole with a boundary that does not exist yet fails: the role waits for it.
        assert policy.urn in role.depends_on, role.name


def test_the_gpu_instance_role_and_the_ci_roles_are_among_them():
    prod = run_stack("prod", {"ci": {"repository": REPOSITORY}})
    names = {r.name for r in prod.of_type(ROLE)}
    assert {"cluster-gpu-instance-role", "ci-deploy-role", "ci-preview-role"} <= names


def test_a_role_that_sets_another_boundary_is_refused():
    class Args:
        type_ = ROLE
        name = "rogue-role"
        props = {"permissions_boundary": "arn:aws:iam::aws:policy/AdministratorAccess"}

    component = pb.PermissionsBoundary.__new__(pb.PermissionsBoundary)
    component.arn = object()
    with pytest.raises(ValueError, match="rogue-role"):
        component._attach(Args())


# --- the IAM policy grammar and the documented actions and keys ----------------------------------


def _documented(action: str) -> bool:
    service, _, name = action.partition(":")
    known = ref.DOCUMENTED_ACTIONS.get(service)
    if known is None or not name:
        return False
    if "*" in name or "?" in name:
        return name == "*" or any(fnmatch.fnmatchcase(k, name) for k in known)
    return name in known


def test_every_policy_follows_the_grammar_and_names_documented_actions_and_keys(stack: Plan):
    documents = identity_documents(stack)
    assert any(name == "boundary-policy" for name, _ in documents)
    for name, document in documents:
        assert set(document) == {"Version", "Statement"}, name
        assert document["Version"] == ref.IAM_VERSION, name
        sids = [s["Sid"] for s in document["Statement"] if "Sid" in s]
        assert len(sids) == len(set(sids)), f"{name}: duplicate Sid"
        for statement in document["Statement"]:
            where = f"{name}/{statement.get('Sid', '?')}"
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, where
            assert statement["Effect"] in ref.EFFECTS, where
            actions = _list(statement["Action"])
            assert actions, where
            for action in actions:
                assert _documented(action), f"{where}: {action} is not a documented action"
            for resource in _list(statement["Resource"]):
                assert resource == "*" or resource.startswith("arn:aws:"), where
            for operator, pairs in statement.get("Condition", {}).items():
                assert operator in ref.CONDITION_OPERATORS, where
                for key in pairs:
                    if key in ref.GLOBAL_CONDITION_KEYS:
                        continue
                    for action in actions:
                        assert key in ref.ACTION_CONDITION_KEYS.get(action, ()), (
                            f"{where}: {key} is not documented for {action}"
                        )


def test_the_managed_policies_attached_to_roles_are_the_documented_ones():
    prod = run_stack("prod")
    attachments = prod.of_type(ATTACHMENT)
    assert [a.inputs["policyArn"] for a in attachments] == [
        "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
    ]


# The deploy role reads SSM parameters on "*" (`ci_deploy_statements`); the boundary narrows that to
# AWS's public parameters, all the program reads (the ECS GPU AMI id).
NARROWED = {("ssm:GetParameter", "*"), ("ssm:GetParameters", "*")}
GPU_AMI_PARAMETER = (
    f"arn:aws:ssm:{REGION}::parameter/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/"
    "recommended/image_id"
)


def test_the_boundary_allows_every_action_each_role_is_given(stack: Plan):
    boundary = boundary_of(stack)
    bounded = {pb.BOUNDARY_KEY: boundary_for(stack.stack)}
    for name, document in identity_documents(stack):
        if name == "boundary-policy":
            continue
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            for action in _list(statement["Action"]):
                for resource in _list(statement["Resource"]):
                    if (action, resource) in NARROWED:
                        resource = GPU_AMI_PARAMETER
                    assert decision(boundary, action, resource, bounded) == "Allow", (
                        f"{name}: the boundary would block {action} on {resource}"
                    )
    if stack.stack == "prod":
        for action in ref.ECS_INSTANCE_ROLE_ACTIONS:
            assert decision(boundary, action, "*", {}) == "Allow", action


# --- the deploy role -----------------------------------------------------------------------------


def test_the_deploy_role_without_the_boundary_could_edit_the_programs_roles():
    """What main shipped: `iam:PutRolePolicy` on `inference-*` with no condition at all."""
    old = policy_document(ci_deploy_statements(REGION, ACCOUNT))
    role = f"arn:aws:iam::{ACCOUNT}:role/inference-task-role-0123abc"
    assert allowed([old], None, "iam:PutRolePolicy", role)


def test_the_deploy_role_changes_a_role_only_when_it_carries_the_boundary(stack: Plan):
    deploy = policy_of(stack, "ci-deploy-policy")
    boundary = boundary_for(stack.stack)
    role = f"arn:aws:iam::{ACCOUNT}:role/inference-task-role-0123abc"
    for action in (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteRole",
    ):
        assert not allowed([deploy], None, action, role), f"{action} without a boundary"
        other = {pb.BOUNDARY_KEY: f"arn:aws:iam::{ACCOUNT}:policy/SomethingWider"}
        assert not allowed([deploy], None, action, role, other), f"{action} with another boundary"
        assert allowed([deploy], None, action, role, {pb.BOUNDARY_KEY: boundary}), action
    # Outside the program's role names, not even with the boundary.
    admin = f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole"
    assert not allowed([deploy], None, "iam:PutRolePolicy", admin, {pb.BOUNDARY_KEY: boundary})


def test_every_role_write_that_supports_the_key_is_conditioned_on_it(stack: Plan):
    deploy = policy_of(stack, "ci-deploy-policy")
    for statement in deploy["Statement"]:
        supported = [
            a
            for a in _list(statement["Action"])
            if pb.BOUNDARY_KEY in ref.ACTION_CONDITION_KEYS.get(a, ()) and a != "iam:GetRole"
        ]
        if supported:
            assert statement["Condition"] == {
                "StringEquals": {pb.BOUNDARY_KEY: boundary_for(stack.stack)}
            }, statement.get("Sid")


def test_the_deploy_role_cannot_change_the_boundary_policy(stack: Plan):
    deploy = policy_of(stack, "ci-deploy-policy")
    boundary = boundary_of(stack)
    arn = boundary_for(stack.stack)
    for action in pb.CHANGE_POLICY_ACTIONS:
        assert not allowed([deploy], boundary, action, arn), action
    assert allowed([deploy], boundary, "iam:GetPolicyVersion", arn)


def test_a_deploy_job_that_grants_itself_everything_stays_inside_the_boundary(stack: Plan):
    """The attack the boundary stops: the deploy role writes itself `"Action": "*"`."""
    boundary = boundary_of(stack)
    arn = boundary_for(stack.stack)
    deploy = policy_of(stack, "ci-deploy-policy")
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    deploy_role = f"arn:aws:iam::{ACCOUNT}:role/ci-deploy-role-7db0a9c7"
    # It may still write its own inline policy: its role carries the boundary...
    assert allowed([deploy], boundary, "iam:PutRolePolicy", deploy_role, {pb.BOUNDARY_KEY: arn})
    # ...but with everything granted, what it can do is capped by the boundary.
    refused = [
        ("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/backdoor", {}),
        ("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/admin", {}),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/inference-backdoor", {}),
        ("iam:DeleteRolePermissionsBoundary", deploy_role, {pb.BOUNDARY_KEY: arn}),
        (
            "iam:PutRolePermissionsBoundary",
            deploy_role,
            {pb.BOUNDARY_KEY: "arn:aws:iam::aws:policy/AdministratorAccess"},
        ),
        ("iam:CreatePolicyVersion", arn, {}),
        ("iam:DeletePolicy", arn, {}),
        ("iam:SetDefaultPolicyVersion", arn, {}),
        ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", {}),
        ("iam:CreatePolicy", f"arn:aws:iam::{ACCOUNT}:policy/anything", {}),
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", {}),
        (
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x",
            {},
        ),
        ("organizations:LeaveOrganization", "*", {}),
        # Passing a role that does not carry the boundary to ECS would run a task as that role.
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", {}),
        ("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/db-password", {}),
    ]
    for action, resource, context in refused:
        assert not allowed([everything], boundary, action, resource, context), action
    assert allowed([everything], boundary, "ecs:RunTask", "*")


# --- the builders refuse bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "boundary",
    ["", "arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::123:policy/x", "*"],
)
def test_deploy_statements_refuse_a_boundary_that_is_not_a_customer_managed_policy(boundary):
    with pytest.raises(ValueError, match="customer managed policy"):
        pb.deploy_statements(ci_deploy_statements(REGION, ACCOUNT), boundary)


def test_deploy_statements_refuse_statements_without_role_actions():
    with pytest.raises(ValueError, match="no role action"):
        pb.deploy_statements(
            [{"Sid": "X", "Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*"}],
            boundary_for("dev"),
        )


@pytest.mark.parametrize(
    ("project", "stack", "region"), [("mlops", "dev/x", REGION), ("m" * 100, "dev", REGION)]
)
def test_boundary_names_follow_iam_naming_rules(project, stack, region):
    with pytest.raises(ValueError, match="not a valid IAM policy name"):
        pb.boundary_policy_name(project, stack, region)


def test_boundary_arn_needs_an_account_id():
    with pytest.raises(ValueError, match="account id"):
        pb.boundary_arn("12345", "mlops-dev-us-east-1-permissions-boundary")
