"""InferenceService under mocks: what it would send to AWS, for both stacks and the TLS switch.

dev has no certificate (HTTP forward), prod has one (HTTPS + redirect); two overridden runs
flip that, so each path is shown to follow `inference.certificate_arn`, not the stack name.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from components.documents.common import looks_secret
from components.settings.stack import parse
from preflight.offline import ACCOUNT, Plan, Resource, stack_config

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ALB = "aws:lb/loadBalancer:LoadBalancer"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
RULE = "aws:lb/listenerRule:ListenerRule"
BUCKET = "aws:s3/bucket:Bucket"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
KEY = "aws:kms/key:Key"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
SCHEDULE = "aws:appautoscaling/scheduledAction:ScheduledAction"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f4b4c2e-8a35-4c1e-9d59-6c1d1b2a7e10"
TLS13_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@pytest.fixture
def dev_with_certificate(build) -> Plan:
    """dev plus a certificate, no dashboard, a minimum of 1 (the night schedule still goes to 0):
    the service built alone with its neighbours (tests/components/neighbours.py)."""
    return build(
        "inference_service",
        "dev",
        {
            "inference": {"certificate_arn": CERTIFICATE, "dashboard": False, "min": 1},
            # The sample check reaches a service by its domain, which this one has not.
            "workload": {"serving": {"samples": []}},
        },
    ).plan


@pytest.fixture
def prod_without_certificate(build) -> Plan:
    """prod without certificate or domain (so unprotected), access logs, WAF or alarm email: the
    service built alone with its neighbours."""
    return build(
        "inference_service",
        "prod",
        {
            "inference": {"domain": "", "hosted_zone": "", "access_logs": False, "waf": False},
            "observability": {"alarm_email": ""},
            "protection": {"retain_on_destroy": False, "require_https": False},
        },
    ).plan


def _settings(plan: Plan):
    config = stack_config(plan.stack)
    return parse({k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("mlops:")})


def _mine(plan: Plan) -> list[Resource]:
    """The service's resources and those it is given: its load balancer and alarm topic."""
    components = [
        plan.one("mlops:index:InferenceService", "inference"),
        plan.one("mlops:index:LoadBalancer", "inference"),
        plan.one("mlops:index:AlarmTopic", "inference-alarms"),
    ]
    return [child for c in components for child in plan.children_of(c.urn)]


def _containers(plan: Plan) -> dict[str, dict[str, Any]]:
    task = plan.one(TASK, "inference")
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def _by_id(plan: Plan, type_: str, id_: str) -> Resource:
    return next(r for r in plan.of_type(type_) if r.id == id_)


def _group(plan: Plan, name: str) -> Resource:
    """The target group named exactly `inference-<name>` (`-alt`: its alternate)."""
    (group,) = [g for g in plan.of_type(TARGET_GROUP) if g.name == f"inference-{name}"]
    return group


