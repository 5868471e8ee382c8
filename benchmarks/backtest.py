"""Backtest benchmark: the served model against seasonal naive + drift and library methods.

    python -m benchmarks.backtest [--run-date YYYY-MM-DD] [--rounds N] [--stride K]

One run, the same rolling folds as `train` (`app.backtest`: the newest 5 folds of 104 weeks,
each method fitted only on the weeks before its fold, forecasting up to 52 weeks ahead from its
origins). For each fold and on average it prints the MAE of

* the served model: what `train` would serve on this data (`auto`: the family with the lower
  mean MAE), and the other family next to it;
* seasonal naive + drift, and plain seasonal naive as a reference line;
* classical methods from statsmodels, fitted once per fold on the weeks before it and then run
  forward with those parameters to each origin (no refit, no look-ahead):
  - ARIMA(1,1,1) with drift and four annual Fourier pairs as regressors (dynamic harmonic
    regression; a seasonal ARIMA with period 52 takes minutes per fit in statsmodels),
  - STL decomposition + exponential smoothing (ETS with additive trend) on the adjusted series,
    refitted at each origin (cheap).

The library methods score the same (origin, step) pairs as the served model: with `--stride K`
every K-th origin (default 4, to keep statsmodels' share of the run to a few minutes; the served
model's own report card in metrics.json uses every origin). Also prints the served model's
interval coverage per level (each fold's bounds from the other folds). statsmodels is a
benchmark dependency only (requirements.txt), never in the image.
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from app.backtest import FoldForecasts, forecast_folds, summarize
from app.model import HARMONIC_PARAMS, MAX_HORIZON, fill_gaps, read_series
from app.store import SHIPPED_DATASET
from app.train import PARAMS

FOURIER_PAIRS = 4
PERIOD = 365.25 / 7


def _fourier(index: np.ndarray) -> np.ndarray:
    t = np.asarray(index, dtype=np.float64)[:, None]
    k = np.arange(1, FOURIER_PAIRS + 1)[None, :]
    return np.hstack([np.sin(2 * np.pi * k * t / PERIOD), np.cos(2 * np.pi * k * t / PERIOD)])


class _PerOrigin:
    """Adapts a `forecast(origin_index, h)` function to the backtest's `predict` call."""

    def __init__(self, values: np.ndarray, start: int, end: int, stride: int, forecast) -> None:
        self.origins = [o for o in range(start - 1, end - 1) if not np.isnan(values[o])]
        self.forecast = forecast
        self.stride = stride

    def predict(self, histories: list[np.ndarray], horizons: list[int]) -> list[np.ndarray]:
        return [
            np.asarray(self.forecast(origin, h), dtype=np.float64)
            if i % self.stride == 0
            else np.full(h, np.nan)
            for i, (origin, h) in enumerate(zip(self.origins, horizons, strict=True))
        ]


def arima_fourier(values: np.ndarray, start: int) -> Any:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    fitted = SARIMAX(
        fill_gaps(values[:start]), exog=_fourier(np.arange(start)), order=(1, 1, 1), trend="c"
    ).fit(disp=False)

    def forecast(origin: int, h: int) -> np.ndarray:
        run = fitted.apply(fill_gaps(values[: origin + 1]), exog=_fourier(np.arange(origin + 1)))
        return run.forecast(h, exog=_fourier(np.arange(origin + 1, origin + 1 + h)))

    return forecast


def stl_ets(values: np.ndarray, start: int) -> Any:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.stl import STLForecast

    def forecast(origin: int, h: int) -> np.ndarray:
        history = fill_gaps(values[: origin + 1])
        model = STLForecast(history, ETSModel, model_kwargs={"trend": "add"}, period=52)
        return model.fit().forecast(h)

    return forecast


LIBRARY_METHODS = {
    "ARIMA(1,1,1)+Fourier (statsmodels)": arima_fourier,
    "STL + ETS (statsmodels)": stl_ets,
}


