"""The forecast ticker: what it writes, model reloads, and one writer across replicas."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from app.loop.ticker import HISTORY_NAME, LATEST_NAME, Ticker
from app.pipeline.lineage import file_sha256
from app.pipeline.validate import validate
from app.settings import AppSettings
from app.store import Store
from tests.app.helpers import PATIENCE, REPO_ROOT

INTERVAL = 0.2


def _settings(store: Store, **overrides: object) -> AppSettings:
    return AppSettings(store_dir=store.root, **overrides)


def _latest(store: Store) -> dict | None:
    try:
        return orjson.loads((store.forecasts_dir / LATEST_NAME).read_bytes())
    except FileNotFoundError:
        return None


def test_tick_writes_latest_forecast_after_the_last_observation(store_copy: Store) -> None:
    ticker = Ticker(store_copy, _settings(store_copy, forecast_horizon=26), identity="test:1")
    written = ticker.tick()
    ticker.lock.release()

    latest = _latest(store_copy)
    assert latest == written
    assert set(latest) >= {"generated_at", "run_id", "last_observed", "horizon", "forecast"}
    assert latest["run_id"] == store_copy.current_run_id()
    assert latest["last_observed"] == "2001-12-29"
    assert latest["horizon"] == 26
    dates = np.array([point["date"] for point in latest["forecast"]], dtype="datetime64[D]")
    values = np.array([point["value"] for point in latest["forecast"]])
    assert len(dates) == 26
    assert dates[0] == np.datetime64("2002-01-05")
    assert set(np.diff(dates).astype(int)) == {7}
    # Weekly CO2 at the end of 2001 was about 371 ppm; the forecast must be in that world.
    assert np.all(np.isfinite(values))
    assert values.min() > 360 and values.max() < 385
    # Interval bounds at the default levels, the model family and the lineage ride along.
    assert latest["levels"] == [80, 95]
    assert latest["family"] == "xgboost"
    for point in latest["forecast"]:
        assert point["lower"]["95"] <= point["lower"]["80"] < point["value"]
        assert point["value"] < point["upper"]["80"] <= point["upper"]["95"]
    assert latest["dataset"]["validated_by"] == "run-a"
    assert latest["dataset"]["sha256"] == file_sha256(store_copy.dataset_path)


def test_ticker_ignores_a_dataset_changed_after_validation(store_copy: Store) -> None:
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    before = ticker.tick()
    # The same series rewritten in ppb: it fails validation, and is not forecast from.
    lines = store_copy.dataset_path.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    ppb = [f"{d},{float(v) * 1000:.0f}" if v else f"{d}," for d, v in rows]
    store_copy.dataset_path.write_text("\n".join(["date,co2", *ppb]) + "\n")
    assert not validate(store_copy, "ppb")["ok"]
    after = ticker.tick()
    ticker.lock.release()
    assert after["last_observed"] == before["last_observed"]
    assert [p["value"] for p in after["forecast"]] == [p["value"] for p in before["forecast"]]

    fresh = Ticker(store_copy, _settings(store_copy), identity="test:2")
    assert fresh.tick() is None
    fresh.lock.release()


def test_forecasts_start_from_the_last_observed_week(store_copy: Store) -> None:
    lines = store_copy.dataset_path.read_text().splitlines()
    for i in (-3, -2, -1):
        lines[i] = lines[i].split(",")[0] + ","
    store_copy.dataset_path.write_text("\n".join(lines) + "\n")
    assert validate(store_copy, "trailing-gap")["ok"]
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    latest = ticker.tick()
    ticker.lock.release()
    assert latest["last_observed"] == "2001-12-08"
    assert latest["forecast"][0]["date"] == "2001-12-15"
    assert latest["dataset"]["validated_by"] == "trailing-gap"


def test_history_stays_bounded_and_keeps_the_newest_forecasts(store_copy: Store) -> None:
    limit = 3
    ticker = Ticker(store_copy, _settings(store_copy, forecast_history_limit=limit), "test:1")
    history = store_copy.forecasts_dir / HISTORY_NAME
    stamps = []
    for _ in range(10):
        stamps.append(ticker.tick()["generated_at"])
        kept = [orjson.loads(line)["generated_at"] for line in history.read_bytes().splitlines()]
        assert min(len(stamps), limit) <= len(kept) <= 2 * limit
        assert kept == stamps[-len(kept) :]
    ticker.lock.release()


def test_history_drops_a_line_torn_by_a_writer_that_died(store_copy: Store) -> None:
    history = store_copy.forecasts_dir / HISTORY_NAME
    history.parent.mkdir(parents=True)
    history.write_bytes(b'{"generated_at": "earlier"}\n{"generated_at": "tor')
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    stamp = ticker.tick()["generated_at"]
    ticker.lock.release()

    kept = [orjson.loads(line)["generated_at"] for line in history.read_bytes().splitlines()]
    assert kept == ["earlier", stamp]


def test_tick_writes_nothing_before_a_model_is_promoted(store_copy: Store) -> None:
    store_copy.current_path.unlink()
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    assert ticker.tick() is None
    ticker.lock.release()
    assert _latest(store_copy) is None


def test_ticker_follows_current_and_keeps_its_model_when_the_new_one_is_broken(
    store_copy: Store,
) -> None:
    first = store_copy.current_run_id()
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    assert ticker.tick()["run_id"] == first

    broken = store_copy.run_dir("broken-run")
    shutil.copytree(store_copy.run_dir(first), broken)
    (broken / "model.ubj").write_bytes(b"not a model")
    store_copy.set_current("broken-run")
    assert ticker.tick()["run_id"] == first

    copy = store_copy.run_dir("copy-run")
    shutil.copytree(store_copy.run_dir(first), copy)
    metrics = orjson.loads((copy / "metrics.json").read_bytes())
    (copy / "metrics.json").write_bytes(orjson.dumps({**metrics, "run_id": "copy-run"}))
    store_copy.set_current("copy-run")
    assert ticker.tick()["run_id"] == "copy-run"
    ticker.lock.release()


def test_ticker_retries_a_promoted_run_that_failed_to_load_on_its_next_tick(
    store_copy: Store,
) -> None:
    first = store_copy.current_run_id()
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    assert ticker.tick()["run_id"] == first

    late = store_copy.run_dir("late-run")
    shutil.copytree(store_copy.run_dir(first), late)
    model = (late / "model.ubj").read_bytes()
    (late / "model.ubj").unlink()  # CURRENT is visible before the run's files (EFS cache lag)
    store_copy.set_current("late-run")
    assert ticker.tick()["run_id"] == first

    (late / "model.ubj").write_bytes(model)
    assert ticker.tick()["run_id"] == "late-run"
    ticker.lock.release()


# --- replicas as real processes ---------------------------------------------------------------


def _start_ticker(store: Store, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "STORE_DIR": str(store.root),
        "FORECAST_INTERVAL_SECONDS": str(INTERVAL),
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO_ROOT),
    }
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "forecast"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _writers(store: Store) -> list[str]:
    try:
        lines = (store.forecasts_dir / HISTORY_NAME).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    writers = []
    for line in lines:
        try:
            writers.append(orjson.loads(line)["writer"])
        except orjson.JSONDecodeError:  # a line being appended right now
            continue
    return writers


@pytest.mark.slow
def test_two_tickers_have_one_writer_and_the_standby_takes_over_when_it_dies(
    store_copy: Store, tmp_path: Path
) -> None:
    tickers = [_start_ticker(store_copy, tmp_path / f"ticker{i}.log") for i in range(2)]
    try:
        _wait_for(lambda: len(_writers(store_copy)) >= 8, PATIENCE, "eight forecasts")
        writers = _writers(store_copy)
        assert len(set(writers)) == 1, f"more than one writer: {set(writers)}"
        writer_pid = int(writers[-1].rsplit(":", 1)[1])
        by_pid = {ticker.pid: ticker for ticker in tickers}
        assert writer_pid in by_pid
        standby = next(ticker for ticker in tickers if ticker.pid != writer_pid)
        assert standby.poll() is None

        by_pid[writer_pid].send_signal(signal.SIGKILL)
        _wait_for(
            lambda: (_latest(store_copy) or {}).get("writer", "").endswith(f":{standby.pid}"),
            PATIENCE,
            "the standby to take over",
        )

        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=PATIENCE) == 0
        log = (tmp_path / f"ticker{tickers.index(standby)}.log").read_text()
        assert "standby" in log
        assert "took the writer lock" in log
        assert "forecast ticker stopped" in log
    finally:
        for ticker in tickers:
            if ticker.poll() is None:
                ticker.kill()
                ticker.wait()


def _ingest_weeks(store: Store, tmp_path: Path, values: list[float]) -> dict:
    """Publish `values` as the weeks after the store's last one, in NOAA's format, and ingest."""
    from app.forecasting.model import read_series
    from app.loop.ingest import ingest, noaa_weekly_text

    last = read_series(store.dataset_path)[0][-1]
    dates = last + np.arange(1, len(values) + 1) * np.timedelta64(7, "D")
    source = tmp_path / "co2_weekly_mlo.txt"
    source.write_text(noaa_weekly_text(dates, np.array(values)))
    return ingest(store, str(source))


def test_the_forecast_starts_from_the_newest_week_ingest_accepted_without_warnings(
    store_copy: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The defect: weeks ingest accepted (and validated) did not move the forecast until a
    training run validated them, and every changed dataset logged a warning."""
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    assert ticker.tick()["last_observed"] == "2001-12-29"
    with caplog.at_level(logging.WARNING, logger="app.loop.ticker"):
        for week, value in enumerate([371.9, 372.1, 372.4], start=1):
            outcome = _ingest_weeks(store_copy, tmp_path, [value])
            assert outcome["changed"] and outcome["validated"]
            latest = ticker.tick()
            assert latest["last_observed"] == str(np.datetime64("2001-12-29") + 7 * week)
            assert latest["dataset"]["validated_by"] == "ingest"
            assert latest["dataset"]["sha256"] == file_sha256(store_copy.dataset_path)
            ticker.tick()  # nothing new: the same forecast, no log line
    assert [r.getMessage() for r in caplog.records] == []
    # An ingest that finds nothing new leaves the dataset accepted, for a restarted ticker too.
    from app.loop.ingest import ingest

    again = ingest(store_copy, str(tmp_path / "co2_weekly_mlo.txt"))
    assert not again["changed"] and again["validated"]
    fresh = Ticker(store_copy, _settings(store_copy), identity="test:2")
    ticker.lock.release()
    assert fresh.tick()["last_observed"] == "2002-01-19"
    fresh.lock.release()


def test_a_dataset_nobody_accepted_warns_once_not_every_tick(
    store_copy: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ticker = Ticker(store_copy, _settings(store_copy), identity="test:1")
    before = ticker.tick()
    lines = store_copy.dataset_path.read_text().splitlines()
    store_copy.dataset_path.write_text("\n".join([*lines, "2002-01-05,372.0"]) + "\n")
    with caplog.at_level(logging.WARNING, logger="app.loop.ticker"):
        for _ in range(5):
            assert ticker.tick()["last_observed"] == before["last_observed"]
    ticker.lock.release()
    warnings = [r.getMessage() for r in caplog.records]
    assert (
        len(warnings) == 1 and "accepted neither by ingest nor by a validation run" in warnings[0]
    )
