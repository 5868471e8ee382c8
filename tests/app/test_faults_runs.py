"""Faults of the runs: a replay restarted mid-way, train and gate killed between their writes,
concurrent gates, and probes that must die with a killed parent (issue 24, points 6 and 7)."""

from __future__ import annotations

import numpy as np

from app.model import read_series
from app.replay import Replay
from app.store import SHIPPED_DATASET, Store


def test_a_restarted_replay_keeps_its_shift_week(tmp_path):
    """The defect: `seed` computed the shift from the weeks still held back, so after a restart
    the step landed later: +3, then 0 for 22 weeks, then +3 again."""
    store = Store(tmp_path / "store")
    first = Replay.seed(store, years=1, shift_ppm=3.0)
    shift_day = first.shift_date()
    assert shift_day is not None
    first.release(10)
    restarted = Replay.seed(store, years=1, shift_ppm=3.0)
    assert restarted.shift_date() == shift_day
    restarted.release(len(restarted.dates))
    dates, values = read_series(store.dataset_path)
    shipped_dates, shipped = read_series(SHIPPED_DATASET)
    assert np.array_equal(dates, shipped_dates)
    step = np.round(values - shipped, 2)
    observed = ~np.isnan(step)
    shifted = dates >= np.datetime64(shift_day)
    assert set(step[observed & shifted]) == {3.0}
    assert set(step[observed & ~shifted]) == {0.0}
    assert (store.root / "replay" / "schedule.json").exists()


def test_a_replay_restarted_after_its_shift_week_keeps_shifting(tmp_path):
    store = Store(tmp_path / "store")
    first = Replay.seed(store, years=1, shift_ppm=3.0)
    shift_day = first.shift_date()
    first.release(40)
    restarted = Replay.seed(store, years=1, shift_ppm=3.0)
    assert restarted.shift_date() == shift_day
    restarted.release(len(restarted.dates))
    dates, values = read_series(store.dataset_path)
    _, shipped = read_series(SHIPPED_DATASET)
    step = np.round(values - shipped, 2)
    after = dates >= np.datetime64(shift_day)
    assert set(step[after & ~np.isnan(step)]) == {3.0}
