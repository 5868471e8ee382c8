"""`python -m benchmarks.drift [--quick]`: how often the model monitor cries wolf, and how soon it
sees a real shift, on the digits example's own data.

The monitor's own code decides (platform/mlops_platform: baseline.py computes the baseline the
pipeline would, drift.py compares as `monitor` does, with its defaults: threshold 0.1, the family
1 %, at least 200 rows a decision).

1. False alarms. Each trial splits the 1,797 digits at random (its own seed): 1,200 to train on,
   whose baseline is computed; a window of W rows drawn without replacement from the other 597
   (597: all of them): traffic from the training distribution. A trial is a false alarm when any
   of the 64 features drifts. The rate, with its exact (Clopper-Pearson) 95 % interval, per
   window size.
2. Detection delay. The same split; from hour 0 the traffic is shifted; each hour R captured rows
   arrive and the hourly check decides once 200 rows are waiting (as `monitor` carries rows over).
   The delay is the hours until the first check that reports drift (capped at 48), over trials,
   per shift and rate. Shifts: inverted pixels (16 - x); Gaussian noise (sd 2 and 1, rounded,
   clipped to 0..16); a dimmer pen (x * 0.7 and x * 0.9, rounded); a quarter and a tenth of the
   traffic inverted (a new client).

Prints a Markdown table and writes benchmarks/results/drift.json. The full run (500 false-alarm
trials per window, 100 delay trials per case) takes about 8 minutes on 2 cores; --quick about 1.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
from mlops_platform import drift  # noqa: E402
from mlops_platform.baseline import write_baseline  # noqa: E402

DIGITS = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets/data/digits.csv.gz"
RESULTS = ROOT / "benchmarks" / "results" / "drift.json"
THRESHOLD = 0.1
MIN_ROWS = 200
MAX_HOURS = 48

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]
SHIFTS: dict[str, Shift] = {
    "inverted pixels": lambda x, rng: 16 - x,
    "noise sd 2": lambda x, rng: np.clip(np.rint(x + rng.normal(0, 2, x.shape)), 0, 16),
    "dimmer pen x0.7": lambda x, rng: np.rint(x * 0.7),
    "dimmer pen x0.9": lambda x, rng: np.rint(x * 0.9),
    "noise sd 1": lambda x, rng: np.clip(np.rint(x + rng.normal(0, 1, x.shape)), 0, 16),
    "25 % inverted": lambda x, rng: np.where(rng.random((len(x), 1)) < 0.25, 16 - x, x),
    "10 % inverted": lambda x, rng: np.where(rng.random((len(x), 1)) < 0.10, 16 - x, x),
}


def load() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DIGITS) as handle:
        table = np.loadtxt(handle, delimiter=",").astype(int)
    return table[:, :64], table[:, 64]


def baseline(train: np.ndarray, labels: np.ndarray) -> dict[str, drift.Reference]:
    with tempfile.TemporaryDirectory() as tmp:
        channel = Path(tmp) / "train"
        channel.mkdir()
        np.savetxt(channel / "t.csv", np.column_stack([train, labels]), fmt="%d", delimiter=",")
        write_baseline({"train": channel}, Path(tmp) / "b", 1_000_000)
        return drift.load_baseline(Path(tmp) / "b" / "train").by_name()


def drifted(references: dict[str, drift.Reference], window: np.ndarray) -> list[str]:
    """What `monitor` reports for this window of rows (its columns, its compare)."""
    rows = [{f"_c{i}": float(v) for i, v in enumerate(row)} for row in window]
    columns = {name: drift.Column() for name in references}
    for row in rows:
        for name, value in row.items():
            if name in columns:
                columns[name].add(value, references[name].numeric)
    verdicts = drift.compare([(n, references[n], columns[n]) for n in references], {}, THRESHOLD)
    return [name for name, verdict in verdicts.items() if verdict.drift]


def split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[Any, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    return baseline(x[order[:1200]], y[order[:1200]]), x[order[1200:]], rng


def false_alarms(x: np.ndarray, y: np.ndarray, window: int, trials: int) -> dict[str, Any]:
    fired = 0
    for trial in range(trials):
        references, held, rng = split(x, y, 10_000 + trial)
        fired += bool(drifted(references, held[rng.choice(len(held), window, replace=False)]))
    interval = stats.binomtest(fired, trials).proportion_ci(0.95, method="exact")
    return {
        "window_rows": window,
        "trials": trials,
        "false_alarms": fired,
        "rate": fired / trials,
        "ci95": [round(interval.low, 4), round(interval.high, 4)],
    }


def delay(x: np.ndarray, y: np.ndarray, shift: str, rate: int, trials: int) -> dict[str, Any]:
    hours = []
    for trial in range(trials):
        references, held, rng = split(x, y, 20_000 + trial)
        waiting = np.empty((0, 64))
        found = MAX_HOURS + 1
        for hour in range(1, MAX_HOURS + 1):
            arrived = held[rng.choice(len(held), rate, replace=True)]
            waiting = np.vstack([waiting, SHIFTS[shift](arrived, rng)])
            if len(waiting) < MIN_ROWS:
                continue
            window, waiting = waiting, np.empty((0, 64))
            if drifted(references, window):
                found = hour
                break
        hours.append(found)
    caught = [h for h in hours if h <= MAX_HOURS]
    return {
        "shift": shift,
        "rows_per_hour": rate,
        "trials": trials,
        "detected": len(caught),
        "median_hours": round(float(np.median(caught)), 1) if caught else None,
        "p95_hours": round(float(np.percentile(caught, 95)), 1) if caught else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift")
    parser.add_argument("--quick", action="store_true", help="fewer trials (about a minute)")
    args = parser.parse_args(argv)
    alarm_trials, delay_trials = (60, 10) if args.quick else (500, 100)
    x, y = load()
    started = time.monotonic()
    alarms = [false_alarms(x, y, window, alarm_trials) for window in (200, 400, 597)]
    delays = [delay(x, y, shift, rate, delay_trials) for shift in SHIFTS for rate in (50, 400)]
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python -m benchmarks.drift" + (" --quick" if args.quick else ""),
        "threshold": THRESHOLD,
        "family_alpha": drift.FAMILY_ALPHA,
        "min_rows": MIN_ROWS,
        "false_alarms": alarms,
        "detection": delays,
        "seconds": round(time.monotonic() - started, 1),
    }
    print("| window rows | trials | false alarms | rate | 95 % interval |")
    print("|---|---|---|---|---|")
    for a in alarms:
        print(
            f"| {a['window_rows']} | {a['trials']} | {a['false_alarms']} | {a['rate']:.3f} | "
            f"{a['ci95'][0]:.3f}-{a['ci95'][1]:.3f} |"
        )
    print()
    print("| shift | captured rows / hour | detected | median delay (h) | p95 delay (h) |")
    print("|---|---|---|---|---|")
    for d in delays:
        print(
            f"| {d['shift']} | {d['rows_per_hour']} | {d['detected']}/{d['trials']} | "
            f"{d['median_hours']} | {d['p95_hours']} |"
        )
    print(f"\n{result['seconds']} s")
    if not args.quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
