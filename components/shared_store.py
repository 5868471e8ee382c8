"""SharedStore: the EFS file system every task mounts (datasets, models, reports, the
workload's own files).

Creates, as children of the component:

- `<name>-fs`: an encrypted (AWS-managed key `aws/elasticfilesystem`), `generalPurpose` file
  system with the configured throughput mode, an Infrequent Access lifecycle and, with
  `protection.retain_on_destroy`, Pulumi's `protect` so neither `pulumi destroy` nor a
  replacement deletes it;
- `<name>-backup`: the AWS Backup policy, ENABLED or DISABLED from `store.backups`;
- `<name>-nfs-sg` and `<name>-client-sg`: the mount targets' group admits NFS (TCP 2049) only
  from the client group, which tasks attach; no CIDR is ever allowed in;
- `<name>-mount-<i>`: one mount target per task subnet (a task in a subnet without one fails with
  `ResourceInitializationError`);
- `<name>-ap`: the access point every task mounts through: root `/mlops`, POSIX user 10001:10001;
- with `capture`, `<name>-capture-ap`: root `/mlops/capture`, the same user: the only part of
  the store the serving task's capture proxy may write (`inference.capture`), even where the
  serving task reads the rest only;
- `<name>-policy` (from `authorize_clients`): the file system policy, TLS only, named task roles
  only, through the access points only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.documents.common import APP_UID, STORE_VOLUME, policy_document
from components.documents.store import efs_client_statements, efs_file_system_policy
from components.network import TcpRuleNames, allow_tcp
from components.settings.platform import StoreSettings

NFS_PORT = 2049
ROOT_DIRECTORY = "/mlops"
ROOT_PERMISSIONS = "0750"
CAPTURE_DIRECTORY = f"{ROOT_DIRECTORY}/capture"
"""The capture access point's root: `capture/` in the store as every other task sees it."""


def lifecycle_policies(infrequent_access_after_days: int) -> list[dict[str, str]]:
    """The file system's lifecycle policies in pulumi-aws input shape.

    EFS takes one transition per LifecyclePolicy object (EFS API reference, "LifecyclePolicy":
    "each LifecyclePolicy object have only a single transition"), hence one entry each. Files go
    back to primary storage on their first access even when IA is off (0), so files moved under
    an earlier setting come back too.
    """
    policies = []
    if infrequent_access_after_days:
        days = infrequent_access_after_days
        policies.append({"transition_to_ia": f"AFTER_{days}_DAY{'S' if days > 1 else ''}"})
    policies.append({"transition_to_primary_storage_class": "AFTER_1_ACCESS"})
    return policies


@dataclass
class SharedStoreArgs:
    settings: StoreSettings
    """Throughput, IA lifecycle and backups from `mlops:store`."""
    vpc_id: pulumi.Input[str]
    """The VPC the security groups live in."""
    subnet_ids: pulumi.Input[list[str]]
    """The subnets tasks run in (`Network.task_subnet_ids`): one mount target in each."""
    subnet_count: int
    """How many `subnet_ids` there are (the network's AZ count, known from config): the mount
    targets are declared before the subnet ids resolve."""
    retain_on_destroy: bool = False
    """`protection.retain_on_destroy`: Pulumi refuses to delete or replace the file system."""
    capture: bool = False
    """A second access point rooted at `capture/`, for the serving task's capture proxy."""


