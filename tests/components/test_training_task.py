"""TrainingTask under mocks: task definitions, the state machine, its IAM and its triggers, as
recorded for both stacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.documents.training import STAR_RESOURCE_SIDS, TRAINING_STEPS
from components.documents.triggers import ecr_push_pattern, start_execution_statements
from preflight.offline import Plan, Resource

TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RETENTION = {"dev": 7, "prod": 90}


def task_definitions(plan: Plan) -> dict[str, Resource]:
    return {step: plan.one(TASK_DEF, f"training-{step}") for step in TRAINING_STEPS}


def containers(definition: Resource) -> list[dict[str, Any]]:
    return json.loads(definition.inputs["containerDefinitions"])


def asl(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.one(STATE_MACHINE, "training").inputs["definition"])


def policy(plan: Plan, name: str) -> list[dict[str, Any]]:
    return json.loads(plan.one(ROLE_POLICY, name).inputs["policy"])["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------- task definitions


def test_three_steps_share_the_store_scratch_logs_and_hardening(plan: Plan):
    store = plan.one("aws:efs/fileSystem:FileSystem")
    logs = plan.one(LOG_GROUP, "training-logs")
    assert logs.inputs["retentionInDays"] == RETENTION[plan.stack]
    for step, definition in task_definitions(plan).items():
        inputs = definition.inputs
        volumes = {v["name"]: v for v in inputs["volumes"]}
        assert volumes["store"]["efsVolumeConfiguration"]["fileSystemId"] == store.id
        assert volumes["scratch"] == {"name": "scratch"}
        assert inputs["networkMode"] == "awsvpc"
        (container,) = containers(definition)
        assert container["command"] == [step]
        assert container["user"] == "10001:10001"
        assert container["readonlyRootFilesystem"] is True
        assert container["logConfiguration"]["options"]["awslogs-group"] == logs.outputs["name"]


def test_validate_and_gate_are_small_fargate_tasks_on_the_cpu_image(plan: Plan):
    cpu_image = plan.exports["image_ref"]
    for step in ("validate", "gate"):
        definition = task_definitions(plan)[step]
        assert definition.inputs["requiresCompatibilities"] == ["FARGATE"]
        assert (definition.inputs["cpu"], definition.inputs["memory"]) == ("512", "1024")
        assert containers(definition)[0]["image"] == cpu_image


def test_dev_trains_on_fargate_with_the_cpu_image(dev_plan: Plan):
    train = task_definitions(dev_plan)["train"]
    assert train.inputs["requiresCompatibilities"] == ["FARGATE"]
    assert (train.inputs["cpu"], train.inputs["memory"]) == ("1024", "4096")
    assert containers(train)[0]["image"] == dev_plan.exports["image_ref"]


def test_prod_trains_on_ec2_with_the_gpu_image_and_a_gpu(prod_plan: Plan):
    train = task_definitions(prod_plan)["train"]
    assert train.inputs["requiresCompatibilities"] == ["EC2"]
    assert train.inputs["networkMode"] == "awsvpc"
    (container,) = containers(train)
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    (release,) = [r for r in prod_plan.of_type("docker:index/image:Image") if r.name == "image-gpu"]
    assert ":gpu-" in release.inputs["imageName"]
    assert container["image"] == release.outputs["repoDigest"]


def test_gpu_requirements_only_on_ec2_definitions(plan: Plan):
    for definition in plan.of_type(TASK_DEF):
        gpus = [
            r
            for c in containers(definition)
            for r in c.get("resourceRequirements", [])
            if r["type"] == "GPU"
        ]
        if gpus:
            assert definition.inputs["requiresCompatibilities"] == ["EC2"], definition.name


def test_exports_are_the_registered_revisions(plan: Plan):
    for step, definition in task_definitions(plan).items():
        assert plan.exports[f"{step}_task_definition_arn"] == definition.outputs["arn"]
    assert plan.exports["state_machine_arn"] == plan.one(STATE_MACHINE, "training").outputs["arn"]


# -------------------------------------------------------------------------- state machine


def test_state_machine_runs_the_recorded_families_in_this_cluster(plan: Plan):
    states = asl(plan)["States"]
    cluster = plan.one("aws:ecs/cluster:Cluster", "cluster")
    families = {step: td.inputs["family"] for step, td in task_definitions(plan).items()}
    for name in ("Validate", "Train", "Gate"):
        params = states[name]["Parameters"]
        assert params["Cluster"] == cluster.outputs["arn"]
        assert params["TaskDefinition"] == families[name.lower()]
        network = params["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["Subnets"] == plan.exports["task_subnet_ids"]
        store_clients = plan.one("aws:ec2/securityGroup:SecurityGroup", "store-client-sg")
        task_group = plan.one("aws:ec2/securityGroup:SecurityGroup", "training-task-sg")
        assert network["SecurityGroups"] == [task_group.id, store_clients.id]
        assert network["AssignPublicIp"] == {"dev": "ENABLED", "prod": "DISABLED"}[plan.stack]


def test_dev_trains_on_spot_and_falls_back_to_fargate(dev_plan: Plan):
    states = asl(dev_plan)["States"]
    assert states["Train"]["Parameters"]["CapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1}
    ]
    assert states["TrainOnDemand"]["Parameters"]["CapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE", "Weight": 1}
    ]
    assert states["Train"]["Catch"][0]["Next"] == "TrainOnDemand"


def test_prod_trains_on_the_attached_gpu_provider(prod_plan: Plan):
    states = asl(prod_plan)["States"]
    provider = prod_plan.one("aws:ecs/capacityProvider:CapacityProvider", "gpu")
    attached = prod_plan.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    strategy = states["Train"]["Parameters"]["CapacityProviderStrategy"]
    assert strategy == [{"CapacityProvider": provider.outputs["name"], "Weight": 1}]
    assert provider.outputs["name"] in attached.inputs["capacityProviders"]
    assert "TrainOnDemand" not in states


def test_failures_publish_to_the_inference_alarm_topic(plan: Plan):
    topic = plan.one("aws:sns/topic:Topic", "alarms")
    assert asl(plan)["States"]["NotifyFailure"]["Parameters"]["TopicArn"] == topic.outputs["arn"]


def test_logging_all_with_data_to_a_vended_log_group_and_tracing(plan: Plan):
    machine = plan.one(STATE_MACHINE, "training").inputs
    group = plan.one(LOG_GROUP, "training-sfn-logs")
    assert group.inputs["name"].startswith("/aws/vendedlogs/states/")
    assert group.inputs["retentionInDays"] == RETENTION[plan.stack]
    assert machine["loggingConfiguration"] == {
        "level": "ALL",
        "includeExecutionData": True,
        "logDestination": f"{group.outputs['arn']}:*",
    }
    assert machine["tracingConfiguration"] == {"enabled": True}
    assert machine["type"] == "STANDARD"


def test_state_machine_waits_for_its_policy_and_the_mount_targets(plan: Plan):
    machine = plan.one(STATE_MACHINE, "training")
    needed = {plan.one(ROLE_POLICY, "training-sfn-policy").urn} | {
        m.urn for m in plan.of_type("aws:efs/mountTarget:MountTarget")
    }
    assert needed <= set(machine.depends_on)


# -------------------------------------------------------------------------------- IAM


def test_no_star_resource_outside_the_documented_exceptions(plan: Plan):
    component = plan.one("mlops:index:TrainingTask", "training")
    policies = [r for r in plan.children_of(component.urn) if r.type == ROLE_POLICY]
    assert len(policies) == 4  # execution, task (store), state machine, events
    for resource in policies:
        for statement in json.loads(resource.inputs["policy"])["Statement"]:
            starred = "*" in as_list(statement["Resource"])
            assert starred == (statement.get("Sid") in STAR_RESOURCE_SIDS), statement


def test_pass_role_names_exactly_the_training_roles(plan: Plan):
    execution = plan.one(ROLE, "training-execution-role").outputs["arn"]
    task = plan.one(ROLE, "training-task-role").outputs["arn"]
    (passing,) = [
        s for s in policy(plan, "training-sfn-policy") if "iam:PassRole" in as_list(s["Action"])
    ]
    assert passing["Resource"] == sorted([execution, task])
    assert passing["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    machine = plan.one(STATE_MACHINE, "training")
    assert machine.inputs["roleArn"] == plan.one(ROLE, "training-sfn-role").outputs["arn"]


def test_state_machine_may_run_only_the_three_families(plan: Plan):
    (run,) = [s for s in policy(plan, "training-sfn-policy") if s["Action"] == "ecs:RunTask"]
    families = {td.inputs["family"] for td in task_definitions(plan).values()}
    assert {arn.split("/")[-1].removesuffix(":*") for arn in run["Resource"]} == families


def test_state_machine_may_publish_with_the_topic_key(plan: Plan):
    topic = plan.one("aws:sns/topic:Topic", "alarms").outputs["arn"]
    keys = plan.of_type("aws:kms/key:Key")
    actions = {
        a: s["Resource"] for s in policy(plan, "training-sfn-policy") for a in as_list(s["Action"])
    }
    assert actions["sns:Publish"] == topic
    if plan.stack == "prod":
        assert (
            actions["kms:GenerateDataKey*"] == plan.one("aws:kms/key:Key", "alarms").outputs["arn"]
        )
    else:  # dev's alarm topic has no CMK, so the role needs no KMS permission at all
        assert keys == [] and not [a for a in actions if a.startswith("kms:")]


def test_roles_trust_their_service_for_this_account_only(plan: Plan):
    for role, service in [
        ("training-execution-role", "ecs-tasks.amazonaws.com"),
        ("training-task-role", "ecs-tasks.amazonaws.com"),
        ("training-sfn-role", "states.amazonaws.com"),
        ("training-events-role", "events.amazonaws.com"),
    ]:
        (statement,) = json.loads(plan.one(ROLE, role).inputs["assumeRolePolicy"])["Statement"]
        assert statement["Principal"] == {"Service": service}
        assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]


def test_the_store_admits_the_training_task_role(plan: Plan):
    task = plan.one(ROLE, "training-task-role").outputs["arn"]
    fs_policy = json.loads(plan.one("aws:efs/fileSystemPolicy:FileSystemPolicy").inputs["policy"])
    principals = [p for s in fs_policy["Statement"] for p in as_list(s["Principal"].get("AWS", []))]
    assert task in principals
    store_policy = policy(plan, "training-task-store")
    assert {a for s in store_policy for a in as_list(s["Action"])} == {
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
    }


# ----------------------------------------------------------------------------- triggers


def test_three_triggers_start_the_state_machine_through_a_narrow_role(plan: Plan):
    machine = plan.one(STATE_MACHINE, "training").outputs["arn"]
    role = plan.one(ROLE, "training-events-role").outputs["arn"]
    assert policy(plan, "training-events-policy") == start_execution_statements(machine)
    targets = {t.name: t.inputs for t in plan.of_type(TARGET) if t.name.startswith("training-")}
    assert set(targets) == {f"training-on-{t}-target" for t in ("push", "schedule", "drift")}
    queue = plan.one("aws:sqs/queue:Queue", "training-dlq")
    for target in targets.values():
        assert target["arn"] == machine
        assert target["roleArn"] == role
        assert target["deadLetterConfig"] == {"arn": queue.outputs["arn"]}
        assert target["retryPolicy"]["maximumRetryAttempts"] >= 1
        assert target["retryPolicy"]["maximumEventAgeInSeconds"] >= 60


def test_push_rule_matches_release_pushes_of_this_repository(plan: Plan):
    repo = plan.one("aws:ecr/repository:Repository", "image-repo")
    pattern = json.loads(plan.one(RULE, "training-on-push").inputs["eventPattern"])
    flavour = {"dev": "cpu", "prod": "gpu"}[plan.stack]
    assert pattern == ecr_push_pattern(repo.outputs["name"], f"{flavour}-")
    transformer = plan.one(TARGET, "training-on-push").inputs["inputTransformer"]
    assert transformer["inputPaths"] == {"digest": "$.detail.image-digest"}
    assert json.loads(transformer["inputTemplate"].replace("<digest>", "sha256:x")) == {
        "reason": "image-push",
        "image_digest": "sha256:x",
    }


def test_schedule_and_drift_rules(plan: Plan):
    expression = {"dev": "cron(0 3 * * ? *)", "prod": "cron(0 3 ? * SUN *)"}[plan.stack]
    assert plan.one(RULE, "training-on-schedule").inputs["scheduleExpression"] == expression
    drift = json.loads(plan.one(RULE, "training-on-drift").inputs["eventPattern"])
    assert drift == {"source": ["mlops.monitoring"], "detail-type": ["DataDriftDetected"]}
    for trigger in ("schedule", "drift"):
        target = plan.one(TARGET, f"training-on-{trigger}").inputs
        assert json.loads(target["input"])["reason"] == trigger


def test_dead_letter_queue_is_encrypted_and_open_to_these_rules_only(plan: Plan):
    queue = plan.one("aws:sqs/queue:Queue", "training-dlq")
    assert queue.inputs["sqsManagedSseEnabled"] is True
    queue_policy = plan.one("aws:sqs/queuePolicy:QueuePolicy", "training-dlq")
    assert queue_policy.inputs["queueUrl"] == queue.outputs["url"]
    rules = sorted(r.outputs["arn"] for r in plan.of_type(RULE) if r.name.startswith("training"))
    (statement,) = json.loads(queue_policy.inputs["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rules}}


@pytest.fixture
def no_triggers_plan(build) -> Plan:
    """TrainingTask built alone (no Monitoring, so no ingest rule either) with every trigger off."""
    return build(
        "training_task",
        "dev",
        {"training": {"schedule": "", "on_image_push": False, "on_drift_event": False}},
    ).plan


def test_disabled_triggers_create_no_rules(no_triggers_plan: Plan):
    assert not no_triggers_plan.of_type(RULE)
    assert not no_triggers_plan.of_type(TARGET)
    assert not no_triggers_plan.of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert no_triggers_plan.one(STATE_MACHINE, "training")  # still startable by hand
