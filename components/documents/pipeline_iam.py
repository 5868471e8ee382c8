"""The training state machine's role: run the pipeline's tasks, follow them, report, log, trace;
and, for a workload served from a staged model, call the function that rolls its service out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from components.documents.alerts import alarm_publisher_statements
from components.documents.common import task_definition_arn_patterns
from components.documents.rollout import invoke_function_statements

ECS_EVENTS_RULE = "StepFunctionsGetEventsForECSTaskRule"
"""The managed rule `.sync` ECS integrations create to learn when a task stops (Step Functions
Developer Guide, "IAM policies for Amazon ECS/AWS Fargate")."""


def state_machine_role_statements(
    *,
    region: str,
    account: str,
    cluster_name: str,
    families: Sequence[str],
    pass_role_arns: Sequence[str],
    topic_arn: str,
    topic_key_arn: str,
    rollout_function_arn: str = "",
) -> list[dict[str, Any]]:
    """The state machine role's permissions: run these tasks, follow them, report, log, trace.

    Sources: Step Functions Developer Guide, "IAM policies for Amazon ECS/AWS Fargate" (RunTask on
    the task definitions; StopTask/DescribeTasks; the events actions on the managed rule), "IAM
    policies for Amazon SNS", "Logging using CloudWatch Logs" and "AWS X-Ray and Step Functions".
    The guide grants StopTask/DescribeTasks on "*" because task ids are unknown in advance; the
    Service Authorization Reference lets both take a `task` resource
    (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`), so they are limited to this cluster's tasks.
    """
    if not families or not pass_role_arns:
        raise ValueError("the state machine role needs task definition families and roles to pass")
    for role in pass_role_arns:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")
    roll = (
        # The pipeline's Deploy, RolloutStatus and StopRollout states (documents/rollout.py):
        # exactly the service's deploy function.
        invoke_function_statements(rollout_function_arn, "InvokeRolloutFunction")
        if rollout_function_arn
        else []
    )
    task_definitions = [
        arn for family in families for arn in task_definition_arn_patterns(region, account, family)
    ]
    return [
        *roll,
        {
            "Sid": "RunPipelineTasks",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": task_definitions,
            "Condition": {
                "ArnEquals": {
                    "ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster_name}"
                }
            },
        },
        {
            "Sid": "FollowPipelineTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": f"arn:aws:ecs:{region}:{account}:task/{cluster_name}/*",
        },
        {
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted(set(pass_role_arns)),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "SyncEcsTaskEvents",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": f"arn:aws:events:{region}:{account}:rule/{ECS_EVENTS_RULE}",
        },
        # The failure topic is the alarm topic: Publish, plus its key when it has a CMK.
        *alarm_publisher_statements(topic_arn, topic_key_arn),
        {
            # Documented exception: the CloudWatch Logs vended-log delivery actions take no
            # resource ARN, Resource must be "*" (Step Functions Developer Guide, "Logging using
            # CloudWatch Logs": IAM policy for logging to CloudWatch Logs).
            "Sid": "DeliverExecutionLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ],
            "Resource": "*",
        },
        {
            # Documented exception: X-Ray trace and sampling actions take no resource ARN
            # (Step Functions Developer Guide, "AWS X-Ray and Step Functions": IAM policy).
            "Sid": "TraceExecutions",
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            "Resource": "*",
        },
    ]
