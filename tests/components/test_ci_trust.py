"""CiTrust: GitHub Actions OIDC trust as code, built alone under mocks and as plain documents."""

from __future__ import annotations

import json

import pytest

from components.documents.ci import github_oidc_trust_policy
from preflight.offline import ACCOUNT, REGION, Plan, run_stack
from tests.components.conftest import Built

ROLE = "aws:iam/role:Role"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
REPOSITORY = "acme/mlops"
# GitHub Docs, "Configuring OpenID Connect in Amazon Web Services": the provider URL, the
# audience, and the claims the trust policy conditions on; "OpenID Connect reference": the
# `sub` of a pull-request job and of a job in an environment.
GITHUB_PROVIDER_URL = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "sts.amazonaws.com"
PR_SUBJECT = f"repo:{REPOSITORY}:pull_request"
ENV_SUBJECT = f"repo:{REPOSITORY}:environment:dev"
EXISTING = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture
def with_ci(build) -> Built:
    """CiTrust alone (and the image repository it is given) on dev with a repository set."""
    return build("ci_trust", "dev", {"ci": {"repository": REPOSITORY}})


def trust(plan: Plan | Built, role: str) -> dict:
    (statement,) = json.loads(plan.one(ROLE, f"ci-{role}-role").inputs["assumeRolePolicy"])[
        "Statement"
    ]
    return statement


def policy(plan: Plan | Built, name: str) -> list[dict]:
    return json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])["Statement"]


def test_no_ci_trust_unless_a_repository_is_set(plan: Plan):
    assert not [r for r in plan.resources if r.name.startswith("ci")]
    assert "ci_deploy_role_arn" not in plan.exports


def test_the_github_provider_is_declared_with_the_sts_audience(with_ci: Built):
    provider = with_ci.one(PROVIDER)
    assert provider.inputs["url"] == GITHUB_PROVIDER_URL
    assert provider.inputs["clientIdLists"] == [GITHUB_AUDIENCE]


def test_pull_requests_may_only_preview_and_the_environment_may_deploy(with_ci: Built):
    provider = with_ci.one(PROVIDER).outputs["arn"]
    for role, subject in (("preview", PR_SUBJECT), ("deploy", ENV_SUBJECT)):
        statement = trust(with_ci, role)
        assert statement["Principal"] == {"Federated": provider}
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": GITHUB_AUDIENCE,
                "token.actions.githubusercontent.com:sub": subject,
            }
        }


def test_the_program_exports_both_role_arns_when_a_repository_is_set():
    plan = run_stack("dev", {"ci": {"repository": REPOSITORY}})
    assert plan.exports["ci_preview_role_arn"] == plan.one(ROLE, "ci-preview").outputs["arn"]
    assert plan.exports["ci_deploy_role_arn"] == plan.one(ROLE, "ci-deploy").outputs["arn"]


def test_preview_reads_only_what_the_programs_lookups_need(with_ci: Built):
    statements = policy(with_ci, "ci-preview-policy")
    actions = {a for s in statements for a in s["Action"]}
    assert all(a.split(":")[1].startswith(("Describe", "Get", "List")) for a in actions)
    repository = with_ci.plan.one("aws:ecr/repository:Repository", "image-repo").outputs["arn"]
    lookup = next(s for s in statements if "ecr:ListImages" in s["Action"])
    assert repository in lookup["Resource"]
    for statement in statements:
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            assert (
                resource == "*"
                or f":{REGION}:" in resource
                or resource.startswith("arn:aws:route53:::")
            ), resource


def test_deploy_is_scoped_to_this_account_region_and_the_programs_roles(with_ci: Built):
    statements = {s["Sid"]: s for s in policy(with_ci, "ci-deploy-policy")}
    for resource in statements["DeployStackServices"]["Resource"]:
        assert f":{REGION}:{ACCOUNT}:" in resource or resource.startswith(
            ("arn:aws:route53:::", "arn:aws:s3:::")
        )
    for resource in statements["StackRoles"]["Resource"]:
        assert resource.startswith(f"arn:aws:iam::{ACCOUNT}:")
        assert resource.split("/", 1)[1].endswith("-*")
    passed = statements["PassStackRoles"]["Condition"]["StringEquals"]["iam:PassedToService"]
    assert set(passed) == {
        "ecs-tasks.amazonaws.com",
        "ec2.amazonaws.com",
        "states.amazonaws.com",
        "events.amazonaws.com",
        "lambda.amazonaws.com",
        "ecs.amazonaws.com",
    }
    assert not [a for s in statements.values() for a in docs_actions(s) if a in ("*", "iam:*")]


def docs_actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def test_an_existing_provider_is_reused_not_declared(build):
    plan = build(
        "ci_trust", "dev", {"ci": {"repository": REPOSITORY, "oidc_provider_arn": EXISTING}}
    )
    assert plan.of_type(PROVIDER) == []
    assert trust(plan, "deploy")["Principal"] == {"Federated": EXISTING}


def test_the_deploy_environment_can_be_named(build):
    plan = build(
        "ci_trust", "dev", {"ci": {"repository": REPOSITORY, "deploy_environment": "staging"}}
    )
    subject = trust(plan, "deploy")["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"
    ]
    assert subject == f"repo:{REPOSITORY}:environment:staging"


@pytest.mark.parametrize(
    ("provider", "repository", "subject"),
    [
        ("arn:aws:iam::123456789012:oidc-provider/example.com", REPOSITORY, "pull_request"),
        (EXISTING, "acme", "pull_request"),
        (EXISTING, REPOSITORY, "ref:refs/heads/main"),
    ],
)
def test_trust_policy_refuses_bad_input(provider, repository, subject):
    with pytest.raises(ValueError):
        github_oidc_trust_policy(provider, repository, subject)
