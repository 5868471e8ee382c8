"""`python -m app serve`: the inference API (FastAPI on uvicorn with httptools).

Contract (DESIGN.md, "The app"):

* `GET /health`  200 `{"status": "ok"}` while the process runs.
* `GET /ready`   200 once a model is loaded, 503 before.
* `GET /model`   `{"run_id", "trained_at", "metrics", "min_history", "max_horizon", "device"}`:
  `device` is where predictions run, "cuda" on a visible GPU the model can use, else "cpu".
* `POST /predict` `{"instances": [{"history": [...], "horizon": n}], "levels": [80, 95]}` ->
  `{"predictions": [{"forecast": [...], "lower": {"80": [...], "95": [...]}, "upper": {...}}],
  "model": run_id}` (`levels` optional, default 80 and 95; bounds only for runs with calibrated
  intervals); 422 `{"detail": ...}` naming the field for anything else.
* `GET /metrics` Prometheus text.
* `GET /openapi.json` the OpenAPI document of all of the above (`app/serving/openapi.py`).
* SageMaker's serving paths, undocumented in /openapi.json so that document is unchanged:
  `GET /ping` is `/ready`, `POST /invocations` is `/predict`. Without STORE_DIR and with a
  model in /opt/ml/model (SageMaker's layout, `app/pipeline/sagemaker.py`) that model is served.

With `INTERNAL_PORT` set, `/metrics` and `/model` answer only on that port, which no load
balancer forwards to; `PORT` answers 404 for them.

Behaviour: waits for the store at start; polls `models/CURRENT` and swaps in a newly promoted model;
every model is first checked, loaded and probed in a child process (`app.forecasting.model_check`),
so a damaged file costs a child, never the server. A promoted run that fails is logged and counted
and the old model keeps serving; a server starting on a bad CURRENT serves the most recently
promoted run that passes, or stays up and not ready. Micro-batches concurrent requests into one
model call; on SIGTERM uvicorn stops accepting connections and drains in-flight requests before
exiting.

Hostile clients: a request's headers must arrive within HEADER_TIMEOUT_SECONDS of its first byte
and its body within BODY_TIMEOUT_SECONDS of its headers (408 otherwise); at most MAX_CONCURRENCY
connections or requests at once (503 beyond); bodies of LARGE_BODY_BYTES or more are parsed in a
separate process, a few at a time, so parsing them never stalls the event loop (and `/health`).

The hot path avoids pydantic and pandas: bodies are parsed with orjson and checked by hand,
responses are orjson bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import multiprocessing
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import prometheus_client
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.cli import command_settings, open_store
from app.forecasting import _xgboost_import  # noqa: F401  (before app.forecasting.model: see its docstring)
from app.forecasting.device import serving_device
from app.forecasting.model import (
    DEFAULT_LEVELS,
    METRICS_FILE,
    MIN_HISTORY,
    MODEL_FILES,
    Forecaster,
    ModelLoadError,
)
from app.forecasting.model import MAX_HORIZON as DEFAULT_MAX_HORIZON
from app.forecasting.model_check import load_checked, plausible_range
from app.series import from_metrics
from app.serving.batcher import MicroBatcher
from app.serving.openapi import openapi_document
from app.serving.payload import (
    MAX_BODY_BYTES,
    MAX_HISTORY,
    PayloadError,
    PayloadTooLargeError,
    PredictRequest,
    parse_predict,
    start_parser_process,
)
from app.settings import AppSettings
from app.store import CurrentWatch, Store

log = logging.getLogger(__name__)

JSON = "application/json"
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
INTERNAL_ROUTES = frozenset(("/model", "/metrics"))
"""Answered only on INTERNAL_PORT when it is set: not for the internet."""
GRACEFUL_SHUTDOWN_SECONDS = 25
"""Below ECS's default 30 s stopTimeout, so draining ends before the task is killed."""
KEEP_ALIVE_SECONDS = 65
"""Idle connections close after this. Above the ALB's 60 s idle timeout, as the ELB guide asks of
targets: a target closing first races the ALB's next request on that connection (a 502)."""
MAX_CONCURRENCY = 500
"""Connections or requests at once; uvicorn answers 503 beyond (fits a 1024 open-files limit)."""
LARGE_BODY_BYTES = 256 * 1024
"""Bodies from this size are parsed in the parser process. orjson and the checks hold the GIL for
~35 ms per MB (~130 ms for 64 instances of 10,000 values): parsed on the event loop, eight of
them at once stalled /health for a second. Smaller bodies stay on the loop: the fast path."""
LARGE_BODIES_AT_ONCE = 4
"""Large bodies read and parsed at once; more wait before reading, which bounds their memory."""
MAX_FALLBACK_RUNS = 3
"""At start with a bad CURRENT: how many earlier promoted runs to try before staying not ready."""


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


