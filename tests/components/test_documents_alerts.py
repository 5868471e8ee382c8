"""documents/alerts.py: the alarm topic's key policy, topic policy and publisher statements."""

from __future__ import annotations

import pytest

from components.documents.alerts import (
    alarm_publisher_statements,
    alarm_topic_key_policy,
    alarm_topic_policy,
)

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:inference-alarms-1234"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0f4b4c2e-8a35-4c1e-9d59-6c1d1b2a7e10"


def test_key_policy_lets_cloudwatch_encrypt_and_delegates_to_iam():
    statements = {s["Sid"]: s for s in alarm_topic_key_policy(ACCOUNT)["Statement"]}
    root = statements["AccountAdministersAndDelegatesThroughIam"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    cloudwatch = statements["CloudWatchAlarmsEncryptNotifications"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_topic_policy_lets_only_this_accounts_alarms_publish_over_tls():
    allow, deny = alarm_topic_policy(TOPIC, ACCOUNT)["Statement"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert (allow["Action"], allow["Resource"]) == ("sns:Publish", TOPIC)
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert deny["Effect"] == "Deny" and deny["Resource"] == TOPIC


def test_publisher_statements_name_the_topic_and_its_key():
    publish, encrypt = alarm_publisher_statements(TOPIC, KEY)
    assert (publish["Action"], publish["Resource"]) == ("sns:Publish", TOPIC)
    assert set(encrypt["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert encrypt["Resource"] == KEY


@pytest.mark.parametrize(
    "document",
    [
        lambda: alarm_topic_key_policy("not-an-account"),
        lambda: alarm_topic_policy("arn:aws:sqs:us-east-1:123456789012:q", ACCOUNT),
        lambda: alarm_publisher_statements(KEY, TOPIC),
    ],
)
def test_alarm_topic_documents_refuse_bad_input(document):
    with pytest.raises(ValueError):
        document()
