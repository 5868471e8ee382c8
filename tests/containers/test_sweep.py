"""A hyperparameter sweep of the digits stack under run_local: one execution of the stack's own
state machine runs six trials of the unchanged digits image as its Distributed Map declares them,
at most two at once, two of them failing (max_depth 17 is past what the image accepts, 1-16) and
tolerated; the platform's pick-trial chooses the most accurate trial, records every trial in
models/<run>/sweep.json and hands the chosen run back through its task token; the platform gate
then compares that run with the current model (none yet) and promotes it, and the rollout makes
it current. Small num_round values: each trial trains in seconds."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest

from preflight.offline import run_stack
from preflight.run_local import Session, read_stack, remove_session
from preflight.run_local.pipeline import walk_state_machine
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

SWEEP = {
    "strategy": "grid",
    # Every parameter the stack's own sweep names too: an override merges into its map.
    "parameters": {"num_round": [3, 30], "max_depth": [1, 4, 17], "eta": [0.3]},
    "max_parallel": 2,
    "tolerated_failures": 2,
}
OVERRIDES = {
    "workload": {"training": {"sweep": SWEEP}},
    # No S3 endpoint here: the export has its own test (test_s3_channels.py).
    "artifacts": {"export": False},
}
EVENT = re.compile(
    r"\[pipeline\] Sweep\[(\d+) (t\d+)\] (started|succeeded|failed \(.*?\)) at (\S+)"
)


def _intervals(lines: list[str]) -> dict[str, list[dt.datetime]]:
    """Each trial's start and end, as the run_local log stamps them."""
    found: dict[str, list[dt.datetime]] = {}
    for line in lines:
        match = EVENT.search(line)
        if match:
            when = dt.datetime.strptime(match.group(4), "%H:%M:%S.%f")
            found.setdefault(match.group(2), []).append(when)
    return found


def _most_at_once(intervals: dict[str, list[dt.datetime]]) -> int:
    edges = sorted(
        [(start, 1) for start, _ in intervals.values()]
        + [(end, -1) for _, end in intervals.values()],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_a_sweep_trains_its_trials_two_at_a_time_and_promotes_the_best(
    base: str, platform_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from sklearn.datasets import load_digits

    view = read_stack(run_stack("digits", OVERRIDES))
    store = tmp_path_factory.mktemp("digits-sweep")
    digits = load_digits()
    order = np.random.default_rng(11).permutation(len(digits.target))[:1200]
    rows = np.column_stack([digits.data[order], digits.target[order]]).astype(int)
    np.savetxt(channel_dir(view, store, "datasets/digits") / "train.csv", rows, "%d", ",")
    root = store_root(view, store)
    out = Lines()
    session = Session(
        view=view, store=store, base_image=base, out=out, retry_scale=0.01, publish_ephemeral=True
    )
    try:
        assert walk_state_machine(session) == 0, out.text()
    finally:
        remove_session(session.id)
    log = out.text()

    # Six trials, never more than two training at once, and two did run together.
    intervals = _intervals(out.lines)
    assert sorted(intervals) == [f"t0{n}" for n in range(1, 7)], log
    assert all(len(times) == 2 for times in intervals.values()), intervals
    assert _most_at_once(intervals) == 2, intervals
    assert "Sweep: Map (Distributed) over 6 items, at most 2 at once" in log

    # Every trial in sweep.json: hyperparameters, objective or failure.
    (sweep_dir,) = [p for p in (root / "models").iterdir() if (p / "sweep.json").is_file()]
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    run = sweep["run_id"]
    trials = {t["id"]: t for t in sweep["trials"]}
    assert list(trials) == [f"t0{n}" for n in range(1, 7)]
    failed = {i for i, t in trials.items() if t["status"] == "failed"}
    assert failed == {i for i, t in trials.items() if t["hyperparameters"]["max_depth"] == 17}
    assert len(failed) == 2 and sweep["failed"] == 2
    for ident in failed:
        assert "max_depth" in trials[ident]["reason"], trials[ident]
        # Recorded like a failed training: the run's report, with how its task stopped.
        report = json.loads((root / "models" / f"{run}-{ident}" / "report.json").read_text())
        assert report["status"] == "failed" and report["task"]["step"] == "train", report
    scored = {i: t["objective"] for i, t in trials.items() if t["status"] == "trained"}
    assert len(scored) == 4 and all(isinstance(v, float) for v in scored.values())
    for ident, accuracy in scored.items():
        metrics = json.loads((root / "models" / f"{run}-{ident}" / "metrics.json").read_text())
        assert metrics["accuracy"] == accuracy
        # Each trial trained with its own hyperparameters over the stack's.
        assert trials[ident]["hyperparameters"]["num_round"] in (3, 30)
    best = max(scored, key=lambda i: (scored[i], -int(i[1:])))
    assert sweep["best"] == {"id": best, "run_id": f"{run}-{best}", "objective": scored[best]}

    # The gate compared exactly that run, promoted it, and the rollout made it current.
    chosen = f"{run}-{best}"
    decision = json.loads((root / "models" / chosen / "decision.json").read_text())
    assert decision["run_id"] == chosen and decision["promoted"] is True, decision
    assert decision["current_run"] is None  # nothing was promoted before
    assert (root / "models" / "CURRENT").read_text().strip() == chosen
    others = [f"{run}-{i}" for i in trials if i != best]
    assert not any((root / "models" / r / "decision.json").exists() for r in others)
    assert "PickTrial: SendTaskSuccess" in log and f'"run_id": "{chosen}"' in log
