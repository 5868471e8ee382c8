"""The load balancer's web ACL (`inference.waf`): AWS's common and known-bad-inputs rule groups."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws


def declare_waf(name: str, alb: aws.lb.LoadBalancer, opts: pulumi.ResourceOptions) -> None:
    def visibility(metric: str) -> dict[str, Any]:
        return {
            "cloudwatch_metrics_enabled": True,
            "metric_name": metric,
            "sampled_requests_enabled": True,
        }

    def managed(
        group: str, priority: int, overrides: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        statement: dict[str, Any] = {"vendor_name": "AWS", "name": group}
        if overrides:
            statement["rule_action_overrides"] = overrides
        return {
            "name": group,
            "priority": priority,
            "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": statement},
            "visibility_config": visibility(group),
        }

    acl = aws.wafv2.WebAcl(
        f"{name}-waf",
        scope="REGIONAL",
        default_action={"allow": {}},
        rules=[
            # The common rule set blocks bodies over 8 KB (SizeRestrictions_BODY); a /predict
            # batch of long histories is bigger, so that rule only counts.
            managed(
                "AWSManagedRulesCommonRuleSet",
                0,
                [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}],
            ),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 1),
        ],
        visibility_config=visibility("inference-alb"),
        opts=opts,
    )
    aws.wafv2.WebAclAssociation(
        f"{name}-waf-association",
        resource_arn=alb.arn,
        web_acl_arn=acl.arn,
        opts=opts,
    )
