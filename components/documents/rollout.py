"""A model's rollout, as documents: the service's deployment configuration, the sample-request
hook's details, the IAM of the two rollout functions and of ECS's load balancer role, and the
pipeline states that deploy a promoted model and wait for the outcome.

A promoted model is a transaction with its rollout (docs/workload-contract.md, "Promotion"):

1. the platform gate (`MLOPS_ROLLOUT=1`) makes the run the *candidate*; models/CURRENT still
   names the last model whose rollout succeeded;
2. `Deploy` (the deploy function, rollout/deploy.py) registers a revision of the service's task
   definition whose stage-serving container has `MLOPS_SERVE_RUN=<run>` and updates the service
   to it: that revision's tasks serve the candidate, and only they do;
3. ECS deploys it with the stack's strategy (rolling, blue-green, canary, linear), its circuit
   breaker, its deployment alarms and, with traffic shifting, the sample-request hook
   (rollout/sample_check.py) after test traffic moved; a failure rolls back to the previous
   revision, which serves the previous model;
4. the pipeline polls the deployment (`RolloutStatus`, every `POLL_SECONDS`, at most
   `inference.rollout.wait_minutes`, then stops it with a rollback) and ends with the
   platform's `finish-rollout`: models/CURRENT names the run only after a successful rollout;
   after a failed one the run's decision records why and the pipeline fails with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from components.settings.rollout import RolloutSettings, RolloutStrategy, SampleRequest

TEST_HEADER = "X-Mlops-Test-Traffic"
TEST_HEADER_VALUE = "candidate"
HOOK_STAGE = "POST_TEST_TRAFFIC_SHIFT"
"""The green revision has all test traffic and none of production's yet (ECS API Reference,
"DeploymentLifecycleHook", lifecycleStages)."""
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
"""Step Functions' optimized Lambda integration (Step Functions Developer Guide, "Invoke an AWS
Lambda function with Step Functions"): the function's result is the state's `Payload`."""
POLL_SECONDS = 30


def deployment_configuration(
    rollout: RolloutSettings,
    *,
    alarm_names: Sequence[Any],
    hook: Any,
) -> dict[str, Any]:
    """`aws.ecs.Service(deployment_configuration=...)` and its siblings, pulumi-aws input shape:
    the strategy, its traffic steps and bake time, the lifecycle hook; the circuit breaker and
    the alarms roll back in every stack."""
    strategy = rollout.strategy
    config: dict[str, Any] = {"strategy": strategy.ecs}
    if strategy.shifts_traffic:
        # ECS API Reference, "DeploymentConfiguration": bakeTimeInMinutes is required with
        # BLUE_GREEN; canary and linear take it too (after the last shift).
        config["bake_time_in_minutes"] = str(rollout.bake_minutes)
    if strategy is RolloutStrategy.CANARY:
        config["canary_configuration"] = {
            "canary_percent": rollout.canary_percent,
            # pulumi-aws 7.51 types the minutes as strings, the percentages as numbers.
            "canary_bake_time_in_minutes": str(rollout.canary_bake_minutes),
        }
    if strategy is RolloutStrategy.LINEAR:
        config["linear_configuration"] = {
            "step_percent": rollout.linear_step_percent,
            "step_bake_time_in_minutes": str(rollout.linear_step_bake_minutes),
        }
    if hook is not None:
        config["lifecycle_hooks"] = [hook]
    parts: dict[str, Any] = {
        "deployment_configuration": config,
        "alarms": {"alarm_names": list(alarm_names), "enable": True, "rollback": True},
    }
    if not strategy.shifts_traffic:
        # The circuit breaker judges rolling updates only ("DeploymentCircuitBreaker": "can only
        # be used for services using the rolling update (ECS) deployment type"); a traffic-shifting
        # deployment is judged by its hook, its alarms and the new tasks' health checks.
        parts["deployment_circuit_breaker"] = {"enable": True, "rollback": True}
    return parts


def hook_details(
    base_url: str, samples: Sequence[SampleRequest], rollout: RolloutSettings
) -> dict[str, Any]:
    """What the sample-check function reads from `hookDetails` on each invocation."""
    return {
        "base_url": base_url,
        "header": TEST_HEADER,
        "header_value": TEST_HEADER_VALUE,
        "latency_budget_ms": rollout.latency_budget_ms,
        "timeout_seconds": max(5, math.ceil(rollout.latency_budget_ms / 1000) * 3),
        "samples": [sample.as_hook_detail() for sample in samples],
    }


# ------------------------------------------------------------------------------ IAM
def load_balancer_role_statements(
    *, listener_arn: str, rule_arns: Sequence[str], target_group_arns: Sequence[str]
) -> list[dict[str, Any]]:
    """ECS's infrastructure role for load balancers, narrowed to this service's listener, rules
    and target groups. The actions are those of the managed policy
    AmazonECSInfrastructureRolePolicyForLoadBalancers (AWS Managed Policy Reference), which
    grants them on every listener and target group of the account; the describe actions take no
    resource (Service Authorization Reference, Elastic Load Balancing V2)."""
    if not rule_arns or not target_group_arns:
        raise ValueError("traffic shifting needs listener rules and target groups")
    return [
        {
            "Sid": "ReadLoadBalancer",
            "Effect": "Allow",
            "Action": [
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
            ],
            "Resource": "*",
        },
        {
            "Sid": "RegisterServiceTargets",
            "Effect": "Allow",
            "Action": [
                "elasticloadbalancing:RegisterTargets",
                "elasticloadbalancing:DeregisterTargets",
            ],
            "Resource": list(target_group_arns),
        },
        {
            "Sid": "ShiftServiceTraffic",
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyRule"],
            "Resource": [listener_arn, *rule_arns],
        },
    ]