class SharedStore(pulumi.ComponentResource):
    """EFS storage shared by the inference service and the training tasks.

    Consumers attach `client_security_group_id` to their tasks, add `volume()` to their task
    definitions, grant their task roles `client_policy()` and `depends_on` the
    `mount_targets`. The client group only allows NFS out to the store: tasks attach their own
    group for everything else (ECR, CloudWatch, the load balancer).

    The file system policy names the task roles, which the consumers create after the store, so
    it is declared last, by `authorize_clients(role_arns)`, once, from `__main__.py`:

        store = SharedStore("store", SharedStoreArgs(...))
        inference = InferenceService(..., store=store)
        training = TrainingTask(..., store=store)
        store.authorize_clients([inference.task_role_arn, training.task_role_arn])

    Until then EFS applies its default policy (any client that reaches a mount target), which
    the NFS security group already limits to the client group.
    """

    file_system_id: pulumi.Output[str]
    file_system_arn: pulumi.Output[str]
    access_point_id: pulumi.Output[str]
    access_point_arn: pulumi.Output[str]
    client_security_group_id: pulumi.Output[str]
    mount_targets: list[aws.efs.MountTarget]

    def __init__(
        self, name: str, args: SharedStoreArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:index:SharedStore", name, None, opts)
        if args.subnet_count < 1:
            raise ValueError(f"SharedStore {name}: subnet_count must be at least 1")
        self._name = name
        self._policy: aws.efs.FileSystemPolicy | None = None
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)

        file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,  # no kms_key_id: the AWS-managed key aws/elasticfilesystem
            performance_mode="generalPurpose",
            throughput_mode=settings.throughput.value,
            lifecycle_policies=lifecycle_policies(settings.infrequent_access_after_days),
            opts=pulumi.ResourceOptions(parent=self, protect=args.retain_on_destroy),
        )
        aws.efs.BackupPolicy(
            f"{name}-backup",
            file_system_id=file_system.id,
            backup_policy={"status": "ENABLED" if settings.backups else "DISABLED"},
            opts=child,
        )

        # The two groups reference each other, so their rules are separate resources (pulumi-aws
        # recommends aws.vpc.SecurityGroup{Ingress,Egress}Rule over inline rules, and never
        # both on one group). The provider removes AWS's default allow-all egress rule from a
        # new group, so each group allows exactly the rules below.
        nfs_group = aws.ec2.SecurityGroup(
            f"{name}-nfs-sg",
            vpc_id=args.vpc_id,
            description="EFS mount targets: NFS from store clients only",
            opts=child,
        )
        client_group = aws.ec2.SecurityGroup(
            f"{name}-client-sg",
            vpc_id=args.vpc_id,
            description="Shared store clients: NFS to the EFS mount targets",
            opts=child,
        )
        allow_tcp(
            NFS_PORT,
            source=client_group,
            target=nfs_group,
            names=TcpRuleNames(
                egress=f"{name}-client-to-nfs",
                egress_description="NFS to the store's mount targets",
                ingress=f"{name}-nfs-from-clients",
                ingress_description="NFS from store clients",
            ),
            opts=child,
        )

        subnet_ids = pulumi.Output.from_input(args.subnet_ids)
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{index}",
                file_system_id=file_system.id,
                subnet_id=subnet_ids.apply(
                    lambda ids, i=index: _subnet(ids, i, args.subnet_count, name)
                ),
                security_groups=[nfs_group.id],
                opts=child,
            )
            for index in range(args.subnet_count)
        ]

        access_point = self._access_point(f"{name}-ap", file_system.id, ROOT_DIRECTORY)
        capture_point = (
            self._access_point(f"{name}-capture-ap", file_system.id, CAPTURE_DIRECTORY)
            if args.capture
            else None
        )

        self.file_system_id = file_system.id
        self.file_system_arn = file_system.arn
        self.access_point_id = access_point.id
        self.access_point_arn = access_point.arn
        self.capture_access_point = capture_point
        """The capture access point (`args.capture`), else None."""
        self.client_security_group_id = client_group.id
        self.register_outputs(
            {
                "file_system_id": self.file_system_id,
                "file_system_arn": self.file_system_arn,
                "access_point_id": self.access_point_id,
                "access_point_arn": self.access_point_arn,
                "client_security_group_id": self.client_security_group_id,
            }
        )

    def _access_point(
        self, name: str, file_system_id: pulumi.Input[str], path: str
    ) -> aws.efs.AccessPoint:
        return aws.efs.AccessPoint(
            name,
            file_system_id=file_system_id,
            # Every NFS call through the access point runs as the image's user, whatever the
            # client sends; the root directory is created owned by it on first mount.
            posix_user={"uid": APP_UID, "gid": APP_UID},
            root_directory={
                "path": path,
                "creation_info": {
                    "owner_uid": APP_UID,
                    "owner_gid": APP_UID,
                    "permissions": ROOT_PERMISSIONS,
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def volume(self, name: str = STORE_VOLUME) -> dict[str, Any]:
        """The task-definition volume (pulumi-aws `TaskDefinitionVolumeArgs` as a dict).

        Mounted through the access point with the task role (`iam: ENABLED`), both of which need
        transit encryption (ECS API reference, "EFSAuthorizationConfig"). No `root_directory`:
        with an access point it must be omitted or "/", and the access point's path applies.
        """
        return {
            "name": name,
            "efs_volume_configuration": {
                "file_system_id": self.file_system_id,
                "transit_encryption": "ENABLED",
                "authorization_config": {"access_point_id": self.access_point_id, "iam": "ENABLED"},
            },
        }

    def capture_volume(self, name: str) -> dict[str, Any]:
        """The task-definition volume of `capture/` alone, through the capture access point."""
        point = self._capture_point()
        return {
            "name": name,
            "efs_volume_configuration": {
                "file_system_id": self.file_system_id,
                "transit_encryption": "ENABLED",
                "authorization_config": {"access_point_id": point.id, "iam": "ENABLED"},
            },
        }

    def allow_capture(
        self, name: str, role: aws.iam.Role, opts: pulumi.ResourceOptions
    ) -> aws.iam.RolePolicy:
        """`name`: the task role's inline policy to mount and write `capture/` through its
        access point, and nothing else of the store."""
        point = self._capture_point()
        policy = pulumi.Output.all(self.file_system_arn, point.arn).apply(
            lambda arns: json.dumps(
                policy_document(efs_client_statements(arns[0], arns[1], sid="MountCapture"))
            )
        )
        return aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=opts)

    def _capture_point(self) -> aws.efs.AccessPoint:
        if self.capture_access_point is None:
            raise ValueError(f"SharedStore {self._name}: declared without a capture access point")
        return self.capture_access_point

    def client_policy_statements(self, write: bool = True) -> pulumi.Output[list[dict[str, Any]]]:
        """IAM statements for a task role: mount (and, with `write`, write) via the access point."""
        return pulumi.Output.all(self.file_system_arn, self.access_point_arn).apply(
            lambda arns: efs_client_statements(arns[0], arns[1], write=write)
        )

    def client_policy(self, write: bool = True) -> pulumi.Output[str]:
        """`client_policy_statements` as a JSON policy document, for a task role's inline policy."""
        return self.client_policy_statements(write).apply(
            lambda statements: json.dumps(policy_document(statements))
        )

    def authorize_clients(
        self,
        role_arns: Sequence[pulumi.Input[str]],
        readers: Sequence[pulumi.Input[str]] = (),
        capture_writers: Sequence[pulumi.Input[str]] = (),
    ) -> None:
        """Declare the file system policy allowing exactly these task roles: `role_arns` to
        mount and write, `readers` to mount only, `capture_writers` to mount and write through
        the capture access point. Call it once.

        Per the EFS docs, a role named in the policy that is deleted and recreated under the
        same ARN is locked out; auto-named roles get a new ARN when replaced, which updates the
        policy. `bypass_policy_lockout_safety_check` stays false: the policy only denies non-TLS
        requests, which never locks out the deployer's (HTTPS) API calls.
        """
        if self._policy is not None:
            raise ValueError(f"SharedStore {self._name}: authorize_clients was already called")
        if not role_arns and not readers:
            raise ValueError(f"SharedStore {self._name}: authorize_clients needs a role ARN")
        count, read = len(role_arns), len(readers)
        capture = [self._capture_point().arn] if capture_writers else []
        policy = pulumi.Output.all(
            self.file_system_arn,
            self.access_point_arn,
            *role_arns,
            *readers,
            *capture,
            *capture_writers,
        ).apply(
            lambda values: json.dumps(
                efs_file_system_policy(
                    values[0],
                    values[1],
                    values[2 : 2 + count],
                    readers=values[2 + count : 2 + count + read],
                    capture=(
                        (values[2 + count + read], values[3 + count + read :])
                        if capture_writers
                        else None
                    ),
                )
            )
        )
        self._policy = aws.efs.FileSystemPolicy(
            f"{self._name}-policy",
            file_system_id=self.file_system_id,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _subnet(ids: list[str], index: int, expected: int, name: str) -> str:
    # A count mismatch would leave a task subnet without a mount target: fail the deploy instead.
    if len(ids) != expected:
        raise ValueError(f"SharedStore {name}: expected {expected} task subnets, got {len(ids)}")
    return ids[index]
