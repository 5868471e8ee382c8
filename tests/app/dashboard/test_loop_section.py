"""The loop on the dashboard: what ingest and monitor left in the store, rendered."""

from __future__ import annotations

import json

import pytest

from app.dashboard.loop_section import (
    drift_status,
    error_band_figure,
    forecasts_vs_actuals_figure,
    last_ingest,
    loop_section,
    read_loop,
    retrains_table,
)
from app.loop.monitor import MonitorSettings, check, record_signal
from app.store import Store
from tests.app.loop.test_monitor import Future

SETTINGS = MonitorSettings(monitor_on_drift="log")


def text(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_an_empty_store_says_not_yet(tmp_path):
    section = text(loop_section(Store(tmp_path)))
    assert "No ingest yet." in section
    assert "No check yet" in section
    assert "No drift signal yet." in section


@pytest.mark.slow
def test_a_shift_shows_scores_band_drift_figures_and_the_retrain(store_copy):
    future = Future(store_copy)
    check(store_copy, SETTINGS)
    future.release(6)
    check(store_copy, SETTINGS)
    future.shift(3.0)
    for _ in range(8):
        future.release(1)
        status = check(store_copy, SETTINGS).status
    record_signal(store_copy, status, action="retrain", run_id="run-a", decision=None)

    loop = read_loop(store_copy)
    names = [trace.name for trace in forecasts_vs_actuals_figure(loop).data]
    assert names == ["observed", "forecast 1 week ahead", "forecast 4 weeks ahead"]
    band = error_band_figure(loop)
    assert "backtest band (5th-95th percentile)" in [trace.name for trace in band.data]
    realized = next(t for t in band.data if t.name == "realized rolling MAE")
    assert len(realized.x) == 10

    status_text = text(drift_status(loop))
    assert "TRIPPED" in status_text and "Mann-Whitney U" in status_text
    assert "last signal" in status_text
    ingest_text = text(last_ingest(loop))
    assert "14 appended (14 observed)" not in ingest_text  # the last ingest, not the total
    assert "1 appended (1 observed), 0 revised" in ingest_text
    retrains = text(retrains_table(loop))
    # The signal's run is the promoted first run here: its gate decision is read from the store.
    assert "run-a" in retrains and "promoted" in retrains and "first model" in retrains
