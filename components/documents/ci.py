"""CI: the GitHub Actions OIDC trust and what the preview and deploy roles may do."""

from __future__ import annotations

import re
from typing import Any

from components.documents.common import IAM_VERSION

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"


def github_oidc_trust_policy(provider_arn: str, repository: str, subject: str) -> dict[str, Any]:
    """Trust policy for a role GitHub Actions assumes with its OIDC token.

    GitHub Docs, "Configuring OpenID Connect in Amazon Web Services": principal the account's
    `token.actions.githubusercontent.com` provider, action `sts:AssumeRoleWithWebIdentity`,
    `StringEquals` on the token's `aud` (`sts.amazonaws.com`) and `sub`. `subject` is the part
    after `repo:OWNER/REPO:`: `pull_request` for pull-request jobs, `environment:NAME` for jobs
    in a deployment environment ("OpenID Connect reference": subject claims).
    """
    if not re.fullmatch(
        rf"arn:aws[a-z-]*:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_OIDC_HOST)}", provider_arn
    ):
        raise ValueError(f"{provider_arn!r} is not the GitHub OIDC provider's ARN")
    if not re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", repository):
        raise ValueError(f"{repository!r} is not a GitHub owner/repo")
    if subject != "pull_request" and not re.fullmatch(r"environment:[A-Za-z0-9._-]+", subject):
        raise ValueError(f"subject {subject!r}: use pull_request or environment:NAME")
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:{subject}",
                    }
                },
            }
        ],
    }


def ci_preview_statements(
    region: str, account: str, repository_arn: str = ""
) -> list[dict[str, Any]]:
    """What `pulumi preview` of this program calls in AWS: the program's lookups, nothing else.

    A preview without `--refresh` reads no resource; it runs the program's invokes: caller
    identity (no permission needed), availability zones (awsx Vpc), the ECS GPU AMI parameter,
    the release tag lookup and the registry token (ImageRepo), and the Route 53 zone of
    `inference.domain`. Describe/List actions and GetAuthorizationToken take no resource ARN
    (Service Authorization Reference), hence "*" there.
    """
    if repository_arn and (":ecr:" not in repository_arn or ":repository/" not in repository_arn):
        raise ValueError(f"{repository_arn!r} is not an ECR repository ARN")
    lookup = [
        {
            # ImageRepo.release: ecr.get_repositories (DescribeRepositories without names: every
            # repository of the Region) and ecr.get_images (ListImages on ours).
            "Sid": "ReleaseTagLookup",
            "Effect": "Allow",
            "Action": ["ecr:DescribeRepositories", "ecr:ListImages", "ecr:DescribeImages"],
            "Resource": [repository_arn, f"arn:aws:ecr:{region}:{account}:repository/*"],
        }
    ]
    return [
        {
            "Sid": "ProgramLookups",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeAvailabilityZones",
                "ecr:GetAuthorizationToken",
                "route53:ListHostedZones",
                "route53:ListHostedZonesByName",
            ],
            "Resource": "*",
        },
        *(lookup if repository_arn else []),
        {
            "Sid": "GpuAmiParameter",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/ecs/*",
        },
        {
            "Sid": "HostedZoneLookup",
            "Effect": "Allow",
            "Action": ["route53:GetHostedZone", "route53:ListTagsForResource"],
            "Resource": "arn:aws:route53:::hostedzone/*",
        },
    ]


CI_DEPLOY_SERVICES = (
    "acm", "application-autoscaling", "autoscaling", "cloudwatch", "ec2", "ecr", "ecs",
    "elasticfilesystem", "elasticloadbalancing", "events", "kms", "logs", "route53", "s3",
    "sns", "sqs", "states", "wafv2", "backup", "lambda",
)  # fmt: skip
"""Every AWS service the program declares resources in (besides IAM, scoped on its own)."""


def ci_deploy_statements(region: str, account: str) -> list[dict[str, Any]]:
    """What `pulumi up` and `pulumi destroy` of this stack need: the services the program
    declares resources in, in this account and Region only, and IAM only on this stack's roles.

    Pulumi auto-names every resource, so names are not known before the deploy: the deploy role
    is scoped to the account and Region (every ARN pattern names them), IAM to roles and
    instance profiles whose auto-generated names start with a component prefix of this program,
    and `iam:PassRole` to the services the program hands roles to. Route 53 and S3 ARNs carry
    no account or Region by design (Service Authorization Reference). It cannot touch IAM users,
    other roles, Organizations or billing.
    """
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"{account!r} is not an AWS account id")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ValueError(f"{region!r} is not an AWS Region code")
    regional = [f"arn:aws:{service}:{region}:{account}:*" for service in CI_DEPLOY_SERVICES]
    prefixes = ("inference-", "training-", "cluster-", "image-", "store-", "monitoring-", "ci-")
    roles = [f"arn:aws:iam::{account}:role/{p}*" for p in prefixes]
    return [
        {
            "Sid": "DeployStackServices",
            "Effect": "Allow",
            "Action": [f"{service}:*" for service in CI_DEPLOY_SERVICES],
            "Resource": [
                *regional,
                "arn:aws:route53:::hostedzone/*",
                "arn:aws:route53:::change/*",
                "arn:aws:s3:::*",
            ],
        },
        {
            # Documented exception: Describe/List/Get-account actions take no resource ARN.
            "Sid": "DescribeEverywhere",
            "Effect": "Allow",
            "Action": [
                "ec2:Describe*",
                "ecr:GetAuthorizationToken",
                "elasticloadbalancing:Describe*",
                "autoscaling:Describe*",
                "application-autoscaling:Describe*",
                "cloudwatch:Describe*",
                "logs:Describe*",
                "route53:List*",
                "acm:ListCertificates",
                "kms:ListAliases",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "states:ListStateMachines",
                "wafv2:List*",
                "ecs:Describe*",
                "ecs:List*",
                "ecs:RegisterTaskDefinition",
                "ecs:DeregisterTaskDefinition",
                "ecs:CreateCapacityProvider",
                "ecs:CreateCluster",
                "kms:CreateKey",
            ],
            "Resource": "*",
        },
        {
            "Sid": "StackRoles",
            "Effect": "Allow",
            "Action": [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:TagInstanceProfile",
            ],
            "Resource": [
                *roles,
                *(f"arn:aws:iam::{account}:instance-profile/{p}*" for p in prefixes),
            ],
        },
        {
            "Sid": "PassStackRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": roles,
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": [
                        "ecs-tasks.amazonaws.com",
                        "ec2.amazonaws.com",
                        "states.amazonaws.com",
                        "events.amazonaws.com",
                        # The rollout functions' roles, and the roles ECS deploys the service
                        # with (load balancer, lifecycle hook): components/service_rollout.py.
                        "lambda.amazonaws.com",
                        "ecs.amazonaws.com",
                    ]
                }
            },
        },
        {
            # The service-linked roles ECS, Auto Scaling and ELB create on first use.
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": f"arn:aws:iam::{account}:role/aws-service-role/*",
        },
        {
            "Sid": "GithubOidcProvider",
            "Effect": "Allow",
            "Action": [
                "iam:GetOpenIDConnectProvider",
                "iam:CreateOpenIDConnectProvider",
                "iam:DeleteOpenIDConnectProvider",
                "iam:UpdateOpenIDConnectProviderThumbprint",
                "iam:TagOpenIDConnectProvider",
                "iam:AddClientIDToOpenIDConnectProvider",
            ],
            "Resource": f"arn:aws:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}",
        },
    ]
