"""Backtest benchmark: the served forecaster against classical methods, on three weekly series.

    python -m benchmarks.backtest --setup      # once: benchmarks/venv with statsforecast
    python -m benchmarks.backtest [--series co2,gasoline,chicago] [--refresh-reference]

For each series (`benchmarks.series`: CO2 and two real weekly series that are not CO2), on the same
rolling folds as `train` (`app.forecasting.backtest`: the newest 5 folds of 104 weeks, each method
fitted only on the weeks before its fold, forecasting up to 52 weeks ahead from every observed week
of the fold), it prints the mean MAE of

* the served family: what `train` would serve on this series with `MODEL_FAMILY=auto`;
* MSTL(52)+AutoETS and AutoARIMA(52) from statsforecast (`benchmarks.reference`, run in
  benchmarks/venv because statsforecast needs pandas<3), fitted once per fold and run forward
  to each origin with those parameters;
* seasonal naive + drift, and plain seasonal naive as a reference line;

then the served family's interval coverage per level (each fold's bounds from the other folds
only) at short (1-13 weeks) and long (27-52 weeks) horizons, and the seconds each takes: the
served family's whole backtest (what `app train` spends on it) beside the reference's fits and
forward passes. Results go to benchmarks/results/backtest.md and backtest.json. The reference
forecasts of a series are cached in benchmarks/results/reference/ keyed by the data and folds
(AutoARIMA takes minutes); `--refresh-reference` recomputes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from app.forecasting.backtest import coverage_by_horizon, forecast_folds, summarize
from app.pipeline.train import served_recipe
from benchmarks.series import SERIES, load

HERE = Path(__file__).resolve().parent
VENV = HERE / "venv"
RESULTS = HERE / "results"
REFERENCE_CACHE = RESULTS / "reference"
METHODS = ("MSTL(52)+AutoETS", "AutoARIMA(52)")
BUCKETS = {"short (1-13)": (1, 13), "long (27-52)": (27, 52)}


def setup() -> int:
    """Create benchmarks/venv with the pinned reference dependencies."""
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(HERE / "requirements.txt")], check=True)
    print(f"{VENV}: ready")
    return 0


def reference_forecasts(name: str, values: np.ndarray, folds: list, refresh: bool) -> dict:
    """Per method, per fold: the reference's forecasts from each origin, and its seconds."""
    job = {
        "methods": list(METHODS),
        "values": [None if np.isnan(v) else float(v) for v in values],
        "folds": [
            {
                "start": f.start,
                "origins": [int(o) for o in f.origin_index],
                "horizons": [int(h) for h in f.horizons],
            }
            for f in folds
        ],
    }
    raw = json.dumps(job, sort_keys=True).encode()
    requirements = (HERE / "requirements.txt").read_bytes() + (HERE / "reference.py").read_bytes()
    key = hashlib.sha256(raw + requirements).hexdigest()[:16]
    cache = REFERENCE_CACHE / f"{name}-{key}.json"
    if cache.exists() and not refresh:
        print(f"  reference forecasts: cached {cache.relative_to(HERE.parent)}")
        return json.loads(cache.read_text())
    python = VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `python -m benchmarks.backtest --setup` first")
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_bytes(raw)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
        subprocess.run(
            [str(python), "-m", "benchmarks.reference", str(job_path), str(out_path)],
            check=True,
            env=env,
        )
        result = json.loads(out_path.read_text())
    REFERENCE_CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def _fold_mae(folds: list, forecasts: list[np.ndarray]) -> list[float]:
    return [float(np.mean(np.abs(f.actual - p))) for f, p in zip(folds, forecasts, strict=True)]


