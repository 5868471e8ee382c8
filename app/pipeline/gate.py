"""`python -m app gate` and `python -m app promote RUN_ID`: decide what `models/CURRENT` serves.

The gate compares like with like. The candidate's rolling-origin backtest
(`app.forecasting.backtest`, from metrics.json) and the current model's recipe scored again on the
candidate's very folds (same dataset, same weeks; reused from the current run's metrics when those
were scored on them). It promotes only a candidate that

1. has calibrated intervals: at every level, backtest coverage within COVERAGE_TOLERANCE points
   of it, or no further off than the current model's coverage on the same folds plus
   `COVERAGE_SLACK` points (after a shift, the folds that hold it throw every model's coverage
   off; a candidate is judged against what the current model manages there, not a fixed band);
2. beats seasonal naive plus drift on mean backtest MAE;
3. beats the current model's mean MAE on the same folds by `PROMOTE_MARGIN` (a fraction); the
   same recipe scores the same by construction, so there newer data decides;
4. loads: its model file matches the sha256 and size `train` recorded, and loads and predicts
   in a child process (`app.forecasting.model_check`; the single call site `_check_servable`).

Promotion is a compare-and-swap under the store's gate lock (`mlops_contract.gate_lock`, the one
the platform's gate takes too): two overlapping gates (or a gate and a `promote`) run one after
the other, and CURRENT changes only if it still
names the run the decision compared against. Not promoting is a normal outcome (exit 0); the
reason, naming the folds and the numbers, is in `models/<run_id>/decision.json`.

`promote RUN_ID` points CURRENT at any existing run that loads: the rollback.

Both refuse (exit 1) a run whose model file does not match the sha256 and size `train` recorded,
or does not load and predict in a child process (`app.forecasting.model_check`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from app.cli import command_settings, open_store
from app.forecasting.backtest import backtest, same_folds
from app.forecasting.model import METRICS_FILE, ModelLoadError, read_series
from app.forecasting.model_check import check_run, record_probe
from app.pipeline.lineage import file_sha256
from app.processes import crash_point
from app.store import DamagedFileError, Store
from mlops_contract import DECISION_FILE, check_run_id, gate_lock

log = logging.getLogger(__name__)

COVERAGE_TOLERANCE = 5.0
"""Largest allowed gap, in percentage points, between backtest coverage and a nominal level."""


class GateError(Exception):
    """The gate cannot decide (no such run, unreadable metrics, changed dataset)."""


def _metrics(store: Store, run_id: str) -> dict[str, Any] | None:
    try:
        metrics = store.read_json(store.run_dir(run_id) / METRICS_FILE)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _check_servable(store: Store, run_id: str) -> None:
    """GateError unless the run's model file (either family's) matches its record and loads and
    predicts in a child process: every promotion, by gate or by hand, passes here, and writes
    the run's probe.json (app.forecasting.model_check) when it does."""
    try:
        verified = check_run(store.run_dir(run_id))
    except ModelLoadError as exc:
        raise GateError(f"run {run_id} cannot be served: {exc}") from None
    # Servers loading these exact bytes with these libraries may skip their own probe.
    record_probe(store.run_dir(run_id), verified)


def latest_trained_run(store: Store) -> str | None:
    """The newest run (by id) that finished training."""
    trained = [r for r in store.list_runs() if (store.run_dir(r) / METRICS_FILE).exists()]
    return trained[-1] if trained else None


