"""CiTrust: GitHub Actions may preview and deploy this stack, with no long-lived AWS keys.

Creates, as children of the component (only when `mlops:ci.repository` is set):

- `<name>-github-oidc`: the account's IAM OIDC provider for
  `https://token.actions.githubusercontent.com` (audience `sts.amazonaws.com`), unless
  `ci.oidc_provider_arn` names an existing one (IAM allows one provider per URL and account, so a
  second stack in the same account reuses the first one's);
- `<name>-preview-role` (+ `-preview-policy`): assumed by the repository's pull-request jobs
  (`sub` `repo:OWNER/REPO:pull_request`); only the lookups `pulumi preview` of this program makes
  (documents.py `ci_preview_statements`);
- `<name>-deploy-role` (+ `-deploy-policy`): assumed only by jobs of the repository's deployment
  environment (`sub` `repo:OWNER/REPO:environment:<ci.deploy_environment or the stack>`, which
  carries the required reviewers); what `pulumi up`/`destroy` of this stack needs, in this
  account and Region, IAM only on this program's roles (documents.py `ci_deploy_statements`), and
  only on roles that carry the stack's permissions boundary (permissions_boundary.py
  `deploy_statements`). Both roles carry that boundary, like every role of the stack.

GitHub Docs, "Configuring OpenID Connect in Amazon Web Services": the provider, audience and
trust conditions. The provider needs no thumbprint: for GitHub, IAM validates the token with its
own library of trusted root CAs (pulumi-aws `iam.OpenIdConnectProvider`, `thumbprint_lists`).
The workflows read the role ARNs from this stack's outputs (`ci_preview_role_arn`,
`ci_deploy_role_arn`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.documents.ci import (
    GITHUB_OIDC_AUDIENCE,
    GITHUB_OIDC_HOST,
    ci_deploy_statements,
    ci_preview_statements,
    github_oidc_trust_policy,
)
from components.documents.common import policy_document
from components.permissions_boundary import deploy_statements
from components.settings.platform import CiSettings

MAX_SESSION_SECONDS = 3600
"""One hour: a deploy job's timeout (60 min in .github/workflows/deploy.yml)."""


@dataclass
class CiTrustArgs:
    ci: CiSettings
    """`mlops:ci`: repository, oidc_provider_arn, deploy_environment."""
    stack: str
    """The stack's name: the default deploy environment."""
    region: str
    repository_arn: pulumi.Input[str] | None
    """The release image repository: the preview looks release tags up there (the platform's,
    for a stack that builds no image of its own; None when the stack builds none at all)."""
    permissions_boundary_arn: pulumi.Input[str]
    """The stack's boundary: the deploy role changes only roles that carry it."""


class CiTrust(pulumi.ComponentResource):
    provider_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: CiTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:CiTrust", name, None, opts)
        ci = args.ci
        if not ci.repository:
            raise ValueError(f"CiTrust {name}: mlops:ci.repository is not set")
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))

        if ci.oidc_provider_arn:
            provider_arn: pulumi.Output[str] = pulumi.Output.from_input(ci.oidc_provider_arn)
        else:
            provider_arn = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_lists=[GITHUB_OIDC_AUDIENCE],
                opts=child,
            ).arn

        environment = ci.deploy_environment or args.stack
        roles = {}
        for role, subject, description in (
            ("preview", "pull_request", "pulumi preview of this stack from pull requests"),
            ("deploy", f"environment:{environment}", f"pulumi up of this stack ({environment})"),
        ):
            roles[role] = aws.iam.Role(
                f"{name}-{role}-role",
                assume_role_policy=provider_arn.apply(
                    lambda arn, s=subject: json.dumps(
                        github_oidc_trust_policy(arn, ci.repository, s)
                    )
                ),
                description=f"GitHub Actions of {ci.repository}: {description}",
                max_session_duration=MAX_SESSION_SECONDS,
                opts=child,
            )
        aws.iam.RolePolicy(
            f"{name}-preview-policy",
            role=roles["preview"].id,
            policy=pulumi.Output.all(account.account_id, args.repository_arn or "").apply(
                lambda v: json.dumps(
                    policy_document(ci_preview_statements(args.region, v[0], v[1]))
                )
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-deploy-policy",
            role=roles["deploy"].id,
            policy=pulumi.Output.all(account.account_id, args.permissions_boundary_arn).apply(
                lambda v: json.dumps(
                    policy_document(
                        deploy_statements(ci_deploy_statements(args.region, v[0]), v[1])
                    )
                )
            ),
            opts=child,
        )

        self.provider_arn = provider_arn
        self.preview_role_arn = roles["preview"].arn
        self.deploy_role_arn = roles["deploy"].arn
        self.register_outputs(
            {
                "provider_arn": self.provider_arn,
                "preview_role_arn": self.preview_role_arn,
                "deploy_role_arn": self.deploy_role_arn,
            }
        )
