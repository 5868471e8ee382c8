"""The stack's wiring: which components the parsed settings declare, and what each one takes.

`wire(settings)` declares the whole stack (`__main__.py` calls it, then exports). A test asks a
`Wiring` for one component (`Wiring(settings).training`) and gets it with exactly the neighbours
it takes, each declared on first use, then calls `finish()`: the same code path as the program,
so there is no second copy of the wiring to drift.

The decisions that span sections (components/settings/decisions.py: what is staged, whether the
workload mounts the store, who gates, where each task runs) are made once, in `Wiring.decisions`,
and handed to the components as plain values.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pulumi

from components.alarm_topic import AlarmTopic, AlarmTopicArgs
from components.ci_trust import CiTrust, CiTrustArgs
from components.cluster import Cluster, ClusterArgs
from components.image_repo import ImageRepo, ImageRepoArgs
from components.inference_service import InferenceService, InferenceServiceArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.model_artifacts import ModelArtifacts, ModelArtifactsArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.permissions_boundary import PermissionsBoundary, PermissionsBoundaryArgs
from components.settings.capture import CAPTURE_PORT
from components.settings.decisions import Decisions, Gatekeeper, decide
from components.settings.platform import ImageSettings
from components.settings.stack import Settings
from components.settings.workload import ROOT
from components.shared_store import SharedStore, SharedStoreArgs
from components.training_s3 import ArtifactExport
from components.training_task import (
    ModelRollout,
    PlatformGate,
    TrainingTask,
    TrainingTaskArgs,
)


class Wiring:
    """The components of one stack, each declared on first use from the settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.decisions: Decisions = decide(settings)
        # First: every role declared after this carries the stack's permissions boundary.
        self.boundary = PermissionsBoundary(
            "boundary",
            PermissionsBoundaryArgs(
                project=pulumi.get_project(),
                stack=settings.stack,
                region=settings.region,
                secrets=settings.workload.secrets,
            ),
        )
        self.boundary.attach_to_every_role()
        self._finished = False

    # ------------------------------------------------------------------------ the foundations

    @cached_property
    def network(self) -> Network:
        return Network("network", NetworkArgs(settings=self.settings.network))

    @cached_property
    def images(self) -> ImageRepo | None:
        """The stack's own repository and the images it builds; None for an image built
        elsewhere (`workload.image.location`): no repository, nothing pushed, no push rule."""
        s = self.settings
        build = s.workload.image.build
        if build is None:
            return None
        return ImageRepo(
            "image",
            ImageRepoArgs(
                stack=s.stack,
                image=s.image,
                flavours=s.image_flavours,
                retain_on_destroy=s.protection.retain_on_destroy,
                context=ROOT / build.context,
                dockerfile=build.dockerfile,
                build_args=build.args,
                gpu_build_args=build.gpu_args,
            ),
        )

    def image_ref(self, flavour: str) -> pulumi.Input[str]:
        """The workload's image by digest: the stack's release, or the one `location` names."""
        if self.images is None:
            return pulumi.Output.from_input(self.settings.workload.image.location)
        return self.images.image_ref(flavour)

    @cached_property
    def platform_images(self) -> ImageRepo | None:
        """The platform's own image (platform/), built like the workload's into its own
        repository, where it stages /opt/ml around the workload or gates."""
        if not self.decisions.platform_image:
            return None
        s = self.settings
        return ImageRepo(
            "platform-image",
            ImageRepoArgs(
                stack=s.stack,
                image=ImageSettings(keep_images=s.image.keep_images),
                flavours=("cpu",),
                retain_on_destroy=s.protection.retain_on_destroy,
                context=ROOT / "platform",
                suffix="-platform",
            ),
        )

    @property
    def platform_image(self) -> pulumi.Output[str] | None:
        return self.platform_images.image_ref("cpu") if self.platform_images else None

    @cached_property
    def pull_from(self) -> list[pulumi.Input[str]]:
        """The ECR repositories the execution roles pull from: the stack's repository, or the
        repository `workload.image.location` names when it is in ECR (another registry needs no
        IAM), and the platform's."""
        workload = self.settings.workload
        own = (
            [self.images.repository_arn]
            if self.images is not None
            else [arn for arn in [workload.image.ecr_repository_arn] if arn]
        )
        return own + ([self.platform_images.repository_arn] if self.platform_images else [])

    @cached_property
    def store(self) -> SharedStore:
        s = self.settings
        return SharedStore(
            "store",
            SharedStoreArgs(
                settings=s.store,
                vpc_id=self.network.vpc_id,
                subnet_ids=self.network.task_subnet_ids,
                subnet_count=s.network.azs,
                retain_on_destroy=s.protection.retain_on_destroy,
                capture=self.decisions.capture is not None,
            ),
        )

    @cached_property
    def cluster(self) -> Cluster:
        s, d = self.settings, self.decisions
        return Cluster(
            "cluster",
            ClusterArgs(
                network=self.network,
                gpu_instance_security_group_ids=[self.store.client_security_group_id],
                container_insights=s.observability.container_insights,
                gpu_training=s.training if d.train.on_ec2 else None,
                gpu_serving=s.inference.gpu if d.serving and d.serving.on_ec2 else None,
            ),
        )

    @cached_property
    def alarms(self) -> AlarmTopic:
        observability = self.settings.observability
        return AlarmTopic(
            "inference-alarms",
            AlarmTopicArgs(
                customer_managed_key=observability.alarm_topic_cmk,
                email=observability.alarm_email,
            ),
        )

    @cached_property
    def artifacts(self) -> ModelArtifacts | None:
        """The bucket each model the platform makes current is exported to (the decision:
        `artifacts.export` on and the platform gates)."""
        settings = self.decisions.artifacts
        if settings is None:
            return None
        return ModelArtifacts(
            "artifacts",
            ModelArtifactsArgs(
                settings=settings, retain_on_destroy=self.settings.protection.retain_on_destroy
            ),
        )

    # ------------------------------------------------------------------------ the workload

    @cached_property
    def edge(self) -> LoadBalancer | None:
        s = self.settings
        if s.workload.serving is None:
            return None
        return LoadBalancer(
            "inference",
            LoadBalancerArgs(
                inference=s.inference,
                network=self.network,
                https=s.https,
                region=s.region,
                vpc_cidr=s.network.cidr,
                log_retention_days=s.observability.log_retention_days,
                retain_on_destroy=s.protection.retain_on_destroy,
                serving=s.workload.serving,
                sidecars=s.sidecars,
                capture_port=CAPTURE_PORT if self.decisions.capture is not None else None,
            ),
        )

    @cached_property
    def inference(self) -> InferenceService | None:
        s, d = self.settings, self.decisions
        if self.edge is None or d.serving is None:
            return None
        return InferenceService(
            "inference",
            InferenceServiceArgs(
                stack=s.stack,
                region=s.region,
                inference=s.inference,
                placement=d.serving,
                network=self.network,
                cluster=self.cluster,
                store=self.store,
                load_balancer=self.edge,
                alarm_topic=self.alarms,
                image_ref=self.image_ref(d.serving.flavour),
                repository_arns=self.pull_from,
                log_retention_days=s.observability.log_retention_days,
                container_insights=s.observability.container_insights,
                cloudwatch_dashboard=s.observability.cloudwatch_dashboard,
                serving=s.workload.serving,
                sidecars=s.sidecars,
                security=s.workload.security,
                store_mounted=d.store_mounted,
                staged=d.staged,
                platform_image=self.platform_image if d.staged or d.capture else None,
                capture=d.capture,
                model_monitor=d.model_monitor is not None,
            ),
        )

    @cached_property
    def training(self) -> TrainingTask:
        s, d = self.settings, self.decisions
        workload = s.workload
        # A served model is staged at task start: a promotion rolls the service.
        service = self.inference if d.staged else None
        return TrainingTask(
            "training",
            TrainingTaskArgs(
                stack=s.stack,
                region=s.region,
                training=s.training,
                placement=d.train,
                steps=d.pipeline_steps,
                log_retention_days=s.observability.log_retention_days,
                network=self.network,
                cluster=self.cluster,
                store=self.store,
                image_refs={f: self.image_ref(f) for f in s.image_flavours},
                push_repository=self._push_repository(),
                alarm_topic=self.alarms,
                repository_arns=self.pull_from,
                train=workload.training,
                step_commands=workload.steps,
                security=workload.security,
                store_mounted=d.store_mounted,
                staged=d.staged,
                platform_image=self.platform_image,
                platform_gate=(
                    PlatformGate(objective=d.objective, promotion=d.promotion)
                    if d.gatekeeper is Gatekeeper.PLATFORM
                    else None
                ),
                rollout=(
                    ModelRollout(
                        cluster_arn=self.cluster.cluster_arn,
                        service_name=service.rolled_service_name,
                        function_arn=service.rollout_function_arn,
                        wait_minutes=s.inference.rollout.wait_minutes,
                    )
                    if service is not None and service.rollout_function_arn is not None
                    else None
                ),
                artifacts=(
                    ArtifactExport(
                        bucket_name=self.artifacts.bucket_name,
                        bucket_arn=self.artifacts.bucket_arn,
                        keep_last=d.artifacts.keep_last,
                    )
                    if self.artifacts is not None and d.artifacts is not None
                    else None
                ),
            ),
        )

    def _push_repository(self) -> pulumi.Input[str] | None:
        if self.images is not None:
            return self.images.repository_name
        if self.settings.training.on_image_push:
            pulumi.log.warn(
                "mlops:training.on_image_push: the stack builds no image (workload.image."
                "location names one built elsewhere), so nothing of its own is pushed and no "
                "push rule is declared: runs start on training.schedule, on the drift event, or "
                "by hand (docs/workload-contract.md#an-image-built-elsewhere)"
            )
        return None

    @cached_property
    def monitoring(self) -> Monitoring | None:
        s, d = self.settings, self.decisions
        if s.workload.job is None:
            return None
        return self._scheduled(
            "monitoring",
            image_ref=self.image_ref("cpu"),
            job=s.workload.job,
            security=s.workload.security,
            repository_arns=self.pull_from,
            store_mounted=d.store_mounted,
        )

    def _scheduled(self, name: str, **task: Any) -> Monitoring:
        """A scheduled task of the stack (components/monitoring.py), `task` its own arguments."""
        s = self.settings
        return Monitoring(
            name,
            MonitoringArgs(
                stack=s.stack,
                region=s.region,
                monitoring=s.monitoring,
                log_retention_days=s.observability.log_retention_days,
                network=self.network,
                cluster=self.cluster,
                store=self.store,
                **task,
            ),
        )

    @cached_property
    def model_monitor(self) -> Monitoring | None:
        """The platform's model monitor of the served model: the platform image's `monitor` on
        `monitoring.model_monitor.schedule`, reading the capture and the baselines through the
        store's main access point (the decision: capture on, a service, a schedule)."""
        d = self.decisions
        if d.model_monitor is None:
            return None
        platform = self.platform_images
        assert platform is not None  # capture builds the platform image
        return self._scheduled(
            "model-monitor",
            image_ref=platform.image_ref("cpu"),
            job=d.model_monitor,
            # It runs the platform image only.
            repository_arns=[platform.repository_arn],
        )

    @cached_property
    def ci(self) -> CiTrust | None:
        s = self.settings
        if not s.ci.repository:
            return None
        return CiTrust(
            "ci",
            CiTrustArgs(
                ci=s.ci,
                stack=s.stack,
                region=s.region,
                repository_arn=(
                    self.images.repository_arn
                    if self.images is not None
                    else self.platform_images.repository_arn
                    if self.platform_images is not None
                    else None
                ),
                permissions_boundary_arn=self.boundary.arn,
            ),
        )

    # ------------------------------------------------------------------------ last

    def _declared(self, name: str) -> bool:
        return name in self.__dict__

    def finish(self) -> None:
        """What needs every other declared component: the store's file-system policy names the
        task roles of its clients, and the images are pushed only once the push trigger exists
        (a new stack's first push starts its first training run). Call once, last."""
        if self._finished:
            raise ValueError("Wiring.finish was already called")
        self._finished = True
        clients = [
            component.task_role_arn
            for name in ("inference", "training", "monitoring", "model_monitor")
            if self._declared(name) and (component := getattr(self, name)) is not None
        ]
        if self._declared("training") and self.training.gate_role_arn is not None:
            clients.append(self.training.gate_role_arn)  # the gate task's own role
        # A staged server's task only reads the store: its role may mount it, not write.
        readers = (
            [clients.pop(0)]
            if self._declared("inference") and self.inference is not None and self.decisions.staged
            else []
        )
        # With capture the server's task writes capture/ through its own access point.
        capturers = (
            [self.inference.task_role_arn]
            if self._declared("inference")
            and self.inference is not None
            and self.decisions.capture is not None
            else []
        )
        if self._declared("store") and (clients or readers):
            self.store.authorize_clients(clients, readers=readers, capture_writers=capturers)
        if self._declared("images") and self.images is not None:
            self.images.release(
                after=self.training.image_triggers if self._declared("training") else []
            )
        if self._declared("platform_images") and self.platform_images is not None:
            self.platform_images.release()


def wire(settings: Settings) -> Wiring:
    """Declare every component the settings call for, in dependency order, and finish."""
    stack = Wiring(settings)
    for name in ("inference", "training", "monitoring", "model_monitor", "ci"):
        getattr(stack, name)
    stack.finish()
    return stack
