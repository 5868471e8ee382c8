"""documents/load_balancer.py: the ALB access-log bucket policy, per Region."""

from __future__ import annotations

import pytest

from components.documents.load_balancer import alb_access_log_bucket_policy

ACCOUNT = "123456789012"
BUCKET_ARN = "arn:aws:s3:::inference-access-logs-1234"


# AWS facts, from the ELB User Guide, "Enable access logs for your Application Load Balancer"
# (step "Attach a policy to your S3 bucket"): Regions available before August 2022 grant their
# Elastic Load Balancing account (us-east-1: 127311923021, eu-west-1: 156460612806); Regions
# available since (Zurich eu-central-2, Nov 2022; Tel Aviv il-central-1, Aug 2023) grant the
# log delivery service principal.
OLD_REGIONS = {"us-east-1": "127311923021", "eu-west-1": "156460612806"}
NEW_REGIONS = ("eu-central-2", "il-central-1")
LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def _check_log_policy(policy: dict, principal: dict) -> None:
    allow, deny = policy["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == principal
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == f"{BUCKET_ARN}/alb/AWSLogs/{ACCOUNT}/*"
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]


@pytest.mark.parametrize(("region", "elb_account"), sorted(OLD_REGIONS.items()))
def test_access_log_policy_grants_the_elb_account_in_regions_before_august_2022(
    region, elb_account
):
    policy = alb_access_log_bucket_policy(BUCKET_ARN, ACCOUNT, region)
    _check_log_policy(policy, {"AWS": f"arn:aws:iam::{elb_account}:root"})


@pytest.mark.parametrize("region", NEW_REGIONS)
def test_access_log_policy_grants_the_log_delivery_service_in_newer_regions(region):
    policy = alb_access_log_bucket_policy(BUCKET_ARN, ACCOUNT, region)
    _check_log_policy(policy, {"Service": LOG_DELIVERY_SERVICE})


@pytest.mark.parametrize(
    ("bucket", "account", "region", "prefix"),
    [
        ("inference-logs", ACCOUNT, "us-east-1", "alb"),
        (BUCKET_ARN, "1234", "us-east-1", "alb"),
        (BUCKET_ARN, ACCOUNT, "arn:aws:iam::127311923021:root", "alb"),
        (BUCKET_ARN, ACCOUNT, "us-east-1", "AWSLogs"),
        (BUCKET_ARN, ACCOUNT, "us-east-1", "alb/"),
    ],
)
def test_access_log_policy_refuses_bad_input(bucket, account, region, prefix):
    with pytest.raises(ValueError):
        alb_access_log_bucket_policy(bucket, account, region, prefix)
