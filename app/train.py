"""`python -m app train`: train the forecaster on the store's dataset into `models/<RUN_ID>/`.

* Holdout: the last two years (104 weeks). Every origin from the last training week onwards
  forecasts up to 52 weeks ahead, staying inside the holdout; MAE, RMSE and MAPE are taken over
  those (origin, step) pairs against observed values, and so is the seasonal-naive baseline
  (the value 52 weeks before the target), which gives skill = 1 - MAE / naive MAE.
* The deployed model is the one that was evaluated: what the gate compares is what serves.
* SIGTERM (a Spot interruption) stops boosting after the current round, saves the booster in
  `models/<run_id>/checkpoint/` and exits 143; rerunning the same RUN_ID resumes from there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import xgboost as xgb

from app.cli import command_settings, open_store
from app.device import gpu_visible
from app.model import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    MAX_HORIZON,
    METRICS_FILE,
    MIN_HISTORY,
    MODEL_FILE,
    WINDOW,
    design_matrix,
    fill_gaps,
    read_series,
)
from app.model_check import history_range, model_file_record
from app.store import Store

log = logging.getLogger(__name__)

HOLDOUT_WEEKS = 104
SEED = 7
EXIT_INTERRUPTED = 128 + signal.SIGTERM
PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "eval_metric": "mae",
    "tree_method": "hist",
    "eta": 0.1,
    "max_depth": 3,
    "min_child_weight": 50,
    "subsample": 0.7,
    "colsample_bytree": 0.9,
    "lambda": 1.0,
    "seed": SEED,
}


class TrainingInterrupted(Exception):
    """SIGTERM arrived; the booster was checkpointed."""


@dataclass
class Split:
    """One part of the series as model rows: features, observed targets and seasonal anchors.

    The model learns `targets - anchors`: the change from the value 52 weeks earlier."""

    features: np.ndarray
    targets: np.ndarray
    anchors: np.ndarray


def detect_device() -> str:
    """'cuda' when a GPU is visible and this xgboost build can train on it, else 'cpu'."""
    if not gpu_visible():
        return "cpu"
    try:
        probe = xgb.DMatrix(np.arange(16, dtype=np.float32).reshape(8, 2), label=np.arange(8))
        xgb.train({"device": "cuda", "tree_method": "hist"}, probe, num_boost_round=1)
    except xgb.core.XGBoostError as exc:
        log.warning("a GPU is visible but xgboost cannot use it (%s); training on CPU", exc)
        return "cpu"
    return "cuda"


def windows_for(series: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The WINDOW values ending at each origin index (inclusive)."""
    offsets = np.arange(-WINDOW + 1, 1)
    return series[origins[:, None] + offsets]


def make_split(filled: np.ndarray, observed: np.ndarray, origins: np.ndarray, end: int) -> Split:
    """Rows for forecasting from each origin up to MAX_HORIZON steps, targets before `end`."""
    horizons = np.minimum(MAX_HORIZON, end - 1 - origins)
    keep = horizons > 0
    origins, horizons = origins[keep], horizons[keep]
    features, anchor = design_matrix(windows_for(filled, origins), horizons)
    target_index = np.repeat(origins, horizons) + features[:, 0].astype(np.int64)
    mask = observed[target_index]
    return Split(features=features[mask], targets=filled[target_index][mask], anchors=anchor[mask])