def invoke_function_statements(function_arn: str, sid: str) -> list[dict[str, Any]]:
    return [
        {"Sid": sid, "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function_arn}
    ]


def deploy_function_statements(
    *,
    region: str,
    account: str,
    cluster_name: str,
    service_name: str,
    family: str,
    pass_role_arns: Sequence[str],
) -> list[dict[str, Any]]:
    """The deploy function: register a revision of exactly this family, roll exactly this
    service, follow and stop its deployments (Service Authorization Reference, Amazon Elastic
    Container Service: UpdateService and ListServiceDeployments take the `service` resource,
    DescribeServiceDeployments and StopServiceDeployment the `service-deployment` resource,
    RegisterTaskDefinition and DescribeTaskDefinition no resource; TagResource on a task
    definition being registered is limited by `ecs:CreateAction`)."""
    service = f"arn:aws:ecs:{region}:{account}:service/{cluster_name}/{service_name}"
    deployments = (
        f"arn:aws:ecs:{region}:{account}:service-deployment/{cluster_name}/{service_name}/*"
    )
    return [
        {
            "Sid": "RollTheService",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServices", "ecs:UpdateService", "ecs:ListServiceDeployments"],
            "Resource": service,
        },
        {
            "Sid": "FollowItsDeployments",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"],
            "Resource": deployments,
        },
        {
            "Sid": "ReviseItsTaskDefinition",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"],
            "Resource": "*",
        },
        {
            "Sid": "TagTheRevision",
            "Effect": "Allow",
            "Action": "ecs:TagResource",
            "Resource": f"arn:aws:ecs:{region}:{account}:task-definition/{family}:*",
            "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
        },
        {
            "Sid": "PassItsTaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": list(pass_role_arns),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
    ]


# ------------------------------------------------------------------------------ the pipeline
def rollout_states(
    *,
    function_arn: str,
    cluster_arn: str,
    service_name: str,
    container: str,
    wait_minutes: int,
    finish: Mapping[str, Any],
    notify: str,
) -> dict[str, dict[str, Any]]:
    """The states after a promoting gate: Deploy, then wait for the deployment's outcome.

    `finish(status)` is the ECS task state running the platform's `finish-rollout` with that
    status (succeeded/failed) and the reason at `$.rollout.status.reason`; `notify` the state
    that reports a failure. Each Lambda call retries Lambda's transient errors as the Step
    Functions guide recommends ("Handle transient Lambda service exceptions")."""
    polls = max(1, math.ceil(wait_minutes * 60 / POLL_SECONDS))
    lambda_retry = [
        {
            "ErrorEquals": [
                "Lambda.ServiceException",
                "Lambda.AWSLambdaException",
                "Lambda.SdkClientException",
                "Lambda.TooManyRequestsException",
            ],
            "IntervalSeconds": 2,
            "MaxAttempts": 6,
            "BackoffRate": 2.0,
            "JitterStrategy": "FULL",
        }
    ]
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": notify}]

    def invoke(
        payload: dict[str, Any], result: str, following: str, idempotent: bool = True
    ) -> dict[str, Any]:
        # Deploy registers a revision and starts a deployment on every call: it is retried only
        # when Lambda refused to run it at all.
        retry = lambda_retry if idempotent else [
            {**lambda_retry[0], "ErrorEquals": ["Lambda.TooManyRequestsException"]}
        ]
        return {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": function_arn, "Payload": payload},
            "ResultSelector": {"value.$": "$.Payload"},
            "ResultPath": result,
            "TimeoutSeconds": 120,
            "Retry": retry,
            "Catch": catch,
            "Next": following,
        }

    base = {"cluster": cluster_arn, "service": service_name}
    return {
        "Deploy": invoke(
            {**base, "action": "deploy", "container": container, "run_id.$": "$.run.id"},
            "$.rollout.deploy",
            "CountPoll",
            idempotent=False,
        ),
        "CountPoll": {
            "Type": "Pass",
            "Parameters": {"count.$": "States.MathAdd($.rollout.polls.count, 1)"},
            "ResultPath": "$.rollout.polls",
            "Next": "WaitRollout",
        },
        "WaitRollout": {"Type": "Wait", "Seconds": POLL_SECONDS, "Next": "RolloutStatus"},
        "RolloutStatus": invoke(
            {
                **base,
                "action": "status",
                "deployment.$": "$.rollout.deploy.value.deployment",
            },
            "$.rollout.status",
            "RolloutOutcome",
        ),
        "RolloutOutcome": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.rollout.status.value.status",
                    "StringEquals": "SUCCEEDED",
                    "Next": "CommitModel",
                },
                {
                    "Variable": "$.rollout.status.value.status",
                    "StringEquals": "FAILED",
                    "Next": "RecordRollback",
                },
                {
                    "Variable": "$.rollout.polls.count",
                    "NumericGreaterThanEquals": polls,
                    "Next": "StopRollout",
                },
            ],
            "Default": "CountPoll",
        },
        "StopRollout": invoke(
            {
                **base,
                "action": "stop",
                "deployment.$": "$.rollout.deploy.value.deployment",
                "waited_seconds": polls * POLL_SECONDS,
            },
            "$.rollout.status",
            "RecordRollback",
        ),
        "CommitModel": {**finish["succeeded"], "Next": "Succeeded"},
        "RecordRollback": {**finish["failed"], "Next": "RolloutFailed"},
        "RolloutFailed": {
            "Type": "Pass",
            "Parameters": {
                "Error": "RolloutFailed",
                "Cause.$": "States.Format('The model rollout failed: {}', "
                "$.rollout.status.value.reason)",
            },
            "ResultPath": "$.error",
            "Next": notify,
        },
    }
