"""PermissionsBoundary: whoever can deploy this stack cannot raise their own privileges.

The deploy role may create and edit this program's roles (`ci_deploy_statements`), and it is one
of them: without a cap, a deploy job could write itself, or a role it passes to ECS, an inline
`"Action": "*"`. The standard fix, the pattern CDK's bootstrap offers (AWS CDK Developer Guide,
"Create and apply permissions boundaries for the AWS CDK", `cdk bootstrap
--custom-permissions-boundary`; its template's `cdk-hnb659fds-permissions-boundary`), and the IAM
User Guide's "Permissions boundaries for IAM entities" (delegating responsibility to others):

- one customer managed policy, the boundary, that caps what any role of the stack may do: the
  union of what the program's roles need, and never IAM beyond them;
- every role the stack creates carries it (`attach_to_every_role`, a stack transformation, so a
  role added later cannot forget it; `policy/checks.py` `iam-role-permissions-boundary` and
  tests/components/test_permissions_boundary.py check both stacks);
- the deploy role may create or change a role only when the role carries this boundary
  (`deploy_statements`: `iam:PermissionsBoundary` conditions);
- the boundary denies changing or deleting itself, removing or swapping a boundary, and creating
  or changing a role or user without it. Since the deploy role carries the boundary too, it can
  never lift the cap it deploys under: a change to the boundary is an administrator's deploy.

Creates, as a child of the component: `<name>-policy`, the managed policy
`<project>-<stack>-<region>-permissions-boundary`. It is named, not auto-named, because its own
statements must name its ARN (a policy cannot refer to an ARN that does not exist yet), as CDK's
bootstrap names its boundary.

Condition keys: Service Authorization Reference, "Actions, resources, and condition keys for AWS
Identity and Access Management"
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_identityandaccessmanagement.html),
transcribed for the actions used here into tests/components/iam_reference.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.ci import CI_DEPLOY_SERVICES, ci_deploy_statements
from components.documents.common import policy_document
from components.documents.execution import secret_read_statements
from components.settings.secrets import SecretRef

ROLE_TYPE = "aws:iam/role:Role"

BOUNDARY_KEY = "iam:PermissionsBoundary"
"""IAM condition key: the boundary the request sets (CreateRole, Put*PermissionsBoundary) or the
boundary the target role or user already carries (the other actions that support it). IAM User
Guide, "IAM and AWS STS condition context keys": works with string operators."""

# The deploy role's IAM actions that support `iam:PermissionsBoundary` (Service Authorization
# Reference, IAM actions table): each is allowed only on a role carrying this boundary, or, for
# CreateRole and PutRolePermissionsBoundary, only when the request sets it.
BOUNDED_ROLE_ACTIONS = (
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:UpdateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
)
# The same for users: the program creates none, and the boundary allows no user action at all;
# the deny below names them so that no later allow can open that door.
BOUNDED_USER_ACTIONS = (
    "iam:CreateUser",
    "iam:PutUserPolicy",
    "iam:DeleteUserPolicy",
    "iam:AttachUserPolicy",
    "iam:DetachUserPolicy",
    "iam:PutUserPermissionsBoundary",
)
REMOVE_BOUNDARY_ACTIONS = ("iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary")
CHANGE_POLICY_ACTIONS = (
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
)
READ_POLICY_ACTIONS = ("iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions")

# What the program's roles need outside the deploy services (`CI_DEPLOY_SERVICES`, allowed
# whole): the ECS GPU AMI parameter (preview and deploy), and the state machine's tracing.
PUBLIC_PARAMETER_ACTIONS = ("ssm:GetParameter", "ssm:GetParameters")
EXTRA_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)
# IAM as the deploy role uses it (`ci_deploy_statements`): the stack's roles, instance profiles,
# the GitHub OIDC provider, passing roles to services, service-linked roles, reading the boundary.
# Never users, groups, access keys, other policies or STS.
IAM_ACTIONS = (
    *BOUNDED_ROLE_ACTIONS,
    "iam:GetRole",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:GetRolePolicy",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
    "iam:CreateInstanceProfile",
    "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:GetOpenIDConnectProvider",
    "iam:CreateOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:UpdateOpenIDConnectProviderThumbprint",
    "iam:TagOpenIDConnectProvider",
    "iam:AddClientIDToOpenIDConnectProvider",
    *READ_POLICY_ACTIONS,
)

_POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}")


def boundary_policy_name(project: str, stack: str, region: str) -> str:
    """`<project>-<stack>-<region>-permissions-boundary`: one per stack and Region in an account
    (IAM names are account-wide; IAM API Reference, CreatePolicy: PolicyName, 1-128 characters
    of `[\\w+=,.@-]`)."""
    name = f"{project}-{stack}-{region}-permissions-boundary"
    if not _POLICY_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid IAM policy name ([\\w+=,.@-], 1-128 chars)")
    return name


def boundary_arn(account: str, policy_name: str) -> str:
    """The managed policy's ARN (path `/`): `arn:aws:iam::ACCOUNT:policy/NAME`."""
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"{account!r} is not an AWS account id")
    if not _POLICY_NAME.fullmatch(policy_name):
        raise ValueError(f"{policy_name!r} is not a valid IAM policy name")
    return f"arn:aws:iam::{account}:policy/{policy_name}"


