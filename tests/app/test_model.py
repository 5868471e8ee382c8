"""The forecaster: loading from a run directory and batched prediction."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from app import device
from app.model import Forecaster, ModelLoadError, read_series
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
    assert "holdout" in forecaster.metrics


def test_a_batch_gives_the_same_forecasts_as_one_call_per_history(forecaster: Forecaster) -> None:
    history = np.array(shipped_history(200))
    histories = [history[i : i + 60] for i in range(0, 140, 10)]
    horizons = [1 + (i * 7) % 52 for i in range(len(histories))]
    batched = forecaster.predict(histories, horizons)
    for history_i, horizon, forecast in zip(histories, horizons, batched, strict=True):
        alone = forecaster.predict([history_i], [horizon])[0]
        assert forecast.shape == (horizon,)
        np.testing.assert_allclose(forecast, alone, rtol=0, atol=1e-9)


def test_only_the_recent_history_matters(forecaster: Forecaster) -> None:
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
    with caplog.at_level(logging.WARNING, logger="app.model"):
        fallback = Forecaster.load(run_dir, device="cuda")
    assert fallback.device == "cpu"
    assert [r.getMessage() for r in caplog.records if "predicting on CPU" in r.getMessage()]
    history = [np.linspace(350.0, 352.0, cpu.min_history)]
    assert np.array_equal(fallback.predict(history, [4])[0], cpu.predict(history, [4])[0])


def test_serving_device_is_the_cpu_without_a_visible_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    with caplog.at_level(logging.INFO, logger="app.device"):
        assert device.serving_device() == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["no GPU visible; predicting on CPU"]
