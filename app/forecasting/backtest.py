"""Rolling-origin backtest: a run's report card, and the scores the gate compares.

Folds: the newest `FOLDS` stretches of `FOLD_WEEKS` weeks of the data the run was given (after
`RUN_DATE` truncation), oldest first; fewer when the series is too short to keep
`MIN_TRAIN_WEEKS` before the first fold. For each fold, a model of the recipe is fitted on the
weeks before the fold only, then forecasts from every observed week of the fold as an origin, up
to 52 weeks ahead and never past the fold's end; each origin sees the history up to itself,
gaps filled from the past only. Errors are taken over those (origin, step) pairs against the
observed values.

Per fold and on average: MAE, RMSE, and skill against seasonal naive plus drift (the value 52
weeks before the target, plus the mean annual change over the 52 weeks up to the origin);
plain seasonal naive is kept as a reference line.

Intervals: per horizon step, quantiles of the errors of every fold (split-conformal). Their
coverage is measured honestly, leaving one fold out: fold k's bounds come from the errors of the
other folds only.

Only numpy and xgboost: the gate runs this too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import xgboost as xgb

from app.forecasting.model import (
    FEATURE_NAMES,
    HARMONIC_MIN_HISTORY,
    LEVELS,
    MAX_HORIZON,
    SEASON,
    WINDOW,
    Forecaster,
    design_matrix,
    fill_gaps,
    harmonic_predict_many,
)

log = logging.getLogger(__name__)

FOLDS = 5
FOLD_WEEKS = 104
MIN_TRAIN_WEEKS = 260
"""Weeks a fold's model needs before the fold: five seasonal cycles."""
BASELINE_HISTORY = 2 * SEASON
"""Seasonal naive plus drift reads two years before each origin."""


class BacktestError(ValueError):
    """The series is too short to backtest."""


@dataclass
class Split:
    """Model rows for part of a series: features, observed targets and seasonal anchors.

    The xgboost family learns `targets - anchors`: the change from the value 52 weeks earlier."""

    features: np.ndarray
    targets: np.ndarray
    anchors: np.ndarray


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


def training_split(values: np.ndarray, end: int) -> Split:
    """Every training row whose target lies before index `end`, gaps filled from before `end`."""
    filled = fill_gaps(values[:end])
    observed = ~np.isnan(values[:end])
    return make_split(filled, observed, np.arange(WINDOW - 1, end - 1), end)


def fit_booster(
    values: np.ndarray,
    end: int,
    params: dict[str, Any],
    rounds: int,
    stop: threading.Event | None = None,
) -> xgb.Booster:
    """An xgboost-family booster trained on the weeks before `end` (no evaluation, no logs)."""
    split = training_split(values, end)
    dtrain = xgb.DMatrix(
        split.features, label=split.targets - split.anchors, feature_names=list(FEATURE_NAMES)
    )
    callbacks = [_StopOn(stop)] if stop is not None else None
    booster = xgb.train(params, dtrain, num_boost_round=rounds, callbacks=callbacks)
    booster.set_param({"nthread": 1})
    return booster


class _StopOn(xgb.callback.TrainingCallback):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        return self.stop.is_set()


