"""Security: KMS customer managed keys and Secrets Manager secrets. IAM (roles, policies,
instance profiles, the CI's OIDC provider) and KMS aliases cost nothing.

Prices (`preflight/prices.py`): `kms_key_month` (aws.amazon.com/kms/pricing, customer managed
key; its requests are not priced), `secret_month` (aws.amazon.com/secrets-manager/pricing).
"""

from __future__ import annotations

from preflight.costs.core import Ledger, resources_of
from preflight.offline import Plan

KMS_KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"

PRICED = frozenset({KMS_KEY, SECRET})
FREE = frozenset(
    {
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/serviceLinkedRole:ServiceLinkedRole",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:kms/alias:Alias",
    }
)


def kms_keys(plan: Plan, ledger: Ledger) -> None:
    for key in resources_of(plan, KMS_KEY):
        ledger.add(key, "KMS customer managed key", 1, "kms_key_month")


def secrets(plan: Plan, ledger: Ledger) -> None:
    for secret in resources_of(plan, SECRET):
        ledger.add(secret, "secret", 1, "secret_month")
