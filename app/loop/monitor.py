"""`python -m app monitor`: score past forecasts against what happened, watch for drift, signal it.

Run after each ingest. In order:

1. **Archive.** Forecasts are kept per (model run, forecast origin) in
   `monitoring/forecasts.jsonl`: the distinct forecasts in the ticker's `forecasts/`, and the
   promoted model's own forecast from the newest observed week (the forecast of record, so a
   week is scored even when no ticker ran).
2. **Score.** Every archived forecast step whose target week is now observed gets its realized
   error (forecast - observed, in the series' units) in `monitoring/scores.json`, with the mean
   absolute error per horizon.
3. **Check.** Two signals, thresholds from `MONITOR_*` settings:
   - *forecast error*: the promoted model's mean absolute error over the last
     `MONITOR_ERROR_WINDOW_WEEKS` observed weeks, at horizons 1..`MONITOR_ERROR_HORIZONS`,
     against the band the same statistic takes on the model's own backtest (its holdout, the
     last 104 weeks of its training data): it trips above `MONITOR_ERROR_TOLERANCE` x the band's
     95th percentile;
   - *input drift*: the annual change of the series (`y[t] - y[t-52]`, which removes the level
     and the seasonal cycle) over the weeks the model has not seen, at most the last
     `MONITOR_DRIFT_WINDOW_WEEKS`, against its last `MONITOR_DRIFT_REFERENCE_YEARS` years of
     training data: a two-sided Mann-Whitney U test (scipy) trips when p < `MONITOR_DRIFT_P_VALUE`
     and the medians differ by at least `MONITOR_DRIFT_MIN_SHIFT` (alias
     `MONITOR_DRIFT_MIN_SHIFT_PPM`; unset: the series descriptor's `monitor.min_drift_shift`, else
     one robust standard deviation of the reference annual changes). The series is
     autocorrelated, so the p-value alone overstates the evidence; the effect floor keeps
     ordinary unusual years (an El Nino year in the shipped series) from alarming.
4. **Signal.** When a check trips, and no signal went out in the last `MONITOR_COOLDOWN_WEEKS`
   weeks of data, `MONITOR_ON_DRIFT` says what happens: `eventbridge` publishes
   `DataDriftDetected` (source `mlops.monitoring`) to the default event bus, whose rule in the
   stack starts validate -> train -> gate; `retrain` runs validate -> train -> gate here, as
   child processes (the laptop's stand-in for EventBridge); `log` only records it.

Everything the dashboard shows is in `monitoring/`: `status.json` (the last check),
`history.jsonl` (one line per check), `signals.jsonl` (one line per signal).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.cli import command_settings, open_store
from app.forecasting.backtest import FOLD_WEEKS
from app.forecasting.model import SEASON, Forecaster, ModelLoadError, fill_gaps, read_series
from app.loop.ticker import HISTORY_NAME, LATEST_NAME, forecast_dates
from app.pipeline.lineage import file_sha256
from app.series import from_metrics
from app.store import Store
from mlops_contract import Env, new_run_id

log = logging.getLogger(__name__)

EVENT_SOURCE = "mlops.monitoring"
EVENT_DETAIL_TYPE = "DataDriftDetected"
"""What the stack's drift rule matches (components/documents/triggers.py `drift_pattern`)."""
HOLDOUT_WEEKS = FOLD_WEEKS
"""The weeks the band comes from: the newest backtest fold's length
(app/forecasting/backtest.py)."""
RECORD_HORIZON = 26
"""Steps of the forecast of record."""
PIPELINE = ("validate", "train", "gate")
MAD_SCALE = 1.4826
"""MAD times this estimates a normal distribution's standard deviation."""


