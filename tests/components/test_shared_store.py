"""SharedStore under mocks: what it would send to AWS, for both stacks and for its consumers."""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws
import pytest

from components.documents.common import APP_UID, policy_document
from components.settings.platform import StoreSettings, Throughput
from components.shared_store import SharedStore, SharedStoreArgs, lifecycle_policies
from preflight.offline import ACCOUNT, ROOT, Plan, Resource, run_program

FS = "aws:efs/fileSystem:FileSystem"
MOUNT = "aws:efs/mountTarget:MountTarget"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
POLICY = "aws:efs/fileSystemPolicy:FileSystemPolicy"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/training-task-role"


def _store_resources(plan: Plan) -> list[Resource]:
    store = plan.one("mlops:index:SharedStore", "store")
    return plan.children_of(store.urn)


def _group(plan: Plan, role: str) -> Resource:
    return plan.one(GROUP, f"store-{role}-sg")


# ------------------------------------------------------------------------- the whole stacks


def test_one_mount_target_in_every_task_subnet(plan: Plan):
    mounts = plan.of_type(MOUNT)
    subnets = [m.inputs["subnetId"] for m in mounts]
    assert sorted(subnets) == sorted(plan.exports["task_subnet_ids"])
    expected = {"dev": (2, "subnet-pub"), "prod": (3, "subnet-prv")}[plan.stack]
    assert len(mounts) == expected[0]
    assert all(s.startswith(expected[1]) for s in subnets)
    file_system = plan.one(FS)
    nfs = _group(plan, "nfs")
    assert all(m.inputs["fileSystemId"] == file_system.id for m in mounts)
    assert all(m.inputs["securityGroups"] == [nfs.id] for m in mounts)


def test_nfs_group_admits_only_the_client_group_on_2049(plan: Plan):
    nfs, client = _group(plan, "nfs"), _group(plan, "client")
    assert "ingress" not in nfs.inputs and "egress" not in nfs.inputs  # no inline rules
    rules = [r for r in plan.of_type(INGRESS) if r.inputs["securityGroupId"] == nfs.id]
    assert len(rules) == 1
    rule = rules[0].inputs
    assert rule["referencedSecurityGroupId"] == client.id
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 2049, 2049)
    assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule)
    assert not [r for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == nfs.id]


def test_client_group_reaches_the_mount_targets(plan: Plan):
    nfs, client = _group(plan, "nfs"), _group(plan, "client")
    rules = [r.inputs for r in plan.of_type(EGRESS) if r.inputs["securityGroupId"] == client.id]
    assert rules == [
        {
            "securityGroupId": client.id,
            "referencedSecurityGroupId": nfs.id,
            "ipProtocol": "tcp",
            "fromPort": 2049,
            "toPort": 2049,
            "description": "NFS to the store's mount targets",
        }
    ]
    assert all(g.inputs["vpcId"] == plan.exports["vpc_id"] for g in (nfs, client))