def score_series(name: str, refresh: bool) -> dict[str, Any]:
    dates, values = load(name)
    recipe = served_recipe(dates, values)
    folds = forecast_folds(values, recipe["recipe"])
    card = summarize(folds, dates)
    # What `app train` spends: the whole grid's backtest, the choice and the report card.
    served_seconds = recipe["selection_seconds"]
    reference = reference_forecasts(name, values, folds, refresh)

    maes: dict[str, list[float]] = {
        f"served: {recipe['label']}": _fold_mae(folds, [f.model for f in folds])
    }
    seconds = {f"served: {recipe['label']}": served_seconds}
    for method in METHODS:
        predicted = []
        for fold, ref in zip(folds, reference[method], strict=True):
            flat = np.concatenate([np.asarray(p, dtype=np.float64) for p in ref["forecasts"]])
            predicted.append(flat[fold.observed])
        maes[method] = _fold_mae(folds, predicted)
        seconds[method] = sum(r["fit_seconds"] + r["forward_seconds"] for r in reference[method])
    maes["seasonal naive + drift"] = _fold_mae(folds, [f.drift for f in folds])
    maes["seasonal naive"] = _fold_mae(folds, [f.naive for f in folds])
    return {
        "series": name,
        "units": SERIES[name].units,
        "source": SERIES[name].source,
        "weeks": len(values),
        "folds": [(r["first_date"], r["last_date"]) for r in card["folds"]],
        "pairs": int(sum(len(f.actual) for f in folds)),
        "recipe": recipe["recipe"],
        "nested": recipe.get("nested"),
        "mae": {label: {"folds": m, "mean": float(np.mean(m))} for label, m in maes.items()},
        "coverage": card["coverage"],
        "coverage_by_horizon": coverage_by_horizon(folds, BUCKETS),
        "seconds": seconds,
    }


def render(results: list[dict[str, Any]]) -> str:
    lines = ["## Mean backtest MAE (5 folds x 104 weeks, horizons 1-52, every origin)", ""]
    lines.append(
        "| series (units) | weeks | "
        + " | ".join(
            label.split(":")[0] if label.startswith("served") else label
            for label in results[0]["mae"]
        )
        + " |"
    )
    lines.append("|---|---:|" + "---:|" * len(results[0]["mae"]))
    for r in results:
        cells = " | ".join(f"{v['mean']:.3f}" for v in r["mae"].values())
        lines.append(f"| {r['series']} ({r['units']}) | {r['weeks']} | {cells} |")
    lines += [
        "",
        "Served family per series: "
        + "; ".join(f"{r['series']}: {next(iter(r['mae']))[len('served: ') :]}" for r in results),
    ]
    if any(r["nested"] for r in results):
        lines += [
            "",
            "Nested backtest (settings chosen on inner folds before each reported "
            "fold; the served run chooses on all data): "
            + "; ".join(f"{r['series']} {r['nested']['mae']:.3f}" for r in results if r["nested"]),
        ]
    lines += ["", "## Interval coverage of the served family (leave-one-fold-out), percent", ""]
    levels = list(results[0]["coverage"])
    lines.append("| series | horizons | " + " | ".join(f"{lv} %" for lv in levels) + " |")
    lines.append("|---|---|" + "---:|" * len(levels))
    for r in results:
        lines.append(
            f"| {r['series']} | all | "
            + " | ".join(f"{r['coverage'][lv]:.1f}" for lv in levels)
            + " |"
        )
        for bucket, cov in r["coverage_by_horizon"].items():
            lines.append(
                f"| {r['series']} | {bucket} | "
                + " | ".join(f"{cov[lv]:.1f}" for lv in levels)
                + " |"
            )
    lines += [
        "",
        "## Seconds (served: its whole backtest, as in `app train`; reference: fits + "
        "forward passes over the same folds)",
        "",
    ]
    lines.append("| series | " + " | ".join(results[0]["seconds"]) + " |")
    lines.append("|---|" + "---:|" * len(results[0]["seconds"]))
    for r in results:
        lines.append(
            f"| {r['series']} | " + " | ".join(f"{s:.1f}" for s in r["seconds"].values()) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backtest")
    parser.add_argument("--setup", action="store_true", help="create benchmarks/venv and exit")
    parser.add_argument("--series", default=",".join(SERIES), help="comma-separated names")
    parser.add_argument("--refresh-reference", action="store_true")
    args = parser.parse_args(argv)
    if args.setup:
        return setup()
    results = []
    for name in args.series.split(","):
        print(f"{name}: backtesting", flush=True)
        results.append(score_series(name, args.refresh_reference))
    text = render(results)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backtest.md").write_text(
        "# Backtest benchmark\n\nWritten by `python -m benchmarks.backtest`.\n\n" + text
    )
    (RESULTS / "backtest.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
