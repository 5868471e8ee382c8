"""The price table `preflight.plan` estimates with: us-east-1 list prices, dated, with sources.

On-demand list prices in USD for US East (N. Virginia), Linux, no free tier, no Savings Plans or
Reserved capacity, no taxes. They were compiled from the AWS pricing pages named on each entry
(not fetched live: the build machines have no cloud access); refresh them with `PRICES_DATE`
when AWS changes a price. Anything this table does not price is reported as unknown, never $0.

`ASSUMPTIONS` are the usage figures no program can know (how long a training run takes, how much
a task logs). The plan prints every one it used next to the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_DATE = "2026-11-22"
REGION = "us-east-1"
HOURS_PER_MONTH = 730.0
"""AWS's own convention for monthly estimates (8,760 hours / 12)."""


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    # Compute
    "fargate_vcpu_hour": Price(
        0.04048, "vCPU-hour", "aws.amazon.com/fargate/pricing (Linux/x86, on-demand)"
    ),
    "fargate_gb_hour": Price(
        0.004445, "GB-hour", "aws.amazon.com/fargate/pricing (Linux/x86, on-demand)"
    ),
    "ebs_gp3_gb_month": Price(0.08, "GB-month", "aws.amazon.com/ebs/pricing (gp3 storage)"),
    # Networking
    "nat_gateway_hour": Price(0.045, "NAT gateway-hour", "aws.amazon.com/vpc/pricing"),
    "nat_gateway_gb": Price(0.045, "GB processed", "aws.amazon.com/vpc/pricing"),
    "public_ipv4_hour": Price(
        0.005, "IPv4 address-hour", "aws.amazon.com/vpc/pricing (public IPv4, since 2024-02-01)"
    ),
    "alb_hour": Price(0.0225, "ALB-hour", "aws.amazon.com/elasticloadbalancing/pricing"),
    "alb_lcu_hour": Price(0.008, "LCU-hour", "aws.amazon.com/elasticloadbalancing/pricing"),
    "vpc_endpoint_hour": Price(
        0.01, "endpoint-AZ-hour", "aws.amazon.com/privatelink/pricing (interface endpoint)"
    ),
    # Storage
    "efs_standard_gb_month": Price(
        0.30, "GB-month", "aws.amazon.com/efs/pricing (Standard, Regional)"
    ),
    "efs_ia_gb_month": Price(
        0.016, "GB-month", "aws.amazon.com/efs/pricing (Infrequent Access, Regional)"
    ),
    "efs_elastic_read_gb": Price(
        0.03, "GB read", "aws.amazon.com/efs/pricing (Elastic Throughput reads)"
    ),
    "efs_elastic_write_gb": Price(
        0.06, "GB written", "aws.amazon.com/efs/pricing (Elastic Throughput writes)"
    ),
    "efs_backup_gb_month": Price(
        0.05, "GB-month", "aws.amazon.com/backup/pricing (EFS warm backup storage)"
    ),
    "ecr_gb_month": Price(0.10, "GB-month", "aws.amazon.com/ecr/pricing (private repositories)"),
    "s3_standard_gb_month": Price(
        0.023, "GB-month", "aws.amazon.com/s3/pricing (S3 Standard, first 50 TB)"
    ),
    "s3_put_thousand": Price(
        0.005,
        "1,000 requests",
        "aws.amazon.com/s3/pricing (S3 Standard: PUT, COPY, POST, LIST requests)",
    ),
    "s3_get_thousand": Price(
        0.0004,
        "1,000 requests",
        "aws.amazon.com/s3/pricing (S3 Standard: GET, SELECT and all other requests)",
    ),
    # Observability
    "logs_ingest_gb": Price(
        0.50, "GB ingested", "aws.amazon.com/cloudwatch/pricing (Logs, Standard class)"
    ),
    "logs_storage_gb_month": Price(
        0.03, "GB-month", "aws.amazon.com/cloudwatch/pricing (Logs archival, compressed)"
    ),
    "alarm_month": Price(
        0.10, "alarm-month", "aws.amazon.com/cloudwatch/pricing (standard-resolution metric)"
    ),
    "dashboard_month": Price(3.00, "dashboard-month", "aws.amazon.com/cloudwatch/pricing"),
    "custom_metric_month": Price(
        0.30,
        "metric-month",
        "aws.amazon.com/cloudwatch/pricing (custom metrics, first 10k; Container Insights)",
    ),
    # Security
    "kms_key_month": Price(1.00, "key-month", "aws.amazon.com/kms/pricing (customer managed key)"),
    "secret_month": Price(0.40, "secret-month", "aws.amazon.com/secrets-manager/pricing"),
    "waf_web_acl_month": Price(5.00, "web ACL-month", "aws.amazon.com/waf/pricing"),
    "waf_rule_month": Price(
        1.00, "rule-month", "aws.amazon.com/waf/pricing (a managed rule group counts as one)"
    ),
    "waf_million_requests": Price(0.60, "million requests", "aws.amazon.com/waf/pricing"),
    # Orchestration
    "sqs_million_requests": Price(
        0.40, "million requests", "aws.amazon.com/sqs/pricing (Standard queue)"
    ),
    "sfn_thousand_transitions": Price(
        0.025, "1,000 state transitions", "aws.amazon.com/step-functions/pricing (Standard)"
    ),
    "lambda_million_requests": Price(0.20, "million requests", "aws.amazon.com/lambda/pricing"),
    "lambda_arm_gb_second": Price(
        0.0000133334, "GB-second", "aws.amazon.com/lambda/pricing (Arm, first 7.5 billion)"
    ),
}