def test_file_system_is_encrypted_general_purpose_with_ia_lifecycle(plan: Plan):
    inputs = plan.one(FS).inputs
    assert inputs["encrypted"] is True
    assert "kmsKeyId" not in inputs  # the AWS-managed key
    assert inputs["performanceMode"] == "generalPurpose"
    assert inputs["throughputMode"] == "elastic"
    assert inputs["lifecyclePolicies"] == [
        {"transitionToIa": "AFTER_30_DAYS"},
        {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
    ]
    backup = plan.one("aws:efs/backupPolicy:BackupPolicy")
    # dev gives up backups: they would outlive `pulumi destroy` and bill (README, "dev").
    assert backup.inputs == {
        "fileSystemId": plan.one(FS).id,
        "backupPolicy": {"status": "ENABLED" if plan.stack == "prod" else "DISABLED"},
    }


def test_only_prod_protects_the_file_system(dev_plan: Plan, prod_plan: Plan):
    assert prod_plan.one(FS).protect is True
    assert dev_plan.one(FS).protect is False


def test_access_point_forces_the_app_user_under_mlops(plan: Plan):
    access_point = plan.one(ACCESS_POINT).inputs
    assert access_point["fileSystemId"] == plan.one(FS).id
    assert access_point["posixUser"] == {"uid": APP_UID, "gid": APP_UID}
    assert access_point["rootDirectory"] == {
        "path": "/mlops",
        "creationInfo": {"ownerUid": APP_UID, "ownerGid": APP_UID, "permissions": "0750"},
    }
    assert APP_UID == 10001


def _dockerfile_user(text: str) -> tuple[int, int]:
    """uid, gid of the last stage's USER: numeric, or a name created with useradd/groupadd."""
    user = re.findall(r"^\s*USER\s+(\S+)", text, re.MULTILINE)[-1]
    name, _, group = user.partition(":")
    if name.isdigit():
        return int(name), int(group or name)
    uid = re.search(r"(?:-u|--uid)[ =](\d+)", text)
    gid = re.search(r"(?:-g|--gid)[ =](\d+)", text)
    assert uid, f"USER {user}: no numeric uid found in the Dockerfile"
    return int(uid.group(1)), int((gid or uid).group(1))


def test_access_point_user_is_the_images_user(dev_plan: Plan):
    dockerfile = ROOT / "app" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("app/Dockerfile does not exist yet")
    posix_user = dev_plan.one(ACCESS_POINT).inputs["posixUser"]
    assert _dockerfile_user(dockerfile.read_text()) == (posix_user["uid"], posix_user["gid"])


def test_store_children_are_parented_and_named_after_it(plan: Plan):
    names = {r.name for r in _store_resources(plan)}
    assert {"store-fs", "store-backup", "store-nfs-sg", "store-client-sg", "store-ap"} <= names
    assert all(name.startswith("store-") for name in names)


def test_stack_exports_the_file_system_id(plan: Plan):
    assert plan.exports["file_system_id"] == plan.one(FS).id


# ------------------------------------------------------------------ consumers of the store


def _consumer_program(settings: StoreSettings | None = None) -> None:
    """A store with one task definition, one task role and the file system policy."""
    store = SharedStore(
        "store",
        SharedStoreArgs(
            settings=settings or StoreSettings(),
            vpc_id="vpc-0123456789abcdef0",
            subnet_ids=["subnet-a", "subnet-b"],
            subnet_count=2,
        ),
    )
    aws.ecs.TaskDefinition(
        "task",
        family="task",
        container_definitions="[]",
        volumes=[store.volume()],
        opts=pulumi.ResourceOptions(depends_on=store.mount_targets),
    )
    role = aws.iam.Role("task-role", assume_role_policy="{}")
    aws.iam.RolePolicy(
        "task-role-store",
        role=role.id,
        policy=store.client_policy_statements(write=False).apply(
            lambda statements: json.dumps(policy_document(statements))
        ),
    )
    store.authorize_clients([role.arn, OTHER_ROLE])


@pytest.fixture(scope="module")
def consumer_plan() -> Plan:
    return run_program(_consumer_program)


def test_volume_mounts_through_the_access_point_with_iam_and_tls(consumer_plan: Plan):
    (volume,) = consumer_plan.one("aws:ecs/taskDefinition:TaskDefinition").inputs["volumes"]
    assert volume == {
        "name": "store",
        "efsVolumeConfiguration": {
            "fileSystemId": consumer_plan.one(FS).id,
            "transitEncryption": "ENABLED",
            "authorizationConfig": {
                "accessPointId": consumer_plan.one(ACCESS_POINT).id,
                "iam": "ENABLED",
            },
        },
    }


def test_consumers_can_wait_for_the_mount_targets(consumer_plan: Plan):
    task = consumer_plan.one("aws:ecs/taskDefinition:TaskDefinition")
    mounts = {m.urn for m in consumer_plan.of_type(MOUNT)}
    assert len(mounts) == 2
    assert mounts <= set(task.depends_on)


def test_file_system_policy_denies_non_tls_and_names_the_access_point(consumer_plan: Plan):
    file_system = consumer_plan.one(FS)
    access_point = consumer_plan.one(ACCESS_POINT)
    policy = consumer_plan.one(POLICY)
    assert policy.parent == consumer_plan.one("mlops:index:SharedStore").urn
    assert policy.inputs["fileSystemId"] == file_system.id
    assert "bypassPolicyLockoutSafetyCheck" not in policy.inputs
    document = json.loads(policy.inputs["policy"])
    deny, allow = document["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert allow["Condition"] == {
        "StringEquals": {"elasticfilesystem:AccessPointArn": access_point.outputs["arn"]}
    }
    role = consumer_plan.one("aws:iam/role:Role")
    assert allow["Principal"] == {"AWS": sorted([role.outputs["arn"], OTHER_ROLE])}
    assert {deny["Resource"], allow["Resource"]} == {file_system.outputs["arn"]}


def test_client_statements_are_scoped_to_the_file_system(consumer_plan: Plan):
    document = json.loads(consumer_plan.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    (statement,) = document["Statement"]
    assert statement["Action"] == ["elasticfilesystem:ClientMount"]
    assert statement["Resource"] == consumer_plan.one(FS).outputs["arn"]
    assert statement["Condition"] == {
        "StringEquals": {
            "elasticfilesystem:AccessPointArn": consumer_plan.one(ACCESS_POINT).outputs["arn"]
        }
    }


def test_cheap_settings_reach_the_file_system():
    cheap = StoreSettings(
        throughput=Throughput.BURSTING, infrequent_access_after_days=0, backups=False
    )
    plan = run_program(lambda: _consumer_program(cheap))
    inputs = plan.one(FS).inputs
    assert inputs["throughputMode"] == "bursting"
    assert inputs["lifecyclePolicies"] == [{"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]
    backup = plan.one("aws:efs/backupPolicy:BackupPolicy").inputs["backupPolicy"]
    assert backup == {"status": "DISABLED"}


@pytest.mark.parametrize(
    ("days", "value"), [(1, "AFTER_1_DAY"), (7, "AFTER_7_DAYS"), (365, "AFTER_365_DAYS")]
)
def test_lifecycle_names_each_transition_in_its_own_policy(days: int, value: str):
    assert lifecycle_policies(days) == [
        {"transition_to_ia": value},
        {"transition_to_primary_storage_class": "AFTER_1_ACCESS"},
    ]


def test_authorize_clients_twice_is_refused():
    def program() -> None:
        store = SharedStore(
            "store",
            SharedStoreArgs(
                settings=StoreSettings(), vpc_id="vpc-1", subnet_ids=["subnet-a"], subnet_count=1
            ),
        )
        store.authorize_clients([OTHER_ROLE])
        store.authorize_clients([OTHER_ROLE])

    with pytest.raises(ValueError, match="already called"):
        run_program(program)


def test_fewer_task_subnets_than_azs_fails_the_deploy():
    def program() -> None:
        SharedStore(
            "store",
            SharedStoreArgs(
                settings=StoreSettings(), vpc_id="vpc-1", subnet_ids=["subnet-a"], subnet_count=2
            ),
        )

    with pytest.raises(Exception, match="expected 2 task subnets, got 1"):
        run_program(program)


def test_dockerfile_user_parser_reads_numeric_and_named_users():
    assert _dockerfile_user("FROM x\nUSER 10001:10001\n") == (10001, 10001)
    named = "RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 app\nUSER app\n"
    assert _dockerfile_user(named) == (10001, 10001)
