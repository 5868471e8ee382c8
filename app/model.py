"""The forecaster: a direct multi-horizon XGBoost model over weekly CO2 values.

One training row per (forecast origin, horizon step h): the features describe the history up to
the origin and h itself, and the target is the value h weeks ahead minus its seasonal anchor (the
value 52 weeks before the target, which the history always contains for h <= 52). Every feature is
a difference of history values, so the model does not depend on the CO2 level and keeps working
as the series rises past the levels seen in training.

Predicting a batch of requests is one `inplace_predict` call on one feature matrix; nothing is
recursive. The server loads this module, so it needs numpy and xgboost only: no pandas (the
server imports xgboost through `app._xgboost_import`, which keeps pandas out of it too).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xgboost as xgb

SEASON = 52
"""Weeks per seasonal cycle."""
WINDOW = 56
"""History points the features read: one season, plus 4 weeks for the smoothed annual change."""
MIN_HISTORY = WINDOW
MAX_HORIZON = SEASON
FEATURE_VERSION = 1
FEATURE_NAMES = (
    "horizon",
    "annual_change",
    "annual_change_4w",
    "last_minus_anchor",
    "anchor_smoothed_minus_anchor",
    "season_step",
    "change_1w",
    "change_4w",
    "change_13w",
    "mean_4w_minus_last",
    "mean_13w_minus_last",
    "std_13w",
)

log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"
METRICS_FILE = "metrics.json"


class ModelLoadError(RuntimeError):
    """A run directory does not hold a loadable model."""


def check_model_bytes(raw: bytes, metrics: dict[str, Any], model_path: Path) -> None:
    """Refuse model bytes that differ from what `train` recorded in metrics.json (`model_file`).

    XGBoost aborts or segfaults on some damaged files and silently loads others with changed
    forecasts, so nothing reaches it unverified."""
    record = metrics.get("model_file")
    if not isinstance(record, dict) or "sha256" not in record or "bytes" not in record:
        raise ModelLoadError(
            f"{model_path.parent / METRICS_FILE} records no model_file sha256 and size "
            "(trained before model files were checked?); retrain the run"
        )
    if len(raw) != record["bytes"]:
        raise ModelLoadError(
            f"{model_path} is {len(raw)} bytes, {record['bytes']} were recorded by train"
        )
    if hashlib.sha256(raw).hexdigest() != record["sha256"]:
        raise ModelLoadError(f"{model_path} does not match the sha256 recorded by train")


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a `date,co2` CSV: dates as datetime64[D] and values as float64 (NaN where empty).

    Raises ValueError naming the line of the first unparsable row.
    """
    dates: list[date] = []
    values: list[float] = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [column.strip() for column in header[:2]] != ["date", "co2"]:
            raise ValueError(f"{path}: expected a header 'date,co2', got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{path}: line {line_no}: expected 'date,co2', got {row!r}")
            try:
                dates.append(date.fromisoformat(row[0].strip()))
            except ValueError:
                raise ValueError(f"{path}: line {line_no}: bad date {row[0]!r}") from None
            text = row[1].strip()
            try:
                values.append(float(text) if text else np.nan)
            except ValueError:
                raise ValueError(f"{path}: line {line_no}: bad co2 value {text!r}") from None
    return np.array(dates, dtype="datetime64[D]"), np.array(values, dtype=np.float64)


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linearly interpolate missing (NaN) weeks; the ends are held at the nearest observed value."""
    missing = np.isnan(values)
    if not missing.any():
        return values.copy()
    positions = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(positions[missing], positions[~missing], values[~missing])
    return filled


def design_matrix(windows: np.ndarray, horizons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and seasonal anchors for forecasting from each window, one row per step.

    `windows` is (n, WINDOW): the last WINDOW values up to each forecast origin, oldest first.
    `horizons` is (n,): window i expands into steps 1..horizons[i], rows grouped by window.
    Returns float32 features (rows, len(FEATURE_NAMES)) and float64 anchors (rows,): the value
    52 weeks before each target, to which the model's output is added.
    """
    w = np.asarray(windows, dtype=np.float64)
    n = len(w)
    counts = np.asarray(horizons, dtype=np.int64)
    row_of = np.repeat(np.arange(n), counts)
    # Step h of each row: 1..counts[i] within window i's block.
    steps = np.arange(1, len(row_of) + 1) - np.repeat(np.cumsum(counts) - counts, counts)

    last = w[:, -1]
    annual = w[:, -4:] - w[:, -4 - SEASON : -SEASON]
    recent = w[:, -13:]
    per_window = np.empty((n, 9))
    per_window[:, 0] = annual[:, -1]
    per_window[:, 1] = annual.mean(axis=1)
    per_window[:, 2] = last - w[:, -2]
    per_window[:, 3] = last - w[:, -5]
    per_window[:, 4] = last - w[:, -14]
    per_window[:, 5] = w[:, -4:].mean(axis=1) - last
    per_window[:, 6] = recent.mean(axis=1) - last
    per_window[:, 7] = recent.std(axis=1)
    per_window[:, 8] = w[:, WINDOW - 1 - SEASON]
    expanded = per_window[row_of]

    # The anchor y[origin + h - 52] is column WINDOW - 1 - SEASON + h; its right neighbour is
    # clamped to the last column (for h = 52 the target's neighbour is not yet observed).
    flat = w.ravel()
    base = row_of * WINDOW
    column = WINDOW - 1 - SEASON + steps
    anchor = flat[base + column]
    right = flat[base + np.minimum(column + 1, WINDOW - 1)]
    smoothed = (flat[base + column - 1] + anchor + right) / 3.0

    features = np.empty((len(row_of), len(FEATURE_NAMES)), dtype=np.float32)
    features[:, 0] = steps
    features[:, 1] = expanded[:, 0]
    features[:, 2] = expanded[:, 1]
    features[:, 3] = last[row_of] - anchor
    features[:, 4] = smoothed - anchor
    features[:, 5] = anchor - expanded[:, 8]
    features[:, 6:] = expanded[:, 2:8]
    return features, anchor


