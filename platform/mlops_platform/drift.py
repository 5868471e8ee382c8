"""What the model monitor compares: the rows of captured requests (and the model's answers) with a
run's baseline (baseline.py), feature by feature.

Rows. A captured side (SageMaker's `captureData.endpointInput` / `endpointOutput`) is read as the
model server read it:
- encoding CSV: one row a line, fields by position;
- encoding JSON: `{"instances": [...]}` (SageMaker's and TensorFlow Serving's), `{"inputs": [...]}`,
  MLflow's `{"dataframe_split": {"columns", "data"}}` and `{"dataframe_records": [...]}`, a list
  of rows, one object (one row), else JSON Lines (a row a line); an answer's rows are the items
  of `{"predictions": [...]}`, of a list, or the object itself;
- encoding BASE64 (a body that is not text): not read, counted.
A row that is a list is read by position: field i is the baseline's i-th feature (as Model
Monitor names CSV columns `_c0`, `_c1`, ... and as the baseline keeps a header's names), a row that
is an object by name, a nested object's keys joined with `.` as the baseline joins them.

Distance (SageMaker Model Monitor's, constraints.json `distribution_constraints`:
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html):
- a numeric feature (Integral, Fractional in the baseline): the largest gap between the
  cumulative distribution of the baseline (its KLL sketch, each item weighing 2**level) and that
  of the window's values: the two-sample Kolmogorov-Smirnov statistic, exactly
  `scipy.stats.ks_2samp(...).statistic` when the baseline kept every value (below 2,048 values:
  no compaction), within the sketch's rank error (`rank_error`, about 0.001) above that;
- a String feature: the largest gap between the two frequencies of any one value (`LInfinity`,
  Model Monitor's `categorical_drift_method` default), over the values the baseline counted.
A feature drifts when its distance is above its threshold (`comparison_threshold`, 0.1 by
default, per feature by MLOPS_MONITOR_THRESHOLDS) and above the distance that sampling alone
would pass with probability 1 % over all the features compared together ("Robust": a window of a
few rows never drifts by chance): the asymptotic Kolmogorov-Smirnov bound
c * sqrt((n + m) / (n m)) with c = sqrt(-ln(a / 2) / 2) and a = 0.01 / (features compared)
(Bonferroni); for a String feature the same bound also over its values (Hoeffding's inequality
for each frequency, a union bound over them).
"""

from __future__ import annotations

import csv
import json
import math
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .baseline import CONSTRAINTS_FILE, STATISTICS_FILE
from .files import read_bounded
from .inputs import Refused, parse_json

FAMILY_ALPHA = 0.01
"""The chance that a window drawn from the baseline's own distribution sends a drift event."""
NUMERIC = ("Integral", "Fractional")
BASELINE_MAX_BYTES = 256 << 20
JSON_DEPTH = 8


# ------------------------------------------------------------------------------ the baseline
@dataclass
class Reference:
    """One baseline feature, as the monitor compares with it."""

    name: str
    inferred_type: str
    total: int = 0
    """The baseline's values (numeric: their total weight in the sketch)."""
    items: list[float] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)
    """numeric: the sketch's items in order, and the weight of each and all before it."""
    counts: dict[str, int] = field(default_factory=dict)
    """String: how often the baseline saw each value it kept."""
    completeness: float = 1.0

    @property
    def numeric(self) -> bool:
        return self.inferred_type in NUMERIC

    def cdf(self, x: float) -> float:
        index = bisect_right(self.items, x)
        return self.cumulative[index - 1] / self.total if index else 0.0


def _reference(entry: dict[str, Any]) -> Reference | None:
    name, kind = entry.get("name"), entry.get("inferred_type")
    if not isinstance(name, str) or kind not in (*NUMERIC, "String"):
        return None
    if kind in NUMERIC:
        data = entry["numerical_statistics"]["distribution"]["kll"]["sketch"]["data"]
        pairs = sorted((float(x), 1 << level) for level, items in enumerate(data) for x in items)
        if not pairs:
            return None
        cumulative, running = [], 0
        for _, weight in pairs:
            running += weight
            cumulative.append(running)
        return Reference(name, kind, running, [x for x, _ in pairs], cumulative)
    buckets = entry["string_statistics"]["distribution"]["categorical"]["buckets"]
    counts = {str(b["value"]): int(b["count"]) for b in buckets}
    total = int(entry["string_statistics"]["common"]["num_present"])
    return Reference(name, kind, total, counts=counts) if total > 0 else None


@dataclass
class Baseline:
    features: list[Reference]
    """In the baseline's order: a list row's field i is features[i]."""
    order: list[str]
    """Every feature's name in order, compared or not (Unknown ones too)."""

    def by_name(self) -> dict[str, Reference]:
        return {feature.name: feature for feature in self.features}


def load_baseline(directory: Path) -> Baseline:
    """The baseline in `directory` (statistics.json, constraints.json); Refused, naming the file,
    when it is missing or not what baseline.py writes."""
    what = f"{directory.name}/{STATISTICS_FILE}"
    try:
        statistics = parse_json(
            read_bounded(directory / STATISTICS_FILE, what, BASELINE_MAX_BYTES), what
        )
    except FileNotFoundError:
        raise Refused(f"{what} does not exist") from None
    completeness: dict[str, float] = {}
    try:
        constraints = parse_json(
            read_bounded(directory / CONSTRAINTS_FILE, CONSTRAINTS_FILE, BASELINE_MAX_BYTES),
            CONSTRAINTS_FILE,
        )
        for entry in constraints.get("features", []):
            completeness[str(entry["name"])] = float(entry.get("completeness", 1.0))
    except (FileNotFoundError, AttributeError, KeyError, TypeError, ValueError):
        pass  # completeness is reported, never decided on
    try:
        entries = statistics["features"]
        order = [str(entry["name"]) for entry in entries]
        features = [ref for ref in map(_reference, entries) if ref is not None]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise Refused(
            f"{what} is not a baseline statistics file: {type(exc).__name__} {exc}"
        ) from None
    for feature in features:
        feature.completeness = completeness.get(feature.name, 1.0)
    return Baseline(features, order)