class MonitorSettings(BaseSettings):
    """The `MONITOR_*` environment variables (and `EVENT_BUS_NAME`, `AWS_REGION`)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    monitor_error_window_weeks: int = Field(8, ge=2, le=104)
    """Observed weeks the rolling realized error averages over."""
    monitor_error_horizons: int = Field(4, ge=1, le=52)
    """Forecast steps (1..N) the rolling error scores."""
    monitor_error_tolerance: float = Field(2.5, gt=0, le=100)
    """The error check trips above this multiple of the backtest band's 95th percentile."""
    monitor_drift_window_weeks: int = Field(26, ge=4, le=260)
    """Most recent unseen weeks the input-drift test compares."""
    monitor_drift_min_weeks: int = Field(8, ge=4, le=260)
    """Fewest unseen observed weeks before the input-drift test runs."""
    monitor_drift_reference_years: int = Field(10, ge=1, le=40)
    """Years of training data the recent weeks are compared with."""
    monitor_drift_p_value: float = Field(0.001, gt=0, lt=1)
    """Significance level of the Mann-Whitney U test."""
    monitor_drift_min_shift: float | None = Field(
        None,
        ge=0,
        validation_alias=AliasChoices("MONITOR_DRIFT_MIN_SHIFT", "MONITOR_DRIFT_MIN_SHIFT_PPM"),
    )
    """Smallest difference of median annual change (in the series' units) that counts as drift.
    None: the descriptor's `monitor.min_drift_shift` (2.0 for the shipped series), else one
    robust standard deviation (MAD x 1.4826) of the reference weeks' annual changes."""
    monitor_cooldown_weeks: int = Field(8, ge=0, le=520)
    """Weeks of new data after a signal before the next one may go out."""
    monitor_on_drift: Literal["eventbridge", "retrain", "log"] = "retrain"
    """What a tripped check does: publish the event (AWS), run the pipeline here, or only log."""
    event_bus_name: str = "default"
    aws_region: str | None = None


def load_monitor_settings() -> MonitorSettings:
    """Read the MONITOR_* settings; a bad value prints one line and exits 2 (like AppSettings)."""
    from app.settings import SettingsError, _describe

    try:
        return MonitorSettings()
    except ValidationError as exc:
        message = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        print(f"error: {message}", file=sys.stderr)
        raise SettingsError(message) from None


# --- paths -------------------------------------------------------------------------------------


def monitoring_dir(store: Store) -> Path:
    return store.root / "monitoring"


def _path(store: Store, name: str) -> Path:
    return monitoring_dir(store) / name


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    rows = []
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line of a writer that died
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _append_jsonl(store: Store, path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        existing = b""
    if existing and not existing.endswith(b"\n"):
        existing = existing[: existing.rfind(b"\n") + 1]
    added = b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for row in rows)
    store.write_bytes(path, existing + added)


# --- 1. archive --------------------------------------------------------------------------------


def _forecast_key(forecast: dict[str, Any]) -> tuple[str, str]:
    return str(forecast.get("run_id")), str(forecast.get("last_observed"))


def _compact(forecast: dict[str, Any], made_by: str) -> dict[str, Any]:
    return {
        "run_id": forecast["run_id"],
        "last_observed": forecast["last_observed"],
        "generated_at": forecast.get("generated_at"),
        "made_by": made_by,
        "forecast": [
            {"date": point["date"], "value": float(point["value"])}
            for point in forecast["forecast"]
        ],
    }


def forecast_of_record(model: Forecaster, dates: np.ndarray, values: np.ndarray) -> dict:
    """The model's forecast from the last observed week, in the ticker's format."""
    horizon = min(RECORD_HORIZON, model.max_horizon)
    (predicted,) = model.predict([fill_gaps(values)], [horizon])
    future = np.datetime_as_string(forecast_dates(dates, horizon), unit="D")
    return {
        "run_id": model.run_id,
        "last_observed": str(np.datetime_as_string(dates[-1], unit="D")),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "forecast": [
            {"date": str(day), "value": round(float(value), 4)}
            for day, value in zip(future, predicted, strict=True)
        ],
    }


def archive_forecasts(
    store: Store, model: Forecaster | None, dates: np.ndarray, values: np.ndarray
) -> list[dict[str, Any]]:
    """Add new distinct forecasts to the archive; returns the whole archive."""
    path = _path(store, "forecasts.jsonl")
    archive = _read_jsonl(path)
    known = {_forecast_key(row) for row in archive}
    found = _read_jsonl(store.forecasts_dir / HISTORY_NAME)
    latest = store.forecasts_dir / LATEST_NAME
    if latest.exists():
        found += _read_jsonl(latest)
    new: list[dict[str, Any]] = []
    for forecast in found:
        key = _forecast_key(forecast)
        if key not in known and forecast.get("forecast"):
            known.add(key)
            new.append(_compact(forecast, "ticker"))
    if model is not None and len(values) >= model.min_history:
        record = forecast_of_record(model, dates, values)
        if _forecast_key(record) not in known:
            new.append(_compact(record, "monitor"))
    if new:
        _append_jsonl(store, path, new)
    return archive + new


# --- 2. score ----------------------------------------------------------------------------------


