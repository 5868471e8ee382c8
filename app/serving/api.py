"""The api's routes: each a thin adapter from HTTP to what answers it.

`/predict` (and SageMaker's `/invocations`) is `app.serving.predict`, handled without HTTP; the
model and its hot reload are `app.serving.model_slot`; `/metrics` is `app.serving.metrics`;
`/openapi.json` is precomputed per model (`app.serving.openapi`). The contract of every route is
in `app.serving.server`'s docstring and docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import orjson
import prometheus_client
from fastapi import FastAPI, Request, Response
from starlette.routing import Route

from app.forecasting.device import serving_device
from app.serving.batcher import MicroBatcher
from app.serving.body import BodyParser, declared_small, read_body
from app.serving.metrics import Metrics, MetricsMiddleware
from app.serving.model_slot import ModelSlot
from app.serving.predict import Predictor, error_reply
from app.settings import AppSettings
from app.store import Store

log = logging.getLogger(__name__)

JSON = "application/json"
INTERNAL_ROUTES = frozenset(("/model", "/metrics"))
"""Answered only on INTERNAL_PORT when it is set: not for the internet."""


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=JSON)


def _error(status: int, detail: str) -> Response:
    reply = error_reply(status, detail)
    return Response(reply.body, reply.status, reply.headers, JSON)


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
    predictor = Predictor(slot, batcher, parser, settings.max_instances)

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
        reply = await predictor.reply(partial(read_body, request), declared_small(request))
        return Response(reply.body, reply.status, reply.headers, JSON)

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
