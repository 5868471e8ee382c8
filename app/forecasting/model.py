"""The forecaster: two model families over a weekly series, and their prediction intervals.

`train` backtests the harmonic family's grid of settings (`MODEL_FAMILY=auto`) or the xgboost
family (`MODEL_FAMILY=xgboost`) and serves the best; metrics.json says which (`family`,
`params`). Both forecast a batch in one vectorised call, nothing is recursive.

* `harmonic`: weighted least squares of a linear trend plus `harmonics` annual harmonics over
  the last `window` weeks of the history (a half-life of `half_life_weeks` weighs recent years
  more), extrapolated with the slope damped by `damping` per week, plus the mean residual of the
  last `level_weeks` weeks (the current level) and, with `local_slope`, the residuals' recent
  slope. Nothing is learned beyond its few settings (`model.json`); a batch is one batched
  solve (`harmonic_predict_many`, which also runs a whole grid of settings at once).
* `xgboost`: a direct multi-horizon XGBoost model (`model.ubj`, XGBoost's own format), imported
  on first use only: a process serving the harmonic family never loads xgboost.

Intervals (both families): offsets per horizon step from the backtest's errors, conformal per
horizon bucket (`app.forecasting.backtest.fold_offsets`), stored in metrics.json.

XGBoost family: one training row per (forecast origin, horizon step h): the features describe the
history up to the origin and h itself, and the target is the value h weeks ahead minus its seasonal
anchor (the value 52 weeks before the target, which the history always contains for h <= 52). Every
feature is a difference of history values, so the model does not depend on the level and keeps
working as the series rises past the levels seen in training.

Predicting a batch of requests is one `inplace_predict` call on one feature matrix; nothing is
recursive. The server loads this module, so it needs numpy and xgboost only: no pandas (the
server imports xgboost through `app.forecasting._xgboost_import`, which keeps pandas out of it too).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

if TYPE_CHECKING:
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
    "damping": 1.0,
    "local_slope": 0,
}
"""The harmonic family's reference setting: 15 years of history, the newest 7.5 years weigh
double, an undamped trend, the current level from the last 4 weeks, no local slope."""
HARMONIC_GRID: list[dict[str, Any]] = [
    {
        "window": window,
        "harmonics": harmonics,
        "half_life_weeks": half_life,
        "level_weeks": level_weeks,
        "period_weeks": 365.25 / 7,
        "damping": damping,
        "local_slope": local_slope,
    }
    for window in (260, 520, 780)
    for harmonics in (3, 8, 20)
    for half_life in (104, 390)
    for damping in (0.98, 0.995, 1.0)
    for level_weeks, local_slope in ((4, 0), (13, 1))
]
"""The settings `train` chooses among on the backtest (108, `HARMONIC_PARAMS` among them): 5 to
15 years of history, 3, 8 or 20 annual harmonics (20 follow sharp seasonal features such as
holiday weeks), a half-life of 2 or 7.5 years, the trend's slope
damped by 0.98 or 0.995 a week or not, and either the current level of the last 4 weeks or the
level and local slope of the last 13 (a trend that adapts to a recent change of growth)."""
HARMONIC_MIN_HISTORY = 156
"""Weeks a harmonic setting needs before a forecast origin: three seasonal cycles."""
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


def read_series(path: Path, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a `date,<column>` CSV: dates as datetime64[D] and values as float64 (NaN where
    empty). Any second column name is accepted unless `column` (the descriptor's) is given.

    Raises ValueError naming the line of the first unparsable row.
    """
    dates: list[date] = []
    values: list[float] = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [name.strip() for name in header[:2]] if header else []
        expected = f"date,{column or '<column>'}"
        if len(names) < 2 or names[0] != "date" or (column and names[1] != column):
            raise ValueError(f"{path}: expected a header {expected!r}, got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{path}: line {line_no}: expected {expected!r}, got {row!r}")
            try:
                dates.append(date.fromisoformat(row[0].strip()))
            except ValueError:
                raise ValueError(f"{path}: line {line_no}: bad date {row[0]!r}") from None
            text = row[1].strip()
            try:
                values.append(float(text) if text else np.nan)
            except ValueError:
                raise ValueError(f"{path}: line {line_no}: bad {names[1]} value {text!r}") from None
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


