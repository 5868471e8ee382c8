"""The neighbours a component test builds its one component with.

Each component takes its own config sections and the components it builds on. `BUILDERS[name]`
declares one component the way `__main__.py` does, from a stack's config, with only the
neighbours its args name (a TrainingTask gets a network, a store, a cluster, an image repository
and an alarm topic; no load balancer, no monitoring), so a component test evaluates that much
and no more. The neighbours are the real components: their outputs are what the mocks give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from components.alarm_topic import AlarmTopic, AlarmTopicArgs
from components.ci_trust import CiTrust, CiTrustArgs
from components.cluster import Cluster, ClusterArgs
from components.image_repo import ImageRepo, ImageRepoArgs
from components.inference_service import InferenceService, InferenceServiceArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.permissions_boundary import PermissionsBoundary, PermissionsBoundaryArgs
from components.settings.stack import Settings, parse
from components.shared_store import SharedStore, SharedStoreArgs
from components.training_task import TrainingTask, TrainingTaskArgs
from preflight.offline import stack_config


def settings_for(stack: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """The stack file's `mlops:*` config with `overrides` merged key by key, parsed."""
    config = stack_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("mlops:")}
    for section, values in (overrides or {}).items():
        raw[section] = _merged(raw.get(section) or {}, values)
    return parse(raw, stack=stack, region=config["aws:region"])


def _merged(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, Mapping):
        return {**base, **{k: _merged(base.get(k), v) for k, v in extra.items()}}
    return extra


def network(s: Settings) -> Network:
    return Network("network", NetworkArgs(settings=s.network))


def store(s: Settings, net: Network) -> SharedStore:
    return SharedStore(
        "store",
        SharedStoreArgs(
            settings=s.store,
            vpc_id=net.vpc_id,
            subnet_ids=net.task_subnet_ids,
            subnet_count=s.network.azs,
            retain_on_destroy=s.protection.retain_on_destroy,
        ),
    )


def cluster(s: Settings, net: Network, shared: SharedStore) -> Cluster:
    return Cluster(
        "cluster",
        ClusterArgs(
            network=net,
            gpu_instance_security_group_ids=[shared.client_security_group_id],
            container_insights=s.observability.container_insights,
            gpu_training=s.training if s.training_gpu else None,
            gpu_serving=s.inference.gpu if s.serving_gpu else None,
        ),
    )


def image_repo(s: Settings) -> ImageRepo:
    return ImageRepo(
        "image",
        ImageRepoArgs(
            stack=s.stack,
            image=s.image,
            flavours=s.image_flavours,
            retain_on_destroy=s.protection.retain_on_destroy,
        ),
    )


def _with_release(s: Settings) -> ImageRepo:
    """The repository with its images released (an unreleased repository's outputs never
    resolve, as in __main__.py, where `release` is always called)."""
    images = image_repo(s)
    images.release(after=[])
    return images


def alarm_topic(s: Settings) -> AlarmTopic:
    return AlarmTopic(
        "inference-alarms",
        AlarmTopicArgs(
            customer_managed_key=s.observability.alarm_topic_cmk,
            email=s.observability.alarm_email,
        ),
    )


def load_balancer(s: Settings, net: Network) -> LoadBalancer:
    return LoadBalancer(
        "inference",
        LoadBalancerArgs(
            inference=s.inference,
            network=net,
            https=s.https,
            region=s.region,
            vpc_cidr=s.network.cidr,
            log_retention_days=s.observability.log_retention_days,
            retain_on_destroy=s.protection.retain_on_destroy,
            serving=s.workload.serving,
            sidecars=s.sidecars,
        ),
    )


def inference_service(s: Settings) -> InferenceService:
    net = network(s)
    shared = store(s, net)
    images = _with_release(s)
    return InferenceService(
        "inference",
        InferenceServiceArgs(
            stack=s.stack,
            region=s.region,
            inference=s.inference,
            gpu=s.serving_gpu,
            network=net,
            cluster=cluster(s, net, shared),
            store=shared,
            load_balancer=load_balancer(s, net),
            alarm_topic=alarm_topic(s),
            image_ref=images.image_ref("gpu" if s.serving_gpu else "cpu"),
            repository_arns=[images.repository_arn],
            log_retention_days=s.observability.log_retention_days,
            container_insights=s.observability.container_insights,
            cloudwatch_dashboard=s.observability.cloudwatch_dashboard,
            rollback_on_alarm=s.protection.rollback_on_alarm,
            serving=s.workload.serving,
            sidecars=s.sidecars,
            security=s.workload.security,
        ),
    )


def training_task(s: Settings) -> TrainingTask:
    net = network(s)
    shared = store(s, net)
    images = image_repo(s)
    training = TrainingTask(
        "training",
        TrainingTaskArgs(
            stack=s.stack,
            region=s.region,
            training=s.training,
            gpu=s.training_gpu,
            log_retention_days=s.observability.log_retention_days,
            network=net,
            cluster=cluster(s, net, shared),
            store=shared,
            image_repo=images,
            alarm_topic=alarm_topic(s),
            train=s.workload.training,
            steps=s.workload.steps,
            security=s.workload.security,
        ),
    )
    images.release(after=training.image_triggers)
    return training


def monitoring(s: Settings) -> Monitoring:
    net = network(s)
    shared = store(s, net)
    images = _with_release(s)
    return Monitoring(
        "monitoring",
        MonitoringArgs(
            stack=s.stack,
            region=s.region,
            monitoring=s.monitoring,
            log_retention_days=s.observability.log_retention_days,
            network=net,
            cluster=cluster(s, net, shared),
            store=shared,
            image_repo=images,
            job=s.workload.job,
            security=s.workload.security,
            repository_arns=[images.repository_arn],
        ),
    )


def ci_trust(s: Settings) -> CiTrust:
    images = _with_release(s)
    boundary = PermissionsBoundary(
        "boundary",
        PermissionsBoundaryArgs(project=pulumi.get_project(), stack=s.stack, region=s.region),
    )
    return CiTrust(
        "ci",
        CiTrustArgs(
            ci=s.ci,
            stack=s.stack,
            region=s.region,
            repository_arn=images.repository_arn,
            permissions_boundary_arn=boundary.arn,
        ),
    )


BUILDERS: dict[str, tuple[str, str, Callable[[Settings], pulumi.ComponentResource]]] = {
    # key: (the component's type token, its name, what declares it with its neighbours)
    "network": ("mlops:index:Network", "network", network),
    "store": ("mlops:index:SharedStore", "store", lambda s: store(s, network(s))),
    "cluster": (
        "mlops:index:Cluster",
        "cluster",
        lambda s: (lambda net: cluster(s, net, store(s, net)))(network(s)),
    ),
    "image_repo": ("mlops:index:ImageRepo", "image", _with_release),
    "alarm_topic": ("mlops:index:AlarmTopic", "inference-alarms", alarm_topic),
    "load_balancer": (
        "mlops:index:LoadBalancer",
        "inference",
        lambda s: load_balancer(s, network(s)),
    ),
    "inference_service": ("mlops:index:InferenceService", "inference", inference_service),
    "training_task": ("mlops:index:TrainingTask", "training", training_task),
    "monitoring": ("mlops:index:Monitoring", "monitoring", monitoring),
    "ci_trust": ("mlops:index:CiTrust", "ci", ci_trust),
}
