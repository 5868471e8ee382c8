"""Documented IAM facts the policy tests check against, transcribed, not derived from the code.

Actions and their condition keys: AWS Service Authorization Reference, "Actions, resources, and
condition keys for AWS services", one page per service prefix
(https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
IAM (list_identityandaccessmanagement.html), Amazon ECS (list_amazonelasticcontainerservice.html),
Amazon EventBridge (list_amazoneventbridge.html), Amazon EFS (list_amazonelasticfilesystem.html),
and the pages of the other prefixes below. The rollout's rows (2026-12-07): ECS's service and
service-deployment actions, Elastic Load Balancing V2's listener, rule and target actions (the
managed policy AmazonECSInfrastructureRolePolicyForLoadBalancers names them), lambda:InvokeFunction.
Transcribed 2026-12-03 for the actions this program's
policies name. Every action name was checked against the machine-readable copy of the reference
in github.com/iann0036/iam-dataset (2026-08-22: the actions its managed policies expand to), and
the IAM rows' condition keys against its `aws/iam_definition.json`; the ECS, EventBridge and EFS
keys come from the pages the program's builders cite (EFS User Guide, "Using access points in IAM
policies"; EventBridge User Guide, "Using IAM policy conditions in Amazon EventBridge"). Only
what the tests need: a prefix lists enough actions to check every name and wildcard the program
uses, not every action of the service.
"""

from __future__ import annotations

IAM_VERSION = "2012-10-17"
"""IAM User Guide, "IAM JSON policy elements: Version": the current policy language version."""

EFFECTS = ("Allow", "Deny")
"""IAM User Guide, "IAM JSON policy elements: Effect"."""

CONDITION_OPERATORS = (
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "ArnEquals",
    "ArnLike",
    "Bool",
)
"""The operators this program uses, of IAM User Guide, "IAM JSON policy elements: Condition
operators"."""

DOCUMENTED_ACTIONS: dict[str, frozenset[str]] = {
    "acm": frozenset({"ListCertificates", "RequestCertificate", "DescribeCertificate"}),
    "application-autoscaling": frozenset(
        {"DescribeScalableTargets", "DescribeScalingPolicies", "RegisterScalableTarget"}
    ),
    "autoscaling": frozenset({"DescribeAutoScalingGroups", "CreateAutoScalingGroup"}),
    "backup": frozenset({"CreateBackupPlan", "CreateBackupVault", "CreateBackupSelection"}),
    "cloudwatch": frozenset({"DescribeAlarms", "PutMetricAlarm", "PutDashboard"}),
    "ec2": frozenset({"DescribeAvailabilityZones", "DescribeTags", "CreateSecurityGroup"}),
    "ecr": frozenset(
        {
            "BatchCheckLayerAvailability",
            "BatchGetImage",
            "DescribeImages",
            "DescribeRepositories",
            "GetAuthorizationToken",
            "GetDownloadUrlForLayer",
            "ListImages",
        }
    ),
    "ecs": frozenset(
        {
            "CreateCapacityProvider",
            "CreateCluster",
            "DeregisterContainerInstance",
            "DeregisterTaskDefinition",
            "DescribeClusters",
            "DescribeServiceDeployments",
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeTasks",
            "DiscoverPollEndpoint",
            "ListClusters",
            "ListServiceDeployments",
            "ListTagsForResource",
            "Poll",
            "RegisterContainerInstance",
            "RegisterTaskDefinition",
            "RunTask",
            "StartTelemetrySession",
            "StopServiceDeployment",
            "StopTask",
            "SubmitAttachmentStateChanges",
            "SubmitContainerStateChange",
            "SubmitTaskStateChange",
            "TagResource",
            "UpdateContainerInstancesState",
            "UpdateService",
        }
    ),
    "elasticfilesystem": frozenset({"ClientMount", "ClientWrite", "CreateFileSystem"}),
    "elasticloadbalancing": frozenset(
        {
            "CreateLoadBalancer",
            "DeregisterTargets",
            "DescribeListeners",
            "DescribeLoadBalancers",
            "DescribeRules",
            "DescribeTargetGroups",
            "DescribeTargetHealth",
            "ModifyListener",
            "ModifyRule",
            "RegisterTargets",
        }
    ),
    "events": frozenset({"DescribeRule", "PutEvents", "PutRule", "PutTargets"}),
    "kms": frozenset(
        {
            "CreateKey",
            "Decrypt",
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "ListAliases",
        }
    ),
    "lambda": frozenset({"CreateFunction", "InvokeFunction"}),
    "logs": frozenset(
        {
            "CreateLogDelivery",
            "CreateLogStream",
            "DeleteLogDelivery",
            "DescribeLogGroups",
            "DescribeResourcePolicies",
            "GetLogDelivery",
            "ListLogDeliveries",
            "PutLogEvents",
            "PutResourcePolicy",
            "UpdateLogDelivery",
        }
    ),
    "route53": frozenset(
        {"GetHostedZone", "ListHostedZones", "ListHostedZonesByName", "ListTagsForResource"}
    ),
    "s3": frozenset({"CreateBucket", "PutBucketPolicy"}),
    "sns": frozenset({"Publish", "CreateTopic"}),
    "sqs": frozenset({"CreateQueue", "SetQueueAttributes"}),
    "ssm": frozenset({"GetParameter", "GetParameters"}),
    "states": frozenset({"ListStateMachines", "StartExecution", "CreateStateMachine"}),
    "wafv2": frozenset({"ListWebACLs", "CreateWebACL"}),
    "xray": frozenset(
        {"GetSamplingRules", "GetSamplingTargets", "PutTelemetryRecords", "PutTraceSegments"}
    ),
    "iam": frozenset(
        {
            "AddClientIDToOpenIDConnectProvider",
            "AddRoleToInstanceProfile",
            "AttachRolePolicy",
            "AttachUserPolicy",
            "CreateInstanceProfile",
            "CreateOpenIDConnectProvider",
            "CreatePolicy",
            "CreatePolicyVersion",
            "CreateRole",
            "CreateServiceLinkedRole",
            "CreateUser",
            "DeleteInstanceProfile",
            "DeleteOpenIDConnectProvider",
            "DeletePolicy",
            "DeletePolicyVersion",
            "DeleteRole",
            "DeleteRolePermissionsBoundary",
            "DeleteRolePolicy",
            "DeleteUserPermissionsBoundary",
            "DeleteUserPolicy",
            "DetachRolePolicy",
            "DetachUserPolicy",
            "GetInstanceProfile",
            "GetOpenIDConnectProvider",
            "GetPolicy",
            "GetPolicyVersion",
            "GetRole",
            "GetRolePolicy",
            "ListAttachedRolePolicies",
            "ListInstanceProfilesForRole",
            "ListPolicyVersions",
            "ListRolePolicies",
            "PassRole",
            "PutRolePermissionsBoundary",
            "PutRolePolicy",
            "PutUserPermissionsBoundary",
            "PutUserPolicy",
            "RemoveRoleFromInstanceProfile",
            "SetDefaultPolicyVersion",
            "TagInstanceProfile",
            "TagOpenIDConnectProvider",
            "TagRole",
            "UntagRole",
            "UpdateAssumeRolePolicy",
            "UpdateOpenIDConnectProviderThumbprint",
            "UpdateRole",
        }
    ),
}

