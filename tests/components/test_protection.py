"""`mlops:protection`: each key switches what docs/configuration.md#protection says, and only
that; `store.protect`, the old spelling, still sets retain_on_destroy and require_https, with a
deprecation message. `rollback_on_alarm` is deprecated: deployment alarms roll back in every
stack, so `false` is refused naming the key."""

from __future__ import annotations

import pulumi
import pytest

from components.settings.platform import ProtectionSettings
from components.settings.stack import parse
from preflight.offline import Plan
from tests.components.test_settings import stack_raw

FS = "aws:efs/fileSystem:FileSystem"
REPO = "aws:ecr/repository:Repository"
ALB = "aws:lb/loadBalancer:LoadBalancer"
BUCKET = "aws:s3/bucket:Bucket"
SERVICE = "aws:ecs/service:Service"


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: said.append(message))
    return said


@pytest.mark.parametrize("old", [True, False])
def test_store_protect_sets_every_protection_key_and_says_it_is_deprecated(old, warnings):
    raw = stack_raw("prod")
    del raw["protection"]
    raw["store"]["protect"] = old
    settings = parse(raw, stack="prod")
    assert settings.protection == ProtectionSettings(old, old, True)
    assert len(warnings) == 1
    assert "mlops:store.protect is deprecated" in warnings[0]
    assert "protection.retain_on_destroy and require_https" in warnings[0]


def test_the_new_keys_alone_say_nothing(warnings):
    assert parse(stack_raw("prod"), stack="prod").protection == ProtectionSettings(True, True, True)
    assert warnings == []


def test_store_protect_agreeing_with_the_protection_keys_is_accepted(warnings):
    raw = stack_raw("prod")
    raw["store"]["protect"] = True
    assert parse(raw, stack="prod").protection == ProtectionSettings(True, True, True)


def test_store_protect_disagreeing_with_a_protection_key_is_refused_naming_both():
    raw = stack_raw("prod")
    raw["store"]["protect"] = True
    raw["protection"]["retain_on_destroy"] = False
    with pytest.raises(
        pulumi.RunError,
        match=r"mlops:protection\.retain_on_destroy: False is not allowed; it disagrees with the "
        r"deprecated store\.protect: true",
    ):
        parse(raw, stack="prod")


def test_rollback_on_alarm_false_is_refused_and_true_is_deprecated(warnings):
    raw = stack_raw("dev")
    raw["protection"] = {"rollback_on_alarm": False}
    with pytest.raises(
        pulumi.RunError,
        match=r"mlops:protection\.rollback_on_alarm: False is not allowed; deployment alarms "
        r"roll every deployment back now",
    ):
        parse(raw)
    raw["protection"] = {"rollback_on_alarm": True}
    assert parse(raw).protection.rollback_on_alarm is True
    assert warnings == [
        "mlops:protection.rollback_on_alarm is deprecated: deployment alarms roll back in every "
        "stack; remove the key"
    ]


def test_require_https_alone_refuses_a_plain_http_stack():
    raw = stack_raw("dev")
    raw["protection"] = {"require_https": True}
    with pytest.raises(pulumi.RunError, match=r"protection\.require_https: true"):
        parse(raw)
    raw["protection"] = {"retain_on_destroy": True}
    assert not parse(raw).https  # the other key does not ask for HTTPS


def test_a_protection_key_must_be_a_bool():
    raw = stack_raw("dev")
    raw["protection"] = {"retain_on_destroy": "yes"}
    with pytest.raises(pulumi.RunError, match=r"mlops:protection\.retain_on_destroy: 'yes'"):
        parse(raw)


@pytest.fixture
def retain_only(build) -> Plan:
    """The inference service and its neighbours (store, image repository, load balancer) on dev,
    access logs on, with only `retain_on_destroy`."""
    overrides = {"protection": {"retain_on_destroy": True}, "inference": {"access_logs": True}}
    return build("inference_service", "dev", overrides).plan


@pytest.fixture
def unprotected(build) -> Plan:
    """The same with no protection key at all."""
    overrides = {"protection": {}, "inference": {"access_logs": True}}
    return build("inference_service", "dev", overrides).plan


def test_retain_on_destroy_keeps_the_data_and_the_edge_and_nothing_else(retain_only: Plan):
    assert retain_only.one(FS, "store-fs").protect is True
    assert retain_only.one(REPO, "image-repo").inputs["forceDelete"] is False
    assert retain_only.one(BUCKET, "access-logs").inputs["forceDestroy"] is False
    assert retain_only.one(ALB, "alb").inputs["enableDeletionProtection"] is True


def test_without_protection_nothing_is_retained_and_alarms_still_roll_back(unprotected: Plan):
    assert unprotected.one(SERVICE).inputs["alarms"]["rollback"] is True
    assert unprotected.one(FS, "store-fs").protect is False
    assert unprotected.one(REPO, "image-repo").inputs["forceDelete"] is True
    assert unprotected.one(BUCKET, "access-logs").inputs["forceDestroy"] is True
    assert unprotected.one(ALB, "alb").inputs["enableDeletionProtection"] is False