def _described(forecaster: Forecaster | None) -> dict[str, str]:
    """The served series' name and units and the plausible range's rule, for /openapi.json."""
    if forecaster is None:
        return {}
    series = from_metrics(forecaster.metrics)
    rule = (forecaster.metrics.get("history_range") or {}).get("rule")
    return {"series": series.in_units(series.label), "range_rule": str(rule or "")}


@dataclass
class ModelSlot:
    """The model being served and what the reloader knows about CURRENT."""

    store: Store
    metrics: Metrics
    settings: AppSettings
    device: str = "cpu"
    """Where models predict (`app.forecasting.device.serving_device`), chosen once at start."""
    forecaster: Forecaster | None = None
    history_range: tuple[float, float] = (-math.inf, math.inf)
    model_body: bytes = b""
    openapi_bodies: dict[bool, bytes] = field(default_factory=dict)
    served_key: tuple | None = None
    failed_key: tuple | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.current = CurrentWatch(self.store, log)
        self._describe(None)

    def _describe(self, forecaster: Forecaster | None) -> None:
        """The OpenAPI documents (public, internal) for the limits of `forecaster`."""
        for internal in (False, True):
            document = openapi_document(
                min_history=forecaster.min_history if forecaster else MIN_HISTORY,
                max_history=MAX_HISTORY,
                max_horizon=forecaster.max_horizon if forecaster else DEFAULT_MAX_HORIZON,
                max_instances=self.settings.max_instances,
                max_body_bytes=MAX_BODY_BYTES,
                history_range=self.history_range if forecaster else None,
                levels=forecaster.levels if forecaster else (),
                default_levels=DEFAULT_LEVELS,
                internal=internal or not self.settings.internal_port,
                **_described(forecaster),
            )
            self.openapi_bodies[internal] = orjson.dumps(document)

    def swap(self, forecaster: Forecaster, key: tuple) -> None:
        previous = self.forecaster
        self.history_range = plausible_range(forecaster.metrics)
        self._describe(forecaster)
        self.model_body = orjson.dumps(
            {
                "run_id": forecaster.run_id,
                "trained_at": forecaster.trained_at,
                "metrics": forecaster.metrics,
                "min_history": forecaster.min_history,
                "max_horizon": forecaster.max_horizon,
                "device": forecaster.device,
            }
        )
        # One assignment: requests batched after it use the new model, earlier ones the old.
        self.forecaster = forecaster
        self.served_key = key
        if previous is not None:
            self.metrics.model_info.remove(previous.run_id)
        self.metrics.model_info.labels(forecaster.run_id).set(1)
        self.metrics.reloads.inc()
        log.info(
            "serving run %s (was %s)", forecaster.run_id, previous.run_id if previous else "none"
        )

    def _key(self, run_id: str) -> tuple:
        """The promoted directory and the stamps of its files: what a reload is keyed on (not
        the run_id inside metrics.json, which a copied run keeps from its origin)."""
        stamps: list[tuple[int, int] | None] = []
        for name in (*MODEL_FILES.values(), METRICS_FILE):  # either family's model file
            try:
                stat = (self.store.run_dir(run_id) / name).stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except (OSError, ValueError):  # missing file, or CURRENT holds no valid run id
                stamps.append(None)
        return (run_id, *stamps)

    def _candidate(self) -> tuple[str, tuple] | None:
        """CURRENT's run id and key, when it differs from what is served. A damaged CURRENT
        (DamagedFileError) is logged once per change of state and reads as "no change"."""
        serving = self.forecaster.run_id if self.forecaster else "no model"
        readable, run_id = self.current.read(f"still serving {serving} until a run is promoted")
        if not readable or run_id is None or (self.served_key and self.served_key[0] == run_id):
            return None
        return run_id, self._key(run_id)

    def _count_check(self, how: str) -> None:
        self.metrics.current_checks.labels(how).inc()

    def _load(self, run_id: str, key: tuple) -> Forecaster | None:
        """The run's model, or None after logging and counting why it cannot be loaded."""
        try:
            return load_checked(
                self.store.run_dir(run_id), device=self.device, on_check=self._count_check
            )
        except (ModelLoadError, ValueError) as exc:
            self._failed(run_id, key, exc)
            return None

    def load_current(self) -> None:
        """Load CURRENT synchronously (at start-up, before the server listens). When it cannot
        be served, or is damaged, fall back to the most recently promoted run that can, or stay
        not ready."""
        candidate = self._candidate()
        if candidate is None and self.current.damaged is None:
            log.info("no promoted model yet (models/CURRENT); /ready answers 503 until one is")
            return
        if candidate is not None:
            forecaster = self._load(*candidate)
            if forecaster is not None:
                self.swap(forecaster, candidate[1])
                return
        bad = "is damaged"
        if candidate is not None:
            bad = f"names run {candidate[0]}, which cannot be served"
        self._fall_back(bad, exclude=candidate[0] if candidate else None)

    def _fall_back(self, bad: str, exclude: str | None) -> None:
        for run_id in self.store.promoted_runs(exclude=exclude)[:MAX_FALLBACK_RUNS]:
            key = self._key(run_id)
            try:
                forecaster = load_checked(
                    self.store.run_dir(run_id), device=self.device, on_check=self._count_check
                )
            except (ModelLoadError, ValueError) as exc:
                log.error("cannot load earlier promoted run %s either: %s", run_id, exc)
                continue
            log.warning(
                "CURRENT %s; serving the last good promoted run %s until a new run is promoted",
                bad,
                run_id,
            )
            self.swap(forecaster, key)
            return
        log.error(
            "no servable model: CURRENT %s, and no earlier promoted run loads; /ready answers "
            "503 until a good run is promoted",
            bad,
        )

    async def reload_if_changed(self) -> None:
        async with self.lock:
            was_damaged = self.current.damaged
            candidate = await asyncio.to_thread(self._candidate)
            newly_damaged = self.current.damaged and not was_damaged
            if candidate is None and newly_damaged and not self.forecaster:
                await asyncio.to_thread(self._fall_back, "is damaged", None)
            if candidate is None or candidate[1] == self.failed_key:
                return
            forecaster = await asyncio.to_thread(self._load, *candidate)
            if forecaster is not None:
                self.swap(forecaster, candidate[1])

    def _failed(self, run_id: str, key: tuple, exc: Exception) -> None:
        self.failed_key = key
        self.metrics.failed_reloads.inc()
        serving = self.forecaster.run_id if self.forecaster else "no model"
        log.error("cannot load promoted run %s: %s; still serving %s", run_id, exc, serving)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines, which uvicorn does not have.

    A new connection may stay idle as long as a kept-alive one (KEEP_ALIVE_SECONDS); once a
    request starts, its headers must be complete within `header_timeout` seconds and its body
    within `body_timeout` seconds after them (set per server by `timed_protocol`). A late
    request gets 408 (unless the app has already started answering it) and its connection is
    closed: a client trickling bytes cannot hold a connection open for ever."""

    header_timeout = 10.0
    body_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = phase == "body" and self.cycle is not None and self.cycle.response_started
        if phase != "idle" and not answered:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.timeout_keep_alive, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def timed_protocol(header_timeout: float, body_timeout: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these read deadlines."""
    return type(
        "TimedHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )


_REQUEST_TIMEOUT_BODY = b'{"detail":"request not received in time"}'
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_REQUEST_TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _REQUEST_TIMEOUT_BODY
)


