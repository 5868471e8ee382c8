"""`train`: fit the classifier, write the model and its held-out accuracy to /opt/ml/model.

Data: the CSV files of the `train` channel (/opt/ml/input/data/train/*.csv, each row 64 pixel
values 0-16 then the label 0-9, no header) when the channel has any; otherwise scikit-learn's
bundled digits (load_digits: no download). Hyperparameters come from
/opt/ml/input/config/hyperparameters.json, every value a string (SageMaker's rule); unknown
names are refused. On failure the reason goes to /opt/ml/output/failure and the exit is 1.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digits_model import (
    CLASSES,
    FEATURES,
    METRICS_FILE,
    MODEL_FILE,
    PIXEL_MAX,
    gpu_visible,
    ml_root,
)


class BadInput(ValueError):
    """A hyperparameter or data problem: its message is the failure text."""


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"not in {low}..{high}")
        return value
    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low < value <= high:
            raise ValueError(f"not in ({low}, {high}]")
        return value
    return parse


def _device(raw: str) -> str:
    if raw not in ("auto", "cpu", "cuda"):
        raise ValueError("use auto, cpu or cuda")
    return raw


# name -> (parser, default as SageMaker passes it: a string)
HYPERPARAMETERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "num_round": (_int(1, 5000), "60"),
    "max_depth": (_int(1, 16), "4"),
    "eta": (_float(0.0, 1.0), "0.3"),
    "test_size": (_float(0.0, 0.9), "0.25"),
    "seed": (_int(0, 2**31 - 1), "0"),
    "nthread": (_int(0, 1024), "0"),
    "device": (_device, "auto"),
}


def read_hyperparameters(path: Path) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if path.exists():
        try:
            given = json.loads(path.read_text())
        except ValueError as exc:
            raise BadInput(f"{path} is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise BadInput(f"{path} must hold a JSON object")
    unknown = sorted(set(given) - set(HYPERPARAMETERS))
    if unknown:
        raise BadInput(
            f"unknown hyperparameter(s) {', '.join(unknown)}: allowed are "
            f"{', '.join(sorted(HYPERPARAMETERS))}"
        )
    values: dict[str, Any] = {}
    for name, (parse, default) in HYPERPARAMETERS.items():
        raw = given.get(name, default)
        try:
            values[name] = parse(str(raw))
        except ValueError as exc:
            raise BadInput(f"hyperparameter {name}={raw!r} is invalid: {exc}") from None
    return values


def load_data(channel: Path) -> tuple[np.ndarray, np.ndarray, str]:
    files = sorted(channel.glob("*.csv")) if channel.is_dir() else []
    if not files:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data.astype(np.float32), digits.target.astype(np.int32), "load_digits"
    rows = []
    for path in files:
        try:
            table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise BadInput(f"{path.name}: not numeric CSV ({exc})") from None
        if table.shape[1] != FEATURES + 1:
            raise BadInput(
                f"{path.name}: {table.shape[1]} columns, expected {FEATURES} pixels and a label"
            )
        rows.append(table)
    table = np.vstack(rows)
    x, y = table[:, :FEATURES], table[:, FEATURES]
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > PIXEL_MAX:
        raise BadInput(f"pixel values must be finite numbers in 0..{PIXEL_MAX:g}")
    if not np.all(np.isin(y, np.arange(CLASSES))):
        raise BadInput(f"labels must be the integers 0..{CLASSES - 1}")
    return x.astype(np.float32), y.astype(np.int32), f"{len(files)} CSV file(s)"


def choose_device(requested: str) -> str:
    import xgboost as xgb

    cuda = bool(xgb.build_info().get("USE_CUDA"))
    if requested == "cuda" and not (cuda and gpu_visible()):
        raise BadInput("device=cuda but no GPU is visible or this XGBoost build has no CUDA")
    if requested == "auto":
        return "cuda" if cuda and gpu_visible() else "cpu"
    return requested


def train(root: Path) -> dict[str, Any]:
    import xgboost as xgb
    from sklearn.model_selection import train_test_split

    params = read_hyperparameters(root / "input" / "config" / "hyperparameters.json")
    x, y, source = load_data(root / "input" / "data" / "train")
    if len(np.unique(y)) < 2 or len(y) < 20:
        raise BadInput(f"too little data to train and hold out: {len(y)} rows")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=params["test_size"], random_state=params["seed"], stratify=y
    )
    device = choose_device(params["device"])
    booster = xgb.train(
        {
            "objective": "multi:softprob", "num_class": CLASSES, "tree_method": "hist",
            "max_depth": params["max_depth"], "eta": params["eta"], "seed": params["seed"],
            "nthread": params["nthread"], "device": device,
        },
        xgb.DMatrix(x_train, label=y_train),
        num_boost_round=params["num_round"],
    )
    probabilities = booster.predict(xgb.DMatrix(x_test))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(model_dir / MODEL_FILE)
    metrics = {
        "accuracy": accuracy, "train_rows": len(y_train), "test_rows": len(y_test),
        "data": source, "device": device,
    }
    (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> int:
    root = ml_root()
    try:
        metrics = train(root)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BadInput) else (
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        )
        failure = root / "output" / "failure"
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(text)
        print(text, file=sys.stderr)
        return 1
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