# IAM actions whose row lists `iam:PermissionsBoundary` in the IAM actions table (the other IAM
# actions above do not: TagRole, UntagRole, GetRolePolicy, ListRolePolicies,
# ListAttachedRolePolicies, ListInstanceProfilesForRole, PassRole, the instance-profile, OIDC
# provider and managed-policy actions).
_BOUNDARY = "iam:PermissionsBoundary"
_WITH_BOUNDARY_KEY = (
    "AttachRolePolicy",
    "AttachUserPolicy",
    "CreateRole",
    "CreateUser",
    "DeleteRole",
    "DeleteRolePermissionsBoundary",
    "DeleteRolePolicy",
    "DeleteUserPermissionsBoundary",
    "DeleteUserPolicy",
    "DetachRolePolicy",
    "DetachUserPolicy",
    "GetRole",
    "PutRolePermissionsBoundary",
    "PutRolePolicy",
    "PutUserPermissionsBoundary",
    "PutUserPolicy",
    "UpdateAssumeRolePolicy",
    "UpdateRole",
)

ACTION_CONDITION_KEYS: dict[str, frozenset[str]] = {
    **{f"iam:{a}": frozenset({_BOUNDARY}) for a in _WITH_BOUNDARY_KEY},
    # IAM User Guide, "IAM and AWS STS condition context keys": iam:PassedToService and
    # iam:AssociatedResourceArn apply to PassRole only.
    "iam:PassRole": frozenset({"iam:PassedToService", "iam:AssociatedResourceArn"}),
    # Amazon ECS: RunTask filters by the cluster the task runs in; TagResource by the API
    # action that creates the resource it tags.
    "ecs:RunTask": frozenset({"ecs:cluster"}),
    "ecs:TagResource": frozenset({"ecs:CreateAction"}),
    # Amazon EventBridge: PutEvents filters by the event's source and detail-type.
    "events:PutEvents": frozenset({"events:source", "events:detail-type"}),
    # Amazon EFS: client access filters by the access point the mount uses.
    "elasticfilesystem:ClientMount": frozenset({"elasticfilesystem:AccessPointArn"}),
    "elasticfilesystem:ClientWrite": frozenset({"elasticfilesystem:AccessPointArn"}),
}

GLOBAL_CONDITION_KEYS = frozenset(
    {"aws:SourceAccount", "aws:SourceArn", "aws:SecureTransport", "aws:RequestedRegion"}
)
"""IAM User Guide, "AWS global condition context keys" (the ones a policy here may use)."""

ECS_INSTANCE_ROLE_ACTIONS = (
    "ec2:DescribeTags",
    "ecs:CreateCluster",
    "ecs:DeregisterContainerInstance",
    "ecs:DiscoverPollEndpoint",
    "ecs:Poll",
    "ecs:RegisterContainerInstance",
    "ecs:StartTelemetrySession",
    "ecs:UpdateContainerInstancesState",
    "ecs:Submit*",
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "ecs:TagResource",
    "ecs:ListTagsForResource",
)
"""AWS Managed Policy Reference, `AmazonEC2ContainerServiceforEC2Role` (the GPU instance role's
one attachment): every action of its current version."""
