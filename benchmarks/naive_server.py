"""The reference server of the benchmark, written the way deployment guides write one.

A synchronous FastAPI `def` endpoint with pydantic request models calls a scikit-learn
`GradientBoostingRegressor` one request at a time and forecasts several weeks ahead recursively:
each step builds the lag features of the history so far, predicts the next week, appends the
prediction to the history and predicts again. As in the guides, the model is trained on a pandas
DataFrame of named lag columns, so each step predicts from a one-row DataFrame with those names.
It trains at start-up on the same shipped series as the app (`app/data/co2_weekly.csv`), with
lag features comparable to the app's and the app's number of boosting rounds and tree depth.

`--array-features` is a leaner variant that trains and predicts on bare numpy rows (about three
times cheaper per step): the benchmark measures it too, so the comparison does not rest on the
DataFrame's cost alone.

It accepts the app's `/predict` body, so both servers get the same request. It is only the
benchmark's baseline: the product never imports it.

    python -m benchmarks.naive_server --port 8000 [--array-features]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sklearn.ensemble import GradientBoostingRegressor

DATA = Path(__file__).resolve().parents[1] / "app" / "data" / "co2_weekly.csv"
LAGS = (1, 2, 3, 4, 13, 26, 52)
ROLLING = (4, 13, 52)
FEATURES = [f"lag_{lag}" for lag in LAGS] + [f"mean_{window}" for window in ROLLING]
MIN_HISTORY = max(*LAGS, *ROLLING)


class Instance(BaseModel):
    history: list[float]
    horizon: int


class PredictRequest(BaseModel):
    instances: list[Instance]


def training_frame() -> pd.DataFrame:
    """The shipped series with the next week's lag features of every week as columns."""
    frame = pd.read_csv(DATA, parse_dates=["date"])
    co2 = frame["co2"].interpolate().bfill()
    for lag in LAGS:
        frame[f"lag_{lag}"] = co2.shift(lag)
    for window in ROLLING:
        frame[f"mean_{window}"] = co2.shift(1).rolling(window).mean()
    frame["target"] = co2
    return frame.dropna(subset=[*FEATURES, "target"])


def lag_features(history: list[float]) -> list[float]:
    """The features predicting the week after `history`, in FEATURES order."""
    return [history[-lag] for lag in LAGS] + [
        float(np.mean(history[-window:])) for window in ROLLING
    ]


def create_app(array_features: bool) -> FastAPI:
    frame = training_frame()
    model = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=7)
    if array_features:
        model.fit(frame[FEATURES].to_numpy(), frame["target"].to_numpy())
    else:
        model.fit(frame[FEATURES], frame["target"])

    def predict_next(history: list[float]) -> float:
        row = lag_features(history)
        if array_features:
            return float(model.predict(np.array([row]))[0])
        return float(model.predict(pd.DataFrame([row], columns=FEATURES))[0])

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        predictions = []
        for instance in request.instances:
            if len(instance.history) < MIN_HISTORY:
                raise HTTPException(422, f"history needs at least {MIN_HISTORY} values")
            history = list(instance.history)
            forecast = []
            for _ in range(instance.horizon):
                value = predict_next(history)
                forecast.append(value)
                history.append(value)
            predictions.append({"forecast": forecast})
        return {"predictions": predictions, "model": "naive-sklearn-gbr"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--array-features", action="store_true")
    args = parser.parse_args()
    app = create_app(args.array_features)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
