"""The shared store: EFS file-system policy and the client IAM statements."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from components.documents.common import deny_insecure_transport, policy_document

EFS_CLIENT_MOUNT = "elasticfilesystem:ClientMount"
EFS_CLIENT_WRITE = "elasticfilesystem:ClientWrite"


def _through_access_point(access_point_arn: str) -> dict[str, Any]:
    # Condition key and operator: EFS User Guide, "Using access points in IAM policies"
    # (`StringEquals` on `elasticfilesystem:AccessPointArn`, the ARN of the access point the
    # client mounts with).
    if ":access-point/fsap-" not in access_point_arn:
        raise ValueError(f"{access_point_arn!r} is not an EFS access point ARN")
    return {"StringEquals": {"elasticfilesystem:AccessPointArn": access_point_arn}}


def _check_file_system_arn(file_system_arn: str) -> None:
    if ":file-system/fs-" not in file_system_arn:
        raise ValueError(f"{file_system_arn!r} is not an EFS file system ARN")


def efs_file_system_policy(
    file_system_arn: str,
    access_point_arn: str,
    client_role_arns: Sequence[str],
    readers: Sequence[str] = (),
    capture: tuple[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The EFS file system policy: TLS only, and only the given roles, only via the access point.

    - Deny every action to everyone when `aws:SecureTransport` is false (EFS User Guide, "Using
      IAM to control access to file systems": the client condition keys).
    - Allow `ClientMount` and `ClientWrite` to `client_role_arns`, and `ClientMount` alone (a
      read-only mount) to `readers`, conditioned on the access point. No `ClientRootAccess`: the
      access point forces uid/gid 10001, so nobody needs root. Within one account a resource
      policy's allow is enough on its own (IAM User Guide, "Policy evaluation logic"), so a
      reader is left out of the write statement, not only out of its own role's policy.

    - `capture`: (the capture access point's ARN, roles): `ClientMount` and `ClientWrite` to those
      roles through that access point only (`capture/`, the serving task's capture proxy).

    Once a policy is set, the default policy (full access to any client that can reach a mount
    target) stops applying, so a client that is not named here cannot mount at all.
    """
    _check_file_system_arn(file_system_arn)
    writers = sorted(set(client_role_arns))  # stable order: no diff when callers reorder
    read_only = sorted(set(readers) - set(writers))
    capturers = sorted(set(capture[1])) if capture else []
    if not writers and not read_only:
        raise ValueError("the file system policy needs at least one client role ARN")
    for role in [*writers, *read_only, *capturers]:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role):
            raise ValueError(f"{role!r} is not an IAM role ARN")

    def allow(sid: str, roles: list[str], actions: Any, point: str) -> dict[str, Any]:
        return {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"AWS": roles},
            "Action": actions,
            "Resource": file_system_arn,
            "Condition": _through_access_point(point),
        }

    write = [EFS_CLIENT_MOUNT, EFS_CLIENT_WRITE]
    statements = [deny_insecure_transport("*", file_system_arn)]
    if writers:
        statements.append(allow("AllowClientsThroughAccessPoint", writers, write, access_point_arn))
    if read_only:
        statements.append(
            allow("AllowReadersThroughAccessPoint", read_only, EFS_CLIENT_MOUNT, access_point_arn)
        )
    if capture and capturers:
        statements.append(allow("AllowCaptureThroughItsAccessPoint", capturers, write, capture[0]))
    return policy_document(statements)


def efs_client_statements(
    file_system_arn: str, access_point_arn: str, write: bool = True, sid: str = "MountSharedStore"
) -> list[dict[str, Any]]:
    """The identity-policy statements a task role needs to mount the store with `iam: ENABLED`.

    ECS mounts with the task role when the volume's `authorizationConfig.iam` is ENABLED; the
    role needs `ClientMount` (read) and `ClientWrite` (write) on the file system ARN (EFS User
    Guide, "Using IAM to control access to file systems"), here only through the access point.
    """
    _check_file_system_arn(file_system_arn)
    actions = [EFS_CLIENT_MOUNT, EFS_CLIENT_WRITE] if write else [EFS_CLIENT_MOUNT]
    return [
        {
            "Sid": sid,
            "Effect": "Allow",
            "Action": actions,
            "Resource": file_system_arn,
            "Condition": _through_access_point(access_point_arn),
        }
    ]
