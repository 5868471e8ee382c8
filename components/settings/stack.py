"""The typed stack config: parsed once, validated completely, frozen.

Every key lives under the project namespace as structured YAML (`mlops:network`, `mlops:inference`,
...). `load()` reads the Pulumi config; `parse()` is the pure part, so tests feed it plain dicts.
Any bad value raises `pulumi.RunError` naming the key, the bad value and what is allowed, before a
single resource is declared. Nothing outside this package reads `pulumi.Config`. Each section's
dataclass and parser live in `platform`, `serving` and `pipeline`; this module joins them and
makes the decisions that span sections (GPU use, image flavours, protection)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.settings._section import PROJECT, fail
from components.settings.artifacts import ArtifactsSettings, check_export, parse_artifacts
from components.settings.capture import check_capture_port
from components.settings.legacy import apply_deprecated, pop_deprecated
from components.settings.model_monitor import check_channel
from components.settings.pipeline import (
    Capacity,
    MonitoringSettings,
    TrainingSettings,
    parse_monitoring,
    parse_training,
)
from components.settings.platform import (
    CiSettings,
    Egress,
    ImageSettings,
    NetworkSettings,
    ObservabilitySettings,
    ProtectionSettings,
    StoreSettings,
    parse_ci,
    parse_image,
    parse_network,
    parse_observability,
    parse_protection,
    parse_store,
)
from components.settings.rollout import check_samples_need_test_traffic
from components.settings.serving import InferenceSettings, ServingCapacity, parse_inference
from components.settings.workload import SidecarSpec, WorkloadSpec, parse_workload


@dataclass(frozen=True)
class Settings:
    """The whole stack config."""

    stack: str
    region: str
    network: NetworkSettings = field(default_factory=NetworkSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    ci: CiSettings = field(default_factory=CiSettings)
    protection: ProtectionSettings = field(default_factory=ProtectionSettings)
    artifacts: ArtifactsSettings = field(default_factory=ArtifactsSettings)
    workload: WorkloadSpec = field(default_factory=lambda: parse_workload(None))

    # The decisions that span sections, made here once; components take their answers as
    # arguments and never read `capacity` themselves.

    @property
    def https(self) -> bool:
        """The load balancer serves HTTPS (an existing certificate or a domain to certify)."""
        return bool(self.inference.certificate_arn or self.inference.domain)

    @property
    def training_gpu(self) -> bool:
        """The train step runs on the cluster's GPU EC2 capacity (`training.capacity: gpu-ec2`)."""
        return self.training.capacity is Capacity.GPU_EC2

    @property
    def serving_gpu(self) -> bool:
        """The service runs on its GPU EC2 capacity (`inference.capacity: gpu-ec2`); a
        training-only workload (`workload.serving: null`) has no service."""
        return (
            self.inference.capacity is ServingCapacity.GPU_EC2 and self.workload.serving is not None
        )

    @property
    def sidecars(self) -> tuple[SidecarSpec, ...]:
        """The workload's sidecars deployed: `inference.dashboard: false` leaves out those
        served under a path (the web UIs behind the load balancer)."""
        return tuple(
            c for c in self.workload.sidecars if self.inference.dashboard or c.path is None
        )

    @property
    def image_flavours(self) -> tuple[str, ...]:
        """The image flavours built and kept: `gpu` (CUDA base, CUDA-enabled XGBoost) only when
        something runs on GPU EC2."""
        return ("cpu", "gpu") if self.training_gpu or self.serving_gpu else ("cpu",)


SECTIONS: dict[str, type] = {
    "network": NetworkSettings,
    "image": ImageSettings,
    "store": StoreSettings,
    "inference": InferenceSettings,
    "training": TrainingSettings,
    "monitoring": MonitoringSettings,
    "observability": ObservabilitySettings,
    "ci": CiSettings,
    "protection": ProtectionSettings,
    "artifacts": ArtifactsSettings,
    "workload": WorkloadSpec,
}


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "network": parse_network,
    "image": parse_image,
    "store": parse_store,
    "inference": parse_inference,
    "training": parse_training,
    "monitoring": parse_monitoring,
    "observability": parse_observability,
    "ci": parse_ci,
    "protection": parse_protection,
    "artifacts": parse_artifacts,
}


