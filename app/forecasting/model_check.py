"""What a run must pass before a process serves it, and the child process that checks it.

XGBoost aborts or segfaults inside the library on some damaged model files (an empty
`model.ubj` aborts; in a trial, 50 of 300 single-byte corruptions segfaulted) and silently loads
others with changed forecasts. The harmonic family's `model.json` cannot crash the process, but a
changed file would change forecasts just as silently, so both families take the same path. Every
loader (`serve`, the forecast ticker, `gate`,
`promote`) goes through here:

1. `train` records the model file's name (`model.ubj` or `model.json`, by family), sha256 and
   size (`model_file`) and the plausible range of history values (`history_range`) in
   `metrics.json`;
2. a child process (`python -m app.forecasting.model_check RUN_DIR`) checks the file against
   that record, loads it and predicts with it; a crash there costs the child, not the caller;
3. only then does the caller load the same run in its own process (checking the sha256 again).

A probe that passed for `gate` or `promote` is recorded in `models/<run>/probe.json`: the
model file's name, sha256 and size as the child verified them, and the versions of Python,
numpy and XGBoost it loaded them with. A loader whose model file has exactly those bytes and
whose libraries are those versions skips the child (the same bytes through the same code were
proven already); anything else (a damaged or changed file, an upgraded library, no record) is
probed in a child as before. The hash is taken of the bytes read now, never trusted from the
record."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.forecasting import _xgboost_import  # noqa: F401  (before app.forecasting.model: see its docstring)
from app.forecasting.model import (
    METRICS_FILE,
    MODEL_FILE,
    MODEL_FILES,
    SEASON,
    Forecaster,
    ModelLoadError,
)
from app.processes import PACKAGE_ROOT, child_env, die_with_parent_if_asked

PROBE_TIMEOUT_SECONDS = 60.0
"""Longest the child may take: a cold start of Python, numpy and xgboost on a slow volume."""
RANGE_FACTOR = 2.0
"""Plausible history values: from the lowest training value divided by this, to the highest
multiplied by it (`history_range`). The model reads only differences of the history, so it keeps
working as a series rises past its training levels; values outside the range are typing or unit
errors."""
PROBE_FILE = "probe.json"
"""Written into the run directory by `gate`/`promote` once the child's probe passed."""

log = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    """What decides how a model file loads: the interpreter and the libraries that parse it."""
    import xgboost  # already imported, through app.forecasting._xgboost_import (see above)

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xgboost": xgboost.__version__,
    }


