"""`python -m app serve`: the inference API (FastAPI on uvicorn with httptools).

Contract (docs/api.md is its reference):

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

Where each part lives: the routes (`api`), `/predict` without HTTP (`predict`), reading and
parsing bodies (`body`, `payload`), micro-batching (`batcher`), the model and its hot reload
(`model_slot`), read deadlines (`deadlines`), Prometheus (`metrics`), the OpenAPI document
(`openapi`); this module starts uvicorn on the api's sockets.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from app.cli import command_settings, open_store
from app.forecasting import _xgboost_import  # noqa: F401  (before app.forecasting.model: see its docstring)
from app.serving.api import create_app
from app.serving.deadlines import timed_protocol

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 25
"""Below ECS's default 30 s stopTimeout, so draining ends before the task is killed."""
KEEP_ALIVE_SECONDS = 65
"""Idle connections close after this. Above the ALB's 60 s idle timeout, as the ELB guide asks of
targets: a target closing first races the ALB's next request on that connection (a 502)."""
MAX_CONCURRENCY = 500
"""Connections or requests at once; uvicorn answers 503 beyond (fits a 1024 open-files limit)."""


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

    model_dir = sagemaker.ml_layout().model
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