def score_forecasts(
    archive: list[dict[str, Any]], dates: np.ndarray, values: np.ndarray
) -> list[dict[str, Any]]:
    """One row per archived forecast step whose target week is observed."""
    observed = {
        str(day): float(value)
        for day, value in zip(np.datetime_as_string(dates, unit="D"), values, strict=True)
        if np.isfinite(value)
    }
    rows = []
    for forecast in archive:
        for step, point in enumerate(forecast["forecast"], start=1):
            actual = observed.get(point["date"])
            if actual is None:
                continue
            rows.append(
                {
                    "run_id": forecast["run_id"],
                    "origin": forecast["last_observed"],
                    "target": point["date"],
                    "horizon": step,
                    "forecast": point["value"],
                    "observed": actual,
                    "error": round(point["value"] - actual, 4),
                }
            )
    return rows


def per_horizon_mae(scores: list[dict[str, Any]], run_id: str | None) -> dict[str, float]:
    by_horizon: dict[int, list[float]] = {}
    for row in scores:
        if run_id is None or row["run_id"] == run_id:
            by_horizon.setdefault(row["horizon"], []).append(abs(row["error"]))
    return {str(h): round(float(np.mean(e)), 4) for h, e in sorted(by_horizon.items())}


# --- 3. check ----------------------------------------------------------------------------------