@dataclass
class Forecaster:
    """A trained model loaded from `models/<run_id>/`, ready to predict."""

    run_id: str
    trained_at: str
    metrics: dict[str, Any]
    booster: xgb.Booster = field(repr=False)
    min_history: int = MIN_HISTORY
    max_horizon: int = MAX_HORIZON
    device: str = "cpu"
    """Where predictions run: "cuda" (a GPU) or "cpu"."""

    @classmethod
    def load(cls, run_dir: Path, device: str = "cpu") -> Forecaster:
        """Load the model and metrics of one run; ModelLoadError says what is wrong.

        `device` "cuda" predicts on the GPU (`app.device.serving_device`); if this model cannot
        run there, the CPU serves it and the log says so once."""
        run_dir = Path(run_dir)
        metrics_path = run_dir / METRICS_FILE
        model_path = run_dir / MODEL_FILE
        if not run_dir.is_dir():
            raise ModelLoadError(f"run directory {run_dir} does not exist")
        try:
            metrics = orjson.loads(metrics_path.read_bytes())
        except FileNotFoundError:
            raise ModelLoadError(f"{metrics_path} is missing (training incomplete?)") from None
        except orjson.JSONDecodeError as exc:
            raise ModelLoadError(f"{metrics_path} is not valid JSON: {exc}") from None
        version = metrics.get("feature_version") if isinstance(metrics, dict) else None
        if version != FEATURE_VERSION:
            raise ModelLoadError(
                f"{metrics_path} is from another model version "
                f"(feature_version {version!r}, expected {FEATURE_VERSION})"
            )
        try:
            raw = model_path.read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(f"{model_path} is missing") from None
        check_model_bytes(raw, metrics, model_path)
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise ModelLoadError(f"{model_path} is not a valid XGBoost model: {reason}") from None
        if booster.num_features() != len(FEATURE_NAMES):
            raise ModelLoadError(
                f"{model_path} expects {booster.num_features()} features, "
                f"this code builds {len(FEATURE_NAMES)}"
            )
        # One thread per prediction: batches are tiny and the server has other work on its cores.
        booster.set_param({"nthread": 1})
        if device == "cuda":
            device = _onto_gpu(booster, model_path)
        forecaster = cls(
            # The directory CURRENT names, not the run_id inside it: a copied run keeps the old one.
            run_id=run_dir.name,
            trained_at=str(metrics.get("trained_at", "")),
            metrics=metrics,
            booster=booster,
            min_history=int(metrics.get("min_history", MIN_HISTORY)),
            max_horizon=int(metrics.get("max_horizon", MAX_HORIZON)),
            device=device,
        )
        probe = forecaster.predict([np.linspace(350.0, 352.0, forecaster.min_history)], [1])
        if not np.all(np.isfinite(probe[0])):
            raise ModelLoadError(f"{model_path} predicts non-finite values")
        return forecaster

    def predict(self, histories: list[np.ndarray], horizons: list[int]) -> list[np.ndarray]:
        """Forecast `horizons[i]` steps after each history; one model call for the whole batch.

        Histories must hold at least `min_history` finite values; only the last WINDOW are used.
        """
        windows = np.stack([history[-WINDOW:] for history in histories])
        features, anchor = design_matrix(windows, np.asarray(horizons))
        if self.device == "cuda":
            # Host features on a GPU booster: a DMatrix copies them over explicitly, where
            # inplace_predict would warn about mismatched devices and do the same.
            raw = self.booster.predict(xgb.DMatrix(features), validate_features=False)
        else:
            raw = self.booster.inplace_predict(features, validate_features=False)
        values = anchor + raw
        ends = np.cumsum(horizons).tolist()
        return [values[end - h : end] for end, h in zip(ends, horizons, strict=True)]


def _onto_gpu(booster: xgb.Booster, model_path: Path) -> str:
    """Move the booster to the GPU; "cpu" (logged once) when this model cannot run there."""
    if not xgb.build_info().get("USE_CUDA"):
        # xgboost-cpu accepts device=cuda and quietly stays on the CPU: say so instead.
        log.warning("%s: this XGBoost build has no CUDA; predicting on CPU", model_path)
        return "cpu"
    try:
        booster.set_param({"device": "cuda"})
        probe = xgb.DMatrix(np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32))
        booster.predict(probe, validate_features=False)
    except xgb.core.XGBoostError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        log.warning("%s cannot predict on the GPU (%s); predicting on CPU", model_path, reason)
        booster.set_param({"device": "cpu"})
        return "cpu"
    return "cuda"
