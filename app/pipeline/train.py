"""`python -m app train`: train the forecaster on the validated dataset into `models/<RUN_ID>/`.

* Lineage: refuses a dataset without a passing validation report for its exact sha256 (and the
  same `RUN_DATE` cut); metrics.json records the dataset's sha256, the report, the image digest
  (`TRIGGER_IMAGE_DIGEST`) when known, the parameters and the code version.
* Report card: a rolling-origin backtest (`app.forecasting.backtest`) of both model families on the
  same folds: MAE, RMSE and skill against seasonal naive plus drift, per fold and on average, and
  the coverage of the prediction intervals per level. The family with the lower mean MAE serves.
* The served model is the chosen recipe fitted on every week the run was given: for xgboost a
  booster trained on all of it; the harmonic family fits each history as it forecasts.
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
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np
import orjson
import xgboost as xgb

import mlops_contract
from app import series as series_module
from app.cli import command_settings, open_store
from app.forecasting.backtest import (
    BacktestError,
    backtest,
    fold_bounds,
    nested_backtest,
    training_split,
)
from app.forecasting.device import gpu_visible
from app.forecasting.model import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    HARMONIC_GRID,
    HARMONIC_PARAMS,
    MAX_HORIZON,
    METRICS_FILE,
    MIN_HISTORY,
    MODEL_FILE,
    MODEL_FILES,
    read_series,
)
from app.forecasting.model_check import history_range, model_file_record
from app.pipeline import sagemaker
from app.pipeline.lineage import file_sha256, report_for
from app.processes import PACKAGE_ROOT, crash_point
from app.series import from_metrics
from app.settings import AppSettings
from app.store import SHIPPED_DATASET, Store
from mlops_contract import Env

log = logging.getLogger(__name__)

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


class Progress(xgb.callback.TrainingCallback):
    """Logs every `every` rounds and stops boosting once `stop` is set (SIGTERM)."""

    def __init__(self, every: int, done: int, total: int, stop: threading.Event) -> None:
        super().__init__()
        self.every, self.done, self.total, self.stop = every, done, total, stop
        self.started = time.monotonic()

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        round_no = self.done + epoch + 1
        if round_no % self.every == 0 or round_no == self.total:
            log.info("round %d/%d (%.1fs)", round_no, self.total, time.monotonic() - self.started)
        return self.stop.is_set()


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


def code_version() -> str:
    """A digest of the app's Python sources, every room of the package, and of the container
    contract it imports: the code that trained, backtested and serves. (A copy of the contract
    inside app/ is the image build's context, not code: the one imported counts.)"""
    package = PACKAGE_ROOT / "app"
    sources = [
        (path.relative_to(package).as_posix(), path)
        for path in sorted(package.rglob("*.py"))
        if path != package / "mlops_contract.py"
    ]
    sources.append(("mlops_contract.py", Path(mlops_contract.__file__)))
    digest = hashlib.sha256()
    for name, path in sources:
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def recipes(family: str, rounds: int, device: str, threads: int) -> list[dict[str, Any]]:
    """The recipes a run backtests: the harmonic grid for `auto` and `harmonic` (`auto` stays
    numpy-only and fast), the xgboost family only when asked for by name."""
    xgboost = {
        "family": "xgboost",
        "params": {**PARAMS, "device": device},
        "rounds": rounds,
        "feature_version": FEATURE_VERSION,
    }
    harmonic = {"family": "harmonic", "params": dict(HARMONIC_PARAMS), "grid": HARMONIC_GRID}
    chosen = {"auto": [harmonic], "xgboost": [xgboost], "harmonic": [harmonic]}
    if family not in chosen:
        raise ValueError(f"unknown model family {family!r}: use one of {', '.join(chosen)}")
    return chosen[family]


def min_history(recipe: dict[str, Any]) -> int:
    """Weeks of history a request must carry: MIN_HISTORY, or for a harmonic setting at least
    twice its coefficients (2 + 2 x harmonics), so 20 harmonics are never fitted to 56 points."""
    if recipe["family"] == "harmonic":
        return max(MIN_HISTORY, 2 * (2 + 2 * int(recipe["params"]["harmonics"])))
    return MIN_HISTORY


def served_recipe(dates: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """What `train` would serve on this series with `MODEL_FAMILY=auto`, for the benchmark:
    `{"recipe", "label", "selection_seconds", "nested"}` (the grid's nested backtest too)."""
    (candidate,) = recipes("auto", 1, "cpu", 1)
    started = time.perf_counter()
    report = backtest(dates, values, candidate)
    seconds = time.perf_counter() - started
    recipe = {"family": "harmonic", "params": report["selection"]["params"]}
    nested = nested_backtest(values, HARMONIC_GRID)
    return {"recipe": recipe, "label": "harmonic", "selection_seconds": seconds, "nested": nested}


def _checkpoint_and_stop(
    store: Store,
    run_id: str,
    booster: xgb.Booster,
    rounds: int,
    train_seconds: float,
    dataset_sha: str,
) -> NoReturn:
    """Save the booster as the run's checkpoint and raise TrainingInterrupted."""
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


def _train_booster(
    store: Store,
    run_id: str,
    values: np.ndarray,
    dataset_sha: str,
    *,
    rounds: int,
    log_every: int,
    params: dict[str, Any],
    stop: threading.Event,
) -> tuple[xgb.Booster, int, float]:
    """The xgboost family on every week, resumable from a checkpoint; (booster, resumed, secs)."""
    split = training_split(values, len(values))
    dtrain = xgb.DMatrix(
        split.features, label=split.targets - split.anchors, feature_names=list(FEATURE_NAMES)
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
            xgb_model=booster,
            callbacks=[Progress(log_every, done, rounds, stop)],
        )
    train_seconds = seconds_before + time.monotonic() - started
    assert booster is not None
    if stop.is_set():
        _checkpoint_and_stop(store, run_id, booster, rounds, train_seconds, dataset_sha)
    booster.set_param({"nthread": 1})
    return booster, done, train_seconds


def train(
    store: Store,
    run_id: str,
    *,
    rounds: int,
    log_every: int,
    run_date: date | None = None,
    stop: threading.Event | None = None,
    threads: int = 0,
    family: str = "auto",
) -> dict[str, Any]:
    """Check lineage, backtest, fit and write one run; returns its metrics.

    Raises DatasetError on bad or unvalidated data."""
    from app.pipeline.validate import DatasetError  # pandas: only train and validate

    stop = stop or threading.Event()
    run_dir = store.run_dir(run_id)
    if (run_dir / METRICS_FILE).exists():
        log.info("run %s is already trained; nothing to do", run_id)
        return store.read_json(run_dir / METRICS_FILE)

    dataset = store.ensure_dataset()
    dataset_sha = file_sha256(dataset)
    report, why_not = report_for(store, run_id, dataset_sha, run_date)
    if report is None:
        raise DatasetError([why_not])
    series = store.series()
    dates, values = read_series(dataset, series.column if series.described else None)
    if file_sha256(dataset) != dataset_sha:
        raise DatasetError(["the dataset changed while it was being read; validate again"])
    if run_date is not None:
        keep = dates <= np.datetime64(run_date)
        dates, values = dates[keep], values[keep]
    try:
        fold_bounds(len(values))
    except BacktestError as exc:
        raise DatasetError([str(exc)]) from None
    log.info(
        "dataset %s (sha256 %s…, validated by run %s): %d weeks %s..%s",
        dataset.name,
        dataset_sha[:12],
        report.get("run_id"),
        len(values),
        dates[0],
        dates[-1],
    )

    device = detect_device()
    log.info("training on %s", "GPU (cuda)" if device == "cuda" else "CPU")
    nthread = threads or len(os.sched_getaffinity(0))
    candidates = recipes(family, rounds, device, nthread)

    booster, resumed_from, train_seconds = None, 0, 0.0
    if any(recipe["family"] == "xgboost" for recipe in candidates):
        booster, resumed_from, train_seconds = _train_booster(
            store,
            run_id,
            values,
            dataset_sha,
            rounds=rounds,
            log_every=log_every,
            params={**PARAMS, "device": device, "nthread": nthread},
            stop=stop,
        )

    started = time.monotonic()
    reports = {}
    for recipe in candidates:
        reports[recipe["family"]] = backtest(dates, values, {**recipe, "threads": nthread}, stop)
        if stop.is_set():
            if booster is None:
                raise TrainingInterrupted(f"interrupted in the backtest; rerun RUN_ID={run_id}")
            # The served booster is done: keep it, so the rerun only repeats the backtest.
            _checkpoint_and_stop(store, run_id, booster, rounds, train_seconds, dataset_sha)
        mean = reports[recipe["family"]]["mean"]
        log.info(
            "backtest %s: mean MAE %.4f%s over %d folds (seasonal naive + drift %.4f)",
            recipe["family"],
            mean["mae"],
            series.unit_suffix(),
            len(reports[recipe["family"]]["folds"]),
            mean["drift_mae"],
        )
    backtest_seconds = time.monotonic() - started
    chosen = min(candidates, key=lambda recipe: reports[recipe["family"]]["mean"]["mae"])
    report_card = reports[chosen["family"]]
    intervals = report_card.pop("intervals")
    if "selection" in report_card:
        # The served (and gated) recipe is the one setting the grid chose, not the grid.
        chosen = {"family": chosen["family"], "params": report_card["selection"]["params"]}

    if chosen["family"] == "xgboost":
        assert booster is not None
        raw_model = bytes(booster.save_raw("ubj"))
    else:
        raw_model = orjson.dumps({"family": "harmonic", "params": chosen["params"]})
    model_name = MODEL_FILES[chosen["family"]]
    metrics = {
        "run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "family": chosen["family"],
        "device": device,
        "rounds": booster.num_boosted_rounds() if chosen["family"] == "xgboost" else None,
        "resumed_from_round": resumed_from,
        "train_seconds": round(train_seconds, 3),
        "backtest_seconds": round(backtest_seconds, 3),
        "min_history": min_history(chosen),
        "max_horizon": MAX_HORIZON,
        "feature_version": FEATURE_VERSION,
        "features": list(FEATURE_NAMES) if chosen["family"] == "xgboost" else None,
        "recipe": chosen,
        "params": chosen["params"],
        "backtest": report_card,
        "coverage": report_card["coverage"],
        "intervals": intervals,
        "selection": {
            recipe_family: {"mean_mae": card["mean"]["mae"], "coverage": card["coverage"]}
            for recipe_family, card in reports.items()
        },
        "dataset": {
            "path": str(dataset.relative_to(store.root)),
            "sha256": dataset_sha,
            "validation_run": report.get("run_id"),
            "weeks": len(values),
            "first_date": str(dates[0]),
            "last_date": str(dates[-1]),
            "run_date": run_date.isoformat() if run_date else None,
        },
        "image_digest": os.environ.get(Env.TRIGGER_IMAGE_DIGEST) or None,
        "code_version": code_version(),
        "model_file": model_file_record(raw_model, model_name),
        "history_range": history_range(values, (series.minimum, series.maximum)),
        "series": series.to_json(),
    }
    # The whole run is written into a staging directory and renamed into place: a kill or a
    # full disk never leaves a run directory with a model and no metrics.json.
    with store.staging_dir(run_id) as staging:
        store.write_bytes(staging / model_name, raw_model)
        store.write_text(staging / "card.md", model_card(metrics))
        store.write_json(staging / METRICS_FILE, metrics)
        crash_point("train:staged")
        store.install_run(staging, run_id)
    return metrics


def _train_as_configured(
    store: Store, run_id: str, settings: AppSettings, stop: threading.Event
) -> dict[str, Any]:
    """`train` with the command's settings (TRAIN_ROUNDS, MODEL_FAMILY, ...): the same for the
    store layout and the SageMaker one."""
    return train(
        store,
        run_id,
        rounds=settings.train_rounds,
        log_every=settings.train_log_every,
        run_date=settings.run_date,
        stop=stop,
        threads=settings.train_threads,
        family=settings.model_family,
    )


def model_card(metrics: dict[str, Any]) -> str:
    card = metrics["backtest"]
    dataset = metrics["dataset"]
    mean = card["mean"]
    if metrics["family"] == "xgboost":
        model = (
            f"XGBoost, {metrics['rounds']} boosting rounds, one model for all horizons (the step "
            "is a feature), predicting the change from the value 52 weeks before the target."
        )
    else:
        model = (
            "harmonic: discounted least squares of a linear trend and annual harmonics over the "
            "history, its slope damped as it is extrapolated, plus the current level (and "
            f"local slope) of the recent residuals; chosen on the backtest ({metrics['params']})."
        )
    folds = "\n".join(
        f"| {f['fold']} | {f['first_date']}..{f['last_date']} | {f['mae']:.3f} | {f['rmse']:.3f} "
        f"| {f['drift_mae']:.3f} | {f['naive_mae']:.3f} | {f['skill']:.3f} |"
        for f in card["folds"]
    )
    mean_row = (
        f"| mean | | {mean['mae']:.3f} | {mean['rmse']:.3f} | {mean['drift_mae']:.3f} "
        f"| {mean['naive_mae']:.3f} | {mean['skill']:.3f} |"
    )
    coverage = ", ".join(f"{level}%: {value:.1f}%" for level, value in card["coverage"].items())
    series = from_metrics(metrics)
    what = series.description or f"the weekly series {series.label!r}"
    return f"""# Model card: {series.label} forecaster, run {metrics["run_id"]}

- **Trained**: {metrics["trained_at"]} on {metrics["device"]}; code {metrics["code_version"]},
  image {metrics["image_digest"] or "unknown (not run from a pushed image)"}.
- **Task**: forecast {what} ({series.units or "no units given"}) 1 to
  {metrics["max_horizon"]} weeks ahead from the last {metrics["min_history"]} or more weekly
  values; plausible history values {metrics["history_range"]["min"]:g} to
  {metrics["history_range"]["max"]:g} ({metrics["history_range"]["rule"]}).
- **Data**: `{dataset["path"]}` ({dataset["weeks"]} weeks, {dataset["first_date"]} to
  {dataset["last_date"]}, sha256 `{dataset["sha256"][:12]}…`, validated by run
  {dataset["validation_run"]}); missing weeks are interpolated from the past only.
- **Model family**: {model}
- **Backtest**: {card["spec"]["folds"]} rolling folds of {card["spec"]["fold_weeks"]} weeks, each
  model fitted only on the weeks before its fold, forecasting from every observed week of it.

| fold | weeks | MAE | RMSE | seasonal naive + drift MAE | seasonal naive MAE | skill |
|---|---|---|---|---|---|---|
{folds}
{mean_row}

- **Intervals**: {metrics["intervals"]["method"]}; coverage on the backtest (each fold's bounds
  from the other folds): {coverage}.
- **Limitations**: trained on one weekly series; an abrupt change in its seasonal cycle or its
  growth rate that the training data does not show is outside what the model knows, and the
  intervals are calibrated for histories of at least the family's window.
"""


# ---------------------------------------------------------------------------- SageMaker layout
# SageMaker's training contract (app/pipeline/sagemaker.py): channels in
# /opt/ml/input/data/<channel>/, hyperparameters (all strings) in
# /opt/ml/input/config/hyperparameters.json, the model to /opt/ml/model/, the reason of a failure to
# /opt/ml/output/failure.
SAGEMAKER_HYPERPARAMETERS = (
    "model_family",
    "run_date",
    "train_log_every",
    "train_rounds",
    "train_threads",
)
"""hyperparameters.json keys: the settings of the same name (docs/configuration.md)."""
SAGEMAKER_CHANNEL = "train"


class SageMakerInputError(ValueError):
    """Bad hyperparameters or channel data: the message is the failure text."""


def _sagemaker_hyperparameters(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        given = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SageMakerInputError(f"{path} is not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise SageMakerInputError(f"{path} must hold a JSON object")
    unknown = sorted(set(given) - set(SAGEMAKER_HYPERPARAMETERS))
    if unknown:
        raise SageMakerInputError(
            f"unknown hyperparameter(s) {', '.join(unknown)}: allowed are "
            f"{', '.join(SAGEMAKER_HYPERPARAMETERS)}"
        )
    return {key: str(value) for key, value in given.items()}


def _sagemaker_dataset(data: Path) -> Path | None:
    """The CSV of the `train` channel (or of the only channel); None: no channel, shipped data."""
    channels = sorted(p for p in data.iterdir() if p.is_dir())
    if not channels:
        return None
    named = [c for c in channels if c.name == SAGEMAKER_CHANNEL]
    if not named and len(channels) > 1:
        raise SageMakerInputError(
            f"channels {', '.join(c.name for c in channels)}: name the weekly series' channel "
            f"{SAGEMAKER_CHANNEL!r}"
        )
    channel = (named or channels)[0]
    files = sorted(p for p in channel.rglob("*.csv") if p.is_file())
    if len(files) != 1:
        raise SageMakerInputError(
            f"channel {channel.name!r} holds {len(files)} CSV files: give exactly one, the weekly "
            "series (date,value)"
        )
    return files[0]


def _stage_sagemaker_dataset(store: Store, source: Path) -> None:
    """Copy the channel's CSV into the scratch store as the series it is: with the channel's
    `<name>.series.json` when there is one; as the shipped series when its column is the shipped
    one's (it keeps that descriptor's bounds); else as a series without descriptor."""
    store.datasets_dir.mkdir(parents=True, exist_ok=True)
    descriptors = sorted(source.parent.glob("*" + series_module.DESCRIPTOR_SUFFIX))
    if len(descriptors) > 1:
        raise SageMakerInputError(
            f"channel holds {len(descriptors)} series descriptors: give at most one"
        )
    if descriptors:
        name = descriptors[0].name[: -len(series_module.DESCRIPTOR_SUFFIX)]
        shutil.copyfile(descriptors[0], store.datasets_dir / descriptors[0].name)
    elif series_module.csv_column(source) == series_module.load(SHIPPED_DATASET).column:
        name = series_module.shipped_name()
    else:
        name = source.stem
    try:
        series_module.check_name(name, "the channel's series name")
    except series_module.SeriesError as exc:
        raise SageMakerInputError(str(exc)) from None
    shutil.copyfile(source, store.datasets_dir / f"{name}.csv")


def sagemaker_main(argv: list[str]) -> int:
    """Train in SageMaker's layout: validate and train in a scratch store, copy the run out."""
    import tempfile

    from app.pipeline.validate import DatasetError, validate
    from app.settings import SettingsError

    layout = sagemaker.ml_layout()
    failure = layout.failure
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        hyper = _sagemaker_hyperparameters(layout.hyperparameters)
        os.environ.update({key.upper(): value for key, value in hyper.items()})
        try:
            settings = command_settings("train", argv)
        except SettingsError as exc:
            message = f"hyperparameters.json or environment: {exc.message}"
            raise SageMakerInputError(message) from None
        run_id = settings.run_id_or_new()
        with tempfile.TemporaryDirectory(prefix="mlops-train-") as scratch:
            store = Store(Path(scratch))
            source = _sagemaker_dataset(layout.input_data)
            if source is not None:
                _stage_sagemaker_dataset(store, source)
            report = validate(store, run_id, settings.run_date)
            output_data = layout.output / "data"
            output_data.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.report_path(run_id), output_data / "validation.json")
            if not report["ok"]:
                raise DatasetError(report["problems"])
            metrics = _train_as_configured(store, run_id, settings, stop)
            model_dir = layout.model
            model_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(store.run_dir(run_id).iterdir()):
                if path.is_file():
                    shutil.copyfile(path, model_dir / path.name)
    except TrainingInterrupted:
        text = "interrupted by SIGTERM before training finished"
    except SageMakerInputError as exc:
        text = str(exc)
    except (DatasetError, ValueError) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        text = "cannot train on this dataset: " + "; ".join(problems)
    else:
        log.info(
            "run %s (%s) trained into %s: backtest MAE %.3f%s",
            run_id,
            metrics["family"],
            model_dir,
            metrics["backtest"]["mean"]["mae"],
            from_metrics(metrics).unit_suffix(),
        )
        return 0
    failure.parent.mkdir(parents=True, exist_ok=True)
    failure.write_text(text + "\n")
    print(f"error: {text}", file=sys.stderr)
    return EXIT_INTERRUPTED if text.startswith("interrupted") else 1


def main(argv: list[str]) -> int:
    from app.pipeline.validate import DatasetError

    if sagemaker.use_sagemaker(sagemaker.ml_layout().input_data):
        return sagemaker_main(argv)
    settings = command_settings("train", argv)
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: checkpointing after the current boosting round")
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        store = open_store(settings)
        store.clean_stale()
        run_id = settings.run_id_or_new()
        log.info("training run %s (%d rounds)", run_id, settings.train_rounds)
        metrics = _train_as_configured(store, run_id, settings, stop)
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
    mean = metrics["backtest"]["mean"]
    log.info(
        "run %s (%s, series %r) trained in %.1fs: backtest MAE %.3f%s, skill %.3f against "
        "seasonal naive + drift (MAE %.3f; seasonal naive %.3f); interval coverage %s",
        metrics["run_id"],
        metrics["family"],
        metrics["series"]["name"],
        metrics["train_seconds"] + metrics["backtest_seconds"],
        mean["mae"],
        from_metrics(metrics).unit_suffix(),
        mean["skill"],
        mean["drift_mae"],
        mean["naive_mae"],
        ", ".join(f"{k}%: {v:.1f}%" for k, v in metrics["coverage"].items()),
    )
    return 0
