"""AlarmTopic built alone under mocks, and what the components it is given to do with it."""

from __future__ import annotations

import json

TOPIC = "aws:sns/topic:Topic"
KEY = "aws:kms/key:Key"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"


def _statements(document: str) -> list[dict]:
    return json.loads(document)["Statement"]


def test_prod_encrypts_the_topic_with_its_own_rotated_key_and_mails_the_on_call(build):
    built = build("alarm_topic", "prod")
    topic, key = built.one(TOPIC, "inference-alarms"), built.one(KEY, "inference-alarms-key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    # CloudWatch alarms must be able to use the key to publish (SNS Developer Guide,
    # "Encryption at rest": the key policy grants the publishing service).
    principals = [s.get("Principal") for s in _statements(key.inputs["policy"])]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    (mail,) = built.of_type(SUBSCRIPTION)
    assert (mail.inputs["protocol"], mail.inputs["endpoint"]) == (
        "email",
        "mlops-oncall@example.com",
    )


def test_without_the_cmk_the_topic_is_unencrypted_not_under_the_managed_key(build):
    built = build("alarm_topic", "dev")
    assert built.of_type(KEY) == [] and built.of_type(SUBSCRIPTION) == []
    assert "kmsMasterKeyId" not in built.one(TOPIC, "inference-alarms").inputs


def test_the_policy_lets_only_this_accounts_alarms_publish_over_tls(build):
    built = build("alarm_topic", "dev")
    topic = built.one(TOPIC, "inference-alarms")
    policy = built.one("aws:sns/topicPolicy:TopicPolicy", "inference-alarms-policy").inputs
    assert policy["arn"] == topic.outputs["arn"]
    allow, deny = _statements(policy["policy"])
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_training_may_publish_to_the_topic_and_use_its_key(build):
    plan = build("training_task", "prod").plan
    topic = plan.one(TOPIC, "inference-alarms").outputs["arn"]
    key = plan.one(KEY, "inference-alarms-key").outputs["arn"]
    policy = plan.one("aws:iam/rolePolicy:RolePolicy", "training-sfn-policy").inputs["policy"]
    by_resource = {json.dumps(s["Resource"]): s["Action"] for s in _statements(policy)}
    assert "sns:Publish" in json.dumps(by_resource[json.dumps(topic)])
    assert "kms:GenerateDataKey*" in json.dumps(by_resource[json.dumps(key)])


def test_the_inference_alarms_notify_the_topic_they_are_given(build):
    plan = build("inference_service", "dev").plan
    topic = plan.one(TOPIC, "inference-alarms").outputs["arn"]
    alarms = plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic] == alarm.inputs["okActions"]
