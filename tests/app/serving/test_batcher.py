"""The micro-batcher and `Forecaster.forecast`: one model call per batch gives every request its
forecasts, its interval bounds and the model that made them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.forecasting.model import Forecaster
from app.serving.batcher import MicroBatcher
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import shipped_history


@pytest.fixture(scope="module")
def forecaster(trained_store: Path) -> Forecaster:
    return Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))


class CountingForecaster:
    """A real forecaster whose model calls (`predict`, `forecast`, `bounds`) are counted."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.inner = forecaster
        self.calls: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attribute = getattr(self.inner, name)
        if name in ("predict", "forecast", "bounds"):

            def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
                self.calls.append(name)
                return attribute(*args, **kwargs)

            return counted
        return attribute


def test_forecast_gives_what_predict_and_bounds_give(forecaster: Forecaster) -> None:
    history = np.array(shipped_history(200))
    histories = [history[i : i + 60] for i in range(0, 140, 20)]
    horizons = [1 + (i * 11) % 52 for i in range(len(histories))]
    made = forecaster.forecast(histories, horizons, (95, 80))
    expected = forecaster.predict(histories, horizons)
    assert made.finite
    for point, bounds, want, horizon in zip(
        made.points, made.bounds, expected, horizons, strict=True
    ):
        assert len(point) == horizon
        np.testing.assert_allclose(point, want)
        (want_bounds,) = forecaster.bounds([want], [95, 80])
        assert list(bounds["lower"]) == ["95", "80"]
        for side in ("lower", "upper"):
            for level in ("80", "95"):
                np.testing.assert_allclose(bounds[side][level], want_bounds[side][level])
        assert (bounds["lower"]["95"] <= point).all() and (point <= bounds["upper"]["95"]).all()
    rounded = forecaster.forecast(histories, horizons, (80,), decimals=4)
    np.testing.assert_array_equal(rounded.points[0], expected[0].round(4))
    assert forecaster.forecast(histories, horizons).bounds == [{}] * len(histories)


def test_a_batch_of_requests_with_different_levels_is_one_model_call(
    forecaster: Forecaster,
) -> None:
    counting = CountingForecaster(forecaster)
    batcher = MicroBatcher(model=lambda: counting, max_batch=64, wait_s=1.0)
    history = np.array(shipped_history(60))
    asked = [(80, 95), (), (50,), (80, 95)]

    async def scenario() -> list:
        futures = [batcher.submit([history], [6], levels) for levels in asked]
        return await asyncio.gather(*futures)

    results = asyncio.run(scenario())
    assert counting.calls == ["forecast"]
    (alone,) = forecaster.predict([history], [6])
    for levels, result in zip(asked, results, strict=True):
        assert result.model is counting
        assert result.nonfinite == ""
        np.testing.assert_array_equal(result.forecasts[0], alone.round(4))
        if not levels:
            assert result.bounds == [{}]
            continue
        (want,) = forecaster.bounds([alone], list(levels))
        assert list(result.bounds[0]["upper"]) == [str(level) for level in levels]
        for side in ("lower", "upper"):
            for level in levels:
                np.testing.assert_array_equal(
                    result.bounds[0][side][str(level)], want[side][str(level)].round(4)
                )


def test_a_non_finite_forecast_is_flagged_on_its_own_request_only(
    forecaster: Forecaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that forecasts NaN for one history: that request is flagged, its batch mate not."""
    history = np.array(shipped_history(60))
    real = forecaster._predict_flat

    def nan_for_the_second(histories, horizons):  # type: ignore[no-untyped-def]
        values = real(histories, horizons)
        values[horizons[0] : horizons[0] + horizons[1]] = np.nan
        return values

    monkeypatch.setattr(forecaster, "_predict_flat", nan_for_the_second)
    batcher = MicroBatcher(model=lambda: forecaster, max_batch=64, wait_s=1.0)

    async def scenario() -> list:
        futures = [batcher.submit([history], [4], (80,)) for _ in range(2)]
        return await asyncio.gather(*futures)

    first, second = asyncio.run(scenario())
    assert first.nonfinite == ""
    assert second.nonfinite == "forecast"
