"""The two IAM roles every ECS task of this program runs with, built one way for all of them.

- `<name>-execution-role` (+ `<name>-execution-policy`): what ECS itself does for the task: pull
  from the workload's ECR repositories and write the given log groups
  (`ecr:GetAuthorizationToken` is its only "*"; documents/execution.py);
- `<name>-task-role` (+ `<name>-task-store`): what the containers may do: mount and write the
  shared store through its access point. Callers attach further inline policies to it.

Both trust only `ecs-tasks.amazonaws.com` from this account (`aws:SourceAccount`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.documents.common import assume_role_policy, policy_document
from components.documents.execution import execution_role_statements
from components.shared_store import SharedStore


@dataclass(frozen=True)
class TaskRoleSpec:
    name: str
    """The child-name prefix (the owning component's name)."""
    account: pulumi.Input[str]
    repository_arns: Sequence[pulumi.Input[str]]
    """The ECR repositories the task pulls from: none for an image in another registry."""
    log_group_arns: Sequence[pulumi.Input[str]]
    store: SharedStore
    execution_description: str
    task_description: str


def ecs_task_roles(
    spec: TaskRoleSpec, opts: pulumi.ResourceOptions
) -> tuple[aws.iam.Role, aws.iam.Role]:
    """(execution role, task role), children of `opts.parent`."""
    trust = pulumi.Output.from_input(spec.account).apply(
        lambda account: json.dumps(assume_role_policy("ecs-tasks.amazonaws.com", account))
    )
    execution_role = aws.iam.Role(
        f"{spec.name}-execution-role",
        assume_role_policy=trust,
        description=spec.execution_description,
        opts=opts,
    )
    aws.iam.RolePolicy(
        f"{spec.name}-execution-policy",
        role=execution_role.id,
        policy=pulumi.Output.all(
            pulumi.Output.all(*spec.repository_arns), *spec.log_group_arns
        ).apply(
            lambda arns: json.dumps(
                policy_document(execution_role_statements(list(arns[0]), arns[1:]))
            )
        ),
        opts=opts,
    )
    task_role = aws.iam.Role(
        f"{spec.name}-task-role",
        assume_role_policy=trust,
        description=spec.task_description,
        opts=opts,
    )
    aws.iam.RolePolicy(
        f"{spec.name}-task-store",
        role=task_role.id,
        policy=spec.store.client_policy(write=True),
        opts=opts,
    )
    return execution_role, task_role