def _listeners(plan: Plan) -> dict[int, Resource]:
    return {int(r.inputs["port"]): r for r in plan.of_type(LISTENER)}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: str | dict) -> list[dict[str, Any]]:
    policy = json.loads(document) if isinstance(document, str) else document
    statements = policy["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return [action] if isinstance(action, str) else action


# -------------------------------------------------------------------------- task definition


def test_task_definition_is_fargate_sized_from_config(plan: Plan):
    task = plan.one(TASK, "inference").inputs
    inference = _settings(plan).inference
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    assert task["runtimePlatform"] == {
        "operatingSystemFamily": "LINUX",
        "cpuArchitecture": "X86_64",
    }
    assert (task["cpu"], task["memory"]) == (str(inference.cpu), str(inference.memory))


def test_task_mounts_the_store_over_tls_and_a_scratch_volume(plan: Plan):
    volumes = {v["name"]: v for v in plan.one(TASK, "inference").inputs["volumes"]}
    assert set(volumes) == {"store", "scratch"}
    efs = volumes["store"]["efsVolumeConfiguration"]
    assert efs["fileSystemId"] == plan.exports["file_system_id"]
    assert efs["transitEncryption"] == "ENABLED"
    assert efs["authorizationConfig"]["iam"] == "ENABLED"
    assert "hostPath" not in volumes["scratch"]


def test_containers_run_the_pinned_image_hardened_with_logs_and_health_checks(plan: Plan):
    containers = _containers(plan)
    assert list(containers) == ["api", "dashboard", "forecaster"]
    groups = {g.outputs["name"]: g for g in plan.of_type(LOG_GROUP) if "inference" in g.name}
    retention = _settings(plan).observability.log_retention_days
    for name, container in containers.items():
        assert container["image"] == plan.exports["image_ref"]
        assert "@sha256:" in container["image"]
        assert container["user"] == "10001:10001"
        assert container["readonlyRootFilesystem"] is True
        assert container["stopTimeout"] == 120
        group = container["logConfiguration"]["options"]["awslogs-group"]
        assert group == plan.exports["inference_log_groups"][name]
        assert groups[group].inputs["retentionInDays"] == retention
        assert not any(looks_secret(e["name"], e["value"]) for e in container["environment"])
    assert "/health" in containers["api"]["healthCheck"]["command"][-1]
    assert "/dashboard/" in containers["dashboard"]["healthCheck"]["command"][-1]
    assert "healthCheck" not in containers["forecaster"]


def test_without_the_dashboard_there_is_no_container_target_group_or_rule(
    dev_with_certificate: Plan,
):
    assert list(_containers(dev_with_certificate)) == ["api", "forecaster"]
    groups = [t.name for t in dev_with_certificate.of_type(TARGET_GROUP)]
    assert groups == ["inference-api", "inference-api-alt"]
    rules = {r.name for r in dev_with_certificate.of_type(RULE)}
    assert rules == {"inference-api-rule", "inference-api-test-rule"}
    groups = {g.name for g in dev_with_certificate.of_type(LOG_GROUP) if "inference-logs" in g.name}
    assert groups == {"inference-logs-api", "inference-logs-forecaster"}


# ------------------------------------------------------------------------------------ roles


def test_execution_role_pulls_only_this_repository_and_writes_only_its_log_groups(plan: Plan):
    role = plan.one(ROLE, "inference-execution")
    assert not [a for a in plan.of_type(ATTACHMENT) if a.inputs["role"] == role.outputs["name"]]
    (policy,) = [p for p in plan.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    statements = _statements(policy.inputs["policy"])
    stars = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in stars] == ["ecr:GetAuthorizationToken"]  # the only "*"
    by_action = {a: s["Resource"] for s in statements for a in _as_list(s["Action"])}
    repository = plan.one("aws:ecr/repository:Repository", "image-repo").outputs["arn"]
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
        assert by_action[action] == repository
    groups = sorted(
        f"{g.outputs['arn']}:log-stream:*"
        for g in plan.of_type(LOG_GROUP)
        if g.name.startswith("inference-logs")
    )
    assert sorted(_as_list(by_action["logs:PutLogEvents"])) == groups


def test_task_role_has_only_the_store_client_statements(plan: Plan):
    role = plan.one(ROLE, "inference-task")
    inline = [p for p in plan.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    assert len(inline) == 1
    statements = _statements(inline[0].inputs["policy"])
    actions = {a for s in statements for a in _actions(s)}
    assert actions == {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
    assert all(s["Resource"] != "*" for s in statements)
    assert not [a for a in plan.of_type(ATTACHMENT) if a.inputs["role"] == role.outputs["name"]]
    task = plan.one(TASK, "inference").inputs
    assert task["taskRoleArn"] == role.outputs["arn"]
    assert task["executionRoleArn"] == plan.one(ROLE, "inference-execution").outputs["arn"]


def test_roles_trust_only_ecs_tasks_of_this_account(plan: Plan):
    for role in (plan.one(ROLE, "inference-execution"), plan.one(ROLE, "inference-task")):
        (statement,) = _statements(role.inputs["assumeRolePolicy"])
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_every_policy_statement_names_its_resources_and_no_action_is_a_wildcard(plan: Plan):
    documents = []
    for resource in _mine(plan):
        for key in ("policy", "assumeRolePolicy"):
            if isinstance(resource.inputs.get(key), str):
                documents.append((resource.name, resource.inputs[key]))
    assert len(documents) >= 5
    for name, document in documents:
        for statement in _statements(document):
            if "Principal" in statement and statement.get("Action") == "sts:AssumeRole":
                continue  # trust policies name no resource
            assert "Resource" in statement, (name, statement)
            assert "*" not in _actions(statement), (name, statement)
            assert not any("FullAccess" in a for a in _actions(statement))
    attached = [a.inputs["policyArn"] for a in plan.of_type(ATTACHMENT) if "inference" in a.name]
    assert not any("FullAccess" in arn for arn in attached)


def test_the_store_policy_authorizes_the_inference_task_role(plan: Plan):
    policy = plan.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"]
    assert plan.one(ROLE, "inference-task").outputs["arn"] in policy


# ---------------------------------------------------------------------------- network edges


def test_no_security_group_admits_the_task_ports_from_a_cidr(plan: Plan):
    for rule in plan.of_type(INGRESS):
        if {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule.inputs):
            low, high = int(rule.inputs["fromPort"]), int(rule.inputs["toPort"])
            assert not low <= 8080 <= high and not low <= 8050 <= high, rule.name
    for group in plan.of_type(GROUP):
        assert "ingress" not in group.inputs, group.name


def test_alb_admits_only_its_listener_ports_from_allowed_cidrs(plan: Plan):
    alb_group = plan.one(GROUP, "inference-alb")
    rules = [r.inputs for r in plan.of_type(INGRESS) if r.inputs["securityGroupId"] == alb_group.id]
    allowed = set(_settings(plan).inference.allowed_cidrs)
    ports = {80, 443} if plan.stack == "prod" else {80}
    assert {(int(r["fromPort"]), int(r["toPort"])) for r in rules} == {(p, p) for p in ports}
    assert {r["cidrIpv4"] for r in rules} == allowed
    assert all(ipaddress.ip_network(r["cidrIpv4"]) for r in rules)


def test_tasks_admit_only_the_alb_group_on_their_ports(plan: Plan):
    alb_group, task_group = plan.one(GROUP, "inference-alb"), plan.one(GROUP, "inference-task")
    rules = [
        r.inputs for r in plan.of_type(INGRESS) if r.inputs["securityGroupId"] == task_group.id
    ]
    from_alb = [r for r in rules if "referencedSecurityGroupId" in r]
    assert {int(r["fromPort"]) for r in from_alb} == {8080, 8050}
    assert all(r["referencedSecurityGroupId"] == alb_group.id for r in from_alb)
    # The api's internal port (/metrics, /model): from the VPC only, and nothing else by CIDR.
    by_cidr = [r for r in rules if "referencedSecurityGroupId" not in r]
    assert [(r["cidrIpv4"], int(r["fromPort"]), int(r["toPort"])) for r in by_cidr] == [
        (_settings(plan).network.cidr, 8081, 8081)
    ]
    alb_out = [
        r.inputs for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == alb_group.id
    ]
    assert all(r["referencedSecurityGroupId"] == task_group.id for r in alb_out)
    task_out = [
        r.inputs for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == task_group.id
    ]
    assert [(r["cidrIpv4"], int(r["fromPort"])) for r in task_out] == [("0.0.0.0/0", 443)]


# ---------------------------------------------------------------------------- load balancer


def test_no_target_group_forwards_to_the_apis_internal_port(plan: Plan):
    assert {int(group.inputs["port"]) for group in plan.of_type(TARGET_GROUP)} <= {8080, 8050}


def test_alb_is_public_hardened_and_protected_with_the_store(plan: Plan):
    alb = plan.one(ALB, "inference").inputs
    assert alb["loadBalancerType"] == "application" and alb["internal"] is False
    assert alb["dropInvalidHeaderFields"] is True
    assert alb["desyncMitigationMode"] == "defensive"
    assert alb["enableDeletionProtection"] is (plan.stack == "prod")
    assert alb["securityGroups"] == [plan.one(GROUP, "inference-alb").id]


def test_alb_runs_in_the_public_subnets(plan: Plan):
    public = plan.one("awsx:ec2:Vpc").outputs["publicSubnetIds"]
    assert public and plan.one(ALB, "inference").inputs["subnets"] == public


def test_target_groups_use_ip_targets_a_short_drain_and_their_health_paths(plan: Plan):
    groups = {t.name: t.inputs for t in plan.of_type(TARGET_GROUP)}
    # Each with its alternate, where a blue-green or canary deployment starts the new tasks.
    assert set(groups) == {
        "inference-api",
        "inference-dashboard",
        "inference-api-alt",
        "inference-dashboard-alt",
    }
    for group in groups.values():
        assert group["targetType"] == "ip"
        assert int(group["deregistrationDelay"]) == 30
        check = group["healthCheck"]
        assert (check["interval"], check["healthyThreshold"], check["unhealthyThreshold"]) == (
            10,
            2,
            3,
        )
    # A task waiting for its first model answers /health 200 and stays in rotation.
    for suffix in ("", "-alt"):
        assert groups[f"inference-api{suffix}"]["healthCheck"]["path"] == "/health"
        assert int(groups[f"inference-api{suffix}"]["port"]) == 8080
        assert groups[f"inference-dashboard{suffix}"]["healthCheck"]["path"] == "/dashboard/"
        assert int(groups[f"inference-dashboard{suffix}"]["port"]) == 8050


def _assert_https(plan: Plan, certificate: str) -> None:
    listeners = _listeners(plan)
    assert set(listeners) == {80, 443}
    https = listeners[443].inputs
    assert https["protocol"] == "HTTPS"
    assert https["sslPolicy"] == TLS13_POLICY
    assert https["certificateArn"] == certificate
    assert https["defaultActions"][0]["targetGroupArn"] == _group(plan, "api").outputs["arn"]
    (redirect,) = listeners[80].inputs["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}
    if "url" in plan.exports:  # a whole-program plan (a component built alone exports nothing)
        assert plan.exports["url"].startswith("https://")


def _assert_http_forward(plan: Plan) -> None:
    listeners = _listeners(plan)
    assert set(listeners) == {80}
    (forward,) = listeners[80].inputs["defaultActions"]
    assert forward["type"] == "forward"
    assert forward["targetGroupArn"] == _group(plan, "api").outputs["arn"]
    if "url" in plan.exports:  # a whole-program plan (a component built alone exports nothing)
        assert plan.exports["url"].startswith("http://")


def test_https_and_redirect_appear_only_with_a_certificate(
    dev_plan: Plan, prod_plan: Plan, dev_with_certificate: Plan, prod_without_certificate: Plan
):
    _assert_http_forward(dev_plan)
    validated = prod_plan.one("aws:acm/certificateValidation:CertificateValidation")
    _assert_https(prod_plan, validated.outputs["certificateArn"])
    _assert_https(dev_with_certificate, CERTIFICATE)
    _assert_http_forward(prod_without_certificate)
    assert not dev_with_certificate.of_type("aws:acm/certificate:Certificate")


def test_a_domain_gets_a_dns_validated_certificate_and_an_alias(prod_plan: Plan):
    settings = _settings(prod_plan).inference
    certificate = prod_plan.one("aws:acm/certificate:Certificate")
    assert certificate.inputs["domainName"] == settings.domain
    assert certificate.inputs["validationMethod"] == "DNS"
    zone = [a for t, a in prod_plan.calls if t == "aws:route53/getZone:getZone"]
    assert zone and all(a == {"name": settings.hosted_zone, "privateZone": False} for a in zone)
    records = {r.name: r.inputs for r in prod_plan.of_type("aws:route53/record:Record")}
    option = certificate.outputs["domainValidationOptions"][0]
    validation_record = records["inference-cert-dns"]
    assert validation_record["name"] == option["resourceRecordName"]
    assert validation_record["type"] == option["resourceRecordType"] == "CNAME"
    assert validation_record["records"] == [option["resourceRecordValue"]]
    validation = prod_plan.one("aws:acm/certificateValidation:CertificateValidation")
    assert validation.inputs["certificateArn"] == certificate.outputs["arn"]
    assert validation.inputs["validationRecordFqdns"] == [option["resourceRecordName"].rstrip(".")]
    alias = records["inference-alias"]
    alb = prod_plan.one(ALB, "inference").outputs
    assert (alias["name"], alias["type"]) == (settings.domain, "A")
    assert alias["aliases"] == [
        {"name": alb["dnsName"], "zoneId": alb["zoneId"], "evaluateTargetHealth": True}
    ]
    assert alias["zoneId"] == validation_record["zoneId"]
    assert prod_plan.exports["url"] == f"https://{settings.domain}"


def test_production_and_test_rules_route_each_path_to_both_groups(plan: Plan):
    """ECS shifts traffic by the weights of these rules (components/traffic_shift.py): every
    request matches one, test traffic first by its header; all on the serving listener."""
    rules = {r.name: r.inputs for r in plan.of_type(RULE)}
    serving = _listeners(plan)[443 if plan.stack == "prod" else 80]
    assert set(rules) == {
        "inference-api-rule",
        "inference-api-test-rule",
        "inference-dashboard-rule",
        "inference-dashboard-test-rule",
    }
    for name, container, pattern in (
        ("api", "api", "/*"),
        ("dashboard", "dashboard", "/dashboard*"),
    ):
        weighted = [
            {
                "type": "forward",
                "forward": {
                    "targetGroups": [
                        {"arn": _group(plan, container).outputs["arn"], "weight": 100},
                        {"arn": _group(plan, f"{container}-alt").outputs["arn"], "weight": 0},
                    ]
                },
            }
        ]
        production, test = rules[f"inference-{name}-rule"], rules[f"inference-{name}-test-rule"]
        for rule in (production, test):
            assert rule["listenerArn"] == serving.outputs["arn"]
            assert rule["actions"] == weighted
        assert production["conditions"] == [{"pathPattern": {"values": [pattern]}}]
        assert test["conditions"] == [
            {"pathPattern": {"values": [pattern]}},
            {"httpHeader": {"httpHeaderName": "X-Mlops-Test-Traffic", "values": ["candidate"]}},
        ]
    # Tests first, the path rules before the server's catch-all.
    priority = {name: int(rule["priority"]) for name, rule in rules.items()}
    assert max(v for k, v in priority.items() if "test" in k) < min(
        v for k, v in priority.items() if "test" not in k
    )
    assert priority["inference-dashboard-rule"] < priority["inference-api-rule"]
    for rule in plan.of_type(RULE):
        assert rule.ignore_changes == ["actions"]  # ECS moves the weights


def test_access_logs_go_to_a_private_sse_s3_bucket_the_elb_account_may_write(prod_plan: Plan):
    plan = prod_plan
    bucket = plan.one(BUCKET, "inference-access-logs")
    alb = plan.one(ALB, "inference")
    logs = alb.inputs["accessLogs"]
    assert (logs["bucket"], logs["prefix"], logs["enabled"]) == (bucket.id, "alb", True)

    def child(kind: str) -> dict[str, Any]:
        found = [r for r in plan.of_type(kind) if r.inputs.get("bucket") == bucket.id]
        assert len(found) == 1, kind
        return found[0].inputs

    encryption = child(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    default = encryption["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default == {"sseAlgorithm": "AES256"}
    block = child("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(block[flag] is True for flag in flags)
    ownership = child("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    lifecycle = child("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    expiry, markers = lifecycle["rules"]
    assert expiry["status"] == markers["status"] == "Enabled"
    assert expiry["filter"] == {}  # every object of the bucket
    assert expiry["expiration"]["days"] == _settings(plan).observability.log_retention_days
    assert expiry["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    assert expiry["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
    assert markers["expiration"] == {"expiredObjectDeleteMarker": True}
    versioning = child("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    policy = plan.one("aws:s3/bucketPolicy:BucketPolicy", "inference")
    assert policy.inputs["bucket"] == bucket.id
    allow = _statements(policy.inputs["policy"])[0]
    # us-east-1 launched before August 2022: its ELB account (ELB User Guide, access logs).
    assert allow["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}
    assert allow["Resource"] == f"{bucket.outputs['arn']}/alb/AWSLogs/{ACCOUNT}/*"
    assert policy.urn in alb.depends_on  # ELB tests write access when logging is enabled
    assert bucket.inputs["forceDestroy"] is False  # protected stack keeps its logs


def test_no_access_logs_bucket_unless_enabled(dev_plan: Plan, prod_without_certificate: Plan):
    for plan in (dev_plan, prod_without_certificate):
        assert not [b for b in plan.of_type(BUCKET) if "inference" in b.name]
        assert "accessLogs" not in plan.one(ALB, "inference").inputs


def test_waf_guards_the_alb_with_common_and_known_bad_input_rules(prod_plan: Plan):
    acl = prod_plan.one("aws:wafv2/webAcl:WebAcl", "inference")
    assert acl.inputs["scope"] == "REGIONAL"
    groups = [r["statement"]["managedRuleGroupStatement"] for r in acl.inputs["rules"]]
    assert [g["name"] for g in groups] == [
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    ]
    assert groups[0]["ruleActionOverrides"] == [
        {"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}
    ]
    association = prod_plan.one("aws:wafv2/webAclAssociation:WebAclAssociation", "inference")
    assert association.inputs["resourceArn"] == prod_plan.one(ALB, "inference").outputs["arn"]
    assert association.inputs["webAclArn"] == acl.outputs["arn"]


def test_no_waf_unless_enabled(dev_plan: Plan, prod_without_certificate: Plan):
    for plan in (dev_plan, prod_without_certificate):
        assert plan.of_type("aws:wafv2/webAcl:WebAcl") == []


# ---------------------------------------------------------------------------------- service


def test_dev_runs_spot_only_and_prod_keeps_an_on_demand_base(dev_plan: Plan, prod_plan: Plan):
    assert dev_plan.one(SERVICE).inputs["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 1}
    ]
    assert prod_plan.one(SERVICE).inputs["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 2, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 3},
    ]


def test_deployments_are_safe(plan: Plan):
    service = plan.one(SERVICE).inputs
    strategy = service["deploymentConfiguration"]["strategy"]
    assert strategy == ("CANARY" if plan.stack == "prod" else "BLUE_GREEN")
    # The circuit breaker judges rolling updates only; these are judged by hook and alarms.
    assert "deploymentCircuitBreaker" not in service
    assert int(service["deploymentMinimumHealthyPercent"]) == 100
    assert int(service["deploymentMaximumPercent"]) == 200
    assert service["healthCheckGracePeriodSeconds"] >= 60
    assert service["availabilityZoneRebalancing"] == "ENABLED"
    assert service["enableExecuteCommand"] is False
    assert service["propagateTags"] == "SERVICE"
    assert service["taskDefinition"] == plan.one(TASK, "inference").outputs["arn"]
    assert service["cluster"] == plan.one("aws:ecs/cluster:Cluster").outputs["arn"]


def test_deployment_alarms_watch_both_groups_and_roll_back_in_every_stack(plan: Plan):
    alarms = plan.one(SERVICE).inputs["alarms"]
    names = {a.name: a.outputs["name"] for a in plan.of_type(ALARM)}
    roles = ("target-5xx", "unhealthy-hosts", "p99-latency")
    assert alarms["alarmNames"] == [
        names[f"inference-alarm-{role}{suffix}"] for suffix in ("", "-alt") for role in roles
    ]
    by_name = {a.name: a.inputs for a in plan.of_type(ALARM)}
    for role in roles:
        assert (
            by_name[f"inference-alarm-{role}-alt"]["dimensions"]["TargetGroup"]
            == (_group(plan, "api-alt").outputs["arnSuffix"])
        )
    assert alarms["enable"] is True
    assert alarms["rollback"] is True


def test_tasks_run_in_the_task_subnets_with_their_groups(plan: Plan):
    network = plan.one(SERVICE).inputs["networkConfiguration"]
    assert network["subnets"] == plan.exports["task_subnet_ids"]
    assert network["assignPublicIp"] is (plan.stack == "dev")  # public-ip egress in dev only
    store_clients = plan.one(GROUP, "store-client")
    assert network["securityGroups"] == [plan.one(GROUP, "inference-task").id, store_clients.id]


def test_service_registers_each_container_with_its_target_group(plan: Plan):
    balancers = plan.one(SERVICE).inputs["loadBalancers"]
    registered = {
        (lb["containerName"], int(lb["containerPort"]), lb["targetGroupArn"]) for lb in balancers
    }
    assert registered == {
        ("api", 8080, _group(plan, "api").outputs["arn"]),
        ("dashboard", 8050, _group(plan, "dashboard").outputs["arn"]),
    }
    rules = {r.name: r.outputs["arn"] for r in plan.of_type(RULE)}
    role = plan.one(ROLE, "inference-lb-role").outputs["arn"]
    for lb in balancers:
        name = lb["containerName"]
        assert lb["advancedConfiguration"] == {
            "alternateTargetGroupArn": _group(plan, f"{name}-alt").outputs["arn"],
            "productionListenerRule": rules[f"inference-{name}-rule"],
            "testListenerRule": rules[f"inference-{name}-test-rule"],
            "roleArn": role,
        }


def test_service_waits_for_mount_targets_and_listeners_and_leaves_desired_count_to_scaling(
    plan: Plan,
):
    service = plan.one(SERVICE)
    needed = plan.of_type("aws:efs/mountTarget:MountTarget") + plan.of_type(LISTENER)
    needed += plan.of_type(RULE)
    assert {r.urn for r in needed} <= set(service.depends_on)
    assert service.ignore_changes == ["desiredCount"]
    assert service.inputs["desiredCount"] == _settings(plan).inference.desired


# ------------------------------------------------------------------------------ autoscaling


def test_scaling_target_spans_min_to_max_of_this_service(plan: Plan):
    target = plan.one(SCALING_TARGET, "inference").inputs
    inference = _settings(plan).inference
    assert (target["minCapacity"], target["maxCapacity"]) == (inference.min, inference.max)
    assert target["scalableDimension"] == "ecs:service:DesiredCount"
    cluster = plan.exports["cluster_name"]
    assert target["resourceId"] == f"service/{cluster}/{plan.exports['service_name']}"


def test_target_tracking_on_cpu_and_requests_per_target(plan: Plan):
    inference = _settings(plan).inference
    policies = {p.name: p.inputs for p in plan.of_type(SCALING_POLICY)}
    assert set(policies) == {"inference-scale-cpu", "inference-scale-requests"}
    for policy in policies.values():
        assert policy["policyType"] == "TargetTrackingScaling"
        config = policy["targetTrackingScalingPolicyConfiguration"]
        assert (config["scaleInCooldown"], config["scaleOutCooldown"]) == (300, 60)
    cpu = policies["inference-scale-cpu"]["targetTrackingScalingPolicyConfiguration"]
    assert cpu["targetValue"] == inference.cpu_target
    assert cpu["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    requests = policies["inference-scale-requests"]["targetTrackingScalingPolicyConfiguration"]
    assert requests["targetValue"] == inference.requests_per_target
    metric = requests["predefinedMetricSpecification"]
    assert metric["predefinedMetricType"] == "ALBRequestCountPerTarget"
    alb = plan.one(ALB, "inference").outputs["arnSuffix"]
    api = _group(plan, "api").outputs["arnSuffix"]
    assert metric["resourceLabel"] == f"{alb}/{api}"
    assert metric["resourceLabel"].startswith("app/") and "/targetgroup/" in metric["resourceLabel"]


def test_one_scheduled_action_per_schedule(plan: Plan):
    schedules = _settings(plan).inference.schedules
    actions = {a.name: a.inputs for a in plan.of_type(SCHEDULE)}
    assert set(actions) == {f"inference-schedule-{s.name}" for s in schedules}
    assert len(actions) == (2 if plan.stack == "dev" else 0)
    for schedule in schedules:
        action = actions[f"inference-schedule-{schedule.name}"]
        assert action["schedule"] == schedule.cron
        assert action["scalableTargetAction"] == {
            "minCapacity": schedule.min,
            "maxCapacity": schedule.max,
        }


# --------------------------------------------------------------------------- alarms, dashboard


def test_alarms_notify_a_topic_under_a_cmk_where_the_stack_pays_for_one(plan: Plan):
    topic = plan.one(TOPIC, "inference")
    if _settings(plan).observability.alarm_topic_cmk:
        key = plan.one(KEY, "inference")
        assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
        assert key.inputs["enableKeyRotation"] is True
        principals = [s.get("Principal") for s in _statements(key.inputs["policy"])]
        assert {"Service": "cloudwatch.amazonaws.com"} in principals
    else:
        # aws/sns cannot be used by CloudWatch alarms: no key at all, not the managed one.
        assert plan.of_type(KEY) == [] and "kmsMasterKeyId" not in topic.inputs
    for alarm in plan.of_type(ALARM):
        assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]]
    subscriptions = plan.of_type("aws:sns/topicSubscription:TopicSubscription")
    email = _settings(plan).observability.alarm_email
    assert [(s.inputs["protocol"], s.inputs["endpoint"]) for s in subscriptions] == (
        [("email", email)] if email else []
    )


def test_the_five_alarms_with_tasks_below_min_only_when_min_is_positive(plan: Plan):
    alarms = {a.name.removeprefix("inference-alarm-"): a.inputs for a in plan.of_type(ALARM)}
    # The deployment alarms watch the alternate group too.
    expected = {"target-5xx", "unhealthy-hosts", "p99-latency", "cpu-high"}
    expected |= {"target-5xx-alt", "unhealthy-hosts-alt", "p99-latency-alt"}
    if plan.stack == "prod":
        expected.add("tasks-below-min")
        assert alarms["tasks-below-min"]["threshold"] == 2
        assert (
            alarms["tasks-below-min"]["dimensions"]["ServiceName"] == plan.exports["service_name"]
        )
    assert set(alarms) == expected
    alb = plan.one(ALB, "inference").outputs["arnSuffix"]
    assert alarms["target-5xx"]["dimensions"] == {
        "LoadBalancer": alb,
        "TargetGroup": _group(plan, "api").outputs["arnSuffix"],
    }
    assert alarms["unhealthy-hosts"]["metricName"] == "UnHealthyHostCount"
    assert alarms["p99-latency"]["extendedStatistic"] == "p99"
    assert alarms["cpu-high"]["dimensions"]["ClusterName"] == plan.exports["cluster_name"]


def test_a_schedule_that_scales_to_zero_silences_tasks_below_min(dev_with_certificate: Plan):
    roles = {a.name for a in dev_with_certificate.of_type(ALARM)}
    assert "inference-alarm-tasks-below-min" not in roles


def test_the_cloudwatch_dashboard_is_a_per_stack_choice(dev_plan: Plan):
    assert dev_plan.of_type("aws:cloudwatch/dashboard:Dashboard") == []


def test_the_dashboard_reads_this_alb_and_service(prod_plan: Plan):
    plan = prod_plan
    dashboard = plan.one("aws:cloudwatch/dashboard:Dashboard", "inference").inputs
    body = json.loads(dashboard["dashboardBody"])
    text = json.dumps(body)
    assert plan.one(ALB, "inference").outputs["arnSuffix"] in text
    assert plan.exports["service_name"] in text
    assert len(body["widgets"]) == 5


# ---------------------------------------------------------------------------------- exports


def test_exports_name_what_a_user_needs(plan: Plan):
    dns = plan.one(ALB, "inference").outputs["dnsName"]
    domain = _settings(plan).inference.domain
    assert plan.exports["url"] == (f"https://{domain}" if domain else f"http://{dns}")
    assert plan.exports["service_name"] == plan.one(SERVICE).outputs["name"]
    groups = {
        g.outputs["name"] for g in plan.of_type(LOG_GROUP) if g.name.startswith("inference-logs")
    }
    assert set(plan.exports["inference_log_groups"].values()) == groups