def holdout_metrics(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> dict:
    errors = predicted - actual
    mae = float(np.mean(np.abs(errors)))
    naive_mae = float(np.mean(np.abs(naive - actual)))
    return {
        "mae": round(mae, 5),
        "rmse": round(float(np.sqrt(np.mean(errors**2))), 5),
        "mape": round(float(np.mean(np.abs(errors) / np.abs(actual))) * 100, 5),
        "naive_mae": round(naive_mae, 5),
        "skill": round(1.0 - mae / naive_mae, 5),
        "pairs": len(actual),
    }


class Progress(xgb.callback.TrainingCallback):
    """Logs every `every` rounds and stops boosting once `stop` is set (SIGTERM)."""

    def __init__(self, every: int, done: int, total: int, stop: threading.Event) -> None:
        super().__init__()
        self.every, self.done, self.total, self.stop = every, done, total, stop
        self.started = time.monotonic()

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        round_no = self.done + epoch + 1
        if round_no % self.every == 0 or round_no == self.total:
            train_mae = evals_log["train"]["mae"][-1]
            holdout_mae = evals_log["holdout"]["mae"][-1]
            log.info(
                "round %d/%d: train MAE %.4f, holdout MAE %.4f (%.1fs)",
                round_no,
                self.total,
                train_mae,
                holdout_mae,
                time.monotonic() - self.started,
            )
        return self.stop.is_set()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_checkpoint(
    store: Store, run_id: str, dataset_sha: str
) -> tuple[xgb.Booster, dict] | None:
    state_path = store.checkpoint_dir(run_id) / "state.json"
    if not state_path.exists():
        return None
    state = store.read_json(state_path)
    same_data = state.get("dataset_sha256") == dataset_sha
    if not same_data or state.get("feature_version") != FEATURE_VERSION:
        log.warning("checkpoint of run %s was made on other data; starting over", run_id)
        return None
    booster = xgb.Booster()
    booster.load_model(bytearray((store.checkpoint_dir(run_id) / MODEL_FILE).read_bytes()))
    return booster, state


def _save_checkpoint(store: Store, run_id: str, booster: xgb.Booster, state: dict) -> None:
    directory = store.checkpoint_dir(run_id)
    store.write_bytes(directory / MODEL_FILE, bytes(booster.save_raw("ubj")))
    store.write_json(directory / "state.json", state)


def train(
    store: Store,
    run_id: str,
    *,
    rounds: int,
    log_every: int,
    run_date: date | None = None,
    stop: threading.Event | None = None,
    threads: int = 0,
) -> dict[str, Any]:
    """Train, evaluate and write one run; returns its metrics. Raises DatasetError on bad data."""
    from app.validate import DatasetError, check_dataset  # pandas: only train and validate

    stop = stop or threading.Event()
    run_dir = store.run_dir(run_id)
    if (run_dir / METRICS_FILE).exists():
        log.info("run %s is already trained; nothing to do", run_id)
        return store.read_json(run_dir / METRICS_FILE)

    dataset = store.ensure_dataset()
    _, problems = check_dataset(dataset, run_date)
    if problems:
        raise DatasetError(problems)
    dates, values = read_series(dataset)
    if run_date is not None:
        keep = dates <= np.datetime64(run_date)
        dates, values = dates[keep], values[keep]
    dataset_sha = _sha256(dataset)
    observed = ~np.isnan(values)
    filled = fill_gaps(values)
    n = len(filled)
    train_end = n - HOLDOUT_WEEKS
    train_split = make_split(filled, observed, np.arange(WINDOW - 1, train_end - 1), train_end)
    holdout_split = make_split(filled, observed, np.arange(train_end - 1, n - 1), n)
    log.info(
        "dataset %s: %d weeks %s..%s; %d training rows, %d holdout pairs",
        dataset.name,
        n,
        dates[0],
        dates[-1],
        len(train_split.targets),
        len(holdout_split.targets),
    )

    device = detect_device()
    log.info("training on %s", "GPU (cuda)" if device == "cuda" else "CPU")
    params = {**PARAMS, "device": device, "nthread": threads or len(os.sched_getaffinity(0))}
    dtrain = xgb.DMatrix(
        train_split.features,
        label=train_split.targets - train_split.anchors,
        feature_names=list(FEATURE_NAMES),
    )
    dholdout = xgb.DMatrix(
        holdout_split.features,
        label=holdout_split.targets - holdout_split.anchors,
        feature_names=list(FEATURE_NAMES),
    )

    checkpoint = _load_checkpoint(store, run_id, dataset_sha)
    booster, done, seconds_before = None, 0, 0.0
    if checkpoint is not None:
        booster, state = checkpoint
        done = booster.num_boosted_rounds()
        seconds_before = float(state.get("train_seconds", 0.0))
        log.info("resuming run %s from its checkpoint at round %d/%d", run_id, done, rounds)
    started = time.monotonic()
    if done < rounds:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds - done,
            evals=[(dtrain, "train"), (dholdout, "holdout")],
            verbose_eval=False,
            xgb_model=booster,
            callbacks=[Progress(log_every, done, rounds, stop)],
        )
    train_seconds = seconds_before + time.monotonic() - started
    assert booster is not None
    if stop.is_set():
        reached = booster.num_boosted_rounds()
        _save_checkpoint(
            store,
            run_id,
            booster,
            {
                "run_id": run_id,
                "rounds_done": reached,
                "rounds_total": rounds,
                "train_seconds": round(train_seconds, 3),
                "dataset_sha256": dataset_sha,
                "feature_version": FEATURE_VERSION,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        raise TrainingInterrupted(
            f"interrupted at round {reached}/{rounds}; checkpoint saved in "
            f"{store.checkpoint_dir(run_id)}; rerun with RUN_ID={run_id} to resume"
        )

    booster.set_param({"nthread": 1})
    predicted = holdout_split.anchors + booster.inplace_predict(holdout_split.features)
    holdout = holdout_metrics(holdout_split.targets, predicted, holdout_split.anchors)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    metrics = {
        "run_id": run_id,
        "trained_at": trained_at,
        "device": device,
        "rounds": booster.num_boosted_rounds(),
        "resumed_from_round": done,
        "train_seconds": round(train_seconds, 3),
        "min_history": MIN_HISTORY,
        "max_horizon": MAX_HORIZON,
        "feature_version": FEATURE_VERSION,
        "features": list(FEATURE_NAMES),
        "holdout": holdout,
        "holdout_weeks": HOLDOUT_WEEKS,
        "params": {key: value for key, value in params.items() if key != "nthread"},
        "dataset": {
            "path": str(dataset.relative_to(store.root)),
            "sha256": dataset_sha,
            "weeks": n,
            "first_date": str(dates[0]),
            "last_date": str(dates[-1]),
            "run_date": run_date.isoformat() if run_date else None,
        },
    }
    raw_model = bytes(booster.save_raw("ubj"))
    metrics["model_file"] = model_file_record(raw_model)
    metrics["history_range"] = history_range(values)
    # metrics.json goes last: its presence marks the run as complete.
    store.write_bytes(run_dir / MODEL_FILE, raw_model)
    store.write_text(run_dir / "card.md", model_card(metrics))
    store.write_json(run_dir / METRICS_FILE, metrics)
    shutil.rmtree(store.checkpoint_dir(run_id), ignore_errors=True)
    return metrics


def model_card(metrics: dict[str, Any]) -> str:
    holdout = metrics["holdout"]
    dataset = metrics["dataset"]
    return f"""# Model card: CO2 forecaster, run {metrics["run_id"]}

- **Trained**: {metrics["trained_at"]} on {metrics["device"]}, {metrics["rounds"]} boosting rounds,
  {metrics["train_seconds"]:.1f}s.
- **Task**: forecast weekly atmospheric CO2 (ppm) at Mauna Loa 1 to {metrics["max_horizon"]} weeks
  ahead from the last {metrics["min_history"]} or more weekly values.
- **Data**: `{dataset["path"]}` ({dataset["weeks"]} weeks, {dataset["first_date"]} to
  {dataset["last_date"]}, sha256 `{dataset["sha256"][:12]}…`); missing weeks are interpolated
  for features, and only observed weeks are used as targets.
- **Model**: XGBoost, one model for all horizons (the step is a feature). It predicts the change
  from the value 52 weeks before the target, from differences of recent values, so it does not
  depend on the CO2 level.
- **Evaluation**: the last {metrics["holdout_weeks"]} weeks held out, forecasting from every
  origin in them ({holdout["pairs"]} origin/step pairs).

| metric | model | seasonal naive |
|---|---|---|
| MAE (ppm) | {holdout["mae"]:.3f} | {holdout["naive_mae"]:.3f} |
| RMSE (ppm) | {holdout["rmse"]:.3f} | |
| MAPE (%) | {holdout["mape"]:.3f} | |
| skill (1 - MAE / naive MAE) | {holdout["skill"]:.3f} | |

- **Limitations**: trained on one station's weekly means to 2001; an abrupt change in the
  seasonal cycle or the growth rate is outside what the training data shows.
"""


def main(argv: list[str]) -> int:
    from app.validate import DatasetError

    settings = command_settings("train", argv)
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: checkpointing after the current boosting round")
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        store = open_store(settings)
        run_id = settings.run_id_or_new()
        log.info("training run %s (%d rounds)", run_id, settings.train_rounds)
        metrics = train(
            store,
            run_id,
            rounds=settings.train_rounds,
            log_every=settings.train_log_every,
            run_date=settings.run_date,
            stop=stop,
            threads=settings.train_threads,
        )
    except TrainingInterrupted as exc:
        log.warning("%s", exc)
        return EXIT_INTERRUPTED
    except (DatasetError, ValueError) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        print(
            "error: cannot train on this dataset:\n" + "\n".join(f"  - {p}" for p in problems),
            file=sys.stderr,
        )
        return 1
    holdout = metrics["holdout"]
    log.info(
        "run %s trained in %.1fs: holdout MAE %.3f ppm vs seasonal-naive %.3f (skill %.3f)",
        metrics["run_id"],
        metrics["train_seconds"],
        holdout["mae"],
        holdout["naive_mae"],
        holdout["skill"],
    )
    return 0
