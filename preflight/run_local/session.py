"""A run_local session: the stack's view, its images on this machine, the local store and
secrets, the task metadata endpoint, and the service while one runs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from preflight.run_local.callback import CallbackEndpoint
from preflight.run_local.images import build_resource, workload_image
from preflight.run_local.metadata import MetadataEndpoint
from preflight.run_local.stack import StackView
from preflight.run_local.task import LocalTask

if TYPE_CHECKING:
    from preflight.run_local.service import LocalService


@dataclass
class Session:
    view: StackView
    store: Path
    base_image: str | None = None
    image: str | None = None
    publish_ephemeral: bool = False
    rebuild: bool = False
    out: Callable[[str], None] = print
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Local values of the task definitions' `secrets` (`load_secrets`)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Variables every container of the session gets, as ECS gives every container its own
    (AWS_REGION, the task role's credentials): where a test points the AWS SDKs at a local
    endpoint (AWS_ENDPOINT_URL_S3) with its keys. A task definition's own values win."""
    retry_scale: float = 1.0
    """Step Functions' retry intervals are waited this many times over (1: as AWS waits)."""
    spot_interruptions: tuple[float, ...] = ()
    """Fargate Spot interruptions to simulate: the n-th task run on FARGATE_SPOT is interrupted
    this many seconds after it starts (ECS stops it with stop code SpotInterruption)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _images: dict[str, str] = field(default_factory=dict)
    _others: dict[str, str] = field(default_factory=dict)
    _metadata: MetadataEndpoint | None = None
    _callbacks: CallbackEndpoint | None = None
    _building: threading.Lock = field(default_factory=threading.Lock)
    """A sweep's trials start tasks from several threads: an image is built once, and each
    endpoint made once."""
    service: LocalService | None = None
    """The inference service running in this session, if any: what the pipeline's
    ecs:updateService (forceNewDeployment) replaces."""

    @property
    def metadata(self) -> MetadataEndpoint:
        with self._building:
            if self._metadata is None:
                self._metadata = MetadataEndpoint()
            return self._metadata

    @property
    def callbacks(self) -> CallbackEndpoint:
        """Where a `.waitForTaskToken` state's container calls back (callback.py)."""
        with self._building:
            if self._callbacks is None:
                self._callbacks = CallbackEndpoint()
            return self._callbacks

    def other_image(self, reference: str) -> str:
        """The local tag of a platform image the task definitions name by `reference`."""
        with self._building:
            return self._other_image(reference)

    def _other_image(self, reference: str) -> str:
        if reference not in self._others:
            self._others[reference] = build_resource(
                self.view.others[reference], "mlops-platform-local", self.base_image, self.rebuild
            )
        return self._others[reference]

    def image_for(self, flavour: str) -> str:
        with self._building:
            return self._image_for(flavour)

    def _image_for(self, flavour: str) -> str:
        if self.image:
            return self.image
        if flavour not in self._images:
            self._images[flavour] = workload_image(
                self.view, flavour, self.base_image, self.rebuild
            )
        return self._images[flavour]

    def task(
        self,
        family: str,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        commands: Mapping[str, list[str]] | None = None,
    ) -> LocalTask:
        spec = self.view.tasks[family]
        staging = {
            c["name"]: self.other_image(c["image"])
            for c in spec.containers
            if c["image"] in self.view.others
        }
        workload = [c for c in spec.containers if c["name"] not in staging]
        return LocalTask(
            spec=spec,
            # A task of the platform's containers only (the platform gate) runs on their image.
            image=self.image_for(spec.flavour) if workload else next(iter(staging.values())),
            container_images=staging,
            secrets=self.secrets,
            environment=self.environment,
            store=self.store,
            access_point=self.view.access_point,
            access_points=self.view.access_points,
            session=self.id,
            publish_ephemeral=self.publish_ephemeral,
            overrides=overrides or {},
            commands=commands or {},
            out=self.out,
            metadata=self.metadata,
        )

    def close(self) -> None:
        if self._metadata is not None:
            self._metadata.close()
            self._metadata = None
        if self._callbacks is not None:
            self._callbacks.close()
            self._callbacks = None
