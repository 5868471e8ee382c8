"""`secrets` in `mlops:workload` (training, serving, sidecars, job): environment name -> a Secrets
Manager secret or an SSM parameter, which ECS injects at container start; and the refusal of a
credential written into plain config instead."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.settings._section import PROJECT, Section, as_map, fail
from mlops_contract import RESERVED_ENV, RESERVED_ENV_PREFIXES
from policy.checks import secret_value

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
SECRETS_MANAGER_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]+-"
    r"[A-Za-z0-9]{6}"
)
"""A secret's full ARN: its name and the six random characters Secrets Manager appends
(Secrets Manager User Guide, "Finding a secret from a partial ARN"), so IAM names exactly it."""
SSM_PARAMETER_ARN = re.compile(
    r"arn:aws[a-z-]*:ssm:(?P<region>[a-z0-9-]+):\d{12}:parameter/[A-Za-z0-9/_.-]{1,2048}"
)
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}")
VERSION_STAGE = re.compile(r"[A-Za-z0-9_+=.@-]{1,256}")
VERSION_ID = re.compile(r"[A-Za-z0-9-]{32,64}")

@dataclass(frozen=True)
class SecretRef:
    """One `secrets` entry: a Secrets Manager secret (whole, or one JSON key of it, at a version)
    or an SSM parameter, injected by ECS at container start as an environment variable."""

    arn: str
    key: str = ""
    """A JSON key inside the secret (Secrets Manager only)."""
    version_stage: str = ""
    version_id: str = ""
    kms_key: str = ""
    """The customer managed key that encrypts it, when not the AWS managed one."""

    @property
    def is_parameter(self) -> bool:
        return ":ssm:" in self.arn

    @property
    def value_from(self) -> str:
        """ECS `secrets[].valueFrom`: the parameter's ARN, or the secret's ARN followed by
        `:json-key:version-stage:version-id` when one of those is set (ECS Developer Guide,
        "Retrieve Secrets Manager secrets through environment variables": the valueFrom
        format; empty fields stay in place)."""
        if self.is_parameter or not (self.key or self.version_stage or self.version_id):
            return self.arn
        return f"{self.arn}:{self.key}:{self.version_stage}:{self.version_id}"


def no_secret(key: str, value: str) -> None:
    """Refuse a credential in plain config; the message never echoes it."""
    why = secret_value(value)
    if why is not None:
        raise pulumi.RunError(
            f"{PROJECT}:{key}: the value is not allowed; {why}, and plain config lands in the "
            "task definition for anyone who can read it: put it in Secrets Manager or SSM "
            "Parameter Store and name it under `secrets` (docs/configuration.md#secrets)"
        )


def parse_secrets(key: str, raw: Any, environment: Mapping[str, str]) -> dict[str, SecretRef]:
    """`secrets`: environment name -> a Secrets Manager secret's full ARN, an SSM parameter's
    ARN, or {arn, key, version_stage | version_id, kms_key}."""
    refs: dict[str, SecretRef] = {}
    for name, value in as_map(key, raw).items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise fail(where, name, "a variable name is [A-Z_][A-Z0-9_]*")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise fail(where, name, "the platform sets it")
        if name in environment:
            raise fail(where, name, "it is also in environment: a variable is one or the other")
        if isinstance(value, Mapping):
            s = Section(where.removeprefix(f"{PROJECT}:"), value, SecretRef)
            if "arn" not in value:
                raise fail(f"{where}.arn", None, "the secret's or parameter's ARN is required")
            ref = SecretRef(
                arn=value["arn"],
                key=s.str("key"),
                version_stage=s.str("version_stage", VERSION_STAGE, "a staging label: AWSCURRENT"),
                version_id=s.str("version_id", VERSION_ID, "a version id, 32-64 of [A-Za-z0-9-]"),
                kms_key=s.str(
                    "kms_key", KMS_KEY_ARN, "a KMS key ARN: arn:aws:kms:REGION:ACCOUNT:key/ID"
                ),
            )
        else:
            ref = SecretRef(arn=value)
        if not isinstance(ref.arn, str) or not (
            SECRETS_MANAGER_ARN.fullmatch(ref.arn) or SSM_PARAMETER_ARN.fullmatch(ref.arn)
        ):
            raise fail(
                where,
                ref.arn,
                "a Secrets Manager secret's full ARN (arn:aws:secretsmanager:REGION:ACCOUNT:"
                "secret:NAME-XXXXXX, with the six characters Secrets Manager appends) or an SSM "
                "parameter's ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME), or a map with arn "
                "and key, version_stage or version_id, kms_key",
            )
        if ref.is_parameter and (ref.key or ref.version_stage or ref.version_id):
            raise fail(where, dict(value), "key and versions apply to Secrets Manager secrets only")
        if ref.version_stage and ref.version_id:
            raise fail(where, dict(value), "give version_stage or version_id, not both")
        if ref.key and (":" in ref.key or not ref.key.strip()):
            raise fail(f"{where}.key", ref.key, "a JSON key of the secret, without ':'")
        refs[name] = ref
    return refs



