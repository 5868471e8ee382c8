"""LoadBalancer built alone under mocks: the edge of each stack, and what InferenceService takes
from it."""

from __future__ import annotations

ALB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
SERVICE = "aws:ecs/service:Service"


def test_dev_serves_plain_http_with_no_certificate_waf_or_logs(build):
    built = build("load_balancer", "dev")
    (http,) = built.of_type(LISTENER)
    assert (http.inputs["port"], http.inputs["protocol"]) == (80, "HTTP")
    assert http.inputs["defaultActions"][0]["type"] == "forward"
    types = {r.type for r in built.children}
    assert not types & {
        "aws:acm/certificate:Certificate",
        "aws:wafv2/webAcl:WebAcl",
        "aws:s3/bucket:Bucket",
    }
    assert built.one(ALB, "alb").inputs["enableDeletionProtection"] is False


def test_prod_serves_tls13_on_443_and_redirects_80(build):
    built = build("load_balancer", "prod")
    listeners = {r.inputs["port"]: r.inputs for r in built.of_type(LISTENER)}
    assert listeners[443]["protocol"] == "HTTPS"
    assert listeners[443]["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    validation = built.one("aws:acm/certificateValidation:CertificateValidation")
    assert listeners[443]["certificateArn"] == validation.outputs["certificateArn"]
    (redirect,) = listeners[80]["defaultActions"]
    assert redirect["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}
    assert (
        built.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs["resourceArn"]
        == built.one(ALB, "alb").outputs["arn"]
    )


def test_the_service_registers_in_its_target_groups_behind_its_task_group(build):
    built = build("inference_service", "dev")
    edge = built.plan.one("mlops:index:LoadBalancer", "inference")
    edge_children = built.plan.children_of(edge.urn)
    target_groups = {r.name: r for r in edge_children if r.type == TARGET_GROUP}
    task_group = next(r for r in edge_children if r.name == "inference-task-sg")
    service = built.one(SERVICE, "inference").inputs
    # Each container in its group, its alternate group where a new revision starts.
    assert {
        arn
        for lb in service["loadBalancers"]
        for arn in (lb["targetGroupArn"], lb["advancedConfiguration"]["alternateTargetGroupArn"])
    } == {t.outputs["arn"] for t in target_groups.values()}
    assert task_group.id in service["networkConfiguration"]["securityGroups"]
    # The service waits for the listeners, so ECS never registers into an unattached group.
    listeners = {r.urn for r in edge_children if r.type == LISTENER}
    assert listeners <= set(built.one(SERVICE, "inference").depends_on)
