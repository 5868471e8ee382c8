"""`train`: a real run on the shipped data, reproducibility, bad data, Spot interruption."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.forecasting.backtest import backtest
from app.forecasting.model import HARMONIC_GRID, HARMONIC_PARAMS, Forecaster, read_series
from app.pipeline.lineage import file_sha256
from app.pipeline.train import train
from app.pipeline.validate import DatasetError, validate
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import PATIENCE, REPO_ROOT, TEST_ROUNDS, app_env, run_app


def test_trained_run_reports_a_rolling_backtest_against_seasonal_naive_plus_drift(
    trained_store: Path,
) -> None:
    store = Store(trained_store)
    metrics = store.read_json(store.run_dir(FIRST_RUN) / "metrics.json")
    card = metrics["backtest"]
    assert card["spec"]["folds"] == 5 and card["spec"]["fold_weeks"] == 104
    assert [f["first_date"] for f in card["folds"]] == [
        "1992-01-18",
        "1994-01-15",
        "1996-01-13",
        "1998-01-10",
        "2000-01-08",
    ]
    for fold in card["folds"]:
        for key in ("mae", "rmse", "drift_mae", "naive_mae", "skill"):
            assert math.isfinite(fold[key]), key
        assert fold["pairs"] > 4000
        assert set(fold["coverage"]) == {"50", "80", "90", "95", "99"}
    mean = card["mean"]
    assert mean["mae"] < mean["drift_mae"] < mean["naive_mae"]
    assert 0 < mean["skill"] < 1
    for level, covered in metrics["coverage"].items():
        assert abs(covered - int(level)) <= 5, (level, covered)
    assert len(metrics["intervals"]["offsets"]["80"]["upper"]) == 52
    assert metrics["family"] == "xgboost"
    assert metrics["recipe"]["rounds"] == TEST_ROUNDS
    assert metrics["rounds"] == TEST_ROUNDS
    assert metrics["device"] == "cpu"
    assert metrics["min_history"] <= 60
    assert metrics["max_horizon"] == 52
    assert metrics["run_id"] == FIRST_RUN
    lineage = metrics["dataset"]
    assert lineage["sha256"] == file_sha256(store.dataset_path)
    assert lineage["validation_run"] == FIRST_RUN
    assert metrics["code_version"] and "image_digest" in metrics
    assert metrics["params"]["max_depth"] == 3


def test_run_directory_holds_model_metrics_and_card(trained_store: Path) -> None:
    run_dir = Store(trained_store).run_dir(FIRST_RUN)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "card.md",
        "decision.json",
        "metrics.json",
        "model.ubj",
        "probe.json",  # the gate's passed child-process probe (app.forecasting.model_check)
    ]
    card = (run_dir / "card.md").read_text()
    assert "seasonal naive + drift MAE" in card and "| 4 | 1998-01-10..2000-01-01 |" in card


def test_forecasts_follow_the_seasonal_cycle_and_the_trend(trained_store: Path) -> None:
    forecaster = Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))
    _, values = _shipped()
    history = values[-160:-52]  # ends one year before the data does
    actual = values[-52:]
    forecast = forecaster.predict([history], [52])[0]
    assert forecast.shape == (52,)
    observed = ~np.isnan(actual)
    assert np.mean(np.abs(forecast[observed] - actual[observed])) < 1.0
    naive = history[-52:]
    assert np.mean(forecast - naive) > 0.5  # it learned that CO2 keeps rising


@pytest.mark.slow
def test_training_is_reproducible(store_copy: Store, trained_store: Path) -> None:
    metrics = train(
        store_copy, "again", rounds=TEST_ROUNDS, log_every=TEST_ROUNDS, threads=1, family="xgboost"
    )
    first = Store(trained_store).run_dir(FIRST_RUN)
    assert (store_copy.run_dir("again") / "model.ubj").read_bytes() == (
        first / "model.ubj"
    ).read_bytes()
    assert metrics["backtest"] == Store(trained_store).read_json(first / "metrics.json")["backtest"]


@pytest.mark.slow
def test_auto_serves_the_harmonic_setting_with_the_lowest_backtest_mae(store_copy: Store) -> None:
    metrics = train(store_copy, "auto", rounds=10, log_every=10, threads=2)
    assert set(metrics["selection"]) == {"harmonic"}  # xgboost only when asked for by name
    assert metrics["family"] == "harmonic"
    assert metrics["backtest"]["selection"]["settings"] == len(HARMONIC_GRID)
    # The served setting scores no worse than the reference setting, each backtested alone.
    dates, values = read_series(store_copy.dataset_path)
    served = backtest(dates, values, {"family": "harmonic", "params": metrics["params"]})
    reference = backtest(dates, values, {"family": "harmonic", "params": HARMONIC_PARAMS})
    assert served["mean"] == metrics["backtest"]["mean"]
    assert served["mean"]["mae"] <= reference["mean"]["mae"]
    assert metrics["recipe"] == {"family": "harmonic", "params": metrics["params"]}
    assert (store_copy.run_dir("auto") / "model.json").exists()
    assert not (store_copy.run_dir("auto") / "model.ubj").exists()
    loaded = Forecaster.load(store_copy.run_dir("auto"))
    assert loaded.family == "harmonic" and loaded.harmonic == metrics["params"]


def test_an_unvalidated_dataset_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dataset()
    with pytest.raises(DatasetError, match="no passing validation report for this dataset"):
        train(store, "unchecked", rounds=1, log_every=1, family="harmonic")
    assert not store.run_dir("unchecked").exists()


def test_a_dataset_changed_after_validation_is_refused(store_copy: Store) -> None:
    assert validate(store_copy, "checked")["ok"]
    lines = store_copy.dataset_path.read_text().splitlines()
    lines[-1] = lines[-1].rsplit(",", 1)[0] + ",371.9"
    store_copy.dataset_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"changed since validation\); validate again"):
        train(store_copy, "checked", rounds=1, log_every=1, family="harmonic")
    result = run_app("train", store_root=store_copy.root, RUN_ID="other")
    assert result.returncode == 1
    assert "no passing validation report for this dataset" in result.stderr


def test_rerunning_a_finished_run_changes_nothing(store_copy: Store) -> None:
    model = store_copy.run_dir(FIRST_RUN) / "model.ubj"
    before = model.stat().st_mtime_ns
    metrics = train(store_copy, FIRST_RUN, rounds=5, log_every=5, threads=1)
    assert metrics["rounds"] == TEST_ROUNDS
    assert model.stat().st_mtime_ns == before


def test_bad_data_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_text(store.dataset_path, "date,co2\n2000-01-01,abc\n2000-01-08,370.1\n")
    assert run_app("validate", store_root=tmp_path, RUN_ID="bad").returncode == 1
    result = run_app("train", store_root=tmp_path, RUN_ID="bad")
    assert result.returncode == 1
    assert "error: cannot train on this dataset:" in result.stderr
    assert "validation of run bad failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.run_dir("bad").exists()


def _shipped() -> tuple[np.ndarray, np.ndarray]:
    from app.forecasting.model import read_series

    return read_series(REPO_ROOT / "app" / "data" / "co2_weekly.csv")


@pytest.mark.slow
def test_sigterm_checkpoints_and_a_rerun_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert validate(store, "spot")["ok"]
    env = app_env(
        tmp_path,
        RUN_ID="spot",
        TRAIN_ROUNDS="100000",
        TRAIN_LOG_EVERY="5",
        MODEL_FAMILY="xgboost",
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "train"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    deadline = time.monotonic() + PATIENCE
    log = []
    for line in child.stderr:
        log.append(line)
        if "round 10/100000" in line:
            child.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "".join(log)
    log += child.stderr.readlines()
    assert child.wait(timeout=PATIENCE) == 143, "".join(log)
    output = "".join(log)
    assert "SIGTERM received" in output
    assert "rerun with RUN_ID=spot to resume" in output

    state = store.read_json(store.checkpoint_dir("spot") / "state.json")
    done = state["rounds_done"]
    assert done >= 10
    assert (store.checkpoint_dir("spot") / "model.ubj").stat().st_size > 0
    assert not (store.run_dir("spot") / "metrics.json").exists()

    resumed = run_app(
        "train",
        store_root=tmp_path,
        RUN_ID="spot",
        TRAIN_ROUNDS=str(done + 10),
        MODEL_FAMILY="xgboost",
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run spot from its checkpoint at round {done}/{done + 10}" in resumed.stderr
    assert f"round {done + 10}/{done + 10}" in resumed.stderr
    metrics = store.read_json(store.run_dir("spot") / "metrics.json")
    assert metrics["resumed_from_round"] == done
    assert metrics["rounds"] == done + 10
    assert metrics["backtest"]["mean"]["mae"] < metrics["backtest"]["mean"]["naive_mae"]
    assert not store.checkpoint_dir("spot").exists()


def test_interval_bounds_are_conformal_order_statistics_per_horizon_bucket() -> None:
    from app.forecasting.backtest import HORIZON_BUCKETS, fold_offsets

    # Two folds (too few to adjust the level): 9 errors per bucket, step scale 1 everywhere.
    # At 80 %, ranks floor(10 * 0.1) = 1 and ceil(10 * 0.9) = 9: the smallest and largest error,
    # where a plain quantile would interpolate inside them.
    rng = np.random.default_rng(1)
    steps = np.concatenate(
        [np.repeat(np.arange(first, last + 1), 1) for first, last in HORIZON_BUCKETS]
    )
    errors, fold_steps = [], []
    for _ in range(2):
        signs = rng.choice([-1.0, 1.0], size=len(steps))
        errors.append(signs)
        fold_steps.append(steps)
    lower, upper = fold_offsets(errors, fold_steps, 80)
    assert np.all(lower == -1.0) and np.all(upper == 1.0)


def test_intervals_cover_a_new_fold_when_folds_differ_in_scale() -> None:
    from app.forecasting.backtest import fold_offsets

    # Six folds whose error scale differs fold to fold (as real eras do), 52 steps x 100 origins.
    rng = np.random.default_rng(7)
    steps = np.tile(np.arange(1, 53), 100)
    folds = [rng.normal(0, s, len(steps)) * np.sqrt(steps) for s in (0.6, 1.0, 1.5, 0.8, 1.2, 1.0)]
    fresh = (
        rng.normal(0, 1.0, (200, len(steps)))
        * np.sqrt(steps)
        * rng.choice((0.6, 1.0, 1.5, 0.8, 1.2, 1.0), size=(200, 1))
    )
    for level in (50, 80, 95):
        lower, upper = fold_offsets(folds, [steps] * len(folds), level)
        inside = (fresh >= lower[steps - 1]) & (fresh <= upper[steps - 1])
        assert abs(inside.mean() * 100 - level) < 2.5, (level, inside.mean())
        # Widths grow with the step inside each bucket (each step's own error scale).
        assert upper[51] - lower[51] > upper[26] - lower[26]


def test_a_many_harmonic_setting_asks_for_more_history() -> None:
    from app.forecasting.model import MIN_HISTORY
    from app.pipeline.train import min_history

    assert min_history({"family": "harmonic", "params": HARMONIC_PARAMS}) == MIN_HISTORY
    twenty = {**HARMONIC_PARAMS, "harmonics": 20}
    assert min_history({"family": "harmonic", "params": twenty}) == 84  # 42 coefficients


def test_the_held_out_level_is_relaxed_for_bounds_pooled_from_one_more_fold() -> None:
    from app.forecasting.backtest import _pooled_level

    # A level that was right with no raise stays nominal; a raise measured with m - 1 folds
    # pooled shrinks toward the nominal level for m folds, less so as folds grow, never past it.
    assert _pooled_level(80, 80, 5) == pytest.approx(80)
    relaxed = [_pooled_level(80, 88, folds) for folds in (3, 5, 50, 5000)]
    assert all(80 < r < 88 for r in relaxed)
    assert relaxed == sorted(relaxed)
    assert relaxed[-1] == pytest.approx(88, abs=0.01)
    assert _pooled_level(80, 84, 5) < _pooled_level(80, 88, 5) < _pooled_level(90, 97, 5)
