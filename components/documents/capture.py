"""The serving task's capture proxy (`inference.capture`): the platform image's `capture-proxy`
in front of the workload's server, recording a sampled share of `POST /invocations` to
`capture/` in the store (platform/mlops_platform/capture.py; SageMaker's data-capture format,
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html).

The containers of an awsvpc task share one network namespace (ECS Developer Guide, "Amazon ECS
task networking options for Fargate"), so the proxy reaches the server on 127.0.0.1 and the load
balancer forwards to the proxy's port instead of the server's.
"""

from __future__ import annotations

from typing import Any

from components.documents.common import ContainerSpec
from components.settings.capture import CAPTURE_PORT, CaptureSettings
from mlops_contract import CAPTURE, STORE_MOUNT, Env

CAPTURE_CONTAINER = "capture"
CAPTURE_VOLUME = "capture"
"""The task volume of `capture/` alone (the store's capture access point)."""
CAPTURE_NAME = "inference"
"""The directory under `capture/`: SageMaker's endpoint name in its layout."""


def capture_proxy_spec(
    platform_image: Any, capture: CaptureSettings, server_port: int
) -> ContainerSpec:
    """The proxy: essential (the load balancer reaches the server only through it), as the
    image's non-root user, with `capture/` mounted where the store's would be and nothing else
    of the store."""
    return ContainerSpec(
        name=CAPTURE_CONTAINER,
        image=platform_image,
        command=["capture-proxy"],
        port=CAPTURE_PORT,
        store=False,
        mounts={CAPTURE_VOLUME: f"{STORE_MOUNT}/{CAPTURE}"},
        environment={
            Env.STORE_DIR: STORE_MOUNT,
            Env.CAPTURE_PORT: str(CAPTURE_PORT),
            Env.CAPTURE_UPSTREAM_PORT: str(server_port),
            Env.CAPTURE_PERCENT: f"{capture.percent:g}",
            Env.CAPTURE_NAME: CAPTURE_NAME,
            Env.CAPTURE_MAX_BYTES: str(capture.max_body_kib * 1024),
        },
    )
