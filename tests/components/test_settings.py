"""Stack config: every bad value is refused with the key, the value and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest
import yaml

from components.aws_facts import FARGATE_MEMORY
from components.cron import CronError, check_cron
from components.settings.pipeline import Capacity
from components.settings.platform import Egress, ProtectionSettings, Throughput
from components.settings.stack import Settings, parse
from preflight.offline import ROOT, run_stack


def stack_raw(stack: str) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("mlops:")}


def with_value(stack: str, section: str, key: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(stack_raw(stack))
    raw.setdefault(section, {})[key] = value
    return raw


def test_dev_stack_file_loads_cheap_settings():
    settings = parse(stack_raw("dev"), stack="dev")
    assert settings.network.azs == 2
    assert settings.network.egress is Egress.PUBLIC_IP
    assert settings.inference.on_demand_base == 0 and settings.inference.on_demand_weight == 0
    assert [s.name for s in settings.inference.schedules] == ["night", "morning"]
    assert settings.training.capacity is Capacity.FARGATE_SPOT
    assert settings.training.gpus == 0
    assert settings.observability.log_retention_days == 7
    assert settings.protection == ProtectionSettings(False, False, True)


def test_prod_stack_file_loads_safe_settings():
    settings = parse(stack_raw("prod"), stack="prod")
    assert settings.network.azs == 3
    assert settings.network.egress is Egress.NAT_PER_AZ
    assert settings.inference.on_demand_base >= 1 and settings.inference.spot_weight >= 1
    assert settings.training.capacity is Capacity.GPU_EC2 and settings.training_gpu
    assert settings.training.gpus == 1
    assert settings.observability.log_retention_days == 90
    assert settings.protection == ProtectionSettings(True, True, True)
    # HTTPS on a domain of the account's own zone: no placeholder certificate ARN.
    assert settings.https and settings.inference.domain and not settings.inference.certificate_arn
    assert settings.observability.container_insights and settings.observability.alarm_topic_cmk


def test_empty_config_gives_documented_defaults():
    settings = parse({})
    assert isinstance(settings, Settings)
    assert settings.network.cidr == "10.0.0.0/16"
    assert settings.store.throughput is Throughput.ELASTIC
    assert settings.store.infrequent_access_after_days == 30
    assert settings.inference.cpu == 512 and settings.inference.memory == 1024
    assert settings.training.schedule == "cron(0 3 * * ? *)"
    assert settings.image.keep_images == 20


def test_settings_are_frozen():
    settings = parse({})
    with pytest.raises(AttributeError):
        settings.network.azs = 3  # type: ignore[misc]


def test_gpu_ec2_defaults_to_one_gpu():
    raw = {
        "network": {"egress": "single-nat"},
        "training": {"capacity": "gpu-ec2", "cpu": 2048, "memory": 8192},
    }
    assert parse(raw).training.gpus == 1


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [(cpu, mem) for cpu, options in FARGATE_MEMORY.items() for mem in (options[0], options[-1])],
)
def test_every_published_fargate_pair_is_accepted(cpu, memory):
    settings = parse({"inference": {"cpu": cpu, "memory": memory, "desired": 1}})
    assert (settings.inference.cpu, settings.inference.memory) == (cpu, memory)


# (section, key, bad value, words the message must contain besides key and value)
REJECTED: list[tuple[str, str, Any, list[str]]] = [
    ("inference", "cpu", 300, ["256", "16384"]),
    ("inference", "memory", 512, ["cpu 512", "1024-4096"]),
    ("inference", "memory", 5120, ["cpu 512", "1024-4096"]),
    ("inference", "memory", 3000, ["cpu 512", "steps of 1024"]),
    ("training", "memory", 1024, ["cpu 1024", "2048-8192"]),
    ("training", "cpu", 3000, ["Fargate CPU"]),
    ("training", "gpus", 1, ["Fargate has no GPUs", "gpu-ec2"]),
    ("inference", "min", 5, ["max (4)"]),
    ("inference", "desired", 9, ["min..max (0..4)"]),
    ("inference", "desired", -1, ["from 0"]),
    ("inference", "max", 0, ["from 1"]),
    ("inference", "on_demand_base", -2, ["from 0"]),
    ("inference", "spot_weight", -1, ["from 0"]),
    ("inference", "cpu_target", 100, ["10 to 95"]),
    ("training", "schedule", "cron(0 3 * * * *)", ["'?'"]),
    ("training", "schedule", "cron(0 3 ? * ? *)", ["'?'"]),
    ("training", "schedule", "cron(0 3 * *)", ["6 fields, got 4"]),
    ("training", "schedule", "0 3 * * ? *", ["cron(min hour"]),
    ("training", "schedule", "cron(61 3 * * ? *)", ["minutes", "0-59"]),
    ("training", "schedule", "cron(0 25 * * ? *)", ["hours", "0-23"]),
    ("training", "schedule", "cron(0 3 ? * FUNDAY *)", ["day-of-week"]),
    ("training", "schedule", "rate(1 hours)", ["singular"]),
    ("training", "schedule", "rate(0 minutes)", ["positive"]),
    ("network", "cidr", "10.0.0.0/33", ["CIDR block"]),
    ("network", "cidr", "10.0.0.1/16", ["CIDR block", "host bits"]),
    ("network", "cidr", "8.8.0.0/16", ["private IPv4"]),
    ("network", "cidr", "10.0.0.0/24", ["/16 to /20"]),
    ("network", "azs", 1, ["from 2 to 3"]),
    ("network", "azs", 4, ["from 2 to 3"]),
    ("network", "egress", "nat", ["public-ip, single-nat, nat-per-az"]),
    ("training", "capacity", "gpu", ["fargate, fargate-spot, gpu-ec2"]),
    ("store", "throughput", "provisioned", ["elastic, bursting"]),
    ("observability", "log_retention_days", 10, ["7, 14", "3653"]),
    ("store", "infrequent_access_after_days", 45, ["0 (never) or 1, 7", "30, 60"]),
    ("image", "pin", "sha256:abc", ['"sha256:" followed by 64 hex digits']),
    ("image", "pin", "latest", ['"sha256:" followed by 64 hex digits']),
    ("image", "keep_images", 0, ["from 1"]),
    ("inference", "certificate_arn", "my-cert", ["ACM certificate ARN"]),
    ("observability", "alarm_email", "oncall", ["email address"]),
    ("inference", "waf", "yes", ["true or false"]),
    ("inference", "cpu", "512", ["integer"]),
    ("inference", "allowed_cidrs", ["0.0.0.0/0", "10.1.2.3/8"], ["allowed_cidrs[1]", "CIDR"]),
    ("inference", "allowed_cidrs", [], ["at least one CIDR"]),
    ("training", "promote_margin", 1.5, ["below 1.0"]),
]


@pytest.mark.parametrize(("section", "key", "value", "words"), REJECTED)
def test_bad_value_is_refused_naming_key_value_and_allowed(section, key, value, words):
    with pytest.raises(pulumi.RunError) as caught:
        parse(with_value("dev", section, key, value))
    message = str(caught.value)
    assert message.startswith(f"mlops:{section}.{key}")
    if not isinstance(value, list):
        assert repr(value) in message
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_weights_all_zero_are_refused():
    raw = with_value("dev", "inference", "spot_weight", 0)
    with pytest.raises(pulumi.RunError, match=r"mlops:inference.spot_weight: 0 .*both be 0"):
        parse(raw)


def test_non_gpu_instance_type_for_gpu_ec2_is_refused():
    raw = with_value("prod", "training", "gpu_instance_types", ["g5.xlarge", "m5.large"])
    with pytest.raises(pulumi.RunError) as caught:
        parse(raw)
    message = str(caught.value)
    assert "mlops:training.gpu_instance_types[1]" in message
    assert "'m5.large'" in message and "NVIDIA GPU instance type" in message


def test_arm_gpu_instance_type_is_refused_for_an_amd64_image():
    raw = with_value("prod", "training", "gpu_instance_types", ["g5g.xlarge"])
    with pytest.raises(pulumi.RunError, match=r"gpu_instance_types\[0\]: 'g5g.xlarge'"):
        parse(raw)


def test_more_gpus_than_the_instance_has_are_refused():
    raw = with_value("prod", "training", "gpus", 4)
    with pytest.raises(pulumi.RunError, match=r"mlops:training.gpus: 4 .*g5.xlarge has 1 GPU"):
        parse(raw)


def test_training_memory_beyond_the_gpu_instance_is_refused():
    raw = with_value("prod", "training", "memory", 16384)
    with pytest.raises(pulumi.RunError, match=r"mlops:training.memory: 16384 .*15360 MiB"):
        parse(raw)


def test_gpu_training_without_nat_is_refused():
    raw = with_value("prod", "network", "egress", "public-ip")
    with pytest.raises(pulumi.RunError) as caught:
        parse(raw)
    assert "mlops:training.capacity: 'gpu-ec2'" in str(caught.value)
    assert "single-nat or nat-per-az" in str(caught.value)


def test_unknown_key_suggests_the_nearest_name():
    raw = with_value("dev", "inference", "desird", 2)
    with pytest.raises(pulumi.RunError) as caught:
        parse(raw)
    assert "mlops:inference.desird: unknown key; did you mean `desired`?" in str(caught.value)


def test_unknown_section_suggests_the_nearest_name():
    raw = stack_raw("dev")
    raw["trainng"] = raw.pop("training")
    with pytest.raises(pulumi.RunError, match=r"mlops:trainng: .*did you mean `mlops:training`"):
        parse(raw)


def test_section_that_is_not_a_map_is_refused():
    with pytest.raises(pulumi.RunError, match=r"mlops:network: 'big' .*map of keys"):
        parse({"network": "big"})


def test_bad_schedule_entry_names_its_index():
    raw = with_value(
        "dev",
        "inference",
        "schedules",
        [
            {"name": "night", "cron": "cron(0 20 * * ? *)", "min": 0, "max": 0},
            {"name": "morning", "cron": "cron(0 7 * * MON-FRI *)", "min": 1, "max": 4},
        ],
    )
    with pytest.raises(pulumi.RunError) as caught:
        parse(raw)
    assert str(caught.value).startswith("mlops:inference.schedules[1].cron")
    assert "'cron(0 7 * * MON-FRI *)'" in str(caught.value)


def test_schedule_with_min_above_max_is_refused():
    raw = with_value(
        "dev",
        "inference",
        "schedules",
        [{"name": "peak", "cron": "cron(0 9 ? * MON-FRI *)", "min": 5, "max": 2}],
    )
    with pytest.raises(pulumi.RunError, match=r"schedules\[0\].min: 5 .*max \(2\)"):
        parse(raw)


def test_duplicate_schedule_names_are_refused():
    entry = {"name": "night", "cron": "cron(0 20 * * ? *)", "min": 0, "max": 0}
    raw = with_value("dev", "inference", "schedules", [entry, entry])
    with pytest.raises(pulumi.RunError, match="schedule names must be unique"):
        parse(raw)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 * * ? *)",
        "cron(0 7 ? * MON-FRI *)",
        "cron(0/15 * * * ? *)",
        "cron(0 18 L * ? *)",
        "cron(0 12 ? * 6#3 *)",
        "cron(30 2 1,15 JAN-JUN ? 2027)",
        "rate(1 day)",
        "rate(6 hours)",
    ],
)
def test_valid_schedule_expressions_pass(expression):
    assert check_cron(expression) == expression


def test_at_expressions_only_for_scaling_schedules():
    assert check_cron("at(2026-12-24T18:00:00)", allow_at=True)
    with pytest.raises(CronError, match=r"rate\(N minute"):
        check_cron("at(2026-12-24T18:00:00)")


def test_a_refused_schedule_names_its_config_key():
    raw = with_value("dev", "training", "schedule", "cron(0 3 * * *)")
    with pytest.raises(
        pulumi.RunError,
        match=r"mlops:training.schedule: 'cron\(0 3 \* \* \*\)' "
        r"is not allowed; cron\(\) needs 6 fields, got 5",
    ):
        parse(raw)


def test_empty_schedule_disables_retraining():
    raw = with_value("dev", "training", "schedule", "")
    assert parse(raw).training.schedule == ""


def test_config_error_stops_the_program_before_any_resource():
    with pytest.raises(pulumi.RunError, match=r"mlops:inference.cpu: 300"):
        run_stack("dev", {"inference": {"cpu": 300}})


GPU_PIN = "sha256:" + "b" * 64


def test_pinned_gpu_stack_needs_a_gpu_digest_too():
    raw = with_value("prod", "image", "pin", "sha256:" + "a" * 64)
    with pytest.raises(pulumi.RunError) as caught:
        parse(raw)
    message = str(caught.value)
    assert message.startswith("mlops:image.gpu_pin: ''")
    assert "gpu-ec2 stack pinned with image.pin" in message
    raw["image"]["gpu_pin"] = GPU_PIN
    assert parse(raw).image.gpu_pin == GPU_PIN


def test_gpu_pin_is_refused_without_pin_or_without_gpu_training():
    with pytest.raises(pulumi.RunError, match=r"mlops:image.gpu_pin: 'sha256:b+' .*image.pin"):
        parse(with_value("prod", "image", "gpu_pin", GPU_PIN))
    raw = with_value("dev", "image", "gpu_pin", GPU_PIN)
    raw["image"]["pin"] = "sha256:" + "a" * 64
    with pytest.raises(pulumi.RunError, match=r"mlops:image.gpu_pin: .*fargate-spot"):
        parse(raw)


def test_gpu_pin_must_be_a_digest():
    with pytest.raises(pulumi.RunError, match=r"mlops:image.gpu_pin: 'latest' .*64 hex digits"):
        parse(with_value("prod", "image", "gpu_pin", "latest"))


# ------------------------------------------------------------- HTTPS, per-stack choices, CI


def test_require_https_without_domain_or_certificate_names_both_keys():
    raw = with_value("prod", "inference", "domain", "")
    raw["inference"]["hosted_zone"] = ""
    with pytest.raises(pulumi.RunError) as raised:
        parse(raw, stack="prod")
    message = str(raised.value)
    assert "mlops:inference.domain" in message and "mlops:inference.certificate_arn" in message


def test_a_domain_and_a_certificate_together_are_refused():
    raw = with_value(
        "prod",
        "inference",
        "certificate_arn",
        "arn:aws:acm:us-east-1:111122223333:certificate/0f4b4c2e-8a35-4c1e-9d59-6c1d1b2a7e10",
    )
    with pytest.raises(pulumi.RunError, match=r"mlops:inference\.domain.*not both"):
        parse(raw, stack="prod")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("domain", "Not A Name", "lowercase DNS name"),
        ("domain", "example.com", "apex domain needs inference.hosted_zone"),
        ("hosted_zone", "other.org", "must contain inference.domain"),
    ],
)
def test_bad_domain_settings_are_refused(key, value, message):
    raw = with_value("prod", "inference", "hosted_zone", "")
    raw["inference"][key] = value
    with pytest.raises(pulumi.RunError, match=message):
        parse(raw, stack="prod")


def test_the_zone_defaults_to_the_domains_parent():
    raw = with_value("prod", "inference", "hosted_zone", "")
    assert parse(raw, stack="prod").inference.hosted_zone == "mlops.example.com"


def test_stack_files_carry_no_placeholder_arns():
    for stack in ("dev", "prod"):
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        assert "arn:aws" not in text, stack


def test_observability_choices_default_to_the_cheap_ones_but_the_cmk():
    settings = parse({}, stack="x")
    assert settings.observability.container_insights is False
    assert settings.observability.cloudwatch_dashboard is False
    assert settings.observability.alarm_topic_cmk is True  # secure by default; dev opts out


GITHUB_PROVIDER = "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"repository": "not a repo"}, r"mlops:ci\.repository"),
        ({"repository": "acme/mlops", "oidc_provider_arn": "arn:aws:iam::1:oidc"}, "oidc-provider"),
        (
            {"oidc_provider_arn": GITHUB_PROVIDER},
            "only applies with ci.repository",
        ),
        ({"repository": "acme/mlops", "deploy_environment": "a b"}, "deploy_environment"),
        ({"repositry": "acme/mlops"}, "did you mean `repository`"),
    ],
)
def test_bad_ci_settings_are_refused(values, message):
    with pytest.raises(pulumi.RunError, match=message):
        parse({"ci": values}, stack="dev")