def rolling_target_mae(
    targets: np.ndarray, abs_errors: np.ndarray, weeks: np.ndarray, window: int
) -> np.ndarray:
    """Mean |error| per target week, then its rolling mean over `window` consecutive weeks.

    `weeks` are the target weeks to evaluate, in order; a window needs half its weeks scored.
    """
    per_week = {}
    for target in np.unique(targets):
        per_week[target] = float(abs_errors[targets == target].mean())
    series = np.array([per_week.get(week, np.nan) for week in weeks])
    out = []
    for end in range(window, len(series) + 1):
        chunk = series[end - window : end]
        if np.isfinite(chunk).sum() >= max(2, window // 2):
            out.append(float(np.nanmean(chunk)))
    return np.array(out)


SIGNAL_EXCLUSION_WEEKS = 26
"""Target weeks this close to a drift signal (either side) stay out of the band: the shift the
monitor detected must not widen the band it is judged against."""


def backtest_band(
    model: Forecaster,
    dates: np.ndarray,
    values: np.ndarray,
    settings: MonitorSettings,
    signals: Iterable[str] = (),
) -> dict[str, Any]:
    """The rolling-error statistic over the model's holdout: its 5th, 50th and 95th percentile.

    Target weeks within SIGNAL_EXCLUSION_WEEKS of any drift signal (`signals`: the last observed
    date of each) are left out, unless that leaves no complete window."""
    last = np.datetime64(model.metrics["dataset"]["last_date"], "D")
    keep = dates <= last
    dates, values = dates[keep], values[keep]
    filled = fill_gaps(values)
    n = len(filled)
    horizon = settings.monitor_error_horizons
    origins = np.arange(max(n - HOLDOUT_WEEKS - 1, model.min_history - 1), n - 1)
    predictions = model.predict([filled[: o + 1] for o in origins], [horizon] * len(origins))
    targets, errors = [], []
    for origin, predicted in zip(origins, predictions, strict=True):
        for step, value in enumerate(predicted, start=1):
            target = origin + step
            if target < n and np.isfinite(values[target]):
                targets.append(target)
                errors.append(abs(value - values[target]))
    weeks = np.arange(origins[0] + 1, n)
    targets_arr, errors_arr = np.array(targets), np.array(errors)
    window = settings.monitor_error_window_weeks
    signal_dates = sorted({str(day) for day in signals})
    rolling = np.empty(0)
    if signal_dates and len(targets_arr):
        at = np.array(signal_dates, dtype="datetime64[D]")
        gap = np.abs(dates[targets_arr][:, None] - at[None, :]).astype(np.int64).min(axis=1)
        keep = gap > SIGNAL_EXCLUSION_WEEKS * 7
        rolling = rolling_target_mae(targets_arr[keep], errors_arr[keep], weeks, window)
    if len(rolling) == 0:
        rolling = rolling_target_mae(targets_arr, errors_arr, weeks, window)
    p5, p50, p95 = np.percentile(rolling, [5, 50, 95])
    return {
        "run_id": model.run_id,
        "window_weeks": settings.monitor_error_window_weeks,
        "horizons": horizon,
        "p5": round(float(p5), 4),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "backtest_weeks": len(weeks),
        "signals": signal_dates,
    }


def _band(
    store: Store,
    model: Forecaster,
    dates: np.ndarray,
    values: np.ndarray,
    settings: MonitorSettings,
) -> dict[str, Any]:
    path = _path(store, f"band-{model.run_id}.json")
    signals = sorted(
        {
            str(row["last_observed"])
            for row in _read_jsonl(_path(store, "signals.jsonl"))
            if row.get("last_observed")
        }
    )
    try:
        band = store.read_json(path)
        if (band["window_weeks"], band["horizons"], band["signals"]) == (
            settings.monitor_error_window_weeks,
            settings.monitor_error_horizons,
            signals,
        ):
            return band
    except (FileNotFoundError, KeyError, TypeError, orjson.JSONDecodeError):
        pass
    band = backtest_band(model, dates, values, settings, signals)
    store.write_json(path, band)
    return band


def error_check(
    scores: list[dict[str, Any]],
    band: dict[str, Any],
    dates: np.ndarray,
    values: np.ndarray,
    settings: MonitorSettings,
    units: str = "",
) -> dict[str, Any]:
    """The promoted model's rolling realized error against its backtest band."""
    window = settings.monitor_error_window_weeks
    observed_weeks = dates[np.isfinite(values)][-window:]
    recent = set(np.datetime_as_string(observed_weeks, unit="D").tolist())
    per_week: dict[str, list[float]] = {}
    for row in scores:
        if (
            row["run_id"] == band["run_id"]
            and row["horizon"] <= settings.monitor_error_horizons
            and row["target"] in recent
        ):
            per_week.setdefault(row["target"], []).append(abs(row["error"]))
    threshold = round(settings.monitor_error_tolerance * band["p95"], 4)
    result: dict[str, Any] = {
        "check": "forecast_error",
        "run_id": band["run_id"],
        "band": {key: band[key] for key in ("p5", "p50", "p95")},
        "threshold": threshold,
        "units": units,
        "window_weeks": window,
        "horizons": settings.monitor_error_horizons,
        "weeks_scored": len(per_week),
    }
    if len(per_week) < max(2, window // 2):
        return {**result, "tripped": False, "realized_mae": None, "note": "too few weeks"}
    realized = float(np.mean([np.mean(errors) for errors in per_week.values()]))
    return {**result, "tripped": realized > threshold, "realized_mae": round(realized, 4)}


def annual_change(dates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dates, y[t] - y[t-52]) where both weeks are observed."""
    change = values[SEASON:] - values[:-SEASON]
    ok = np.isfinite(change)
    return dates[SEASON:][ok], change[ok]


def input_drift_check(
    model: Forecaster, dates: np.ndarray, values: np.ndarray, settings: MonitorSettings
) -> dict[str, Any]:
    """Mann-Whitney U: annual change of the unseen weeks vs the model's training data."""
    from scipy.stats import mannwhitneyu  # scipy comes with xgboost; only the monitor needs it

    last = np.datetime64(model.metrics["dataset"]["last_date"], "D")
    change_dates, change = annual_change(dates, values)
    start = last - np.timedelta64(int(settings.monitor_drift_reference_years * 365.25), "D")
    reference = change[(change_dates > start) & (change_dates <= last)]
    recent = change[change_dates > last][-settings.monitor_drift_window_weeks :]
    series = from_metrics(model.metrics)
    min_shift = settings.monitor_drift_min_shift
    if min_shift is None:
        min_shift = series.monitor.get("min_drift_shift")
    if min_shift is None and len(reference):
        spread = np.median(np.abs(reference - np.median(reference)))
        min_shift = round(float(MAD_SCALE * spread), 6)
    result: dict[str, Any] = {
        "check": "input_drift",
        "test": "Mann-Whitney U, two-sided (scipy.stats.mannwhitneyu)",
        "statistic": series.in_units("annual change y[t] - y[t-52]"),
        "units": series.units,
        "run_id": model.run_id,
        "reference_weeks": len(reference),
        "recent_weeks": len(recent),
        "p_threshold": settings.monitor_drift_p_value,
        "min_shift": min_shift,
    }
    if len(recent) < settings.monitor_drift_min_weeks or len(reference) < 2 * SEASON:
        return {**result, "tripped": False, "p_value": None, "shift": None,
                "note": "too few weeks"}  # fmt: skip
    test = mannwhitneyu(recent, reference, alternative="two-sided")
    shift = float(np.median(recent) - np.median(reference))
    p_value = float(test.pvalue)
    return {
        **result,
        "u_statistic": float(test.statistic),
        "p_value": p_value,
        "shift": round(shift, 4),
        "recent_median": round(float(np.median(recent)), 4),
        "reference_median": round(float(np.median(reference)), 4),
        "tripped": p_value < settings.monitor_drift_p_value and abs(shift) >= (min_shift or 0.0),
    }


# --- 4. signal ---------------------------------------------------------------------------------


def drift_detail(status: dict[str, Any]) -> dict[str, Any]:
    """The event's detail: the reasons, the figures of both checks and the dataset sha."""
    return {
        "reasons": status["reasons"],
        "dataset_sha256": status["dataset_sha256"],
        "last_observed": status["last_observed"],
        "model_run_id": status["model_run_id"],
        "checks": status["checks"],
        "checked_at": status["checked_at"],
    }


def publish_drift_event(client: Any, detail: dict[str, Any], bus_name: str) -> str:
    """PutEvents one `DataDriftDetected`; returns its event id, raises when EventBridge refused."""
    response = client.put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": EVENT_DETAIL_TYPE,
                "Detail": orjson.dumps(detail).decode(),
                "EventBusName": bus_name,
            }
        ]
    )
    entry = response["Entries"][0]
    if response.get("FailedEntryCount", 0) or "EventId" not in entry:
        raise RuntimeError(
            f"EventBridge refused the event: {entry.get('ErrorCode')}: {entry.get('ErrorMessage')}"
        )
    return entry["EventId"]


