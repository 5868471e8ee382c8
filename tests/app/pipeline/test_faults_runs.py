"""Faults of the runs: a replay restarted mid-way, train and gate killed between their writes,
concurrent gates, and probes that must die with a killed parent (issue 24, points 6 and 7)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.forecasting.model import read_series
from app.local.replay import Replay
from app.store import SHIPPED_DATASET, Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import PATIENCE, REPO_ROOT, app_env, run_app
from tests.app.pipeline.test_gate import clone_run, current_mae


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


def test_a_restarted_replay_keeps_its_shift_week(tmp_path):
    """The defect: `seed` computed the shift from the weeks still held back, so after a restart
    the step landed later: +3, then 0 for 22 weeks, then +3 again."""
    store = Store(tmp_path / "store")
    first = Replay.seed(store, years=1, shift=3.0)
    shift_day = first.shift_date()
    assert shift_day is not None
    first.release(10)
    restarted = Replay.seed(store, years=1, shift=3.0)
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
    first = Replay.seed(store, years=1, shift=3.0)
    shift_day = first.shift_date()
    first.release(40)
    restarted = Replay.seed(store, years=1, shift=3.0)
    assert restarted.shift_date() == shift_day
    restarted.release(len(restarted.dates))
    dates, values = read_series(store.dataset_path)
    _, shipped = read_series(SHIPPED_DATASET)
    step = np.round(values - shipped, 2)
    after = dates >= np.datetime64(shift_day)
    assert set(step[after & ~np.isnan(step)]) == {3.0}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_killed_promote_leaves_no_orphaned_probe(store_copy: Store) -> None:
    """The defect: a killed gate orphaned its model_check probe (2 of 15 kills). The probe here
    blocks opening a FIFO in place of the model file, so it is surely running at the kill."""
    shutil.copytree(store_copy.run_dir(FIRST_RUN), store_copy.run_dir("run-fifo"))
    (store_copy.run_dir("run-fifo") / "decision.json").unlink()
    model = store_copy.run_dir("run-fifo") / "model.ubj"
    model.unlink()
    os.mkfifo(model)
    promote = subprocess.Popen(
        [sys.executable, "-m", "app", "promote", "run-fifo"],
        cwd=REPO_ROOT,
        env=app_env(store_copy.root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probes: list[int] = []
    try:
        deadline = time.monotonic() + PATIENCE
        while not probes and time.monotonic() < deadline:
            time.sleep(0.05)
            probes = children_of(promote.pid)
        assert probes, "the probe never started"
        time.sleep(0.5)  # the probe is past its start, blocked on the FIFO
        promote.kill()
        promote.wait()
        deadline = time.monotonic() + PATIENCE
        while any(alive(pid) for pid in probes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in probes), "the probe outlived the killed promote"
    finally:
        for pid in probes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if promote.poll() is None:
            promote.kill()
    assert store_copy.current_run_id() == FIRST_RUN


@pytest.mark.slow
@pytest.mark.parametrize("point", ["train:staged", "gate:decided"])
def test_a_kill_between_writes_leaves_a_whole_run_and_a_servable_current(
    store_copy: Store, point: str
) -> None:
    root = store_copy.root
    command = point.split(":")[0]
    if command == "gate":  # a better copy of the current run: the gate promotes it
        clone_run(store_copy, "run-k", mae=current_mae(store_copy) * 0.5)
    else:
        assert run_app("validate", store_root=root, RUN_ID="run-k").returncode == 0
    killed = run_app(command, store_root=root, RUN_ID="run-k", MLOPS_CRASH_AT=point)
    assert killed.returncode == -signal.SIGKILL
    runs = store_copy.list_runs()
    for run_id in runs:  # every run directory is whole
        assert (store_copy.run_dir(run_id) / "metrics.json").exists(), run_id
    assert store_copy.current_run_id() in runs
    # The next command cleans up what the kill left and completes the step.
    again = run_app(command, store_root=root, RUN_ID="run-k")
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in store_copy.models_dir.iterdir() if p.name.endswith(".tmp")]
    assert (store_copy.run_dir("run-k") / "metrics.json").exists()
    if command == "gate":
        assert store_copy.current_run_id() == "run-k"
