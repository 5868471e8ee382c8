"""The classical reference methods of the backtest benchmark, run in benchmarks/venv.

    benchmarks/venv/bin/python -m benchmarks.reference IN.json OUT.json

statsforecast needs pandas<3 and numba, neither of which the app's venv or image carries, so
`python -m benchmarks.backtest` runs this module in its own venv (`--setup` creates it from
benchmarks/requirements.txt) and hands it the series and the folds as JSON.

For each fold (the same `(start, end)` as `app.forecasting.backtest.fold_bounds`) and each method,
the model is fitted once on the weeks before the fold (gaps interpolated), then run forward with
those parameters from every origin of the fold (`forward`: the fitted model applied to the history
up to the origin, no re-estimation and no look-ahead), up to the same horizons as the app's
backtest. Methods (statsforecast's documented names,
https://nixtlaverse.nixtla.io/statsforecast/src/core/models.html):

* `MSTL(52)+AutoETS`: `MSTL(season_length=52, trend_forecaster=AutoETS(model="ZZN"))`, the
  seasonal decomposition with an automatically chosen ETS (no seasonality) on the trend;
* `AutoARIMA(52)`: `AutoARIMA(season_length=52, approximation=True)`, automatic seasonal
  ARIMA (the order search approximated, as R's auto.arima does by default on long series).

OUT.json holds, per method, per fold, one forecast list per origin and the fit and forward seconds.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def fill_past(values: np.ndarray) -> np.ndarray:
    """Interpolate NaN weeks from the observed weeks (ends held), like
    `app.forecasting.model.fill_gaps`."""
    missing = np.isnan(values)
    if not missing.any():
        return values.copy()
    positions = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(positions[missing], positions[~missing], values[~missing])
    return filled


def make(name: str):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    if name == "MSTL(52)+AutoETS":
        return MSTL(season_length=52, trend_forecaster=AutoETS(model="ZZN"))
    if name == "AutoARIMA(52)":
        # approximation=True: conditional sums of squares during the order search, as R's
        # forecast::auto.arima does by default for series longer than 150 (exact likelihood
        # here takes over 6 minutes per fit).
        return AutoARIMA(season_length=52, approximation=True)
    raise ValueError(f"unknown method {name!r}")


def run(job: dict) -> dict:
    values = np.array([np.nan if v is None else v for v in job["values"]], dtype=np.float64)
    result: dict = {}
    for method in job["methods"]:
        folds = []
        for fold in job["folds"]:
            start = fold["start"]
            started = time.perf_counter()
            model = make(method).fit(fill_past(values[:start]))
            fit_seconds = time.perf_counter() - started
            started = time.perf_counter()
            forecasts = []
            for origin, h in zip(fold["origins"], fold["horizons"], strict=True):
                history = fill_past(values[: origin + 1])
                forecasts.append([float(x) for x in model.forward(history, h)["mean"]])
            folds.append(
                {
                    "forecasts": forecasts,
                    "fit_seconds": fit_seconds,
                    "forward_seconds": time.perf_counter() - started,
                }
            )
        result[method] = folds
    return result


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    job = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
