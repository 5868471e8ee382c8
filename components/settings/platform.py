"""The platform's sections: `mlops:network`, `image`, `store`, `protection`, `observability`
and `ci`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi

from components.aws_facts import EFS_IA_DAYS, LOG_RETENTION_DAYS
from components.settings._section import PROJECT, Section, cidr_block, fail


class Egress(StrEnum):
    """How tasks reach the internet (ECR, CloudWatch, package mirrors)."""

    PUBLIC_IP = "public-ip"  # no NAT: tasks run in public subnets with a public IP (cheap)
    SINGLE_NAT = "single-nat"  # one NAT gateway shared by every AZ
    NAT_PER_AZ = "nat-per-az"  # one NAT gateway per AZ: no cross-AZ dependency (safe)


class Throughput(StrEnum):
    """EFS throughput mode."""

    ELASTIC = "elastic"
    BURSTING = "bursting"


SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


OIDC_PROVIDER_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$"
)


GITHUB_ENVIRONMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str = "10.0.0.0/16"
    """VPC CIDR, a private IPv4 block from /16 to /20."""
    azs: int = 2
    """Availability zones: 2 or 3."""
    egress: Egress = Egress.PUBLIC_IP
    """public-ip (no NAT), single-nat or nat-per-az."""


@dataclass(frozen=True)
class ImageSettings:
    keep_images: int = 20
    """Tagged images the ECR lifecycle policy keeps."""
    pin: str = ""
    """"sha256:..." deploys that already-pushed image and builds nothing (image rollback)."""
    gpu_pin: str = ""
    """"sha256:..." of the gpu image; required with `pin` on a gpu-ec2 stack, else ""."""


@dataclass(frozen=True)
class StoreSettings:
    throughput: Throughput = Throughput.ELASTIC
    infrequent_access_after_days: int = 30
    """0 = never; else an EFS TransitionToIA value."""
    backups: bool = True
    protect: bool = False
    """Deprecated, the old spelling of `mlops:protection`: `true` switched on all three of its
    keys. Read only by the parser (settings/stack.py), which turns it into `protection`."""


@dataclass(frozen=True)
class ProtectionSettings:
    """`mlops:protection`: what a production stack must not lose or expose, one key a thing."""

    retain_on_destroy: bool = False
    """EFS file system Pulumi-protected, ECR repository not force-deleted, access-log bucket not
    force-destroyed, ALB deletion protection on."""
    require_https: bool = False
    """The stack is refused unless `inference.domain` or `inference.certificate_arn` is set."""
    rollback_on_alarm: bool = True
    """Deprecated: deployment alarms roll a deployment back in every stack. `false` is refused,
    since a failed deployment left up would keep serving a model nothing checked."""


@dataclass(frozen=True)
class ObservabilitySettings:
    log_retention_days: int = 7
    alarm_email: str = ""
    container_insights: bool = False
    """ECS Container Insights on the cluster (billed as custom metrics); also the tasks-below-min
    alarm, which reads its RunningTaskCount."""
    cloudwatch_dashboard: bool = False
    """A CloudWatch dashboard of the service ($3 a month beyond the free tier)."""
    alarm_topic_cmk: bool = True
    """Encrypt the alarm topic with a customer-managed KMS key ($1 a month). CloudWatch alarms
    cannot publish to a topic under the AWS-managed `aws/sns` key, so false means unencrypted."""


@dataclass(frozen=True)
class CiSettings:
    repository: str = ""
    """GitHub `owner/repo` whose Actions may preview and deploy this stack; "" = no CI trust."""
    oidc_provider_arn: str = ""
    """An existing GitHub OIDC provider in the account; "" = declare one (one per account)."""
    deploy_environment: str = ""
    """The GitHub environment whose jobs may deploy; "" = the stack's name."""


def parse_network(raw: Any) -> NetworkSettings:
    s = Section("network", raw, NetworkSettings)
    cidr = cidr_block(s.key("cidr"), s.raw.get("cidr", s.defaults["cidr"]))
    net = ipaddress.ip_network(cidr)
    if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 20:
        raise fail(s.key("cidr"), cidr, "the VPC needs a private IPv4 block from /16 to /20")
    return NetworkSettings(
        cidr=cidr,
        azs=s.int("azs", lo=2, hi=3),
        egress=s.enum("egress", Egress),
    )


def parse_image(raw: Any) -> ImageSettings:
    s = Section("image", raw, ImageSettings)
    return ImageSettings(
        keep_images=s.int("keep_images", lo=1, hi=1000),
        pin=s.str("pin", SHA256_DIGEST, 'it must be "" or "sha256:" followed by 64 hex digits'),
        gpu_pin=s.str(
            "gpu_pin", SHA256_DIGEST, 'it must be "" or "sha256:" followed by 64 hex digits'
        ),
    )


def parse_store(raw: Any) -> StoreSettings:
    s = Section("store", raw, StoreSettings)
    return StoreSettings(
        throughput=s.enum("throughput", Throughput),
        infrequent_access_after_days=s.choice(
            "infrequent_access_after_days", EFS_IA_DAYS, off=True
        ),
        backups=s.bool("backups"),
        protect=s.bool("protect"),
    )


def parse_protection(raw: Any) -> ProtectionSettings:
    s = Section("protection", raw, ProtectionSettings)
    return ProtectionSettings(
        retain_on_destroy=s.bool("retain_on_destroy"),
        require_https=s.bool("require_https"),
        rollback_on_alarm=_rollback_on_alarm(s),
    )


def _rollback_on_alarm(s: Section) -> bool:
    if not s.has("rollback_on_alarm"):
        return True
    if s.bool("rollback_on_alarm") is False:
        raise fail(
            s.key("rollback_on_alarm"),
            False,
            "deployment alarms roll every deployment back now (a failed rollout left up would "
            "serve a model nothing checked); remove the key",
        )
    pulumi.log.warn(
        f"{PROJECT}:{s.key('rollback_on_alarm')} is deprecated: deployment alarms roll back in "
        "every stack; remove the key"
    )
    return True


def parse_observability(raw: Any) -> ObservabilitySettings:
    s = Section("observability", raw, ObservabilitySettings)
    return ObservabilitySettings(
        log_retention_days=s.choice("log_retention_days", LOG_RETENTION_DAYS),
        alarm_email=s.str("alarm_email", EMAIL, 'it must be "" or an email address'),
        container_insights=s.bool("container_insights"),
        cloudwatch_dashboard=s.bool("cloudwatch_dashboard"),
        alarm_topic_cmk=s.bool("alarm_topic_cmk"),
    )


def parse_ci(raw: Any) -> CiSettings:
    s = Section("ci", raw, CiSettings)
    repository = s.str(
        "repository", GITHUB_REPOSITORY, 'it must be "" or a GitHub owner/repo like acme/mlops'
    )
    provider = s.str(
        "oidc_provider_arn",
        OIDC_PROVIDER_ARN,
        'it must be "" or arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com',
    )
    environment = s.str(
        "deploy_environment", GITHUB_ENVIRONMENT, "letters, digits, '.', '-' and '_'"
    )
    if provider and not repository:
        raise fail(s.key("oidc_provider_arn"), provider, "it only applies with ci.repository")
    return CiSettings(
        repository=repository, oidc_provider_arn=provider, deploy_environment=environment
    )