# ------------------------------------------------------------------------------ rows
Row = dict[str, Any]


def _flatten(obj: dict[str, Any], prefix: str, into: Row, depth: int) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < JSON_DEPTH:
            _flatten(value, name + ".", into, depth + 1)
        else:
            into[name] = value


def as_row(item: Any, order: list[str]) -> Row:
    """One row by feature name: a list by position (the baseline's names, `_c<i>` beyond them),
    an object by its (flattened) keys, anything else as the single field `_c0`."""
    if isinstance(item, list):
        return {(order[i] if i < len(order) else f"_c{i}"): v for i, v in enumerate(item)}
    if isinstance(item, dict):
        row: Row = {}
        _flatten(item, "", row, 1)
        return row
    return {order[0] if order else "_c0": item}


def _json_rows(data: str, output: bool) -> list[Any]:
    try:
        body = json.loads(data)
    except ValueError:
        lines = [line for line in data.splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # ValueError: not JSON at all
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if output:
            predictions = body.get("predictions")
            return predictions if isinstance(predictions, list) else [body]
        for key in ("instances", "inputs", "dataframe_records"):
            if isinstance(body.get(key), list):
                return body[key]
        split = body.get("dataframe_split")
        if isinstance(split, dict) and isinstance(split.get("data"), list):
            columns = split.get("columns")
            if isinstance(columns, list):
                return [dict(zip(map(str, columns), r, strict=False)) for r in split["data"]]
            return split["data"]
        return [body]
    return [body]


def side_rows(side: Any, order: list[str], output: bool = False) -> list[Row]:
    """The rows of one captured side; ValueError (its message the reason) when unreadable."""
    if not isinstance(side, dict) or not isinstance(side.get("data"), str):
        raise ValueError("no data")
    encoding, data = side.get("encoding"), side["data"]
    if encoding == "CSV":
        return [as_row(fields, order) for fields in csv.reader(data.splitlines()) if fields]
    if encoding == "JSON":
        return [as_row(item, order) for item in _json_rows(data, output)]
    raise ValueError(f"encoding {encoding!r} is not read")


# ------------------------------------------------------------------------------ the window
def number(value: Any) -> float | None:
    """A present, finite number (CSV text or JSON number), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan"))


def text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else json.dumps(value)[:128]


@dataclass
class Column:
    """One feature's values in the window."""

    numbers: list[float] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    wrong_type: int = 0

    def add(self, value: Any, numeric: bool) -> None:
        if missing(value):
            self.missing += 1
        elif numeric:
            x = number(value)
            if x is None:
                self.wrong_type += 1
            else:
                self.numbers.append(x)
        else:
            self.texts[text(value)] += 1

    @property
    def present(self) -> int:
        return len(self.numbers) + sum(self.texts.values())


def ks_distance(reference: Reference, values: list[float]) -> float:
    """sup |F_baseline - F_window| over every point where either steps."""
    values = sorted(values)
    n = len(values)
    if not n:
        return 0.0
    points = sorted(set(values).union(reference.items))
    gap = 0.0
    for x in points:
        gap = max(gap, abs(reference.cdf(x) - bisect_right(values, x) / n))
    return gap


def linf_distance(reference: Reference, counts: Counter[str]) -> float:
    n = sum(counts.values())
    values = set(reference.counts) | set(counts)
    return max(
        (abs(reference.counts.get(v, 0) / reference.total - counts.get(v, 0) / n) for v in values),
        default=0.0,
    )


def critical(n: int, m: int, alpha: float) -> float:
    """The distance sampling alone exceeds with probability `alpha` (n, m values)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


@dataclass
class Verdict:
    distance: float
    threshold: float
    critical: float
    rows: int
    drift: bool
    missing: int = 0
    wrong_type: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "distance": round(self.distance, 6),
            "threshold": self.threshold,
            "critical": round(self.critical, 6),
            "rows": self.rows,
            "drift": self.drift,
            "missing": self.missing,
            "wrong_type": self.wrong_type,
        }


def compare(
    references: list[tuple[str, Reference, Column]],
    thresholds: dict[str, float],
    default_threshold: float,
) -> dict[str, Verdict]:
    """Each (key, reference, window column) judged together: the Bonferroni share of the family's
    1 % goes to each feature compared, and for a String one also to each of its values."""
    compared = [(k, r, c) for k, r, c in references if c.present]
    tests = sum(1 if r.numeric else max(1, len(r.counts) + 1) for _, r, _ in compared)
    verdicts: dict[str, Verdict] = {}
    for key, reference, column in compared:
        n = column.present
        if reference.numeric:
            distance = ks_distance(reference, column.numbers)
            bound = critical(n, reference.total, FAMILY_ALPHA / tests)
        else:
            distance = linf_distance(reference, column.texts)
            bound = critical(n, reference.total, FAMILY_ALPHA / tests)
        threshold = thresholds.get(reference.name, default_threshold)
        verdicts[key] = Verdict(
            distance=distance,
            threshold=threshold,
            critical=bound,
            rows=n,
            drift=distance > threshold and distance > bound,
            missing=column.missing,
            wrong_type=column.wrong_type,
        )
    return verdicts
