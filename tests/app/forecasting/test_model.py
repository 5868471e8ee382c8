"""The forecaster: loading from a run directory and batched prediction."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from app.forecasting import device
from app.forecasting.model import (
    HARMONIC_GRID,
    HARMONIC_PARAMS,
    Forecaster,
    ModelLoadError,
    harmonic_predict,
    harmonic_predict_many,
    read_series,
)
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import replace_model, shipped_history


@pytest.fixture(scope="module")
def forecaster(trained_store: Path) -> Forecaster:
    return Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))


def test_loaded_model_describes_itself(forecaster: Forecaster) -> None:
    assert forecaster.run_id == FIRST_RUN
    assert forecaster.trained_at
    assert forecaster.min_history <= 60
    assert forecaster.max_horizon == 52
    assert forecaster.family == "xgboost"
    assert forecaster.metrics["backtest"]["folds"]
    assert forecaster.levels == (50, 80, 90, 95, 99)


def test_a_batch_gives_the_same_forecasts_as_one_call_per_history(forecaster: Forecaster) -> None:
    history = np.array(shipped_history(200))
    histories = [history[i : i + 60] for i in range(0, 140, 10)]
    horizons = [1 + (i * 7) % 52 for i in range(len(histories))]
    batched = forecaster.predict(histories, horizons)
    for history_i, horizon, forecast in zip(histories, horizons, batched, strict=True):
        alone = forecaster.predict([history_i], [horizon])[0]
        assert forecast.shape == (horizon,)
        np.testing.assert_allclose(forecast, alone, rtol=0, atol=1e-9)


def test_only_the_recent_history_matters_to_the_xgboost_family(forecaster: Forecaster) -> None:
    history = np.array(shipped_history(500))
    long = forecaster.predict([history], [8])[0]
    short = forecaster.predict([history[-forecaster.min_history :]], [8])[0]
    np.testing.assert_allclose(long, short)


def copy_run(trained_store: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(Store(trained_store).run_dir(FIRST_RUN), run_dir)
    return run_dir


def test_missing_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"run directory .*nowhere does not exist"):
        Forecaster.load(tmp_path / "nowhere")


def test_missing_model_file_is_a_clear_error(trained_store: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_store, tmp_path)
    (run_dir / "model.ubj").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.ubj is missing"):
        Forecaster.load(run_dir)


def test_corrupt_model_file_is_a_clear_error(trained_store: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_store, tmp_path)
    replace_model(run_dir, b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="is not a valid XGBoost model"):
        Forecaster.load(run_dir)


def test_truncated_metrics_are_a_clear_error(trained_store: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_store, tmp_path)
    (run_dir / "metrics.json").write_text('{"run_id": "run-a", "hol')
    with pytest.raises(ModelLoadError, match=r"metrics\.json is not valid JSON"):
        Forecaster.load(run_dir)


def test_read_series_keeps_missing_weeks_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("date,co2\n2000-01-01,368.1\n2000-01-08,\n2000-01-15,368.4\n")
    dates, values = read_series(path)
    assert dates.dtype == np.dtype("datetime64[D]")
    assert str(dates[1]) == "2000-01-08"
    assert np.isnan(values[1]) and values[2] == 368.4


def test_read_series_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("date,co2\n2000-01-01,368.1\n2000-01-08,high\n")
    with pytest.raises(ValueError, match="line 3: bad co2 value 'high'"):
        read_series(path)


def test_a_model_that_cannot_reach_the_gpu_predicts_on_the_cpu_and_says_so(
    trained_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The xgboost-cpu build has no CUDA: asked for "cuda", the load falls back with one line."""
    run_dir = Store(trained_store).run_dir(FIRST_RUN)
    cpu = Forecaster.load(run_dir)
    with caplog.at_level(logging.WARNING, logger="app.forecasting.model"):
        fallback = Forecaster.load(run_dir, device="cuda")
    assert fallback.device == "cpu"
    assert [r.getMessage() for r in caplog.records if "predicting on CPU" in r.getMessage()]
    history = [np.linspace(350.0, 352.0, cpu.min_history)]
    assert np.array_equal(fallback.predict(history, [4])[0], cpu.predict(history, [4])[0])


def test_serving_device_is_the_cpu_without_a_visible_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    with caplog.at_level(logging.INFO, logger="app.forecasting.device"):
        assert device.serving_device() == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["no GPU visible; predicting on CPU"]