class ClientGoneError(Exception):
    """The connection closed (or timed out) before the body arrived."""


async def _read_body(request: Request) -> bytes:
    """The request body, read straight from the ASGI channel (cheaper than `request.body()`).

    Raises PayloadTooLargeError as soon as it exceeds MAX_BODY_BYTES."""
    message = await request.receive()
    body = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= MAX_BODY_BYTES:
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        return body
    chunks, size = [body], len(body)
    while size <= MAX_BODY_BYTES and message.get("more_body", False):
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body: larger than the {MAX_BODY_BYTES} bytes allowed")
    return b"".join(chunks)


class BodyParser:
    """Parses `/predict` bodies: small ones on the event loop (the fast path), large ones in a
    worker process, LARGE_BODIES_AT_ONCE at a time (`slots`, taken before reading them). The
    worker starts with the first large body: most servers never see one, and starting it with
    the server cost the cold start a second interpreter importing numpy on the same cores."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(LARGE_BODIES_AT_ONCE)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server has threads by now, and a forked copy of a threaded
            # process may inherit a held lock. The worker dies with the server.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_parser_process,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def parse(self, body: bytes, **limits: Any) -> PredictRequest:
        if len(body) < LARGE_BODY_BYTES:
            return parse_predict(body, **limits)
        call = functools.partial(parse_predict, body, **limits)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), call)
        except BrokenProcessPool:
            log.error("the body parser process died; starting another")
            self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=JSON)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=orjson.dumps({"detail": detail}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def _is_small(request: Request) -> bool:
    """True when the body is declared (Content-Length) smaller than LARGE_BODY_BYTES."""
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) < LARGE_BODY_BYTES
    return False


def create_app(settings: AppSettings, store: Store) -> FastAPI:
    """The ASGI app, with its model slot loaded from CURRENT if there is one."""
    metrics = Metrics()
    slot = ModelSlot(store, metrics, settings, serving_device())
    slot.load_current()
    parser = BodyParser()

    def on_internal_port(request: Request) -> bool:
        """Whether `/metrics` and `/model` may answer this request (see INTERNAL_PORT)."""
        if not settings.internal_port:
            return True
        server = request.scope.get("server")
        return server is not None and server[1] == settings.internal_port

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
        parser.close()

    api = FastAPI(
        title="mlops inference",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # Served by hand (app/serving/openapi.py): /predict is not a FastAPI route.
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

    # SageMaker's serving contract, so the same image runs as a SageMaker endpoint: GET /ping is
    # 200 when the container is ready for inference requests (here: /ready), POST /invocations
    # is /predict. https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
    api.add_api_route("/ping", ready, methods=["GET"], include_in_schema=False)

    @api.get("/model")
    async def model(request: Request) -> Response:
        if not on_internal_port(request):
            return _error(404, "Not Found")
        if slot.forecaster is None:
            return _error(503, "no model loaded")
        return _json(slot.model_body)

    @api.get("/openapi.json")
    async def openapi(request: Request) -> Response:
        return _json(slot.openapi_bodies[on_internal_port(request)])

    async def predict(request: Request) -> Response:
        forecaster = slot.forecaster
        if forecaster is None:  # a new stack serves before its first training run promotes one
            detail = b'{"detail":"no model is promoted yet; retry later"}'
            return Response(detail, 503, {"Retry-After": "30"}, JSON)
        limits = {
            "min_history": forecaster.min_history,
            "max_horizon": forecaster.max_horizon,
            "max_instances": settings.max_instances,
            "history_range": slot.history_range,
            "allowed_levels": forecaster.levels,
            "default_levels": DEFAULT_LEVELS,
        }
        try:
            if _is_small(request):
                parsed = parse_predict(await _read_body(request), **limits)
            else:
                async with parser.slots:
                    parsed = await parser.parse(await _read_body(request), **limits)
        except PayloadTooLargeError as exc:
            return _error(413, str(exc))
        except PayloadError as exc:
            return _error(422, str(exc))
        except ClientGoneError:
            return _error(408, "request not received in time")
        except BrokenProcessPool:
            return _error(503, "the body parser restarted; retry", {"Retry-After": "1"})
        try:
            result = await batcher.submit(parsed.histories, parsed.horizons, parsed.levels)
        except Exception:
            return _error(500, "prediction failed; see the server log")
        if result.nonfinite:
            log.error("run %s produced a non-finite %s", result.model.run_id, result.nonfinite)
            return _error(
                500, f"the model produced a non-finite {result.nonfinite}; see the server log"
            )
        # Forecasts, bounds and run id all come from the one model call that made them.
        return _json(
            orjson.dumps(
                {
                    "predictions": [
                        {"forecast": forecast, **bounds}
                        for forecast, bounds in zip(result.forecasts, result.bounds, strict=True)
                    ],
                    "model": result.model.run_id,
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
        )

    @api.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        if not on_internal_port(request):
            return _error(404, "Not Found")
        return Response(
            content=prometheus_client.generate_latest(metrics.registry),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    # The hot path is a plain Starlette route: FastAPI's dependency resolution would cost
    # ~25 us per request and has nothing to resolve here (the body is parsed by hand). It goes
    # first in the router, which tries each route's pattern in turn; SageMaker's /invocations
    # is the same handler.
    api.router.routes.insert(0, Route("/predict", predict, methods=["POST"]))
    api.add_route("/invocations", predict, methods=["POST"])
    api.add_middleware(MetricsMiddleware, metrics=metrics)
    return api


def _listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and without it every response waited ~40 ms for a delayed ACK (Nagle).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str]) -> int:
    settings = command_settings("serve", argv)
    from app.pipeline import sagemaker

    model_dir = sagemaker.ml_root() / "model"
    if sagemaker.use_sagemaker(model_dir):
        # SageMaker stages the model into /opt/ml/model: serve it through a scratch store.
        root = sagemaker.serving_store(model_dir)
        log.info("SageMaker layout: serving the model in %s (scratch store %s)", model_dir, root)
        settings = settings.model_copy(update={"store_dir": root})
    if settings.internal_port == settings.port:
        log.error("INTERNAL_PORT must differ from PORT (%d)", settings.port)
        return 2
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
        http=timed_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds),
        lifespan="on",
        ws="none",  # no websockets: an upgrade would leave a connection outside the deadlines
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONCURRENCY,
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    sockets = [_listen(settings.host, settings.port)]
    if settings.internal_port:
        sockets.append(_listen(settings.host, settings.internal_port))
        log.info(
            "api listening on %s:%d, and on %d for /metrics and /model",
            settings.host,
            settings.port,
            settings.internal_port,
        )
    else:
        log.info("api listening on %s:%d", settings.host, settings.port)
    uvicorn.Server(config).run(sockets=sockets)
    return 0
