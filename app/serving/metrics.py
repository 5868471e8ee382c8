"""The api's Prometheus series (`GET /metrics`) and the ASGI middleware that times every request:
requests and latency by route and status, the model being served, reloads and failed reloads,
how model files were checked, and batch sizes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTES = (
    "/health",
    "/ready",
    "/model",
    "/predict",
    "/metrics",
    "/openapi.json",
    "/ping",
    "/invocations",
)
"""The routes labelled by their path; any other path is counted as `other`."""


class Metrics:
    """The Prometheus series of one server, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "mlops_model_info",
            "The model being served (value 1), labelled with its run id.",
            ["run_id"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "mlops_model_reloads", "Models loaded since start.", registry=self.registry
        )
        self.failed_reloads = Counter(
            "mlops_model_reload_failures",
            "Promoted models that failed to load (the previous model kept serving).",
            registry=self.registry,
        )
        self.current_checks = Counter(
            "mlops_current_checks",
            "Model files checked before loading, by how: `probe` (in a child process) or "
            "`recorded` (probe.json proved these bytes with these libraries).",
            ["how"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "mlops_predict_batch_size",
            "Instances per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        # Label lookups take a lock; cache the children the hot path uses.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, str(status)),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware timing every request (no per-request task or body copy)."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            path = scope["path"]
            route = path if path in ROUTES else "other"
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - started)
