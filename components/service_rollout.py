"""The inference service's rollout parts, declared as children of InferenceService:

- with a traffic-shifting strategy (blue-green, canary, linear): `<name>-lb-role`, the role ECS
  assumes to move the load balancer's rules and register targets (ECS Developer Guide, "Amazon
  ECS infrastructure IAM role for load balancers"), narrowed to this service's listener, rules
  and target groups;
- with `workload.serving.samples`: `<name>-sample-check`, the lifecycle hook that sends them to
  the new revision through the test listener rule (rollout/sample_check.py), its log group, its
  role (logs only), and `<name>-hook-role`, which lets ECS invoke exactly that function;
- with the `sagemaker` contract: `<name>-deploy`, the function the pipeline calls to roll a
  promoted model out as a revision of the service's task definition (rollout/deploy.py), its
  log group and its role (this service, this family, its two task roles).

Functions: python3.13, the code of `rollout/` shipped as the archive, 128 MiB, logs kept
`observability.log_retention_days`. The runtime's boto3 provides the ECS deployment APIs the
deploy function calls (docs/rollout.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import assume_role_policy, policy_document
from components.documents.rollout import (
    HOOK_STAGE,
    deploy_function_statements,
    hook_details,
    invoke_function_statements,
    load_balancer_role_statements,
)
from components.settings.rollout import RolloutSettings, SampleRequest
from components.traffic_shift import TrafficShift

ROLLOUT_CODE = Path("rollout")
"""Relative to the project directory, where Pulumi runs the program: the archive's path is the
same on every machine (Pulumi compares an asset by its content's hash)."""
RUNTIME = "python3.13"
HOOK_TIMEOUT_SECONDS = 120
"""The hook function's own timeout; ECS waits for its answer (ECS Developer Guide, "Lambda hooks
for Amazon ECS service deployments": a hook that fails or times out rolls the deployment back)."""


@dataclass
class RolloutParts:
    load_balancer_role_arn: pulumi.Output[str] | None
    lifecycle_hook: pulumi.Output[dict[str, Any]] | None
    deploy_function_arn: pulumi.Output[str] | None


@dataclass(frozen=True)
class RolloutArgs:
    stack: str
    region: str
    account: pulumi.Input[str]
    rollout: RolloutSettings
    samples: Sequence[SampleRequest]
    base_url: pulumi.Input[str]
    traffic: TrafficShift | None
    target_group_arns: Sequence[pulumi.Input[str]]
    log_retention_days: int
    deploy: Mapping[str, Any] | None
    """With the `sagemaker` contract: cluster_name, service_name, family, role_arns."""


def _role(name: str, service: str, description: str, opts: pulumi.ResourceOptions) -> aws.iam.Role:
    return aws.iam.Role(
        name,
        assume_role_policy=json.dumps(assume_role_policy(service)),
        description=description,
        opts=opts,
    )


def _ecs_role(
    name: str,
    description: str,
    statements: pulumi.Output[list[dict[str, Any]]],
    opts: pulumi.ResourceOptions,
) -> aws.iam.Role:
    """A role ECS assumes for the service's deployments (`<name>-role`), with exactly
    `statements` (`<name>-policy`)."""
    role = _role(f"{name}-role", "ecs.amazonaws.com", description, opts)
    aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        policy=statements.apply(lambda s: json.dumps(policy_document(s))),
        opts=opts,
    )
    return role


def _function(
    name: str,
    function_name: str,
    module: str,
    description: str,
    extra: pulumi.Input[list[dict[str, Any]]] | None,
    args: RolloutArgs,
    opts: pulumi.ResourceOptions,
    timeout: int,
) -> aws.lambda_.Function:
    logs = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/aws/lambda/{function_name}",
        retention_in_days=args.log_retention_days,
        opts=opts,
    )
    role = _role(f"{name}-role", "lambda.amazonaws.com", description, opts)
    statements = pulumi.Output.all(logs.arn, extra or []).apply(
        lambda v: [
            {
                "Sid": "WriteItsLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{v[0]}:*",
            },
            *v[1],
        ]
    )
    policy = aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        policy=statements.apply(lambda s: json.dumps(policy_document(s))),
        opts=opts,
    )
    return aws.lambda_.Function(
        name,
        name=function_name,
        description=description,
        runtime=RUNTIME,
        handler=f"{module}.handler",
        code=pulumi.AssetArchive(
            {f"{module}.py": pulumi.FileAsset(str(ROLLOUT_CODE / f"{module}.py"))}
        ),
        role=role.arn,
        timeout=timeout,
        memory_size=128,
        architectures=["arm64"],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[logs, policy])),
    )


def declare_rollout(name: str, args: RolloutArgs, opts: pulumi.ResourceOptions) -> RolloutParts:
    prefix = f"{pulumi.get_project()}-{args.stack}-{name}"
    lb_role_arn = None
    if args.traffic is not None:
        traffic = args.traffic
        lb_role = _ecs_role(
            f"{name}-lb",
            "Lets ECS shift this service's load balancer rules during a deployment",
            pulumi.Output.all(
                traffic.listener_arn,
                [rule.arn for rule in traffic.rules],
                list(args.target_group_arns),
            ).apply(
                lambda v: load_balancer_role_statements(
                    listener_arn=v[0], rule_arns=v[1], target_group_arns=v[2]
                )
            ),
            opts,
        )
        lb_role_arn = lb_role.arn

    hook = None
    if args.samples:
        if args.traffic is None:
            raise ValueError("sample requests reach a new revision through the test listener")
        check = _function(
            f"{name}-sample-check",
            f"{prefix}-sample-check",
            "sample_check",
            "Sends the workload's sample requests to a new revision through the test listener",
            None,
            args,
            opts,
            HOOK_TIMEOUT_SECONDS,
        )
        hook_role = _ecs_role(
            f"{name}-hook",
            "Lets ECS invoke the sample-check hook of this service's deployments",
            check.arn.apply(lambda arn: invoke_function_statements(arn, "InvokeSampleCheck")),
            opts,
        )
        samples, rollout = tuple(args.samples), args.rollout
        hook = pulumi.Output.all(check.arn, hook_role.arn, args.base_url).apply(
            lambda v: {
                "hook_target_arn": v[0],
                "role_arn": v[1],
                "lifecycle_stages": [HOOK_STAGE],
                # pulumi-aws takes hookDetails as a JSON string (the CloudFormation type, "a
                # JSON object as a string").
                "hook_details": json.dumps(hook_details(v[2], samples, rollout), sort_keys=True),
            }
        )

    deploy_arn = None
    if args.deploy is not None:
        deploy = args.deploy
        statements = pulumi.Output.all(
            args.account, deploy["cluster_name"], *deploy["role_arns"]
        ).apply(
            lambda v: deploy_function_statements(
                region=args.region,
                account=v[0],
                cluster_name=v[1],
                service_name=deploy["service_name"],
                family=deploy["family"],
                pass_role_arns=list(v[2:]),
            )
        )
        function = _function(
            f"{name}-deploy",
            f"{prefix}-deploy",
            "deploy",
            "Rolls a promoted model out as a revision of the service's task definition",
            statements,
            args,
            opts,
            60,
        )
        deploy_arn = function.arn
    return RolloutParts(
        load_balancer_role_arn=lb_role_arn, lifecycle_hook=hook, deploy_function_arn=deploy_arn
    )
