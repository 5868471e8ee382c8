"""`/predict` without HTTP: `Predictor.reply` takes a body reader and answers a `Reply`, the same
statuses, bodies and headers the route sends (tests/app/serving/test_server.py checks them over
real HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from app.forecasting.model import Forecaster
from app.forecasting.model_check import plausible_range
from app.serving.batcher import MicroBatcher
from app.serving.body import BodyParser, ClientGoneError
from app.serving.payload import PayloadTooLargeError
from app.serving.predict import Predictor, Reply
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import predict_body


@pytest.fixture(scope="module")
def forecaster(trained_store: Path) -> Forecaster:
    return Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))


def reply(forecaster: Forecaster | None, read) -> Reply:  # type: ignore[no-untyped-def]
    """What a Predictor serving `forecaster` answers to a small body that `read()` returns."""
    history_range = plausible_range(forecaster.metrics) if forecaster else (0.0, 0.0)
    slot = SimpleNamespace(forecaster=forecaster, history_range=history_range)

    async def scenario() -> Reply:
        batcher = MicroBatcher(model=lambda: slot.forecaster, max_batch=64, wait_s=0.001)
        predictor = Predictor(slot, batcher, BodyParser(), max_instances=64)  # type: ignore[arg-type]
        return await predictor.reply(read, small=True)

    return asyncio.run(scenario())


def body_of(payload: dict):  # type: ignore[no-untyped-def]
    async def read() -> bytes:
        return orjson.dumps(payload)

    return read


def test_predict_without_a_model_answers_503_before_reading_the_body() -> None:
    async def unread() -> bytes:
        raise AssertionError("the body was read")

    assert reply(None, unread) == Reply(
        503, b'{"detail":"no model is promoted yet; retry later"}', {"Retry-After": "30"}
    )


def test_predict_answers_each_forecast_with_the_run_that_made_it(forecaster: Forecaster) -> None:
    answer = reply(forecaster, body_of(predict_body(instances=2, horizon=4)))
    assert answer.status == 200 and answer.headers is None
    body = orjson.loads(answer.body)
    assert body["model"] == FIRST_RUN
    assert [len(p["forecast"]) for p in body["predictions"]] == [4, 4]
    assert set(body["predictions"][0]) == {"forecast", "lower", "upper"}


def test_predict_refuses_a_short_history_with_422_naming_the_field(
    forecaster: Forecaster,
) -> None:
    answer = reply(forecaster, body_of({"instances": [{"history": [400.0] * 3, "horizon": 4}]}))
    assert answer.status == 422
    assert orjson.loads(answer.body)["detail"].startswith("instances[0].history: ")


def test_predict_answers_413_past_the_body_limit_and_408_when_the_client_left(
    forecaster: Forecaster,
) -> None:
    async def too_large() -> bytes:
        raise PayloadTooLargeError("body: larger than the 8388608 bytes allowed")

    async def gone() -> bytes:
        raise ClientGoneError

    assert reply(forecaster, too_large) == Reply(
        413, b'{"detail":"body: larger than the 8388608 bytes allowed"}'
    )
    assert reply(forecaster, gone) == Reply(408, b'{"detail":"request not received in time"}')
