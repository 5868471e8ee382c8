"""Children that moved out of InferenceService keep their old URN as an alias, so `pulumi up` on
a stack deployed before the move moves nothing: no delete, no create (components/moved.py)."""

from __future__ import annotations

from preflight.offline import Plan

OLD_PARENT = "mlops:index:InferenceService"
MOVED_TO = {"mlops:index:LoadBalancer": "inference", "mlops:index:AlarmTopic": "inference-alarms"}


def _old_urn(plan: Plan, type_: str, name: str) -> str:
    return f"urn:pulumi:{plan.stack}::mlops::{OLD_PARENT}${type_}::{name}"


def test_every_moved_child_is_aliased_to_its_urn_under_the_inference_service(plan: Plan):
    moved = []
    for component_type, name in MOVED_TO.items():
        component = plan.one(component_type, name)
        children = plan.children_of(component.urn)
        assert children, component_type
        moved += children
    for child in moved:
        assert _old_urn(plan, child.type, child.name) in child.aliases, child.name
    # The edge and the topic, all of it: the ALB, its groups and listeners, the topic.
    types = {child.type for child in moved}
    assert {
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:lb/targetGroup:TargetGroup",
        "aws:lb/listener:Listener",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:sns/topic:Topic",
        "aws:sns/topicPolicy:TopicPolicy",
    } <= types
    # An alias must not be another live resource's URN: the engine would refuse the plan.
    live = {resource.urn for resource in plan.resources}
    assert not live & {alias for child in moved for alias in child.aliases}


def test_what_stayed_in_the_inference_service_has_no_alias(plan: Plan):
    service = plan.one(OLD_PARENT, "inference")
    for child in plan.children_of(service.urn):
        assert not any(OLD_PARENT in alias for alias in child.aliases), child.name
