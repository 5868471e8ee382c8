"""`train`: a real run on the shipped data, reproducibility, bad data, Spot interruption."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.model import Forecaster
from app.store import Store
from app.train import train
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import REPO_ROOT, TEST_ROUNDS, app_env, run_app


def test_trained_run_has_finite_metrics_that_beat_seasonal_naive(trained_store: Path) -> None:
    store = Store(trained_store)
    metrics = store.read_json(store.run_dir(FIRST_RUN) / "metrics.json")
    holdout = metrics["holdout"]
    for key in ("mae", "rmse", "mape", "naive_mae", "skill"):
        assert math.isfinite(holdout[key]), key
    assert holdout["mae"] < holdout["naive_mae"]
    assert 0 < holdout["skill"] < 1
    assert holdout["pairs"] > 1000
    assert metrics["rounds"] == TEST_ROUNDS
    assert metrics["device"] == "cpu"
    assert metrics["min_history"] <= 60
    assert metrics["max_horizon"] == 52
    assert metrics["run_id"] == FIRST_RUN


def test_run_directory_holds_model_metrics_and_card(trained_store: Path) -> None:
    run_dir = Store(trained_store).run_dir(FIRST_RUN)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "card.md",
        "decision.json",
        "metrics.json",
        "model.ubj",
    ]
    card = (run_dir / "card.md").read_text()
    assert "seasonal naive" in card and "MAE" in card


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


def test_training_is_reproducible(tmp_path: Path, trained_store: Path) -> None:
    store = Store(tmp_path)
    train(store, "again", rounds=TEST_ROUNDS, log_every=TEST_ROUNDS, threads=1)
    first = Store(trained_store).run_dir(FIRST_RUN) / "model.ubj"
    assert (store.run_dir("again") / "model.ubj").read_bytes() == first.read_bytes()


def test_rerunning_a_finished_run_changes_nothing(store_copy: Store) -> None:
    model = store_copy.run_dir(FIRST_RUN) / "model.ubj"
    before = model.stat().st_mtime_ns
    metrics = train(store_copy, FIRST_RUN, rounds=5, log_every=5, threads=1)
    assert metrics["rounds"] == TEST_ROUNDS
    assert model.stat().st_mtime_ns == before


def test_bad_data_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_text(store.dataset_path, "date,co2\n2000-01-01,abc\n2000-01-08,370.1\n")
    result = run_app("train", store_root=tmp_path, RUN_ID="bad")
    assert result.returncode == 1
    assert "error: cannot train on this dataset:" in result.stderr
    assert "co2: not a number at line 2 ('abc')" in result.stderr
    assert "too few rows" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.run_dir("bad").exists()


def _shipped() -> tuple[np.ndarray, np.ndarray]:
    from app.model import read_series

    return read_series(REPO_ROOT / "app" / "data" / "co2_weekly.csv")


def test_sigterm_checkpoints_and_a_rerun_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path)
    env = app_env(tmp_path, RUN_ID="spot", TRAIN_ROUNDS="100000", TRAIN_LOG_EVERY="5")
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "train"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    deadline = time.monotonic() + 60
    log = []
    for line in child.stderr:
        log.append(line)
        if "round 10/100000" in line:
            child.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "".join(log)
    log += child.stderr.readlines()
    assert child.wait(timeout=30) == 143, "".join(log)
    output = "".join(log)
    assert "SIGTERM received" in output
    assert "rerun with RUN_ID=spot to resume" in output

    state = store.read_json(store.checkpoint_dir("spot") / "state.json")
    done = state["rounds_done"]
    assert done >= 10
    assert (store.checkpoint_dir("spot") / "model.ubj").stat().st_size > 0
    assert not (store.run_dir("spot") / "metrics.json").exists()

    resumed = run_app("train", store_root=tmp_path, RUN_ID="spot", TRAIN_ROUNDS=str(done + 10))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run spot from its checkpoint at round {done}/{done + 10}" in resumed.stderr
    assert f"round {done + 10}/{done + 10}" in resumed.stderr
    metrics = store.read_json(store.run_dir("spot") / "metrics.json")
    assert metrics["resumed_from_round"] == done
    assert metrics["rounds"] == done + 10
    assert metrics["holdout"]["mae"] < metrics["holdout"]["naive_mae"]
    assert not store.checkpoint_dir("spot").exists()