def parse(raw: Mapping[str, Any], stack: str = "dev", region: str = "us-east-1") -> Settings:
    """Validate the `mlops:*` config (section name -> structured value) into `Settings`."""
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, list(SECTIONS), n=1)
            hint = f"did you mean `{PROJECT}:{close[0]}`? " if close else ""
            raise pulumi.RunError(
                f"{PROJECT}:{section}: unknown config key; {hint}known keys: "
                + ", ".join(f"{PROJECT}:{s}" for s in SECTIONS)
            )
    raw, moved = pop_deprecated(raw)
    values = {name: parser(raw.get(name)) for name, parser in _PARSERS.items()}
    values["workload"] = apply_deprecated(parse_workload(raw.get("workload")), moved)
    values["protection"] = _old_protect(raw, values["protection"])
    settings = Settings(stack=stack, region=region, **values)
    if settings.training_gpu and settings.network.egress is Egress.PUBLIC_IP:
        # GPU instances run in private subnets without public IPs; with no NAT they could not
        # reach ECS, ECR or CloudWatch and would never register with the cluster.
        raise fail(
            "training.capacity",
            "gpu-ec2",
            "gpu-ec2 needs mlops:network.egress single-nat or nat-per-az (GPU instances run in "
            "private subnets), got public-ip",
        )
    if settings.serving_gpu and settings.network.egress is Egress.PUBLIC_IP:
        # awsvpc tasks on EC2 get no public IP (ECS Developer Guide, "Amazon ECS task networking
        # options for the EC2 launch type"): without NAT they cannot pull the image or log.
        raise fail(
            "inference.capacity",
            "gpu-ec2",
            "gpu-ec2 needs mlops:network.egress single-nat or nat-per-az (tasks on EC2 get no "
            "public IP, so they reach ECR and CloudWatch through NAT), got public-ip",
        )
    _check_pins(settings)
    if settings.workload.serving is not None and settings.workload.serving.samples:
        check_samples_need_test_traffic(
            settings.inference.rollout, settings.workload.serving.samples
        )
        if settings.inference.certificate_arn and not settings.inference.domain:
            # The hook calls the load balancer by its DNS name, which that certificate does not
            # name: TLS verification would fail every sample.
            raise fail(
                "workload.serving.samples",
                f"<{len(settings.workload.serving.samples)} sample(s)>",
                "the sample check reaches the service at inference.domain; with "
                "inference.certificate_arn alone it has no name the certificate covers: set "
                "inference.domain too, or leave out the samples",
            )
    serving = settings.workload.serving
    if serving is not None:
        check_capture_port(
            settings.inference.capture,
            {
                "workload.serving.port": serving.port,
                "workload.serving.internal_port": serving.internal_port,
                **{f"workload.sidecars.{car.name}.port": car.port for car in settings.sidecars},
            },
        )
    check_channel(settings.monitoring.model_monitor, settings.workload.training.channels)
    check_export(raw.get("artifacts"), workload_gates="gate" in settings.workload.steps)
    if settings.workload.image.location and settings.image.pin:
        raise fail(
            "image.pin",
            settings.image.pin,
            'workload.image.location already names the image by digest; leave image.pin ""',
        )
    if settings.protection.require_https and not settings.https:
        raise pulumi.RunError(
            f"{PROJECT}:inference.domain: '' and {PROJECT}:inference.certificate_arn: '' are not "
            "allowed with protection.require_https: true; set inference.domain to a name "
            "in a Route 53 public zone of this account (a DNS-validated certificate is issued) "
            "or inference.certificate_arn to an existing ACM certificate in "
            f"{settings.region}"
        )
    return settings


def _old_protect(raw: Mapping[str, Any], protection: ProtectionSettings) -> ProtectionSettings:
    """`store.protect`, the deprecated spelling: `true` or `false` sets all three `protection`
    keys. Given with `protection`, every protection key set must agree with it."""
    store = raw.get("store")
    if not isinstance(store, Mapping) or "protect" not in store:
        return protection
    old = store["protect"]  # a bool: parse_store checked it
    given = raw.get("protection") or {}
    for key, value in given.items():
        if key != "rollback_on_alarm" and value != old:
            raise fail(
                f"protection.{key}",
                value,
                f"it disagrees with the deprecated store.protect: {str(old).lower()}, which sets "
                "every protection key; remove store.protect and keep the protection keys",
            )
    pulumi.log.warn(
        f"{PROJECT}:store.protect is deprecated: it sets {PROJECT}:protection.retain_on_destroy "
        f"and require_https, both {str(old).lower()}; set those keys instead "
        "(docs/configuration.md#protection)"
    )
    return ProtectionSettings(retain_on_destroy=old, require_https=old)


def _check_pins(settings: Settings) -> None:
    """A pinned (rollback) stack builds nothing, so every flavour it runs needs its own digest:
    the cpu image has no CUDA-enabled XGBoost, and one digest cannot be both flavours."""
    image = settings.image
    gpu_image = "gpu" in settings.image_flavours
    if image.gpu_pin and not gpu_image:
        raise fail(
            "image.gpu_pin",
            image.gpu_pin,
            f"only a gpu-ec2 stack runs the gpu image (training.capacity is "
            f"{settings.training.capacity.value}, inference.capacity "
            f'{settings.inference.capacity.value}); leave it ""',
        )
    if image.gpu_pin and not image.pin:
        raise fail(
            "image.gpu_pin", image.gpu_pin, "it only applies with image.pin; set both or neither"
        )
    if image.pin and gpu_image and not image.gpu_pin:
        raise fail(
            "image.gpu_pin",
            image.gpu_pin,
            "a gpu-ec2 stack pinned with image.pin also needs the gpu image's digest "
            '("sha256:" followed by 64 hex digits, an image tagged gpu-...)',
        )


def _config_keys() -> set[str]:
    """Every config key the engine handed the program, e.g. `mlops:network`.

    `pulumi.Config` cannot enumerate keys, and rejecting unknown ones needs the full list. The
    Python language host stores the config in `pulumi.runtime.config` (or, in older engines, in
    the PULUMI_CONFIG environment variable), so read both.
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def load() -> Settings:
    """Read and validate this stack's config. The only reader of `pulumi.Config` in the program."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    for key in sorted(_config_keys()):
        namespace, _, name = key.partition(":")
        if namespace != PROJECT:
            continue
        try:
            raw[name] = config.get_object(name)
        except json.JSONDecodeError:
            raw[name] = config.get(name)
    region = pulumi.Config("aws").get("region") or ""
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise pulumi.RunError(f"aws:region: {region!r} is not allowed; set one, e.g. us-east-1")
    return parse(raw, stack=pulumi.get_stack(), region=region)
