"""The forecaster: two model families over weekly CO2 values, and their prediction intervals.

`train` backtests both families on the same rolling folds and serves the better one; metrics.json
says which (`family`). Both forecast a batch in one vectorised call, nothing is recursive.

* `xgboost`: a direct multi-horizon XGBoost model (`model.ubj`, XGBoost's own format).
* `harmonic`: discounted least squares of a linear trend plus three annual harmonics over the
  last `window` weeks of the history (a half-life of `half_life_weeks` weighs recent years
  more), extrapolated, plus the mean residual of the last `level_weeks` weeks (the current
  level). Nothing is learned beyond its few settings (`model.json`); the fit is one matrix
  product per history, with the projection matrix cached per history length.

Intervals (both families): per horizon step, empirical quantiles of the backtest's forecast
errors (split-conformal), stored in metrics.json as offsets added to the forecast.

XGBoost family: one training row per (forecast origin, horizon step h): the features describe the
history up to the origin and h itself, and the target is the value h weeks ahead minus its seasonal
anchor (the value 52 weeks before the target, which the history always contains for h <= 52). Every
feature is a difference of history values, so the model does not depend on the CO2 level and keeps
working as the series rises past the levels seen in training.

Predicting a batch of requests is one `inplace_predict` call on one feature matrix; nothing is
recursive. The server loads this module, so it needs numpy and xgboost only: no pandas (the
server imports xgboost through `app._xgboost_import`, which keeps pandas out of it too).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

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
HARMONIC_FILE = "model.json"
METRICS_FILE = "metrics.json"
FAMILIES = ("xgboost", "harmonic")
MODEL_FILES = {"xgboost": MODEL_FILE, "harmonic": HARMONIC_FILE}
HARMONIC_PARAMS: dict[str, Any] = {
    "window": 780,
    "harmonics": 3,
    "half_life_weeks": 390,
    "level_weeks": 4,
    "period_weeks": 365.25 / 7,
}
"""The harmonic family's settings: 15 years of history, the newest 7.5 years weigh double."""
LEVELS = (50, 80, 90, 95, 99)
"""Interval levels (percent) a run calibrates and `/predict` may ask for."""
DEFAULT_LEVELS = (80, 95)


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
    if record.get("name", model_path.name) != model_path.name:
        raise ModelLoadError(
            f"{model_path.parent / METRICS_FILE} records the model file {record['name']!r}, "
            f"its family's file is {model_path.name}"
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


@functools.lru_cache(maxsize=32)
def _harmonic_operators(
    length: int, harmonics: int, half_life: float, period: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For histories of `length` weeks: the weighted least-squares projection (p, length), the
    basis over the history (length, p) and over the next MAX_HORIZON weeks (MAX_HORIZON, p)."""

    def basis(t: np.ndarray) -> np.ndarray:
        columns = [np.ones_like(t), t]
        for k in range(1, harmonics + 1):
            columns += [np.sin(2 * np.pi * k * t / period), np.cos(2 * np.pi * k * t / period)]
        return np.column_stack(columns)

    t = np.arange(-length + 1, 1, dtype=np.float64)
    root_weights = np.sqrt(0.5 ** (-t / half_life))
    history_basis = basis(t)
    projection = np.linalg.pinv(history_basis * root_weights[:, None]) * root_weights[None, :]
    future_basis = basis(np.arange(1, MAX_HORIZON + 1, dtype=np.float64))
    return projection, history_basis, future_basis


def harmonic_predict(
    histories: list[np.ndarray], horizons: list[int], params: dict[str, Any]
) -> list[np.ndarray]:
    """The harmonic family's forecasts: histories of one length share one matrix product."""
    forecasts: list[np.ndarray] = [np.empty(0)] * len(histories)
    by_length: dict[int, list[int]] = {}
    for i, history in enumerate(histories):
        by_length.setdefault(min(len(history), int(params["window"])), []).append(i)
    for length, members in by_length.items():
        projection, history_basis, future_basis = _harmonic_operators(
            length,
            int(params["harmonics"]),
            float(params["half_life_weeks"]),
            float(params["period_weeks"]),
        )
        windows = np.stack([np.asarray(histories[i][-length:], dtype=np.float64) for i in members])
        coefficients = windows @ projection.T
        residuals = windows - coefficients @ history_basis.T
        level = residuals[:, -int(params["level_weeks"]) :].mean(axis=1)
        paths = coefficients @ future_basis.T + level[:, None]
        for row, i in enumerate(members):
            forecasts[i] = paths[row, : horizons[i]]
    return forecasts


def interval_offsets(intervals: dict[str, Any], levels: list[int] | tuple[int, ...]) -> dict:
    """`{level: (lower offsets, upper offsets)}` per horizon step, from metrics' `intervals`."""
    offsets = intervals["offsets"]
    return {
        level: (np.asarray(offsets[str(level)]["lower"]), np.asarray(offsets[str(level)]["upper"]))
        for level in levels
    }


class Forecasts(NamedTuple):
    """A batch's forecasts from `Forecaster.forecast`, one entry per instance."""

    points: list[np.ndarray]
    bounds: list[dict[str, dict[str, np.ndarray]]]
    """`{"lower": {level: array}, "upper": {level: array}}`, or `{}` without levels."""
    finite: bool


@dataclass
class Forecaster:
    """A trained model loaded from `models/<run_id>/`, ready to predict."""

    run_id: str
    trained_at: str
    metrics: dict[str, Any]
    family: str = "xgboost"
    booster: xgb.Booster | None = field(default=None, repr=False)
    harmonic: dict[str, Any] | None = None
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
        family = metrics.get("family", "xgboost")
        if family not in FAMILIES:
            raise ModelLoadError(f"{metrics_path} names an unknown model family {family!r}")
        model_path = run_dir / MODEL_FILES[family]
        try:
            raw = model_path.read_bytes()
        except FileNotFoundError:
            raise ModelLoadError(f"{model_path} is missing") from None
        check_model_bytes(raw, metrics, model_path)
        booster, harmonic = None, None
        if family == "xgboost":
            booster = _load_booster(raw, model_path)
            if device == "cuda":
                device = _onto_gpu(booster, model_path)
        else:
            harmonic = _load_harmonic(raw, model_path)
            if device == "cuda":
                log.info("%s: the harmonic family runs on numpy; predicting on CPU", model_path)
                device = "cpu"
        forecaster = cls(
            # The directory CURRENT names, not the run_id inside it: a copied run keeps the old one.
            run_id=run_dir.name,
            trained_at=str(metrics.get("trained_at", "")),
            metrics=metrics,
            family=family,
            booster=booster,
            harmonic=harmonic,
            min_history=int(metrics.get("min_history", MIN_HISTORY)),
            max_horizon=int(metrics.get("max_horizon", MAX_HORIZON)),
            device=device,
        )
        probe = forecaster.predict([np.linspace(350.0, 352.0, forecaster.min_history)], [1])
        if not np.all(np.isfinite(probe[0])):
            raise ModelLoadError(f"{model_path} predicts non-finite values")
        return forecaster

    @property
    def levels(self) -> tuple[int, ...]:
        """The interval levels this run calibrated (none for runs trained before intervals)."""
        intervals = self.metrics.get("intervals") or {}
        return tuple(int(level) for level in intervals.get("offsets", {}))

    def predict(self, histories: list[np.ndarray], horizons: list[int]) -> list[np.ndarray]:
        """Forecast `horizons[i]` steps after each history; one model call for the whole batch.

        Histories must hold at least `min_history` finite values. The xgboost family reads the
        last WINDOW of them, the harmonic family up to its `window`."""
        if self.harmonic is not None:
            return harmonic_predict(histories, horizons, self.harmonic)
        values = self._predict_flat(histories, horizons)
        ends = np.cumsum(horizons).tolist()
        return [values[end - h : end] for end, h in zip(ends, horizons, strict=True)]

    def forecast(
        self,
        histories: list[np.ndarray],
        horizons: list[int],
        levels: list[int] | tuple[int, ...] = (),
        decimals: int | None = None,
    ) -> Forecasts:
        """The forecasts and their interval bounds at `levels` (a subset of `self.levels`), from
        one model call for the whole batch; bounds are the forecast plus the run's calibrated
        offsets per step, as `bounds()` gives them. `decimals` rounds every figure, once for
        the batch. `finite` says whether every figure of the batch is a finite number."""
        if self.harmonic is not None:
            values = np.concatenate(harmonic_predict(histories, horizons, self.harmonic))
        else:
            values = self._predict_flat(histories, horizons)
        flat: dict[str, dict[str, np.ndarray]] = {"lower": {}, "upper": {}}
        if levels:
            steps = np.concatenate([self._steps[:h] for h in horizons])
            for level in levels:
                lower, upper = self._offsets[level]
                flat["lower"][str(level)] = values + lower[steps]
                flat["upper"][str(level)] = values + upper[steps]
        every = [values, *flat["lower"].values(), *flat["upper"].values()]
        finite = bool(np.isfinite(np.concatenate(every) if levels else values).all())
        if decimals is not None:
            values = values.round(decimals)
            for side in flat.values():
                for level, array in side.items():
                    side[level] = array.round(decimals)
        points, bounds, start = [], [], 0
        for h in horizons:
            end = start + h
            points.append(values[start:end])
            bounds.append(
                {side: {lv: a[start:end] for lv, a in by.items()} for side, by in flat.items()}
                if levels
                else {}
            )
            start = end
        return Forecasts(points, bounds, finite)

    @functools.cached_property
    def _steps(self) -> np.ndarray:
        """Step index within a forecast, sliced to each horizon (offsets are per step)."""
        return np.arange(self.max_horizon)

    @functools.cached_property
    def _offsets(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Lower and upper offsets per horizon step, by level, as arrays (read once)."""
        if not self.levels:
            return {}
        return interval_offsets(self.metrics["intervals"], self.levels)

    def _predict_flat(self, histories: list[np.ndarray], horizons: list[int]) -> np.ndarray:
        """The xgboost family's forecasts of the batch, one after another in one array."""
        assert self.booster is not None
        windows = np.stack([history[-WINDOW:] for history in histories])
        features, anchor = design_matrix(windows, np.asarray(horizons))
        if self.device == "cuda":
            # Host features on a GPU booster: a DMatrix copies them over explicitly, where
            # inplace_predict would warn about mismatched devices and do the same.
            raw = self.booster.predict(xgb.DMatrix(features), validate_features=False)
        else:
            raw = self.booster.inplace_predict(features, validate_features=False)
        return anchor + raw

    def bounds(
        self, forecasts: list[np.ndarray], levels: list[int] | tuple[int, ...]
    ) -> list[dict[str, dict[str, np.ndarray]]]:
        """`{"lower": {level: array}, "upper": {level: array}}` around each forecast."""
        offsets = interval_offsets(self.metrics["intervals"], levels)
        result = []
        for forecast in forecasts:
            h = len(forecast)
            result.append(
                {
                    "lower": {str(lv): forecast + lo[:h] for lv, (lo, _) in offsets.items()},
                    "upper": {str(lv): forecast + hi[:h] for lv, (_, hi) in offsets.items()},
                }
            )
        return result


def _load_booster(raw: bytes, model_path: Path) -> xgb.Booster:
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
    return booster


def _load_harmonic(raw: bytes, model_path: Path) -> dict[str, Any]:
    try:
        params = orjson.loads(raw).get("params")
    except (orjson.JSONDecodeError, AttributeError):
        raise ModelLoadError(f"{model_path} is not a harmonic model (JSON)") from None
    if not isinstance(params, dict) or set(params) != set(HARMONIC_PARAMS):
        raise ModelLoadError(
            f"{model_path} must hold params with the keys {sorted(HARMONIC_PARAMS)}"
        )
    if not all(isinstance(v, int | float) and np.isfinite(v) and v > 0 for v in params.values()):
        raise ModelLoadError(f"{model_path}: every harmonic parameter must be a positive number")
    return params


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