def model_file_record(raw: bytes, name: str = MODEL_FILE) -> dict[str, Any]:
    """What `train` records about the model file it writes (`metrics.json` `model_file`)."""
    return {"name": name, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def model_path(run_dir: Path) -> Path:
    """The run's model file as its metrics.json names it (its family's file), for messages.

    Only a best guess: the child does the real checks, so an unreadable metrics.json falls back
    to the xgboost family's file here."""
    try:
        family = json.loads((Path(run_dir) / METRICS_FILE).read_bytes()).get("family", "xgboost")
    except (OSError, ValueError, AttributeError):
        family = "xgboost"
    return Path(run_dir) / MODEL_FILES.get(str(family), MODEL_FILE)


def history_range(
    values: np.ndarray, bounds: tuple[float | None, float | None] = (None, None)
) -> dict[str, Any]:
    """The plausible range of history values for a model trained on `values` (NaN = missing):
    for data above zero, the lowest value divided by RANGE_FACTOR to the highest multiplied by
    it; otherwise the data's span widened by RANGE_FACTOR spans on each side. Clipped to the
    series' physical `bounds` (its descriptor's min and max) where it has them."""
    observed = values[~np.isnan(values)]
    low, high = float(observed.min()), float(observed.max())
    if low > 0:
        low, high = low / RANGE_FACTOR, high * RANGE_FACTOR
        rule = f"training minimum / {RANGE_FACTOR:g} to training maximum x {RANGE_FACTOR:g}"
    else:
        span = max(high - low, abs(high), 1.0)
        low, high = low - RANGE_FACTOR * span, high + RANGE_FACTOR * span
        rule = f"training range widened by {RANGE_FACTOR:g} times its span on each side"
    low, high = math.floor(low * 10) / 10, math.ceil(high * 10) / 10
    if bounds[0] is not None and bounds[1] is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
        rule += f", within the series' physical bounds {bounds[0]:g}..{bounds[1]:g}"
    return {"min": low, "max": high, "rule": rule}


def plausible_range(metrics: dict[str, Any]) -> tuple[float, float]:
    """The `history_range` a run recorded; ModelLoadError when it has none."""
    record = metrics.get("history_range")
    try:
        low, high = float(record["min"]), float(record["max"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise ModelLoadError("metrics.json records no usable history_range; retrain") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ModelLoadError(f"metrics.json history_range {low}..{high} is not a range")
    return low, high


def _probe(forecaster: Forecaster) -> None:
    """Predict every horizon from a seasonal history inside the plausible range."""
    low, high = plausible_range(forecaster.metrics)
    level = (low * RANGE_FACTOR + high / RANGE_FACTOR) / 2  # the middle of the training values
    weeks = np.arange(forecaster.min_history + SEASON, dtype=np.float64)
    history = level + 0.04 * weeks + 3.0 * np.sin(2 * np.pi * weeks / SEASON)
    horizons = list(range(1, forecaster.max_horizon + 1))
    forecasts = forecaster.predict([history] * len(horizons), horizons)
    if not all(np.isfinite(forecast).all() for forecast in forecasts):
        raise ModelLoadError(f"{MODEL_FILES[forecaster.family]} predicts non-finite values")


def _child_command(run_dir: Path) -> list[str]:
    # The same interpreter and isolation as this process (the benchmarks run `python -S`).
    flags = ["-S"] if sys.flags.no_site else []
    return [sys.executable, *flags, "-m", "app.forecasting.model_check", str(run_dir)]


def check_run(run_dir: Path, timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Check, load and probe the run in a child process; ModelLoadError says why it failed.
    Returns what the child verified: the model file's record and the library versions."""
    run_dir = Path(run_dir)
    env = child_env()  # a probe dies with its parent: a killed gate leaves no orphan
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    try:
        result = subprocess.run(
            _child_command(run_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"{model_path(run_dir)}: the probe process did not finish within {timeout:g}s"
        ) from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise ModelLoadError(
            f"{model_path(run_dir)}: loading it killed the probe process ({name}); "
            "the file is damaged"
        )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise ModelLoadError(reason)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ModelLoadError(
            f"{model_path(run_dir)}: the probe process passed but reported nothing readable"
        ) from None


def record_probe(run_dir: Path, verified: dict[str, Any]) -> None:
    """Write `probe.json` (atomically) from what `check_run` returned."""
    from app.store import write_file

    write_file(Path(run_dir) / PROBE_FILE, json.dumps(verified, indent=1).encode())


def _proven(run_dir: Path) -> bool:
    """Whether probe.json vouches for the model file as it is now, with these libraries."""
    try:
        record = json.loads((run_dir / PROBE_FILE).read_bytes())
        model_file, path = record["model_file"], model_path(run_dir)
        if model_file["name"] != path.name:
            return False
        raw = path.read_bytes()
        same_file = hashlib.sha256(raw).hexdigest() == model_file["sha256"]
        return (
            same_file
            and len(raw) == model_file["bytes"]
            and (record["versions"] == library_versions())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_checked(
    run_dir: Path,
    timeout: float = PROBE_TIMEOUT_SECONDS,
    device: str = "cpu",
    on_check: Callable[[str], None] = lambda how: None,
) -> Forecaster:
    """The run's model, loaded in this process only after it survived `check_run`, or after
    its probe.json proved these exact bytes with these libraries; `device` as in
    `Forecaster.load` (the probe child always predicts on the CPU). `on_check` hears which:
    "recorded" or "probe"."""
    run_dir = Path(run_dir)
    if _proven(run_dir):
        log.info("%s: probe.json proves these bytes; no probe process", model_path(run_dir))
        on_check("recorded")
    else:
        on_check("probe")
        check_run(run_dir, timeout)
    forecaster = Forecaster.load(run_dir, device)
    plausible_range(forecaster.metrics)
    return forecaster


def main(argv: list[str]) -> int:
    """The child: exit 0 when the run loads and predicts; else its reason on stderr, exit 1."""
    if len(argv) != 1:
        print("usage: python -m app.forecasting.model_check RUN_DIR", file=sys.stderr)
        return 2
    try:
        forecaster = Forecaster.load(Path(argv[0]))
        _probe(forecaster)
    except ModelLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    # Forecaster.load checked the bytes it loaded against this record.
    verified = {"model_file": forecaster.metrics["model_file"], "versions": library_versions()}
    print(json.dumps(verified))
    return 0


if __name__ == "__main__":
    die_with_parent_if_asked()
    sys.exit(main(sys.argv[1:]))