def events_client(region: str | None) -> Any:
    """A botocore EventBridge client (the task role's credentials come from the ECS agent)."""
    import botocore.session

    return botocore.session.get_session().create_client("events", region_name=region)


def run_pipeline(store_root: Path, run_id: str) -> dict[str, Any] | None:
    """validate -> train -> gate as child processes; the gate's decision, or None on a failure."""
    import os

    env = {**os.environ, Env.STORE_DIR: str(store_root), Env.RUN_ID: run_id}
    for step in PIPELINE:
        log.info("drift retrain %s: %s", run_id, step)
        status = subprocess.run([sys.executable, "-m", "app", step], env=env, check=False)
        if status.returncode != 0:
            log.error("drift retrain %s: %s failed with status %d", run_id, step, status.returncode)
            return None
    try:
        return Store(store_root).read_json(Store(store_root).run_dir(run_id) / "decision.json")
    except FileNotFoundError:
        return None


# --- the whole run -----------------------------------------------------------------------------


@dataclass
class MonitorResult:
    status: dict[str, Any]
    signal: bool
    """A check tripped and the cooldown allowed a signal."""


def _weeks_between(dates: np.ndarray, since: str) -> int:
    return int((dates > np.datetime64(since, "D")).sum())


def check(store: Store, settings: MonitorSettings) -> MonitorResult:
    """Steps 1-3, and the decision whether to signal; writes status, scores and history."""
    dataset = store.ensure_dataset()
    dates, values = read_series(dataset)
    try:
        current = store.current_run_id()
    except ValueError as exc:  # DamagedFileError: one line, then score without a model
        log.error("%s; scoring without the promoted model", exc)
        current = None
    model = None
    if current is not None:
        try:
            model = Forecaster.load(store.run_dir(current))
        except ModelLoadError as exc:
            log.error("cannot load the promoted model %s: %s", current, exc)
    archive = archive_forecasts(store, model, dates, values)
    scores = score_forecasts(archive, dates, values)
    store.write_json(
        _path(store, "scores.json"),
        {
            "per_horizon_mae": per_horizon_mae(scores, None),
            "per_horizon_mae_current": per_horizon_mae(scores, current),
            "scores": scores,
        },
    )
    checks: list[dict[str, Any]] = []
    if model is not None:
        band = _band(store, model, dates, values, settings)
        units = from_metrics(model.metrics).units
        checks.append(error_check(scores, band, dates, values, settings, units))
        checks.append(input_drift_check(model, dates, values, settings))
    tripped = [c for c in checks if c["tripped"]]
    reasons = [_reason(c) for c in tripped]
    previous = _read_status(store)
    last_signal = previous.get("last_signal_observed")
    cooling = (
        last_signal is not None
        and _weeks_between(dates, last_signal) < settings.monitor_cooldown_weeks
    )
    signal = bool(tripped) and not cooling
    last_observed = str(np.datetime_as_string(dates[np.isfinite(values)][-1], unit="D"))
    status = {
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_observed": last_observed,
        "dataset_sha256": file_sha256(dataset),
        "model_run_id": current,
        "checks": checks,
        "drift": bool(tripped),
        "reasons": reasons,
        "signalled": signal,
        "cooldown": bool(tripped) and cooling,
        "last_signal_observed": last_observed if signal else last_signal,
        "forecasts_archived": len(archive),
        "steps_scored": len(scores),
    }
    store.write_json(_path(store, "status.json"), status)
    _append_jsonl(store, _path(store, "history.jsonl"), [_history_line(status)])
    return MonitorResult(status=status, signal=signal)


