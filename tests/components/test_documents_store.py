"""The EFS file system policy and the client IAM statements, without Pulumi."""

from __future__ import annotations

import json

import pytest

from components.documents.store import efs_client_statements, efs_file_system_policy

FS = "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-0123456789abcdef0"
AP = "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0123456789abcdef0"
API_ROLE = "arn:aws:iam::123456789012:role/inference-task-role-1a2b3c"
TRAIN_ROLE = "arn:aws:iam::123456789012:role/training-task-role-4d5e6f"


def _statement(policy: dict, sid: str) -> dict:
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def test_policy_denies_every_request_without_tls():
    policy = efs_file_system_policy(FS, AP, [API_ROLE])
    deny = _statement(policy, "DenyInsecureTransport")
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"AWS": "*"}
    assert deny["Action"] == "*"
    assert deny["Resource"] == FS
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_policy_allows_only_the_roles_only_through_the_access_point():
    policy = efs_file_system_policy(FS, AP, [TRAIN_ROLE, API_ROLE, API_ROLE])
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert len(allows) == 1
    allow = allows[0]
    assert allow["Principal"] == {"AWS": sorted([API_ROLE, TRAIN_ROLE])}
    assert allow["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert allow["Resource"] == FS
    assert allow["Condition"] == {"StringEquals": {"elasticfilesystem:AccessPointArn": AP}}


def test_policy_never_grants_root_access():
    text = json.dumps(efs_file_system_policy(FS, AP, [API_ROLE, TRAIN_ROLE]))
    assert "ClientRootAccess" not in text


def test_policy_does_not_depend_on_the_order_of_the_roles():
    assert efs_file_system_policy(FS, AP, [API_ROLE, TRAIN_ROLE]) == efs_file_system_policy(
        FS, AP, [TRAIN_ROLE, API_ROLE]
    )


def test_policy_is_a_versioned_document_within_the_efs_size_limit():
    policy = efs_file_system_policy(FS, AP, [API_ROLE, TRAIN_ROLE])
    assert policy["Version"] == "2012-10-17"
    assert len(json.dumps(policy)) < 20_000  # EFS file system policies: 20,000 characters


@pytest.mark.parametrize(
    ("file_system", "access_point", "roles", "message"),
    [
        (FS, AP, [], "at least one client role"),
        (FS, AP, ["*"], "not an IAM role ARN"),
        (FS, AP, ["arn:aws:iam::123456789012:user/ci"], "not an IAM role ARN"),
        (AP, AP, [API_ROLE], "not an EFS file system ARN"),
        (FS, FS, [API_ROLE], "not an EFS access point ARN"),
    ],
)
def test_policy_rejects_bad_input(file_system, access_point, roles, message):
    with pytest.raises(ValueError, match=message):
        efs_file_system_policy(file_system, access_point, roles)


def test_client_statements_mount_and_write_through_the_access_point():
    (statement,) = efs_client_statements(FS, AP)
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == [
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
    ]
    assert statement["Resource"] == FS
    assert statement["Condition"] == {"StringEquals": {"elasticfilesystem:AccessPointArn": AP}}


def test_read_only_client_statements_only_mount():
    (statement,) = efs_client_statements(FS, AP, write=False)
    assert statement["Action"] == ["elasticfilesystem:ClientMount"]


def test_client_statements_reject_a_wildcard_resource():
    with pytest.raises(ValueError, match="not an EFS file system ARN"):
        efs_client_statements("*", AP)
