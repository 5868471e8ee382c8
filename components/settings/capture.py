"""`mlops:inference.capture`: a sampled share of the service's `/invocations` requests and
responses recorded to the store, in SageMaker Model Monitor's data-capture format, by the
platform's capture proxy in front of the workload's server (its image is not changed).

The proxy is `python -m mlops_platform capture-proxy` (platform/mlops_platform/capture.py); the
format is SageMaker's ("Capture data from real-time endpoint",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.settings._section import Section, fail

CAPTURE_PORT = 8089
"""Where the proxy listens in the task; the load balancer forwards the server's traffic here."""


@dataclass(frozen=True)
class CaptureSettings:
    percent: float = 0.0
    """The share of `POST /invocations` exchanges recorded, 0 (off) to 100."""
    max_body_kib: int = 1024
    """A body larger than this (request or response) is not recorded (counted as dropped)."""
    retention_days: int = 30
    """The model monitor deletes capture hours older than this; 0 keeps them forever."""

    @property
    def on(self) -> bool:
        return self.percent > 0


def parse_capture(raw: Any) -> CaptureSettings:
    s = Section("inference.capture", raw, CaptureSettings)
    percent = s.raw.get("percent", 0.0)
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise fail(
            s.key("percent"), percent, "it must be a number from 0 (off) to 100 (every request)"
        )
    retention = s.raw.get("retention_days", CaptureSettings.retention_days)
    if isinstance(retention, bool) or not isinstance(retention, int) or not 0 <= retention <= 3650:
        raise fail(
            s.key("retention_days"),
            retention,
            "it must be 0 (keep forever) or a whole number of days from 1 to 3650",
        )
    return CaptureSettings(
        percent=float(percent),
        max_body_kib=s.int("max_body_kib", lo=1, hi=64 * 1024),
        retention_days=retention,
    )


def check_capture_port(capture: CaptureSettings, ports: dict[str, int | None]) -> None:
    """The proxy's port must be free in the task (containers of an awsvpc task share one
    network namespace)."""
    if not capture.on:
        return
    for key, port in ports.items():
        if port == CAPTURE_PORT:
            raise fail(
                key,
                port,
                f"inference.capture listens on {CAPTURE_PORT} in the serving task; "
                "give the workload's container another port, or set inference.capture.percent: 0",
            )
