"""`python -m app gate` and `python -m app promote RUN_ID`: decide what `models/CURRENT` serves.

The gate promotes a run only when it beats the seasonal-naive baseline on its holdout and, if a
model is already current, beats that model's holdout MAE by `PROMOTE_MARGIN` (a fraction). Not
promoting is a normal outcome (exit 0); the reason is in `models/<run_id>/decision.json`.

`promote RUN_ID` points CURRENT at any existing run that loads: the rollback.

Both refuse (exit 1) a run whose model file does not match the sha256 and size `train` recorded,
or does not load and predict in a child process (`app.model_check`).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from app.cli import command_settings, open_store
from app.model import METRICS_FILE, ModelLoadError
from app.model_check import check_run
from app.store import Store, check_run_id

log = logging.getLogger(__name__)


class GateError(Exception):
    """The gate cannot decide (no such run, unreadable metrics)."""


def _holdout_mae(store: Store, run_id: str) -> float | None:
    try:
        return float(store.read_json(store.run_dir(run_id) / METRICS_FILE)["holdout"]["mae"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mae_on_candidate_folds(store: Store, run_id: str, candidate: dict[str, Any]) -> float | None:
    """The MAE of run `run_id`'s model on the candidate's holdout pairs: the same weeks of the
    same data, so a candidate whose holdout holds harder weeks (a drift) is compared fairly.
    None when the model does not load or the candidate's weeks are no longer in the dataset."""
    import numpy as np

    # The current model passed check_run when it was promoted, so it loads in this process.
    from app.model import Forecaster, fill_gaps, read_series
    from app.train import HOLDOUT_WEEKS, make_split

    dataset = candidate.get("dataset") or {}
    path = store.root / str(dataset.get("path", ""))
    try:
        model = Forecaster.load(store.run_dir(run_id))
        dates, values = read_series(path)
    except (ModelLoadError, OSError, ValueError):
        return None
    values = values[dates <= np.datetime64(str(dataset.get("last_date")), "D")]
    if len(values) != dataset.get("weeks"):
        return None
    n = len(values)
    filled = fill_gaps(values)
    split = make_split(filled, ~np.isnan(values), np.arange(n - HOLDOUT_WEEKS - 1, n - 1), n)
    predicted = split.anchors + model.booster.inplace_predict(split.features)
    return round(float(np.mean(np.abs(predicted - split.targets))), 5)


def _check_servable(store: Store, run_id: str) -> None:
    """GateError unless the run's model file matches its record and loads in a child process."""
    try:
        check_run(store.run_dir(run_id))
    except ModelLoadError as exc:
        raise GateError(f"run {run_id} cannot be served: {exc}") from None


def latest_trained_run(store: Store) -> str | None:
    """The newest run (by id) that finished training."""
    trained = [r for r in store.list_runs() if (store.run_dir(r) / METRICS_FILE).exists()]
    return trained[-1] if trained else None


def decide(store: Store, run_id: str, margin: float) -> dict[str, Any]:
    """Apply the promotion rules to `run_id`, update CURRENT when it wins, write decision.json."""
    metrics_path = store.run_dir(run_id) / METRICS_FILE
    if not metrics_path.exists():
        raise GateError(f"run {run_id} has no trained model ({metrics_path} is missing)")
    candidate = store.read_json(metrics_path)
    holdout = candidate["holdout"]
    mae, naive_mae = float(holdout["mae"]), float(holdout["naive_mae"])
    previous = store.current_run_id()
    previous_mae = None
    basis = "on the same weeks"
    if previous and previous != run_id:
        previous_mae = _mae_on_candidate_folds(store, previous, candidate)
        if previous_mae is None:
            previous_mae = _holdout_mae(store, previous)
            basis = "on its own holdout"

    if mae >= naive_mae:
        promoted = False
        reason = f"holdout MAE {mae:.4f} does not beat the seasonal-naive MAE {naive_mae:.4f}"
    elif previous is None:
        promoted = True
        reason = f"first model: holdout MAE {mae:.4f} beats the seasonal-naive MAE {naive_mae:.4f}"
    elif previous == run_id:
        promoted = True
        reason = "already the current model"
    elif previous_mae is None:
        promoted = True
        reason = f"the current model {previous} has no readable metrics; replacing it"
    elif mae < previous_mae * (1.0 - margin):
        promoted = True
        reason = (
            f"holdout MAE {mae:.4f} beats the current model {previous} ({previous_mae:.4f} "
            f"{basis}) by more than the {margin:.1%} margin"
        )
    else:
        promoted = False
        reason = (
            f"holdout MAE {mae:.4f} does not beat the current model {previous} "
            f"({previous_mae:.4f} {basis}) by the {margin:.1%} margin"
        )

    if promoted and previous != run_id:
        _check_servable(store, run_id)
        store.set_current(run_id)
    decision = {
        "run_id": run_id,
        "promoted": promoted,
        "reason": reason,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous": previous,
        "holdout_mae": mae,
        "naive_mae": naive_mae,
        "previous_mae": previous_mae,
        "margin": margin,
    }
    store.write_json(store.run_dir(run_id) / "decision.json", decision)
    return decision


def promote(store: Store, run_id: str) -> dict[str, Any]:
    """Point CURRENT at an existing run that loads (a rollback or a manual promotion)."""
    try:
        check_run_id(run_id)
    except ValueError as exc:
        raise GateError(str(exc)) from None
    if run_id not in store.list_runs():
        known = ", ".join(store.list_runs()) or "none"
        raise GateError(
            f"unknown run {run_id!r}: {store.run_dir(run_id)} does not exist (runs: {known})"
        )
    _check_servable(store, run_id)
    previous = store.current_run_id()
    store.set_current(run_id)
    decision = {
        "run_id": run_id,
        "promoted": True,
        "reason": "promoted by hand with `python -m app promote`",
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous": previous,
    }
    store.write_json(store.run_dir(run_id) / "decision.json", decision)
    return decision


def main(argv: list[str]) -> int:
    settings = command_settings("gate", argv)
    store = open_store(settings)
    run_id = settings.run_id or latest_trained_run(store)
    if run_id is None:
        print("error: no trained run to gate in models/; run train first", file=sys.stderr)
        return 1
    try:
        decision = decide(store, run_id, settings.promote_margin)
    except GateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info(
        "run %s %s: %s",
        run_id,
        "promoted to CURRENT" if decision["promoted"] else "not promoted",
        decision["reason"],
    )
    return 0


def promote_main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m app promote RUN_ID", file=sys.stderr)
        return 2
    store = open_store(command_settings("promote"))
    try:
        decision = promote(store, argv[0])
    except GateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("CURRENT now %s (was %s)", decision["run_id"], decision["previous"])
    return 0