def _mask(folds: list[FoldForecasts], reference: list[FoldForecasts]) -> list[FoldForecasts]:
    """`folds` restricted to the pairs `reference` forecast (the strided origins)."""
    kept = []
    for fold, ref in zip(folds, reference, strict=True):
        keep = ~np.isnan(ref.model)
        kept.append(
            FoldForecasts(
                fold.start,
                fold.end,
                fold.steps[keep],
                fold.actual[keep],
                fold.model[keep],
                fold.naive[keep],
                fold.drift[keep],
                fold.origins,
            )
        )
    return kept


def _fold_mae(folds: list[FoldForecasts], which: str) -> list[float]:
    return [float(np.mean(np.abs(getattr(f, which) - f.actual))) for f in folds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backtest")
    parser.add_argument("--run-date", type=date.fromisoformat, default=None)
    parser.add_argument("--rounds", type=int, default=100, help="xgboost rounds (TRAIN_ROUNDS)")
    parser.add_argument("--stride", type=int, default=4, help="score every K-th origin")
    parser.add_argument("--data", type=Path, default=SHIPPED_DATASET)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    dates, values = read_series(args.data)
    if args.run_date is not None:
        keep = dates <= np.datetime64(args.run_date)
        dates, values = dates[keep], values[keep]
    recipes = {
        "xgboost": {"family": "xgboost", "params": PARAMS, "rounds": args.rounds, "threads": 0},
        "harmonic": {"family": "harmonic", "params": HARMONIC_PARAMS},
    }
    families: dict[str, list[FoldForecasts]] = {}
    seconds: dict[str, float] = {}
    for name, recipe in recipes.items():
        started = time.monotonic()
        families[name] = forecast_folds(values, recipe)
        seconds[name] = time.monotonic() - started
    cards = {name: summarize(folds, dates) for name, folds in families.items()}
    served = min(cards, key=lambda name: cards[name]["mean"]["mae"])
    other = next(name for name in cards if name != served)

    rows: dict[str, list[float]] = {}
    for label, make in LIBRARY_METHODS.items():
        started = time.monotonic()
        library = forecast_folds(
            values,
            recipes["harmonic"],
            model_for_fold=lambda start, make=make: _PerOrigin(
                values,
                start,
                start + 104,
                args.stride,
                make(values, start),
            ),
        )
        seconds[label] = time.monotonic() - started
        strided = _mask(library, library)
        rows[label] = _fold_mae(strided, "model")
    reference = _mask(families[served], library)
    table = {
        f"served: {served}": _fold_mae(reference, "model"),
        f"{other} (not served)": _fold_mae(_mask(families[other], library), "model"),
        "seasonal naive + drift": _fold_mae(reference, "drift"),
        **rows,
        "seasonal naive (reference)": _fold_mae(reference, "naive"),
    }

    folds = cards[served]["folds"]
    print(
        f"Rolling-origin backtest: {len(folds)} folds of 104 weeks, "
        f"{folds[0]['first_date']}..{folds[-1]['last_date']}, horizons 1..{MAX_HORIZON}, "
        f"every {args.stride}th origin "
        f"({sum(len(f.actual) for f in reference)} origin/step pairs per method)"
    )
    header = (
        "| method | "
        + " | ".join(
            f"fold {f['fold']} ({f['first_date'][:4]}-{f['last_date'][2:4]})" for f in folds
        )
        + " | mean MAE |"
    )
    print(header)
    print("|---|" + "---:|" * (len(folds) + 1))
    for label, maes in table.items():
        cells = " | ".join(f"{m:.3f}" for m in maes)
        print(f"| {label} | {cells} | **{np.mean(maes):.3f}** |")
    print()
    print(
        f"Served model ({served}), every origin: mean MAE {cards[served]['mean']['mae']:.3f}, "
        f"RMSE {cards[served]['mean']['rmse']:.3f}, skill vs seasonal naive + drift "
        f"{cards[served]['mean']['skill']:.3f}"
    )
    print(
        "Interval coverage (leave-one-fold-out), per level: "
        + ", ".join(f"{lv}%: {cov:.1f}%" for lv, cov in cards[served]["coverage"].items())
    )
    print("Seconds: " + ", ".join(f"{name} {secs:.1f}" for name, secs in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
