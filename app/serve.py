"""`python -m app serve`: the inference API (FastAPI on uvicorn with httptools).

Contract (DESIGN.md, "The app"):

* `GET /health`  200 `{"status": "ok"}` while the process runs.
* `GET /ready`   200 once a model is loaded, 503 before.
* `GET /model`   `{"run_id", "trained_at", "metrics", "min_history", "max_horizon"}`.
* `POST /predict` `{"instances": [{"history": [...], "horizon": n}]}` ->
  `{"predictions": [{"forecast": [...]}], "model": run_id}`; 422 `{"detail": ...}` naming the
  field for anything else.
* `GET /metrics` Prometheus text.

Behaviour: waits for the store at start; polls `models/CURRENT` and swaps in a newly promoted
model (a load failure is logged and counted, the old model keeps serving); micro-batches
concurrent requests into one model call; on SIGTERM uvicorn stops accepting connections and
drains in-flight requests before exiting.

The hot path avoids pydantic and pandas: bodies are parsed with orjson and checked by hand,
responses are orjson bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import prometheus_client
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app import _xgboost_import  # noqa: F401  (must precede app.model: see its docstring)
from app.batcher import MicroBatcher
from app.cli import command_settings, open_store
from app.model import Forecaster, ModelLoadError
from app.payload import MAX_BODY_BYTES, PayloadError, PayloadTooLargeError, parse_predict
from app.settings import AppSettings
from app.store import Store

log = logging.getLogger(__name__)

JSON = "application/json"
ROUTES = ("/health", "/ready", "/model", "/predict", "/metrics")
GRACEFUL_SHUTDOWN_SECONDS = 25
"""Below ECS's default 30 s stopTimeout, so draining ends before the task is killed."""


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


@dataclass
class ModelSlot:
    """The model being served and what the reloader knows about CURRENT."""

    store: Store
    metrics: Metrics
    forecaster: Forecaster | None = None
    model_body: bytes = b""
    failed_key: tuple | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def swap(self, forecaster: Forecaster) -> None:
        previous = self.forecaster
        self.model_body = orjson.dumps(
            {
                "run_id": forecaster.run_id,
                "trained_at": forecaster.trained_at,
                "metrics": forecaster.metrics,
                "min_history": forecaster.min_history,
                "max_horizon": forecaster.max_horizon,
            }
        )
        # One assignment: requests batched after it use the new model, earlier ones the old.
        self.forecaster = forecaster
        self.failed_key = None
        if previous is not None:
            self.metrics.model_info.remove(previous.run_id)
        self.metrics.model_info.labels(forecaster.run_id).set(1)
        self.metrics.reloads.inc()
        log.info(
            "serving run %s (was %s)", forecaster.run_id, previous.run_id if previous else "none"
        )

    def _candidate(self) -> tuple[str, tuple] | None:
        """CURRENT's run id and a key of its files, when it differs from what is served."""
        run_id = self.store.current_run_id()
        if run_id is None or (self.forecaster and self.forecaster.run_id == run_id):
            return None
        stamps = []
        for name in ("model.ubj", "metrics.json"):
            try:
                stamps.append((self.store.run_dir(run_id) / name).stat().st_mtime_ns)
            except (OSError, ValueError):  # missing file, or CURRENT holds no valid run id
                stamps.append(None)
        return run_id, (run_id, *stamps)

    def _load(self, run_id: str, key: tuple) -> Forecaster | None:
        """The run's model, or None after logging and counting why it cannot be loaded."""
        try:
            return Forecaster.load(self.store.run_dir(run_id))
        except (ModelLoadError, ValueError) as exc:
            self._failed(run_id, key, exc)
            return None

    def load_current(self) -> None:
        """Load CURRENT synchronously (at start-up, before the server listens)."""
        candidate = self._candidate()
        if candidate is None:
            log.info("no promoted model yet (models/CURRENT); /ready answers 503 until one is")
            return
        forecaster = self._load(*candidate)
        if forecaster is not None:
            self.swap(forecaster)

    async def reload_if_changed(self) -> None:
        async with self.lock:
            candidate = await asyncio.to_thread(self._candidate)
            if candidate is None or candidate[1] == self.failed_key:
                return
            forecaster = await asyncio.to_thread(self._load, *candidate)
            if forecaster is not None:
                self.swap(forecaster)

    def _failed(self, run_id: str, key: tuple, exc: Exception) -> None:
        self.failed_key = key
        self.metrics.failed_reloads.inc()
        serving = self.forecaster.run_id if self.forecaster else "no model"
        log.error("cannot load promoted run %s: %s; still serving %s", run_id, exc, serving)