def _check_boundary_arn(arn: str) -> None:
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:policy/[\w+=,.@-]{1,128}", arn):
        raise ValueError(f"{arn!r} is not a customer managed policy ARN")


def boundary_document(
    account: str, region: str, policy_name: str, secrets: Sequence[SecretRef] = ()
) -> dict[str, Any]:
    """The boundary policy. Allows the union of what the program's roles need (each role's own
    policy still narrows it: effective permissions are the intersection); denies, to every role
    that carries it, changing this policy, removing or swapping a boundary, and creating or
    changing a role or user that does not carry this one.

    IAM is allowed only where the deploy role may act (`ci_deploy_statements`: this program's
    role and instance-profile names, service-linked roles, the GitHub OIDC provider) and on this
    policy for reading. `iam:PassRole` in particular: a role that could pass any role of the
    account to ECS or EC2 could run a task or an instance as an administrator role.
    `ssm:GetParameter(s)` only on AWS's public parameters (the ECS GPU AMI), not the account's
    own, which may hold secrets; the secrets the workload names (`secrets`) are read by its task
    execution roles, so exactly those are allowed (`secretsmanager:GetSecretValue` on the
    secrets, `ssm:GetParameters` on the parameters, as documents/execution.py grants them).
    """
    arn = boundary_arn(account, policy_name)
    iam_resources: list[str] = []
    for statement in ci_deploy_statements(region, account):
        for resource in _resources(statement):
            if resource.startswith(f"arn:aws:iam::{account}:") and resource not in iam_resources:
                iam_resources.append(resource)
    iam_resources.append(arn)
    return policy_document(
        [
            {
                "Sid": "ProgramServices",
                "Effect": "Allow",
                "Action": [
                    *(f"{service}:*" for service in CI_DEPLOY_SERVICES),
                    *EXTRA_ACTIONS,
                ],
                "Resource": "*",
            },
            {
                # AWS public parameters have no account in their ARN (Systems Manager User
                # Guide, "Discovering public parameters"): `parameter/aws/service/...`.
                "Sid": "AwsPublicParameters",
                "Effect": "Allow",
                "Action": list(PUBLIC_PARAMETER_ACTIONS),
                "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*",
            },
            *secret_read_statements([replace(ref, kms_key="") for ref in secrets]),
            {
                "Sid": "ProgramIam",
                "Effect": "Allow",
                "Action": list(IAM_ACTIONS),
                "Resource": iam_resources,
            },
            {
                "Sid": "DenyChangingThisBoundary",
                "Effect": "Deny",
                "Action": list(CHANGE_POLICY_ACTIONS),
                "Resource": arn,
            },
            {
                "Sid": "DenyRemovingBoundaries",
                "Effect": "Deny",
                "Action": list(REMOVE_BOUNDARY_ACTIONS),
                "Resource": "*",
            },
            {
                # StringNotEquals is true when the key is absent (IAM User Guide, "IAM JSON policy
                # elements: Condition operators", negated operators): a request without a boundary,
                # or on a role or user without one, is denied too.
                "Sid": "DenyIdentitiesWithoutThisBoundary",
                "Effect": "Deny",
                "Action": [*BOUNDED_ROLE_ACTIONS, *BOUNDED_USER_ACTIONS],
                "Resource": "*",
                "Condition": {"StringNotEquals": {BOUNDARY_KEY: arn}},
            },
        ]
    )