def _harmonic_basis(t: np.ndarray, harmonics: int, period: float) -> np.ndarray:
    """Columns: intercept, trend (in years, for conditioning), then sin/cos of each harmonic."""
    columns = [np.ones_like(t), t / SEASON]
    for k in range(1, harmonics + 1):
        columns += [np.sin(2 * np.pi * k * t / period), np.cos(2 * np.pi * k * t / period)]
    return np.column_stack(columns)


@functools.lru_cache(maxsize=64)
def _damped_steps(damping: float) -> np.ndarray:
    """`sum_{i=1..h} damping**i` for h = 1..MAX_HORIZON: how far a damped slope carries."""
    steps = np.cumsum(float(damping) ** np.arange(1, MAX_HORIZON + 1))
    steps.flags.writeable = False
    return steps


@functools.lru_cache(maxsize=64)
def _harmonic_operators(
    window: int, harmonics: int, half_life: float, period: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one (window, harmonics, half-life, period): the basis over the window (window, p),
    over the next MAX_HORIZON weeks (MAX_HORIZON, p), and the weights by age (window,)."""
    t = np.arange(-window + 1, 1, dtype=np.float64)
    basis = _harmonic_basis(t, harmonics, period)
    future = _harmonic_basis(np.arange(1, MAX_HORIZON + 1, dtype=np.float64), harmonics, period)
    discount = 0.5 ** (-t / half_life)
    for array in (basis, future, discount):
        array.flags.writeable = False
    return basis, future, discount


@functools.lru_cache(maxsize=128)
def _harmonic_projection(
    window: int, harmonics: int, half_life: float, period: float, length: int
) -> np.ndarray:
    """The weighted least-squares fit of the last `length` weeks of a window, as one linear map
    from those weeks to the coefficients (p, length): every history of that length shares it."""
    basis, _, discount = _harmonic_operators(window, harmonics, half_life, period)
    weighted = basis[-length:] * discount[-length:, None]
    projection = np.linalg.solve(basis[-length:].T @ weighted, weighted.T)
    projection.flags.writeable = False
    return projection


def harmonic_predict_many(
    histories: list[np.ndarray], horizons: list[int], grid: list[dict[str, Any]]
) -> list[list[np.ndarray]]:
    """Every grid setting's forecasts for every history: `result[setting][history]`.

    Settings that share (window, harmonics, half_life_weeks, period_weeks) share one batched
    weighted least-squares solve over all histories (histories shorter than the window are
    padded with zero weight); the trend damping, current level and local slope of each setting
    are a cheap step on the shared fits."""
    horizons_arr = np.asarray(horizons, dtype=np.int64)
    result: list[list[np.ndarray]] = [[np.empty(0)] * len(histories) for _ in grid]
    groups: dict[tuple, list[int]] = {}
    for g, params in enumerate(grid):
        key = (
            int(params["window"]),
            int(params["harmonics"]),
            float(params["half_life_weeks"]),
            float(params["period_weeks"]),
        )
        groups.setdefault(key, []).append(g)
    for (window, harmonics, half_life, period), members in groups.items():
        basis, future, _ = _harmonic_operators(window, harmonics, half_life, period)
        windows = np.zeros((len(histories), window))
        by_length: dict[int, list[int]] = {}
        for i, history in enumerate(histories):
            tail = np.asarray(history[-window:], dtype=np.float64)
            windows[i, window - len(tail) :] = tail
            by_length.setdefault(len(tail), []).append(i)
        # Histories of one length share their weights, so one cached projection fits them all
        # (a history shorter than the window: zero weight on the padding, as if it were absent).
        coefficients = np.empty((len(histories), basis.shape[1]))
        for length, rows in by_length.items():
            projection = _harmonic_projection(window, harmonics, half_life, period, length)
            coefficients[rows] = windows[rows, window - length :] @ projection.T
        # Only the last 2 x level_weeks residuals are read (the level and the local slope).
        need = min(window, 2 * max(int(grid[g]["level_weeks"]) for g in members))
        residuals = windows[:, -need:] - coefficients @ basis[-need:].T
        # The seasonal part and the intercept go forward as fitted; the trend's slope is damped.
        seasonal = coefficients[:, 2:] @ future[:, 2:].T + coefficients[:, :1]
        slope = coefficients[:, 1] / SEASON
        for g in members:
            params = grid[g]
            level_weeks = int(params["level_weeks"])
            steps = _damped_steps(float(params.get("damping", 1.0)))
            recent = residuals[:, -level_weeks:].mean(axis=1)
            local = np.zeros(len(histories))
            if params.get("local_slope", 0):
                before = residuals[:, -2 * level_weeks : -level_weeks].mean(axis=1)
                local = (recent - before) / level_weeks
            paths = seasonal + recent[:, None] + (slope + local)[:, None] * steps[None, :]
            result[g] = [paths[i, : horizons_arr[i]] for i in range(len(histories))]
    return result


def harmonic_predict(
    histories: list[np.ndarray], horizons: list[int], params: dict[str, Any]
) -> list[np.ndarray]:
    """The harmonic family's forecasts for one setting (one batched solve for the batch)."""
    return harmonic_predict_many(histories, horizons, [params])[0]


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

        `device` "cuda" predicts on the GPU (`app.forecasting.device.serving_device`); if this
        model cannot run there, the CPU serves it and the log says so once."""
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
        if levels:
            # One matrix, one row per figure: the forecast, then each level's lower and upper
            # bound (the forecast plus that step's offset); checked and rounded in one go.
            steps = np.concatenate([self._steps[:h] for h in horizons])
            # order="C": the fancy-indexed offsets would make the sum column-major, and orjson
            # serialises only C-contiguous rows.
            rows = np.add(values[None, :], self._offset_rows(tuple(levels))[:, steps], order="C")
        else:
            rows = values[None, :]
        finite = bool(np.isfinite(rows).all())
        if decimals is not None:
            rows = rows.round(decimals)
        values = rows[0]
        names = [str(level) for level in levels]
        flat = {
            "lower": {name: rows[1 + i] for i, name in enumerate(names)},
            "upper": {name: rows[1 + len(names) + i] for i, name in enumerate(names)},
        }
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

    def _offset_rows(self, levels: tuple[int, ...]) -> np.ndarray:
        """Zeros, then the lower offsets of each level, then the upper ones: (1 + 2 x levels,
        max_horizon), built once per levels tuple."""
        cache = self.__dict__.setdefault("_offset_rows_cache", {})
        rows = cache.get(levels)
        if rows is None:
            offsets = self._offsets
            lower = [offsets[level][0][: self.max_horizon] for level in levels]
            upper = [offsets[level][1][: self.max_horizon] for level in levels]
            rows = np.vstack([np.zeros(self.max_horizon), *lower, *upper])
            rows.flags.writeable = False
            cache[levels] = rows
        return rows

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
            raw = self.booster.predict(_xgboost().DMatrix(features), validate_features=False)
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


def _xgboost() -> Any:
    """xgboost, imported on first use: a process serving the harmonic family never loads it."""
    import xgboost

    return xgboost


def _load_booster(raw: bytes, model_path: Path) -> xgb.Booster:
    xgb = _xgboost()
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
    required = set(HARMONIC_PARAMS) - {"damping", "local_slope"}
    if not isinstance(params, dict) or not required <= set(params) <= set(HARMONIC_PARAMS):
        raise ModelLoadError(
            f"{model_path} must hold params with the keys {sorted(HARMONIC_PARAMS)}"
        )
    # Runs trained before the trend could be damped keep an undamped trend, no local slope.
    params = {"damping": 1.0, "local_slope": 0, **params}
    if not all(isinstance(v, int | float) and np.isfinite(v) for v in params.values()):
        raise ModelLoadError(f"{model_path}: every harmonic parameter must be a finite number")
    if not all(params[k] > 0 for k in required):
        raise ModelLoadError(f"{model_path}: {', '.join(sorted(required))} must be positive")
    if not 0 < params["damping"] <= 1 or params["local_slope"] not in (0, 1):
        raise ModelLoadError(
            f"{model_path}: damping must be in (0, 1] and local_slope 0 or 1, got "
            f"{params['damping']!r} and {params['local_slope']!r}"
        )
    return params


def _onto_gpu(booster: xgb.Booster, model_path: Path) -> str:
    """Move the booster to the GPU; "cpu" (logged once) when this model cannot run there."""
    xgb = _xgboost()
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