async def _read_body(request: Request) -> bytes:
    """The request body, read straight from the ASGI channel (cheaper than `request.body()`).

    Raises PayloadTooLargeError as soon as it exceeds MAX_BODY_BYTES."""
    message = await request.receive()
    body = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= MAX_BODY_BYTES:
        return body
    chunks, size = [body], len(body)
    while size <= MAX_BODY_BYTES and message.get("more_body", False):
        message = await request.receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body: larger than the {MAX_BODY_BYTES} bytes allowed")
    return b"".join(chunks)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=JSON)


def _error(status: int, detail: str) -> Response:
    return _json(orjson.dumps({"detail": detail}), status)


def create_app(settings: AppSettings, store: Store) -> FastAPI:
    """The ASGI app, with its model slot loaded from CURRENT if there is one."""
    metrics = Metrics()
    slot = ModelSlot(store, metrics)
    slot.load_current()
    batcher = MicroBatcher(
        model=lambda: slot.forecaster,
        max_batch=settings.max_batch,
        wait_s=settings.batch_wait_ms / 1000.0,
        on_batch=metrics.batch_size.observe,
    )

    async def watch_current() -> None:
        while True:
            await asyncio.sleep(settings.reload_interval_seconds)
            try:
                await slot.reload_if_changed()
            except Exception:
                log.exception("checking models/CURRENT failed; will retry")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(watch_current())
        # Everything allocated so far (modules, the model) lives as long as the process: moving
        # it out of the collector's reach keeps full collections from pausing requests.
        gc.collect()
        gc.freeze()
        yield
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    api = FastAPI(
        title="mlops inference",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Requests are measured by our own Prometheus middleware; FastAPI's OpenTelemetry
        # hooks would only add a per-request check.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    health_body = orjson.dumps({"status": "ok"})

    @api.get("/health")
    async def health() -> Response:
        return _json(health_body)

    @api.get("/ready")
    async def ready() -> Response:
        forecaster = slot.forecaster
        if forecaster is None:
            return _json(orjson.dumps({"status": "not ready", "detail": "no model loaded"}), 503)
        return _json(orjson.dumps({"status": "ready", "model": forecaster.run_id}))

    @api.get("/model")
    async def model() -> Response:
        if slot.forecaster is None:
            return _error(503, "no model loaded")
        return _json(slot.model_body)

    async def predict(request: Request) -> Response:
        forecaster = slot.forecaster
        if forecaster is None:  # a new stack serves before its first training run promotes one
            detail = b'{"detail":"no model is promoted yet; retry later"}'
            return Response(detail, 503, {"Retry-After": "30"}, JSON)
        try:
            parsed = parse_predict(
                await _read_body(request),
                min_history=forecaster.min_history,
                max_horizon=forecaster.max_horizon,
                max_instances=settings.max_instances,
            )
        except PayloadTooLargeError as exc:
            return _error(413, str(exc))
        except PayloadError as exc:
            return _error(422, str(exc))
        try:
            result = await batcher.submit(parsed.histories, parsed.horizons)
        except Exception:
            return _error(500, "prediction failed; see the server log")
        predictions = [{"forecast": forecast.round(4)} for forecast in result.forecasts]
        return _json(
            orjson.dumps(
                {"predictions": predictions, "model": result.run_id},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
        )

    @api.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(
            content=prometheus_client.generate_latest(metrics.registry),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    # The hot path is a plain Starlette route: FastAPI's dependency resolution would cost
    # ~25 us per request and has nothing to resolve here (the body is parsed by hand).
    api.add_route("/predict", predict, methods=["POST"])
    api.add_middleware(MetricsMiddleware, metrics=metrics)
    return api


def main(argv: list[str]) -> int:
    settings = command_settings("serve", argv)
    store = open_store(settings)
    api = create_app(settings, store)
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        # The standard asyncio loop, not uvloop: with the loop saturated by requests costing a
        # millisecond or more (100-instance batches), uvloop serves connections unfairly and a
        # few wait ten times the median (p99 ~450 ms against 50 ms at c=32, same throughput);
        # asyncio costs 1-3% of one-instance throughput. See benchmarks/README.md.
        loop="asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    log.info("api listening on %s:%d", settings.host, settings.port)
    uvicorn.Server(config).run()
    return 0