def deploy_statements(
    statements: Sequence[Mapping[str, Any]], boundary: str
) -> list[dict[str, Any]]:
    """The deploy role's statements, with every action of `BOUNDED_ROLE_ACTIONS` moved into a
    statement of its own allowed only with `iam:PermissionsBoundary` equal to `boundary`
    (`PutRolePermissionsBoundary` added: Pulumi calls it to set the boundary on an existing role),
    and read access to the boundary policy (a refresh reads it). The deploy role keeps no right
    to change the boundary policy: CreatePolicyVersion and friends are not granted.

    The other IAM actions do not support the key (TagRole, UntagRole, GetRolePolicy, the List
    actions, PassRole, the instance-profile and OIDC-provider actions): they stay limited by the
    statements' resource ARNs (this program's role-name prefixes, this account), PassRole by
    `iam:PassedToService` as well, and by the boundary the deploy role itself carries.
    """
    _check_boundary_arn(boundary)
    result: list[dict[str, Any]] = []
    bounded: list[str] = []
    resources: list[str] = []
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else list(actions)
        moved = [a for a in actions if a in BOUNDED_ROLE_ACTIONS]
        if statement.get("Effect") != "Allow" or not moved:
            result.append(dict(statement))
            continue
        if "Condition" in statement:
            raise ValueError(f"statement {statement.get('Sid')}: already has a Condition")
        kept = [a for a in actions if a not in BOUNDED_ROLE_ACTIONS]
        role_resources = [
            r for r in _resources(statement) if re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", r)
        ]
        if not role_resources:
            raise ValueError(f"statement {statement.get('Sid')}: role actions on no role ARN")
        bounded += [a for a in moved if a not in bounded]
        resources += [r for r in role_resources if r not in resources]
        if kept:
            result.append({**statement, "Action": kept})
    if not bounded:
        raise ValueError("the deploy statements grant no role action to bound")
    if "iam:PutRolePermissionsBoundary" not in bounded:
        bounded.append("iam:PutRolePermissionsBoundary")
    result.append(
        {
            "Sid": "StackRolesWithBoundary",
            "Effect": "Allow",
            "Action": [a for a in BOUNDED_ROLE_ACTIONS if a in bounded],
            "Resource": resources,
            "Condition": {"StringEquals": {BOUNDARY_KEY: boundary}},
        }
    )
    result.append(
        {
            "Sid": "ReadPermissionsBoundary",
            "Effect": "Allow",
            "Action": list(READ_POLICY_ACTIONS),
            "Resource": boundary,
        }
    )
    return result


def _resources(statement: Mapping[str, Any]) -> list[str]:
    resource = statement.get("Resource", [])
    return [resource] if isinstance(resource, str) else list(resource)


@dataclass
class PermissionsBoundaryArgs:
    project: str
    """The Pulumi project (`pulumi.get_project()`): the first part of the policy's name."""
    stack: str
    """The stack (`settings.stack`)."""
    region: str
    """The stack's Region (`settings.region`): two Regions of one stack name never share one."""
    secrets: Sequence[SecretRef] = field(default_factory=tuple)
    """Every secret the workload's containers name (`WorkloadSpec.secrets`): the only secrets
    and parameters of the account a role of this stack may read."""


class PermissionsBoundary(pulumi.ComponentResource):
    arn: pulumi.Output[str]
    policy_name: str

    def __init__(
        self,
        name: str,
        args: PermissionsBoundaryArgs,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mlops:index:PermissionsBoundary", name, None, opts)
        policy_name = boundary_policy_name(args.project, args.stack, args.region)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.policy = aws.iam.Policy(
            f"{name}-policy",
            name=policy_name,
            description=(
                "Permissions boundary of every role of this stack: caps what the deploy role "
                "and the roles it creates may do"
            ),
            policy=account.account_id.apply(
                lambda a: json.dumps(
                    boundary_document(a, args.region, policy_name, tuple(args.secrets))
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.policy_name = policy_name
        # Computed, not `policy.arn`: the document above names the same ARN; a role may only
        # refer to it once the policy exists, hence the dependency `attach_to_every_role` adds.
        self.arn = account.account_id.apply(lambda a: boundary_arn(a, policy_name))
        self.register_outputs({"arn": self.arn, "policy_name": policy_name})

    def attach_to_every_role(self) -> None:
        """Every `aws.iam.Role` declared from now on in this stack carries the boundary and
        waits for the policy to exist. Call once, before any component that creates a role.

        A stack transformation runs in this process, so it reaches every role this program
        declares but not the children of a remote (multi-language) component: the only one here,
        awsx's Vpc, creates no role, and the policy pack, which sees every resource, would stop
        one that did (`iam-role-permissions-boundary`)."""
        pulumi.runtime.register_stack_transformation(self._attach)

    def _attach(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        if args.type_ != ROLE_TYPE:
            return None
        existing = args.props.get("permissions_boundary")
        if existing is not None and existing is not self.arn:
            raise ValueError(
                f"role {args.name}: sets its own permissions_boundary; every role of this stack "
                "carries the stack's boundary"
            )
        # `merge` concatenates `depends_on` lists: the role keeps its own dependencies.
        opts = pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(depends_on=[self.policy])
        )
        return pulumi.ResourceTransformationResult(
            props={**args.props, "permissions_boundary": self.arn}, opts=opts
        )