def _reason(result: dict[str, Any]) -> str:
    units = f" {result['units']}" if result.get("units") else ""
    if result["check"] == "forecast_error":
        return (
            f"forecast error: rolling MAE {result['realized_mae']:.3f}{units} over the last "
            f"{result['window_weeks']} weeks (horizons 1-{result['horizons']}) exceeds "
            f"{result['threshold']:.3f}{units} (backtest p95 {result['band']['p95']:.3f})"
        )
    return (
        f"input drift: median annual change moved {result['shift']:+.3g}{units} over the "
        f"last {result['recent_weeks']} unseen weeks (Mann-Whitney U p={result['p_value']:.2g} "
        f"< {result['p_threshold']:g})"
    )


def _history_line(status: dict[str, Any]) -> dict[str, Any]:
    by_name = {c["check"]: c for c in status["checks"]}
    error = by_name.get("forecast_error", {})
    drift = by_name.get("input_drift", {})
    return {
        "checked_at": status["checked_at"],
        "last_observed": status["last_observed"],
        "model_run_id": status["model_run_id"],
        "realized_mae": error.get("realized_mae"),
        "band_p5": (error.get("band") or {}).get("p5"),
        "band_p95": (error.get("band") or {}).get("p95"),
        "threshold": error.get("threshold"),
        "error_tripped": error.get("tripped", False),
        "drift_p_value": drift.get("p_value"),
        "drift_shift": drift.get("shift"),
        "drift_tripped": drift.get("tripped", False),
        "signalled": status["signalled"],
    }


def _read_status(store: Store) -> dict[str, Any]:
    try:
        status = store.read_json(_path(store, "status.json"))
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


def record_signal(store: Store, status: dict[str, Any], **outcome: Any) -> None:
    """One line in signals.jsonl: what tripped, and what was done about it."""
    _append_jsonl(
        store,
        _path(store, "signals.jsonl"),
        [
            {
                "signalled_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "last_observed": status["last_observed"],
                "dataset_sha256": status["dataset_sha256"],
                "model_run_id": status["model_run_id"],
                "reasons": status["reasons"],
                **outcome,
            }
        ],
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app monitor",
        description="Score past forecasts, check forecast error and input drift, signal drift.",
    )
    parser.parse_args(argv)
    settings = command_settings("monitor")
    monitor_settings = load_monitor_settings()
    store = open_store(settings)
    result = check(store, monitor_settings)
    status = result.status
    for item in status["checks"]:
        log.info("check %s: %s", item["check"], "TRIPPED" if item["tripped"] else "ok")
    if not status["drift"]:
        log.info("no drift at %s (model %s)", status["last_observed"], status["model_run_id"])
        return 0
    for reason in status["reasons"]:
        log.warning("drift: %s", reason)
    if not result.signal:
        log.info("a signal went out less than MONITOR_COOLDOWN_WEEKS ago; not signalling again")
        return 0
    action = monitor_settings.monitor_on_drift
    if action == "eventbridge":
        client = events_client(monitor_settings.aws_region)
        try:
            event_id = publish_drift_event(
                client, drift_detail(status), monitor_settings.event_bus_name
            )
        except Exception as exc:  # botocore's errors: report them, fail the task
            print(f"error: cannot publish {EVENT_DETAIL_TYPE}: {exc}", file=sys.stderr)
            return 1
        record_signal(store, status, action=action, event_id=event_id)
        log.info("published %s to %s: event %s", EVENT_DETAIL_TYPE, "EventBridge", event_id)
    elif action == "retrain":
        run_id = new_run_id()
        decision = run_pipeline(store.root, run_id)
        record_signal(store, status, action=action, run_id=run_id, decision=decision)
        if decision is None:
            return 1
    else:
        record_signal(store, status, action=action)
    return 0
