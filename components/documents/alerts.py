"""The stack's alarm topic: its KMS key policy, topic policy, what a publisher may do, and the
shape of one CloudWatch alarm (`AlarmSpec`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.documents.common import deny_insecure_transport, policy_document


def alarm_topic_key_policy(account_id: str) -> dict[str, Any]:
    """Key policy of the CMK encrypting the alarm topic.

    The account root statement is the KMS default: it lets IAM policies grant the key (the
    training state machine role publishes failures with `alarm_publisher_statements`) and keeps
    the key manageable. CloudWatch alarms publish as the `cloudwatch.amazonaws.com` service,
    which needs `kms:Decrypt` and `kms:GenerateDataKey*` in the key policy itself (SNS Developer
    Guide, "Encryption at rest": compatibility between event sources from AWS services and
    encrypted topics); `aws:SourceAccount` limits it to this account's alarms.
    """
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    # In a key policy, "Resource": "*" means this key (KMS Developer Guide, "Key policies").
    return policy_document(
        [
            {
                "Sid": "AccountAdministersAndDelegatesThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsEncryptNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ]
    )


def alarm_topic_policy(topic_arn: str, account_id: str) -> dict[str, Any]:
    """SNS topic policy: this account's CloudWatch alarms may publish; plain HTTP is refused.

    Principals of the account (the training state machine role) publish through their own IAM
    policies (`alarm_publisher_statements`), which suffice within one account.
    """
    if not topic_arn.startswith("arn:aws") or ":sns:" not in topic_arn:
        raise ValueError(f"{topic_arn!r} is not an SNS topic ARN")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    return policy_document(
        [
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
            deny_insecure_transport("sns:Publish", topic_arn),
        ]
    )


def alarm_publisher_statements(topic_arn: str, key_arn: str = "") -> list[dict[str, Any]]:
    """IAM statements for a role that publishes to the alarm topic.

    Publishing to a topic encrypted with a customer-managed key also needs
    `kms:GenerateDataKey*` and `kms:Decrypt` on that key (SNS Developer Guide, "Encryption at
    rest"); the key policy delegates to IAM. `key_arn` "" is an unencrypted topic.
    """
    if ":sns:" not in topic_arn or (key_arn and ":kms:" not in key_arn):
        raise ValueError(
            f"need an SNS topic ARN and a KMS key ARN or '', got {topic_arn}, {key_arn}"
        )
    statements: list[dict[str, Any]] = [
        {"Sid": "PublishAlarms", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn}
    ]
    if key_arn:
        statements.append(
            {
                "Sid": "EncryptAlarmMessages",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": key_arn,
            }
        )
    return statements


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch metric alarm of the inference service."""

    role: str
    """Stable suffix of the alarm's resource name."""
    description: str
    namespace: str
    metric_name: str
    scope: str
    """Which dimensions: `target_group` (LoadBalancer + TargetGroup ARN suffixes of the api) or
    `service` (ClusterName + ServiceName)."""
    comparison_operator: str
    threshold: float
    statistic: str | None = None
    extended_statistic: str | None = None
    period: int = 60
    evaluation_periods: int = 3
    datapoints_to_alarm: int = 2
    treat_missing_data: str = "notBreaching"
    deployment: bool = False
    """Watched by ECS during a deployment: in ALARM, the deployment fails."""

    def args(self) -> dict[str, Any]:
        """Keyword arguments for `aws.cloudwatch.MetricAlarm`, without dimensions and actions."""
        values: dict[str, Any] = {
            "alarm_description": self.description,
            "namespace": self.namespace,
            "metric_name": self.metric_name,
            "comparison_operator": self.comparison_operator,
            "threshold": self.threshold,
            "period": self.period,
            "evaluation_periods": self.evaluation_periods,
            "datapoints_to_alarm": self.datapoints_to_alarm,
            "treat_missing_data": self.treat_missing_data,
        }
        if self.statistic:
            values["statistic"] = self.statistic
        if self.extended_statistic:
            values["extended_statistic"] = self.extended_statistic
        return values