def test_bounds_widen_with_the_level_and_enclose_the_forecast(forecaster: Forecaster) -> None:
    (forecast,) = forecaster.predict([np.array(shipped_history(60))], [26])
    (bounds,) = forecaster.bounds([forecast], [80, 95])
    for level in ("80", "95"):
        assert bounds["lower"][level].shape == bounds["upper"][level].shape == (26,)
        assert np.all(bounds["lower"][level] < forecast)
        assert np.all(bounds["upper"][level] > forecast)
    assert np.all(bounds["lower"]["95"] <= bounds["lower"]["80"])
    assert np.all(bounds["upper"]["95"] >= bounds["upper"]["80"])
    # Uncertainty grows with the horizon.
    width = bounds["upper"]["80"] - bounds["lower"]["80"]
    assert width[-4:].mean() > width[:4].mean()


def test_harmonic_family_follows_the_cycle_and_the_trend() -> None:
    history = np.array(shipped_history(900))
    past, actual = history[:-52], history[-52:]
    (forecast,) = harmonic_predict([past], [52], HARMONIC_PARAMS)
    assert np.mean(np.abs(forecast - actual)) < 0.8
    assert np.mean(forecast) - np.mean(past[-52:]) > 0.8  # a year of growth
    # One batch, histories of different lengths, same answers as one call each.
    batch = harmonic_predict([past, past[-100:], past], [4, 8, 52], HARMONIC_PARAMS)
    np.testing.assert_allclose(batch[0], forecast[:4])
    np.testing.assert_allclose(batch[1], harmonic_predict([past[-100:]], [8], HARMONIC_PARAMS)[0])


def _plain_harmonic(history: np.ndarray, h: int, params: dict) -> np.ndarray:
    """The harmonic setting written out with numpy's own least squares, one history at a time."""
    window = min(len(history), int(params["window"]))
    y = np.asarray(history[-window:], dtype=np.float64)
    t = np.arange(-window + 1, 1, dtype=np.float64)
    period, k = params["period_weeks"], np.arange(1, int(params["harmonics"]) + 1)

    def basis(t: np.ndarray) -> np.ndarray:
        angles = 2 * np.pi * t[:, None] * k[None, :] / period
        return np.hstack([np.ones((len(t), 1)), t[:, None], np.sin(angles), np.cos(angles)])

    root = np.sqrt(0.5 ** (-t / params["half_life_weeks"]))
    coef = np.linalg.lstsq(basis(t) * root[:, None], y * root, rcond=None)[0]
    residuals = y - basis(t) @ coef
    lw = int(params["level_weeks"])
    level = residuals[-lw:].mean()
    slope = coef[1]
    if params["local_slope"]:
        slope += (level - residuals[-2 * lw : -lw].mean()) / lw
    steps = np.cumsum(params["damping"] ** np.arange(1, h + 1))
    future = basis(np.arange(1, h + 1, dtype=np.float64))
    future[:, 1] = 0.0  # the trend goes forward damped, below
    return future @ coef + level + slope * steps


@pytest.mark.slow
def test_every_grid_setting_matches_a_plain_least_squares_fit() -> None:
    history = np.array(shipped_history(900))
    histories = [history, history[:-37], history[-300:]]
    horizons = [52, 20, 7]
    many = harmonic_predict_many(histories, horizons, HARMONIC_GRID)
    assert len(many) == len(HARMONIC_GRID) >= 100
    for params, forecasts in zip(HARMONIC_GRID, many, strict=True):
        for hist, h, forecast in zip(histories, horizons, forecasts, strict=True):
            np.testing.assert_allclose(forecast, _plain_harmonic(hist, h, params), atol=1e-6)
    # A damped trend flattens: its 52-week step is smaller than the undamped one's.
    damped = {**HARMONIC_PARAMS, "damping": 0.98}
    growth = [harmonic_predict([history], [52], p)[0][-1] for p in (HARMONIC_PARAMS, damped)]
    assert growth[0] - history[-1] > growth[1] - history[-1] > 0


def test_a_harmonic_model_file_with_bad_params_is_a_clear_error(
    trained_store: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_store, tmp_path)
    metrics = orjson.loads((run_dir / "metrics.json").read_bytes())
    (run_dir / "metrics.json").write_bytes(orjson.dumps({**metrics, "family": "harmonic"}))
    # Recorded as train's own output, so the bytes get past the checksum to the parser.
    replace_model(run_dir, orjson.dumps({"params": {"window": -1}}))
    with pytest.raises(ModelLoadError, match=r"model\.json must hold params with the keys"):
        Forecaster.load(run_dir)
