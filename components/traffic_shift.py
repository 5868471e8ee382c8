"""The load balancer's side of ECS's traffic-shifting deployments (blue-green, canary, linear).

ECS Developer Guide, "Application Load Balancer resources for blue/green, linear, and canary
deployments" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/alb-resources-for-blue-green.html):
two target groups per load-balanced container (the primary and the alternate), a production
listener rule whose forward action weighs both, and optionally a test listener rule, which ECS
points at the new revision before production traffic moves. ECS changes the rules' weights
itself (through the service's infrastructure role), so Pulumi ignores later changes to their
actions. The listeners' rules hold forward actions only: ECS refuses to shift traffic on a
listener that mixes forward with redirect or fixed-response actions (same page,
"Considerations").

Every request reaches a rule: the production rule of a container served under a path matches its
path, the server's (`/*`) everything else, so the listener's default action (forward to the
server's primary group) is never what serves. The test rules match the same paths when a request
carries `TEST_HEADER: TEST_HEADER_VALUE`; they come first. The header grants nothing: it reaches
the new revision, which serves the same API as production, through the same listener and WAF.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.documents.inference import SERVER_CONTAINER
from components.documents.rollout import TEST_HEADER, TEST_HEADER_VALUE

API_RULE_PRIORITY = 1000
"""The server's production rule matches every path: it comes after every other rule."""
TEST_RULE_PRIORITY = 1
"""The test rules come before every production rule; the server's catch-all last of them."""
PATH_RULE_PRIORITY = 10
"""The sidecars' production rules: 10, 20, ... (their priorities before traffic shifting)."""


@dataclass
class TrafficShift:
    """What the service's `loadBalancers[].advancedConfiguration` names, per container."""

    alternate_target_groups: dict[str, aws.lb.TargetGroup]
    production_rules: dict[str, aws.lb.ListenerRule]
    test_rules: dict[str, aws.lb.ListenerRule]
    listener_arn: pulumi.Output[str]

    @property
    def rules(self) -> list[aws.lb.ListenerRule]:
        return [*self.production_rules.values(), *self.test_rules.values()]


def _pattern(path: str) -> str:
    """`/dashboard/` -> `/dashboard*`: the path itself, with or without its slash, and below."""
    return path.rstrip("/") + "*"


def _weighted(
    primary: aws.lb.TargetGroup, alternate: aws.lb.TargetGroup
) -> list[dict[str, object]]:
    return [
        {
            "type": "forward",
            "forward": {
                "target_groups": [
                    {"arn": primary.arn, "weight": 100},
                    {"arn": alternate.arn, "weight": 0},
                ]
            },
        }
    ]


def declare_traffic_shift(
    name: str,
    *,
    listener: aws.lb.Listener,
    primary: Mapping[str, aws.lb.TargetGroup],
    alternate: Mapping[str, aws.lb.TargetGroup],
    paths: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> TrafficShift:
    """Production and test rules for every container in `primary` (the server, and each sidecar
    under its path in `paths`), on `listener`."""
    # ECS moves the weights during a deployment: a later `pulumi up` must not move them back.
    rule_opts = pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(ignore_changes=["actions"])
    )
    production: dict[str, aws.lb.ListenerRule] = {}
    test: dict[str, aws.lb.ListenerRule] = {}
    ordered = [c for c in primary if c != SERVER_CONTAINER] + [SERVER_CONTAINER]
    for index, container in enumerate(ordered):
        pattern = _pattern(paths[container]) if container in paths else "/*"
        actions = _weighted(primary[container], alternate[container])
        test[container] = aws.lb.ListenerRule(
            f"{name}-{container}-test-rule",
            listener_arn=listener.arn,
            priority=TEST_RULE_PRIORITY + index,
            conditions=[
                {"path_pattern": {"values": [pattern]}},
                {"http_header": {"http_header_name": TEST_HEADER, "values": [TEST_HEADER_VALUE]}},
            ],
            actions=actions,
            opts=rule_opts,
        )
        priority = (
            API_RULE_PRIORITY
            if container == SERVER_CONTAINER
            else PATH_RULE_PRIORITY * (list(paths).index(container) + 1)
        )
        # A sidecar's keeps the name it had before traffic shifting (`<name>-<sidecar>-rule`).
        production[container] = aws.lb.ListenerRule(
            f"{name}-{container}-rule",
            listener_arn=listener.arn,
            priority=priority,
            conditions=[{"path_pattern": {"values": [pattern]}}],
            actions=actions,
            opts=rule_opts,
        )
    return TrafficShift(
        alternate_target_groups=dict(alternate),
        production_rules=production,
        test_rules=test,
        listener_arn=listener.arn,
    )