def fold_bounds(n: int) -> list[tuple[int, int]]:
    """`(start, end)` indices of the folds, oldest first; BacktestError when none fits."""
    count = min(FOLDS, (n - MIN_TRAIN_WEEKS) // FOLD_WEEKS)
    if count < 1:
        raise BacktestError(
            f"{n} weeks are too few to backtest: one {FOLD_WEEKS}-week fold needs "
            f"{MIN_TRAIN_WEEKS} weeks before it"
        )
    return [(n - FOLD_WEEKS * (k + 1), n - FOLD_WEEKS * k) for k in reversed(range(count))]


@dataclass
class FoldForecasts:
    """Every (origin, step) pair of one fold: what happened and what each method forecast."""

    start: int
    end: int
    steps: np.ndarray
    actual: np.ndarray
    model: np.ndarray
    naive: np.ndarray
    drift: np.ndarray
    origins: int
    origin_index: np.ndarray | None = None
    """Index of each origin in the series (the forecasts run from each, in this order)."""
    horizons: np.ndarray | None = None
    """Steps forecast from each origin."""
    observed: np.ndarray | None = None
    """Which of the (origin, step) pairs, all origins' steps concatenated, have an observed
    target: the pairs `steps`, `actual` and the forecasts above keep."""


def history_length(recipe: dict[str, Any]) -> int:
    """Weeks of history each backtest origin hands the recipe's model (and the baselines)."""
    if recipe["family"] == "harmonic":
        return max(int(recipe["params"]["window"]), BASELINE_HISTORY)
    return max(WINDOW, BASELINE_HISTORY)


def fold_model(
    recipe: dict[str, Any], values: np.ndarray, start: int, stop: threading.Event | None = None
) -> Forecaster:
    """The recipe's model as it would have been built from the weeks before `start`."""
    if recipe["family"] == "harmonic":
        return Forecaster("backtest", "", {}, family="harmonic", harmonic=recipe["params"])
    params = {**recipe["params"], "device": "cpu", "nthread": recipe.get("threads", 1)}
    booster = fit_booster(values, start, params, int(recipe["rounds"]), stop)
    return Forecaster("backtest", "", {}, family="xgboost", booster=booster)


def _fold_pairs(values: np.ndarray, start: int, end: int, length: int) -> dict[str, Any]:
    """Origins `start - 1 .. end - 2` (observed ones), their histories (the last `length` weeks,
    gaps filled from the past), steps, targets and the baselines' forecasts."""
    origins = [o for o in range(start - 1, end - 1) if not np.isnan(values[o])]
    horizons = [min(MAX_HORIZON, end - 1 - o) for o in origins]
    histories = [fill_gaps(values[max(0, o + 1 - length) : o + 1]) for o in origins]
    steps = np.concatenate([np.arange(1, h + 1) for h in horizons])
    target = np.concatenate(
        [o + np.arange(1, h + 1) for o, h in zip(origins, horizons, strict=True)]
    )
    naive = np.concatenate(
        [
            hist[-SEASON : -SEASON + h] if h < SEASON else hist[-SEASON:]
            for hist, h in zip(histories, horizons, strict=True)
        ]
    )
    drift = naive + np.repeat(
        [np.mean(hist[-SEASON:] - hist[-2 * SEASON : -SEASON]) for hist in histories], horizons
    )
    return {
        "origins": origins,
        "horizons": horizons,
        "histories": histories,
        "steps": steps,
        "target": target,
        "naive": naive,
        "drift": drift,
        "observed": ~np.isnan(values[target]),
    }


def _fold_forecasts(
    values: np.ndarray, start: int, end: int, pairs: dict[str, Any], predicted: list[np.ndarray]
) -> FoldForecasts:
    observed = pairs["observed"]
    return FoldForecasts(
        start=start,
        end=end,
        steps=pairs["steps"][observed],
        actual=values[pairs["target"]][observed],
        model=np.concatenate(predicted)[observed],
        naive=pairs["naive"][observed],
        drift=pairs["drift"][observed],
        origins=len(pairs["origins"]),
        origin_index=np.asarray(pairs["origins"], dtype=np.int64),
        horizons=np.asarray(pairs["horizons"], dtype=np.int64),
        observed=observed,
    )


def forecast_folds(
    values: np.ndarray,
    recipe: dict[str, Any],
    model_for_fold: Any = None,
    stop: threading.Event | None = None,
) -> list[FoldForecasts]:
    """Forecasts of the recipe and the baselines over every fold.

    `model_for_fold(start)` may supply each fold's model; by default it is
    `fold_model(recipe, values, start)`."""
    length = history_length(recipe)
    result = []
    for start, end in fold_bounds(len(values)):
        pairs = _fold_pairs(values, start, end, length)
        model = (
            fold_model(recipe, values, start, stop)
            if model_for_fold is None
            else (model_for_fold(start))
        )
        predicted = model.predict(pairs["histories"], pairs["horizons"])
        result.append(_fold_forecasts(values, start, end, pairs, predicted))
    return result


def grid_folds(values: np.ndarray, grid: list[dict[str, Any]]) -> list[list[FoldForecasts]]:
    """`forecast_folds` of every harmonic setting in `grid` at once: `result[setting][fold]`.

    Per fold, one `harmonic_predict_many` call: settings that share a window, harmonics and
    half-life share one batched least-squares solve."""
    length = max(max(int(p["window"]) for p in grid), BASELINE_HISTORY)
    result: list[list[FoldForecasts]] = [[] for _ in grid]
    for start, end in fold_bounds(len(values)):
        pairs = _fold_pairs(values, start, end, length)
        many = harmonic_predict_many(pairs["histories"], pairs["horizons"], grid)
        for g, predicted in enumerate(many):
            result[g].append(_fold_forecasts(values, start, end, pairs, predicted))
    return result


def choose_setting(per_setting: list[list[FoldForecasts]]) -> int:
    """Index of the setting with the lowest mean fold MAE (the first among equals)."""
    scores = [np.mean([_mae(f.actual - f.model) for f in folds]) for folds in per_setting]
    return int(np.argmin(scores))


def nested_backtest(values: np.ndarray, grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The grid's honest score: for each reported fold, the setting is chosen on the weeks before
    it only (origins of the last FOLDS * FOLD_WEEKS weeks before the fold with at least
    HARMONIC_MIN_HISTORY weeks of history, targets before the fold), then scored on the fold."""
    reported = grid_folds(values, grid)
    length = max(max(int(p["window"]) for p in grid), BASELINE_HISTORY)
    rows = []
    for k, (start, _end) in enumerate(fold_bounds(len(values))):
        inner_start = max(HARMONIC_MIN_HISTORY, start - FOLDS * FOLD_WEEKS)
        pairs = _fold_pairs(values, inner_start, start, length)
        many = harmonic_predict_many(pairs["histories"], pairs["horizons"], grid)
        actual = values[pairs["target"]][pairs["observed"]]
        inner = [_mae(actual - np.concatenate(p)[pairs["observed"]]) for p in many]
        chosen = int(np.argmin(inner))
        fold = reported[chosen][k]
        rows.append({"fold": k + 1, "setting": chosen, "mae": _mae(fold.actual - fold.model)})
    return {
        "method": "per fold, the grid setting with the lowest MAE on the weeks before the fold",
        "folds": rows,
        "mae": round(float(np.mean([row["mae"] for row in rows])), 5),
    }


def _mae(errors: np.ndarray) -> float:
    return float(np.mean(np.abs(errors)))


HORIZON_BUCKETS = ((1, 4), (5, 13), (14, 26), (27, 52))
"""Steps whose errors are pooled for one interval quantile (a month, a quarter, half a year,
a year ahead)."""


def _order_statistic(sorted_scores: np.ndarray, rank: int) -> float:
    """The `rank`-th smallest score (1-based), clamped to the observed range."""
    return float(sorted_scores[min(max(rank, 1), len(sorted_scores)) - 1])


def _scores(errors: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each step's mean absolute error (1..MAX_HORIZON), and the errors divided by it."""
    overall = float(np.mean(np.abs(errors))) or 1.0
    scale = np.full(MAX_HORIZON, overall)
    for h in range(1, MAX_HORIZON + 1):
        at = np.abs(errors[steps == h])
        if len(at) and at.mean() > 0:
            scale[h - 1] = at.mean()
    return scale, errors / scale[steps - 1]


def _bucket_bounds(scores: np.ndarray, steps: np.ndarray, level: float) -> np.ndarray:
    """Per bucket, (lower, upper) score bounds: the order statistics of rank
    floor((n + 1) * alpha / 2) and ceil((n + 1) * (1 - alpha / 2)) of its n scores, the
    finite-sample correction of split conformal prediction."""
    alpha = 1 - level / 100
    bounds = np.empty((len(HORIZON_BUCKETS), 2))
    for b, (first, last) in enumerate(HORIZON_BUCKETS):
        chosen = (steps >= first) & (steps <= last)
        ordered = np.sort(scores[chosen] if chosen.any() else scores)
        n = len(ordered)
        bounds[b] = (
            _order_statistic(ordered, int(np.floor((n + 1) * alpha / 2))),
            _order_statistic(ordered, int(np.ceil((n + 1) * (1 - alpha / 2)))),
        )
    return bounds


LEVEL_STEPS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)
"""How far a bucket's quantile level may be raised above the nominal one (percentage points),
when the folds' own leave-one-fold-out check shows that the pooled errors under-cover a new fold."""


def _bucket_of(steps: np.ndarray) -> np.ndarray:
    edges = np.array([last for _, last in HORIZON_BUCKETS])
    return np.searchsorted(edges, steps)


def _adjusted_levels(errors: list[np.ndarray], steps: list[np.ndarray], level: int) -> np.ndarray:
    """Per bucket, the level at which bounds pooled from all of these folds should cover a new
    fold `level` percent of the time (cross-conformal calibration of the level: folds differ,
    errors within one are correlated, so the pooled quantile alone under-covers a new fold).

    First, the level (nominal + LEVEL_STEPS) at which bounds from all but one of these folds
    cover the left-out fold's errors closest to `level` percent, pooled over the folds. That level
    is right for m - 1 pooled folds; bounds pooled from all m folds need less. With fold biases
    of variance tau^2 around within-fold noise, a pool of m folds under-states a new fold's
    variance by tau^2 / m, so the width factor f (the raised level's normal quantile over the
    nominal one) needs f^2 - 1 scaled by (m - 1) / m (`_pooled_level`)."""
    chosen = np.full(len(HORIZON_BUCKETS), float(level))
    if len(errors) < 3:
        return chosen
    candidates = [min(level + extra, 99.9) for extra in LEVEL_STEPS]
    hits = np.zeros((len(candidates), len(HORIZON_BUCKETS)))
    counts = np.zeros(len(HORIZON_BUCKETS))
    for j in range(len(errors)):
        others = [i for i in range(len(errors)) if i != j]
        scale, scores = _scores(
            np.concatenate([errors[i] for i in others]), np.concatenate([steps[i] for i in others])
        )
        others_steps = np.concatenate([steps[i] for i in others])
        held = errors[j] / scale[steps[j] - 1]
        bucket = _bucket_of(steps[j])
        counts += np.bincount(bucket, minlength=len(HORIZON_BUCKETS))
        for c, candidate in enumerate(candidates):
            bounds = _bucket_bounds(scores, others_steps, candidate)
            inside = (held >= bounds[bucket, 0]) & (held <= bounds[bucket, 1])
            hits[c] += np.bincount(bucket, weights=inside, minlength=len(HORIZON_BUCKETS))
    coverage = hits / np.maximum(counts, 1) * 100
    for b in range(len(HORIZON_BUCKETS)):
        # The first candidate closest to the nominal level (a shortfall and an excess alike).
        held_out = candidates[int(np.argmin(np.abs(coverage[:, b] - level)))]
        chosen[b] = _pooled_level(level, held_out, len(errors))
    return chosen


def _pooled_level(level: float, held_out: float, folds: int) -> float:
    """The level for bounds pooled from `folds` folds, given that `held_out` was right for
    `folds - 1` of them (see `_adjusted_levels`): in normal quantiles z, with f = z(held_out) /
    z(level), the pooled level's f^2 is 1 + (f^2 - 1) * (folds - 1) / folds."""
    normal = NormalDist()
    nominal = normal.inv_cdf(0.5 + level / 200)
    factor2 = (normal.inv_cdf(0.5 + held_out / 200) / nominal) ** 2
    z = nominal * np.sqrt(1 + (factor2 - 1) * (folds - 1) / folds)
    return (2 * normal.cdf(float(z)) - 1) * 100


def fold_offsets(
    errors: list[np.ndarray], steps: list[np.ndarray], level: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per step 1..MAX_HORIZON, the offsets bounding `level` percent of future errors, from the
    errors of these folds.

    Conformal per horizon bucket (HORIZON_BUCKETS): each error is divided by its step's mean
    absolute error (so widths still grow step by step inside a bucket), and the bucket's bounds
    are order statistics of those scores with the finite-sample correction, at a level raised
    per bucket as far as the folds' own leave-one-fold-out coverage asks (`_adjusted_levels`)."""
    levels = _adjusted_levels(errors, steps, level)
    all_steps = np.concatenate(steps)
    scale, scores = _scores(np.concatenate(errors), all_steps)
    lower, upper = np.empty(MAX_HORIZON), np.empty(MAX_HORIZON)
    for b, (first, last) in enumerate(HORIZON_BUCKETS):
        low, high = _bucket_bounds(scores, all_steps, levels[b])[b]
        lower[first - 1 : last] = low * scale[first - 1 : last]
        upper[first - 1 : last] = high * scale[first - 1 : last]
    return lower, upper


def _lofo_inside(folds: list[FoldForecasts]) -> dict[str, list[np.ndarray]]:
    """Per level, per fold: whether each error lies inside bounds built from the other folds."""
    errors = [fold.actual - fold.model for fold in folds]
    steps = [fold.steps for fold in folds]
    inside: dict[str, list[np.ndarray]] = {str(level): [] for level in LEVELS}
    for k in range(len(folds)):
        others = [i for i in range(len(folds)) if i != k] or [k]
        for level in LEVELS:
            lower, upper = fold_offsets(
                [errors[i] for i in others], [steps[i] for i in others], level
            )
            idx = steps[k] - 1
            inside[str(level)].append((errors[k] >= lower[idx]) & (errors[k] <= upper[idx]))
    return inside


def summarize(folds: list[FoldForecasts], dates: np.ndarray) -> dict[str, Any]:
    """Per-fold and mean errors, leave-one-fold-out coverage, and the served interval offsets."""
    errors = [fold.actual - fold.model for fold in folds]
    inside = _lofo_inside(folds)
    fold_rows = []
    for k, fold in enumerate(folds):
        coverage = {lv: round(float(np.mean(hits[k])) * 100, 2) for lv, hits in inside.items()}
        mae, drift_mae = _mae(errors[k]), _mae(fold.actual - fold.drift)
        fold_rows.append(
            {
                "fold": k + 1,
                "first_date": str(dates[fold.start]),
                "last_date": str(dates[fold.end - 1]),
                "origins": fold.origins,
                "pairs": len(fold.actual),
                "mae": round(mae, 5),
                "rmse": round(float(np.sqrt(np.mean(errors[k] ** 2))), 5),
                "drift_mae": round(drift_mae, 5),
                "naive_mae": round(_mae(fold.actual - fold.naive), 5),
                "skill": round(1.0 - mae / drift_mae, 5),
                "coverage": coverage,
            }
        )
    mean = {
        key: round(float(np.mean([row[key] for row in fold_rows])), 5)
        for key in ("mae", "rmse", "drift_mae", "naive_mae")
    }
    mean["skill"] = round(1.0 - mean["mae"] / mean["drift_mae"], 5)
    mean["naive_skill"] = round(1.0 - mean["mae"] / mean["naive_mae"], 5)
    coverage = {
        str(level): round(
            float(np.sum([row["coverage"][str(level)] * row["pairs"] for row in fold_rows]))
            / sum(row["pairs"] for row in fold_rows),
            2,
        )
        for level in LEVELS
    }
    offsets = {}
    for level in LEVELS:
        lower, upper = fold_offsets(errors, [f.steps for f in folds], level)
        offsets[str(level)] = {
            "lower": [round(float(x), 4) for x in lower],
            "upper": [round(float(x), 4) for x in upper],
        }
    return {
        "spec": {
            "folds": len(folds),
            "fold_weeks": FOLD_WEEKS,
            "max_horizon": MAX_HORIZON,
            "origins": "every observed week of the fold; targets stay inside it",
            "baseline": "seasonal naive + drift (mean annual change over the last 52 weeks)",
        },
        "folds": fold_rows,
        "mean": mean,
        "coverage": coverage,
        "intervals": {
            "method": (
                "conformal per horizon bucket (1-4, 5-13, 14-26, 27-52 weeks) on the backtest "
                "errors scaled by each step's mean absolute error, with the finite-sample "
                "correction, the level raised per bucket as far as leave-one-fold-out "
                "coverage on the folds asks, relaxed for the one fold more that the bounds pool"
            ),
            "offsets": offsets,
        },
    }


def coverage_by_horizon(
    folds: list[FoldForecasts], buckets: dict[str, tuple[int, int]] | None = None
) -> dict[str, dict[str, float]]:
    """Leave-one-fold-out coverage per level within each bucket of steps (first, last);
    by default the interval buckets (HORIZON_BUCKETS)."""
    if buckets is None:
        buckets = {f"{first}-{last}": (first, last) for first, last in HORIZON_BUCKETS}
    inside = _lofo_inside(folds)
    steps = np.concatenate([fold.steps for fold in folds])
    result = {}
    for name, (first, last) in buckets.items():
        chosen = (steps >= first) & (steps <= last)
        result[name] = {
            level: round(float(np.mean(np.concatenate(hits)[chosen])) * 100, 2)
            for level, hits in inside.items()
        }
    return result


def backtest(
    dates: np.ndarray,
    values: np.ndarray,
    recipe: dict[str, Any],
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """The recipe's rolling-origin backtest on this series (see the module docstring).

    A harmonic recipe with a `grid` backtests every setting of it at once (`grid_folds`) and
    reports the one with the lowest mean MAE; `selection` names it (its `params`)."""
    if recipe["family"] == "harmonic" and recipe.get("grid"):
        per_setting = grid_folds(values, recipe["grid"])
        best = choose_setting(per_setting)
        report = summarize(per_setting[best], dates)
        report["selection"] = {
            "method": "the grid setting with the lowest mean MAE over the folds",
            "settings": len(recipe["grid"]),
            "chosen": best,
            "params": dict(recipe["grid"][best]),
        }
        return report
    return summarize(forecast_folds(values, recipe, stop=stop), dates)


def same_folds(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two backtests were scored on the same weeks."""

    def key(report: dict[str, Any]) -> list[tuple[str, str, int]]:
        return [(f["first_date"], f["last_date"], f["pairs"]) for f in report.get("folds", [])]

    return bool(key(first)) and key(first) == key(second)
