"""`POST /predict` (and SageMaker's `/invocations`) without HTTP: a body in, a `Reply` out.

As MLflow's scoring server keeps `invocations(data, content_type, model)` apart from the web
framework that calls it, the route in `app.serving.api` only adapts: it passes how to read the
body and whether its Content-Length declares it small, and sends back the status, body and
headers of the `Reply`. What `/predict` decides is all here, in order:

* 503 with `Retry-After: 30` while no model is promoted (before the body is read);
* the body read and parsed against the served model's limits (`app.serving.payload`): 413 when
  it is too large, 422 naming the field for anything else it breaks, 408 when the client left
  before sending it, 503 with `Retry-After: 1` when the parser process had to restart;
* one batched model call (`app.serving.batcher`): 500 when it fails or when the model produced a
  non-finite figure;
* 200: each instance's forecast and bounds, and the run id of the model that made them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import orjson

from app.forecasting.model import DEFAULT_LEVELS
from app.serving.batcher import MicroBatcher
from app.serving.body import BodyParser, ClientGoneError
from app.serving.model_slot import ModelSlot
from app.serving.payload import PayloadError, PayloadTooLargeError, PredictRequest, parse_predict

log = logging.getLogger(__name__)

_NO_MODEL = b'{"detail":"no model is promoted yet; retry later"}'


class Reply(NamedTuple):
    """What `/predict` answers: a status, a JSON body and any extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None


def error_reply(status: int, detail: str, headers: dict[str, str] | None = None) -> Reply:
    """`{"detail": detail}` with `status`: the shape of every error the api answers."""
    return Reply(status, orjson.dumps({"detail": detail}), headers)


class Predictor:
    """`/predict` for the model in `slot`, through `batcher`; large bodies go to `parser`."""

    def __init__(
        self, slot: ModelSlot, batcher: MicroBatcher, parser: BodyParser, max_instances: int
    ) -> None:
        self.slot = slot
        self.batcher = batcher
        self.parser = parser
        self.max_instances = max_instances

    async def reply(self, read: Callable[[], Awaitable[bytes]], small: bool) -> Reply:
        """The answer to one request whose body `read()` returns (PayloadTooLargeError past
        MAX_BODY_BYTES, ClientGoneError when the client left); `small` when its Content-Length
        declares it smaller than LARGE_BODY_BYTES, so it is parsed on the event loop."""
        forecaster = self.slot.forecaster
        if forecaster is None:  # a new stack serves before its first training run promotes one
            return Reply(503, _NO_MODEL, {"Retry-After": "30"})
        limits = {
            "min_history": forecaster.min_history,
            "max_horizon": forecaster.max_horizon,
            "max_instances": self.max_instances,
            "history_range": self.slot.history_range,
            "allowed_levels": forecaster.levels,
            "default_levels": DEFAULT_LEVELS,
        }
        try:
            if small:
                parsed = parse_predict(await read(), **limits)
            else:
                async with self.parser.slots:
                    parsed = await self.parser.parse(await read(), **limits)
        except PayloadTooLargeError as exc:
            return error_reply(413, str(exc))
        except PayloadError as exc:
            return error_reply(422, str(exc))
        except ClientGoneError:
            return error_reply(408, "request not received in time")
        except BrokenProcessPool:
            return error_reply(503, "the body parser restarted; retry", {"Retry-After": "1"})
        return await self.predict(parsed)

    async def predict(self, parsed: PredictRequest) -> Reply:
        """The answer to a parsed, valid request: one batched model call."""
        try:
            result = await self.batcher.submit(parsed.histories, parsed.horizons, parsed.levels)
        except Exception:
            return error_reply(500, "prediction failed; see the server log")
        if result.nonfinite:
            log.error("run %s produced a non-finite %s", result.model.run_id, result.nonfinite)
            return error_reply(
                500, f"the model produced a non-finite {result.nonfinite}; see the server log"
            )
        # Forecasts, bounds and run id all come from the one model call that made them.
        return Reply(
            200,
            orjson.dumps(
                {
                    "predictions": [
                        {"forecast": forecast, **bounds}
                        for forecast, bounds in zip(result.forecasts, result.bounds, strict=True)
                    ],
                    "model": result.model.run_id,
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
        )