def _candidate_series(store: Store, metrics: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The exact weeks the candidate was backtested on; GateError if the dataset changed."""
    dataset = metrics["dataset"]
    path = store.root / dataset["path"]
    if not path.exists() or file_sha256(path) != dataset["sha256"]:
        raise GateError(
            f"the dataset {dataset['path']} changed since run {metrics['run_id']} trained on it "
            f"(sha256 {dataset['sha256'][:12]}…); the current model cannot be scored on the "
            "same folds: validate and train again"
        )
    dates, values = read_series(path)
    if dataset.get("run_date"):
        keep = dates <= np.datetime64(date.fromisoformat(dataset["run_date"]))
        dates, values = dates[keep], values[keep]
    return dates, values


def score_current(
    store: Store, candidate: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The current model's backtest on the candidate's folds, and whether it was recomputed."""
    card = candidate["backtest"]
    if (
        current.get("dataset", {}).get("sha256") == candidate["dataset"]["sha256"]
        and current.get("dataset", {}).get("run_date") == candidate["dataset"].get("run_date")
        and same_folds(current.get("backtest", {}), card)
    ):
        return current["backtest"], False
    dates, values = _candidate_series(store, candidate)
    recipe = {**current["recipe"], "threads": len(os.sched_getaffinity(0))}
    log.info("scoring the current model's recipe (%s) on the candidate's folds", recipe["family"])
    rescored = backtest(dates, values, recipe)
    rescored.pop("intervals")
    return rescored, True


def _fold_list(card: dict[str, Any]) -> str:
    folds = card["folds"]
    return (
        f"{len(folds)} folds of {card['spec']['fold_weeks']} weeks, "
        f"{folds[0]['first_date']}..{folds[-1]['last_date']}"
    )


def _per_fold(card: dict[str, Any]) -> str:
    return "/".join(f"{fold['mae']:.3f}" for fold in card["folds"])


def _same_recipe(first: dict[str, Any], second: dict[str, Any]) -> bool:
    keys = ("family", "params", "rounds", "feature_version")
    return all(first.get(key) == second.get(key) for key in keys)


def _miscalibrated(
    coverage: dict[str, float], reference: dict[str, float] | None = None, slack: float = 1.0
) -> list[str]:
    """The levels whose coverage is more than COVERAGE_TOLERANCE points off, and (when the
    current model's coverage on the same folds is known) also more than `slack` points further
    off than the current model's."""
    bad = []
    for level, value in coverage.items():
        gap = abs(float(value) - float(level))
        allowed = COVERAGE_TOLERANCE
        if reference is not None and level in reference:
            allowed = max(allowed, abs(float(reference[level]) - float(level)) + slack)
        if gap > allowed:
            bad.append(f"{value:.1f}% for the {level}% level")
    return bad


def _judge(
    store: Store,
    run_id: str,
    metrics: dict[str, Any],
    previous: str | None,
    margin: float,
    slack: float = 1.0,
) -> tuple[bool, str, dict[str, Any]]:
    """(promote?, reason, figures) for the candidate against CURRENT = `previous`.

    Every rule is checked, so a refusal names all the rules the candidate breaks."""
    card = metrics["backtest"]
    mae, drift_mae = float(card["mean"]["mae"]), float(card["mean"]["drift_mae"])
    folds = _fold_list(card)
    figures: dict[str, Any] = {
        "folds": [[f["first_date"], f["last_date"]] for f in card["folds"]],
        "backtest_mae": mae,
        "fold_mae": [f["mae"] for f in card["folds"]],
        "drift_mae": drift_mae,
        "coverage": metrics["coverage"],
    }
    if previous == run_id:
        return True, "already the current model", figures
    failures = []
    if mae >= drift_mae:
        failures.append(
            f"backtest MAE {mae:.4f} (per fold {_per_fold(card)}) does not beat "
            f"seasonal naive + drift {drift_mae:.4f}"
        )
    current = _metrics(store, previous) if previous is not None else None
    if previous is None:
        verdict = f"first model: backtest MAE {mae:.4f}, seasonal naive + drift {drift_mae:.4f}"
    elif current is None or "recipe" not in current:
        verdict = (
            f"the current model {previous} has no readable backtest recipe; replacing it "
            f"(backtest MAE {mae:.4f}, seasonal naive + drift {drift_mae:.4f})"
        )
    else:
        current_card, rescored = score_current(store, metrics, current)
        current_mae = float(current_card["mean"]["mae"])
        figures.update(
            previous_mae=current_mae,
            previous_fold_mae=[f["mae"] for f in current_card["folds"]],
            previous_rescored=rescored,
            previous_coverage=current_card.get("coverage"),
        )
        verdict = (
            f"backtest MAE {mae:.4f} (per fold {_per_fold(card)}) against the current model "
            f"{previous} scored on the same folds: {current_mae:.4f} "
            f"(per fold {_per_fold(current_card)})"
        )
        if _same_recipe(metrics["recipe"], current["recipe"]):
            last, current_last = metrics["dataset"]["last_date"], current["dataset"]["last_date"]
            if last > current_last:
                verdict = f"same recipe, newer data (to {last}): {verdict}"
            else:
                failures.append(f"same recipe and no newer data than the current model: {verdict}")
        elif mae < current_mae * (1.0 - margin):
            verdict += f", better by more than the {margin:.1%} margin"
        else:
            failures.append(f"{verdict}, not better by the {margin:.1%} margin")
    reference = figures.get("previous_coverage")
    bad = _miscalibrated(metrics["coverage"], reference, slack)
    if bad:
        against = (
            f" and more than {slack:g} further off than the current model's on the same folds "
            f"({', '.join(f'{v:.1f}%' for v in reference.values())})"
            if reference
            else ""
        )
        failures.insert(
            0,
            f"intervals are not calibrated: backtest coverage {', '.join(bad)} is more than "
            f"{COVERAGE_TOLERANCE:g} points off{against}",
        )
    if failures:
        return False, "; ".join(failures) + f" ({folds})", figures
    return True, f"{verdict} ({folds})", figures


def _current_or_refuse(store: Store) -> str | None:
    """CURRENT's run id; GateError naming the repair when it is damaged (the gate compares
    against what CURRENT names, so it cannot decide without it)."""
    try:
        return store.current_run_id()
    except DamagedFileError as exc:
        promoted = store.promoted_runs()
        hint = f" (the last promoted run is {promoted[0]})" if promoted else ""
        raise GateError(
            f"{exc}; the gate will not guess what is served: repair it with "
            f"`python -m app promote RUN_ID`{hint}"
        ) from None


def decide(store: Store, run_id: str, margin: float, slack: float = 1.0) -> dict[str, Any]:
    """Apply the promotion rules to `run_id`, swap CURRENT when it wins, write decision.json."""
    metrics_path = store.run_dir(run_id) / METRICS_FILE
    if not metrics_path.exists():
        raise GateError(f"run {run_id} has no trained model ({metrics_path} is missing)")
    metrics = store.read_json(metrics_path)
    if "backtest" not in metrics:
        raise GateError(f"run {run_id} has no backtest in {metrics_path} (trained by older code)")
    with gate_lock(store.models_dir):
        previous = _current_or_refuse(store)
        promoted, reason, figures = _judge(store, run_id, metrics, previous, margin, slack)
        swap = promoted and previous != run_id
        if swap:
            _check_servable(store, run_id)
            # The compare-and-swap: under the lock, CURRENT still names what was compared.
            if _current_or_refuse(store) != previous:
                raise GateError("models/CURRENT changed during the decision; gate again")
        decision = {
            "run_id": run_id,
            "promoted": promoted,
            "reason": reason,
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "previous": previous,
            "margin": margin,
            **figures,
        }
        # decision.json before CURRENT: a kill in between leaves a checked run recorded as
        # promoted (a fallback servers may use), never a CURRENT with no decision behind it.
        decision_path = store.run_dir(run_id) / DECISION_FILE
        store.write_json(decision_path, decision)
        crash_point("gate:decided")
        if swap:
            try:
                store.set_current(run_id)
            except OSError as exc:
                decision.update(promoted=False, reason=f"models/CURRENT not written: {exc}")
                with contextlib.suppress(OSError):
                    store.write_json(decision_path, decision)
                raise
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
    with gate_lock(store.models_dir):
        try:
            previous = store.current_run_id()
        except DamagedFileError as exc:
            log.warning("%s; promote repairs it", exc)
            previous = None
        store.set_current(run_id)
    decision = {
        "run_id": run_id,
        "promoted": True,
        "reason": "promoted by hand with `python -m app promote`",
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous": previous,
    }
    store.write_json(store.run_dir(run_id) / DECISION_FILE, decision)
    return decision


def main(argv: list[str]) -> int:
    settings = command_settings("gate", argv)
    store = open_store(settings)
    store.clean_stale()
    run_id = settings.run_id or latest_trained_run(store)
    if run_id is None:
        print("error: no trained run to gate in models/; run train first", file=sys.stderr)
        return 1
    try:
        decision = decide(store, run_id, settings.promote_margin, settings.coverage_slack)
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
