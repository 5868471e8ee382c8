"""AlarmTopic: the stack's alarm topic, which the inference alarms and failed training runs notify.

Creates, as children of the component (name `inference-alarms`, the names its resources had when
InferenceService owned them; each carries an alias to that old parent, components/moved.py):

- `<name>-key` with `observability.alarm_topic_cmk`: a customer-managed KMS key (rotation on,
  30-day deletion window) whose policy lets CloudWatch alarms and this account use it
  (documents/alerts.py `alarm_topic_key_policy`);
- `<name>`: the SNS topic, under that key, or unencrypted without it: CloudWatch alarms cannot
  publish to a topic under the AWS-managed `aws/sns` key (its key policy cannot grant them), and
  alarm messages carry metric names and thresholds, no data;
- `<name>-policy`: the topic policy (this account's alarms and publishers only, TLS only);
- `<name>-email` with `observability.alarm_email`: an email subscription (confirm its mail).

A publisher's role needs `documents.alerts.alarm_publisher_statements(topic_arn, key_arn)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import moved
from components.documents.alerts import alarm_topic_key_policy, alarm_topic_policy


@dataclass
class AlarmTopicArgs:
    customer_managed_key: bool
    """`observability.alarm_topic_cmk`: encrypt the topic with a KMS key of its own."""
    email: str = ""
    """`observability.alarm_email`: subscribed when set."""


class AlarmTopic(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    """The topic's KMS key, "" without one."""

    def __init__(self, name: str, args: AlarmTopicArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:AlarmTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, aliases=moved.from_inference_service())
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        key = None
        if args.customer_managed_key:
            key = aws.kms.Key(
                f"{name}-key",
                description="Encrypts the inference alarm topic",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=account.apply(lambda a: json.dumps(alarm_topic_key_policy(a))),
                opts=child,
            )
        topic = aws.sns.Topic(name, kms_master_key_id=key.arn if key else None, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-policy",
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, account).apply(
                lambda v: json.dumps(alarm_topic_policy(v[0], v[1]))
            ),
            opts=child,
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.email,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.key_arn = key.arn if key is not None else pulumi.Output.from_input("")
        self.register_outputs({"topic_arn": self.topic_arn, "key_arn": self.key_arn})