EC2_ON_DEMAND_HOUR: dict[str, float] = {
    # aws.amazon.com/ec2/pricing/on-demand, Linux. P4d/P5 prices changed in 2025 and are left out
    # on purpose: the plan reports them as unknown rather than quoting a stale figure.
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g4dn.16xlarge": 4.352,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g5.16xlarge": 4.096,
    "g5.24xlarge": 8.144,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    "g6.8xlarge": 2.0144,
    "g6.12xlarge": 4.6016,
    "g6.16xlarge": 3.3968,
    "g6.24xlarge": 6.6752,
    "g6.48xlarge": 13.3504,
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    "p3.16xlarge": 24.48,
}


@dataclass(frozen=True)
class Assumption:
    value: float
    note: str


ASSUMPTIONS: dict[str, Assumption] = {
    "fargate_spot_discount": Assumption(
        0.70,
        "Fargate Spot costs 70% less than on-demand (AWS quotes 'up to 70%'; the spot price "
        "floats)",
    ),
    "ec2_spot_discount": Assumption(
        0.60,
        "EC2 Spot for g4dn/g6/g5 xlarge in us-east-1 runs about 60% below on-demand (EC2 Spot "
        "Instance Advisor shows 55-70%; the Spot price floats and interruptions are not priced)",
    ),
    "gpu_serving_burst_instances": Assumption(
        1,
        "serving GPU instances that load adds, on average, above what the service's scaling "
        "minimum needs (they run Spot above the group's on-demand base); Fargate scale-out is "
        "not priced",
    ),
    "image_pushes_per_month": Assumption(
        4, "image pushes that start a training run, per month (one a week)"
    ),
    "drift_events_per_month": Assumption(1, "drift events that start a training run, per month"),
    "step_hours_per_run": Assumption(
        0.1, "hours each non-training task of a run (validate, gate) runs"
    ),
    "train_hours_per_run": Assumption(0.5, "hours a training task runs"),
    "gpu_instance_overhead_hours_per_run": Assumption(
        0.25,
        "extra GPU instance-hours per run: boot, ECS registration and managed-scaling scale-in",
    ),
    "deployments_per_month": Assumption(
        4,
        "deployments of the inference service a month besides model rollouts (image pushes "
        "that reach it through pulumi up)",
    ),
    "deployment_start_minutes": Assumption(
        10,
        "minutes a deployment runs its new tasks beside the old ones before its bake: start, "
        "target checks, the sample check",
    ),
    "lambda_seconds_per_invocation": Assumption(
        1, "seconds a rollout function runs per invocation (ECS API calls, a few samples)"
    ),
    "alb_lcus": Assumption(1, "average LCUs the load balancer consumes while a task serves"),
    "waf_million_requests_per_month": Assumption(5, "million requests WAF inspects a month"),
    "nat_gb_per_month": Assumption(20, "GB per month through the NAT gateways (images, logs)"),
    "efs_stored_gb": Assumption(5, "GB on the shared store (data, models, reports, forecasts)"),
    "efs_ia_share": Assumption(
        0.5, "share of the store in Infrequent Access when a transition is configured"
    ),
    "efs_read_gb_per_month": Assumption(30, "GB read from EFS a month (model and data loads)"),
    "efs_write_gb_per_month": Assumption(5, "GB written to EFS a month (models, forecasts)"),
    "log_gb_per_container_hour": Assumption(
        0.002, "GB of logs a running container writes per hour (2 MB/h)"
    ),
    "log_gb_per_unused_group": Assumption(
        0.1, "GB a month into a log group no task definition names (e.g. state machine logs)"
    ),
    "log_compression": Assumption(
        0.15, "stored log size / ingested size (CloudWatch bills storage compressed)"
    ),
    "access_log_gb_month": Assumption(5, "GB of ALB access logs kept in S3"),
    "sqs_million_requests_per_month": Assumption(
        0.01, "million requests to a queue (dead-letter queues see almost none)"
    ),
    "container_insights_metrics_per_cluster": Assumption(
        10, "Container Insights metrics per cluster (billed as custom metrics)"
    ),
    "container_insights_metrics_per_service": Assumption(
        10, "Container Insights metrics per service and task family"
    ),
    "invocations_million_per_month": Assumption(
        1, "million POST /invocations the service answers a month (data capture's volume)"
    ),
    "capture_record_kib": Assumption(
        2, "KiB a captured exchange takes on the store (both bodies and the metadata)"
    ),
    "s3_channel_gb": Assumption(
        1.0,
        "GB each S3 training channel holds; every run reads it in full (File mode). The plan "
        "cannot see a prefix; the bucket is taken to be in the stack's Region",
    ),
    "s3_channel_objects": Assumption(
        1000, "objects each S3 training channel holds: a GET each, a LIST per 1,000"
    ),
    "model_artifact_gb": Assumption(
        0.05,
        "GB of one exported model.tar.gz (digits' is under 1 MB; 50 MB covers most tabular "
        "and small neural models)",
    ),
    "model_monitor_minutes_per_run": Assumption(
        1, "minutes a model monitor run takes (reading an hour of capture as JSON lines)"
    ),
    "model_monitor_features": Assumption(
        10,
        "features the model monitor reports drift for: one BaselineDrift metric each, per "
        "feature of the training channel, which the plan cannot know (digits has 64)",
    ),
}
