"""The load-balancer edge: the ALB access-log bucket policy and the ELB log-delivery principal."""

from __future__ import annotations

import re
from typing import Any

from components.documents.common import deny_insecure_transport, policy_document

ALB_LOG_PREFIX = "alb"

# ELB User Guide, "Enable access logs for your Application Load Balancer", step "Attach a policy
# to your S3 bucket": the Elastic Load Balancing account of each Region available before August
# 2022. Every Region launched since has no such account; the bucket policy names the log delivery
# service principal there instead.
ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584",
    "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993",
    "cn-northwest-1": "037604701340",
}
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def elb_log_delivery_principal(region: str) -> dict[str, str]:
    """Who writes ALB access logs in `region`: its ELB account, or the log delivery service."""
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ValueError(f"{region!r} is not an AWS Region code")
    account = ELB_ACCOUNTS.get(region)
    if account is None:
        return {"Service": ELB_LOG_DELIVERY_SERVICE}
    return {"AWS": f"arn:{_partition(region)}:iam::{account}:root"}


def alb_access_log_bucket_policy(
    bucket_arn: str, account_id: str, region: str, prefix: str = ALB_LOG_PREFIX
) -> dict[str, Any]:
    """Bucket policy letting Elastic Load Balancing write this account's ALB access logs.

    ELB User Guide, "Enable access logs for your Application Load Balancer": `s3:PutObject` on
    `bucket/prefix/AWSLogs/ACCOUNT/*` for the Region's ELB account (Regions available before
    August 2022) or for `logdelivery.elasticloadbalancing.amazonaws.com` (every newer Region);
    see `elb_log_delivery_principal`. Plus a deny of plain-HTTP access to the bucket.
    """
    if not bucket_arn.startswith("arn:aws") or ":s3:::" not in bucket_arn:
        raise ValueError(f"{bucket_arn!r} is not an S3 bucket ARN")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    if not prefix or "AWSLogs" in prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"log prefix {prefix!r}: non-empty, no AWSLogs, no leading/trailing /")
    return policy_document(
        [
            {
                "Sid": "ElbLogDelivery",
                "Effect": "Allow",
                "Principal": elb_log_delivery_principal(region),
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/{prefix}/AWSLogs/{account_id}/*",
            },
            deny_insecure_transport("s3:*", [bucket_arn, f"{bucket_arn}/*"]),
        ]
    )
