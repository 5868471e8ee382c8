"""The baseline of a run's training data: each tabular channel described column by column in the
two files of SageMaker Model Monitor, for a monitor to compare production requests with.

  statistics.json   dataset.item_count; per feature its inferred_type and numerical_statistics
                    (common, mean, sum, std_dev, min, max, distribution.kll) or string_statistics
                    (common, distinct_count, distribution.categorical)
                    https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html
  constraints.json  per feature inferred_type, completeness, num_constraints.is_non_negative or
                    string_constraints.domains; monitoring_config as the page's example gives it
                    https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html

Which files: a channel's `*.csv` (CSV) or `*.jsonl` / `*.ndjson` (JSON Lines), each also gzipped
(`.gz`), found anywhere under it and read in name order. A channel with neither (images, parquet,
binary) is skipped with the reason; one with both is skipped too; other files beside the tabular
ones are counted and not read. Nothing here fails a run: an unreadable channel is skipped with why.

Columns, described as a request to the model looks:
- CSV: by position, as Model Monitor names them when there is no header: `_c0`, `_c1`, ... .
  SageMaker's CSV convention is no header; the first row of a file is taken for one when every
  field is non-empty and distinct, and some field is not a number where the second row's is
  (`pixel3` over `0`): its fields name the columns, unless an earlier file set them (then it
  is dropped). The columns are those of the file, the label too where the file has one
  (`examples/digits`: `_c0`-`_c63` the pixels a request sends, `_c64` the label, which
  requests do not carry).
- JSON Lines: a line is an object; its keys are the features, in the order first seen, a nested
  object's keys joined with `.` (`a.b`, 8 levels at most, deeper objects are text), a list is
  its JSON text; a JSON string is text even when it holds digits.
- A value is missing when empty, `null`, or a number that is not finite (`nan`, `inf`, which
  statistics.json could not hold). A feature is Integral when every present value is written as
  an integer (`-12`, not `1.0`), Fractional when every one is a number and some is not an
  integer, String when any is not a number (also `true`/`false`), Unknown when none is present
  (only its common counts are written).
- A row whose field count differs from the channel's first row's, a line that is not a JSON
  object, is not UTF-8, or is longer than 1 MiB is malformed: counted, and not described. Blank
  lines are skipped.

Bounds: at most MLOPS_BASELINE_MAX_ROWS rows a channel (default 1,000,000; rows and malformed
lines both count, and the summary says when a channel was cut there), 1000 features, lines of
1 MiB (a channel with more features is skipped). mean, sum, std_dev (population), min, max and
the counts are exact over what was read.

The distribution of a numeric feature is a KLL sketch (Karnin, Lang, Liberty 2016) with k = 2048
and c = 0.64, the defaults of Deequ, on which Model Monitor's analyzer is built. `sketch.data[i]`
holds the items of weight 2**i, as Deequ reads it back (Deequ sizes its levels from the bottom,
this sketch from the top, as the paper does). The 10 equal-width buckets between min and max (the
page: "the distribution is materialized in 10 buckets") are counted from the sketch,
`[lower, upper)`, the last closed. The sketch's error, per feature: each compaction of a level
holding weight w moves the estimated rank of any one value by 0 or ±w, the sign a fair coin
(seeded from the feature's position, so the same data gives the same sketch), so by
Azuma-Hoeffding, with probability at least 99 %, |estimated rank - true rank| <=
sqrt(2 ln 200 * sum of w**2) over the compactions made. The summary gives the largest of these
over a channel's features as a fraction of its rows (`rank_error`): 0 below 2048 values (no
compaction: exact), about 0.0011 from 100,000 values to a million.

A feature's values are counted exactly up to 256 distinct ones (values cut to 128 characters).
Past that, the 256 most frequent are kept as Misra-Gries counters, each count low by at most
rows / 257, and distinct_count is a k-minimum-values estimate (k = 512, relative standard error
about 4.4 %, over Python's string hash, which is salted per process: two runs may differ within
it). Domains in constraints.json list a String feature's values when all were counted and there
are at most 50.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import json
import math
import os
import random
import shutil
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import accumulate
from operator import mul
from pathlib import Path
from typing import Any

from mlops_contract import Env, atomic_write

from .files import walk_files
from .inputs import Refused

DEFAULT_MAX_ROWS = 1_000_000
MAX_FEATURES = 1000
MAX_LINE_BYTES = 1 << 20
BATCH_ROWS = 1024
KLL_K = 2048
KLL_C = 0.64
BUCKETS = 10
TRACKED_VALUES = 256
VALUE_CHARS = 128
DISTINCT_K = 512
DOMAIN_VALUES = 50
JSON_DEPTH = 8
RANK_CONFIDENCE = math.sqrt(2 * math.log(2 / 0.01))
"""Azuma-Hoeffding at 99 %: P(|error| >= t) <= 2 exp(-t**2 / (2 sum w**2)) = 0.01."""

STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
CSV_SUFFIXES = (".csv", ".csv.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
MONITORING_CONFIG = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 0.1,
    "domain_content_threshold": 0.1,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}


class NotTabular(Exception):
    """Why a channel has no baseline: its message is the reason recorded."""


def max_rows() -> int:
    raw = os.environ.get(Env.BASELINE_MAX_ROWS, "")
    if not raw:
        return DEFAULT_MAX_ROWS
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12 and int(raw) > 0):
        raise Refused(
            f"{Env.BASELINE_MAX_ROWS}={raw[:40]!r} must be a positive whole number of rows "
            f"(default {DEFAULT_MAX_ROWS})"
        )
    return int(raw)


# ------------------------------------------------------------------------------ sketches
class Kll:
    """A KLL quantile sketch of floats: level h holds items of weight 2**h; a level over its
    capacity k * c**depth (depth from the top level, at least 2) is sorted and every other item,
    from a random start, moves up."""

    def __init__(self, seed: int) -> None:
        self.levels: list[list[float]] = [[]]
        self.squared_weights = 0
        """Sum of w**2 over the compactions made: the rank error's bound (module docstring)."""
        self._rng = random.Random(seed)
        self._size = 0
        self._capacities = [KLL_K]
        self._limit = KLL_K

    def extend(self, values: list[float]) -> None:
        self.levels[0].extend(values)
        self._size += len(values)
        while self._size > self._limit:
            self._compact()

    def _compact(self) -> None:
        levels, capacities = self.levels, self._capacities
        height = next(h for h, items in enumerate(levels) if len(items) >= capacities[h])
        if height + 1 == len(levels):
            levels.append([])
            top = len(levels) - 1
            self._capacities = [
                max(2, math.ceil(KLL_K * KLL_C ** (top - h))) for h in range(top + 1)
            ]
            self._limit = sum(self._capacities)
        items = sorted(levels[height])
        held = [items.pop()] if len(items) % 2 else []
        moved = items[self._rng.getrandbits(1) :: 2]
        levels[height + 1].extend(moved)
        levels[height] = held
        self._size -= len(items) - len(moved)
        self.squared_weights += 4**height

    def sorted_items(self) -> tuple[list[float], list[int]]:
        """The items in order and, for each, the total weight of it and all before it."""
        pairs = sorted((x, 1 << h) for h, items in enumerate(self.levels) for x in items)
        return [x for x, _ in pairs], list(accumulate(w for _, w in pairs))

    def data(self) -> list[list[float]]:
        return [sorted(items) for items in self.levels]


class Distinct:
    """A k-minimum-values estimate of how many distinct strings were added: the DISTINCT_K
    smallest of their (signed 64-bit) hashes are kept."""

    def __init__(self) -> None:
        self._kept: set[int] = set()
        self._heap: list[int] = []  # the kept hashes, negated: the largest on top

    def add(self, texts: Iterable[str]) -> None:
        kept, heap = self._kept, self._heap
        hashes = map(hash, texts)
        if len(kept) >= DISTINCT_K:
            # At C speed, what cannot be among the smallest is dropped first.
            largest = -heap[0]
            hashes = iter([value for value in hashes if value < largest])
        for value in hashes:
            if value in kept:
                continue
            if len(kept) < DISTINCT_K:
                kept.add(value)
                heapq.heappush(heap, -value)
            elif value < -heap[0]:
                kept.discard(-heapq.heapreplace(heap, -value))
                kept.add(value)

    def estimate(self) -> int:
        if len(self._kept) < DISTINCT_K:
            return len(self._kept)
        # The k-th smallest of n uniform hashes sits near k / n of their range.
        fraction = (-self._heap[0] + 2**63 + 1) / 2.0**64
        return round((DISTINCT_K - 1) / fraction)


class Values:
    """How often each value occurs: exact up to TRACKED_VALUES distinct ones, then Misra-Gries
    counters (each count low by at most rows / (TRACKED_VALUES + 1)) and a Distinct estimate."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.distinct: Distinct | None = None

    @property
    def exact(self) -> bool:
        return self.distinct is None

    def add(self, texts: list[str]) -> None:
        if texts and max(map(len, texts)) > VALUE_CHARS:
            texts = [text[:VALUE_CHARS] for text in texts]
        if self.distinct is not None:
            self.distinct.add(texts)
        self.counts.update(texts)
        if self.distinct is None and len(self.counts) > TRACKED_VALUES:
            self.distinct = Distinct()
            self.distinct.add(self.counts)
        if self.distinct is not None and len(self.counts) > 2 * TRACKED_VALUES:
            # Take the (TRACKED_VALUES + 1)-th largest count t off every counter: each such round
            # removes at least (TRACKED_VALUES + 1) * t of the total, so all rounds together
            # take at most rows / (TRACKED_VALUES + 1) from any one count.
            cut = heapq.nlargest(TRACKED_VALUES + 1, self.counts.values())[-1]
            self.counts = Counter({v: c - cut for v, c in self.counts.items() if c > cut})

    def distinct_count(self) -> int:
        if self.distinct is None:
            return len(self.counts)
        return max(self.distinct.estimate(), len(self.counts))

    def top(self) -> list[tuple[str, int]]:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:TRACKED_VALUES]


# ------------------------------------------------------------------------------ a feature
def _plain_numbers(fields: list[str]) -> tuple[list[float], bool] | None:
    """The common batch, all finite numbers, parsed at C speed: (numbers, whether any is not
    an integer); None for any other batch, which is then read field by field."""
    try:
        return list(map(float, map(int, fields))), False
    except OverflowError:
        return None
    except ValueError:
        pass
    try:
        numbers = list(map(float, fields))
    except ValueError:
        return None
    return (numbers, True) if all(map(math.isfinite, numbers)) else None


class Feature:
    """One column's counts, its numbers' moments and sketch, and its values."""

    def __init__(self, name: str, position: int) -> None:
        self.name = name
        self.present = 0
        self.fractional = False
        self.text = False
        self.numbers = 0
        self.total = 0.0
        self.shift: float | None = None
        self.shifted = 0.0
        self.shifted_squares = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.sketch = Kll(seed=position)
        self.values = Values()

    def add_numbers(self, numbers: list[float], fractional: bool) -> None:
        if not numbers:
            return
        self.fractional = self.fractional or fractional
        # Moments about the first value seen: no cancellation when values sit far from 0.
        if self.shift is None:
            self.shift = numbers[0]
        shift = self.shift
        deltas = [x - shift for x in numbers]
        self.numbers += len(numbers)
        self.total += math.fsum(numbers)
        self.shifted += math.fsum(deltas)
        self.shifted_squares += math.fsum(map(mul, deltas, deltas))
        self.low = min(self.low, min(numbers))
        self.high = max(self.high, max(numbers))
        self.sketch.extend(numbers)

    def add_texts(self, fields: tuple[str, ...] | list[str]) -> None:
        """A batch of one CSV column's fields."""
        stripped = list(map(str.strip, fields))
        plain = _plain_numbers(stripped)
        if plain is None:
            self._one_by_one(stripped)
            return
        self.present += len(stripped)
        self.add_numbers(*plain)
        self.values.add(stripped)

    def _one_by_one(self, stripped: list[str]) -> None:
        integers: list[float] = []
        fractions: list[float] = []
        kept: list[str] = []
        for field in stripped:
            if not field:
                continue
            try:
                integers.append(float(int(field)))
            except ValueError:
                pass
            except OverflowError:
                continue
            else:
                kept.append(field)
                continue
            try:
                number = float(field)
            except ValueError:
                self.text = True
                kept.append(field)
                continue
            if math.isfinite(number):
                fractions.append(number)
                kept.append(field)
        self.present += len(kept)
        self.add_numbers(integers, False)
        self.add_numbers(fractions, True)
        self.values.add(kept)

    def add_json(self, values: list[Any]) -> None:
        """A batch of one JSON Lines feature's values, None where a line has no such key."""
        integers: list[float] = []
        fractions: list[float] = []
        kept: list[str] = []
        for value in values:
            kind = type(value)
            if value is None:
                continue
            if kind is int:
                try:
                    integers.append(float(value))
                except OverflowError:
                    continue
                kept.append(str(value))
            elif kind is float:
                if math.isfinite(value):
                    fractions.append(value)
                    kept.append(repr(value))
            else:
                self.text = True
                if kind is str:
                    kept.append(value)
                elif kind is bool:
                    kept.append("true" if value else "false")
                else:
                    kept.append(json.dumps(value, separators=(",", ":"))[:VALUE_CHARS])
        self.present += len(kept)
        self.add_numbers(integers, False)
        self.add_numbers(fractions, True)
        self.values.add(kept)

    # -------------------------------------------------------------------------- the files
    @property
    def inferred_type(self) -> str:
        if not self.present:
            return "Unknown"
        if self.text:
            return "String"
        return "Fractional" if self.fractional else "Integral"

    def rank_error(self) -> float:
        if self.text or not self.numbers:
            return 0.0
        return RANK_CONFIDENCE * math.sqrt(self.sketch.squared_weights) / self.numbers

    def statistics(self, rows: int) -> dict[str, Any]:
        common = {"num_present": self.present, "num_missing": rows - self.present}
        kind = self.inferred_type
        entry: dict[str, Any] = {"name": self.name, "inferred_type": kind}
        if kind == "Unknown":
            entry["string_statistics"] = {"common": common}
        elif kind == "String":
            entry["string_statistics"] = {
                "common": common,
                "distinct_count": self.values.distinct_count(),
                "distribution": {
                    "categorical": {
                        "buckets": [{"value": v, "count": c} for v, c in self.values.top()]
                    }
                },
            }
        else:
            n = self.numbers
            mean_shift = self.shifted / n
            variance = max(0.0, self.shifted_squares / n - mean_shift * mean_shift)
            entry["numerical_statistics"] = {
                "common": common,
                "mean": self.total / n,
                "sum": self.total,
                "std_dev": math.sqrt(variance),
                "min": self.low,
                "max": self.high,
                "distribution": {
                    "kll": {
                        "buckets": self._buckets(),
                        "sketch": {
                            "parameters": {"c": KLL_C, "k": KLL_K},
                            "data": self.sketch.data(),
                        },
                    }
                },
            }
        return entry

    def _buckets(self) -> list[dict[str, float]]:
        """BUCKETS equal-width buckets from min to max, `[lower, upper)` and the last closed,
        each counted from the sketch; one bucket when min is max."""
        items, weights = self.sketch.sorted_items()
        total = weights[-1]

        def below(edge: float) -> int:
            index = bisect_left(items, edge)
            return weights[index - 1] if index else 0

        if self.low == self.high:
            return [{"lower_bound": self.low, "upper_bound": self.high, "count": total}]
        width = (self.high - self.low) / BUCKETS
        edges = [self.low + width * i for i in range(BUCKETS)] + [self.high]
        under = [below(edge) for edge in edges[:-1]] + [total]
        return [
            {"lower_bound": edges[i], "upper_bound": edges[i + 1], "count": under[i + 1] - under[i]}
            for i in range(BUCKETS)
        ]

    def constraints(self, rows: int) -> dict[str, Any]:
        kind = self.inferred_type
        entry: dict[str, Any] = {
            "name": self.name,
            "inferred_type": kind,
            "completeness": self.present / rows if rows else 0.0,
        }
        if kind in ("Integral", "Fractional"):
            entry["num_constraints"] = {"is_non_negative": self.low >= 0}
        elif kind == "String" and self.values.exact and len(self.values.counts) <= DOMAIN_VALUES:
            entry["string_constraints"] = {"domains": sorted(self.values.counts)}
        return entry


# ------------------------------------------------------------------------------ reading
class Table:
    """What a channel's rows came to: its features, and how many rows were read, malformed or
    left unread past the row limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.features: list[Feature] = []
        self.rows = 0
        self.malformed = 0
        self.capped = False

    def add_features(self, names: list[str]) -> None:
        if len(self.features) + len(names) > MAX_FEATURES:
            raise NotTabular(f"more than {MAX_FEATURES} features, the limit")
        start = len(self.features)
        self.features += [Feature(name, start + i) for i, name in enumerate(names)]


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _lines(handle: io.BufferedIOBase, table: Table) -> Iterator[bytes]:
    """The file's lines, each at most MAX_LINE_BYTES; a longer one is read past and counted
    malformed, never held."""
    while line := handle.readline(MAX_LINE_BYTES + 1):
        if table.rows + table.malformed >= table.limit:
            table.capped = True
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(MAX_LINE_BYTES)
            table.malformed += 1
            continue
        yield line


def _text_lines(handle: io.BufferedIOBase, table: Table) -> Iterator[str]:
    first = True
    for line in _lines(handle, table):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            table.malformed += 1
            continue
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def _number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def is_header(first: list[str], second: list[str]) -> bool:
    """Whether a CSV file's first row names its columns (module docstring)."""
    names = [field.strip() for field in first]
    if len(names) != len(second) or not all(names) or len(set(names)) != len(names):
        return False
    pairs = zip(names, second, strict=True)
    return any(not _number(name) and _number(field) for name, field in pairs)


def _csv_rows(path: Path, table: Table) -> Iterator[list[str]]:
    with _open(path) as handle:
        reader = csv.reader(_text_lines(handle, table))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                table.malformed += 1
                continue
            if row:
                yield row


def read_csv(files: list[Path], table: Table) -> bool:
    """The CSV files' rows into `table`; whether a header named the columns."""
    header = False
    width: int | None = None
    batch: list[list[str]] = []

    def add(row: list[str]) -> None:
        nonlocal width
        if width is None:
            width = len(row)
            table.add_features([f"_c{i}" for i in range(width)])
        if len(row) != width:
            table.malformed += 1
            return
        table.rows += 1
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            flush()

    def flush() -> None:
        if batch:
            for feature, fields in zip(table.features, zip(*batch, strict=True), strict=True):
                feature.add_texts(fields)
            batch.clear()

    for path in files:
        first: list[str] | None = None
        decided = False
        for row in _csv_rows(path, table):
            if first is None:
                first = row
                continue
            if not decided:
                decided = True
                if is_header(first, row):
                    if width is None:
                        header = True
                        width = len(first)
                        table.add_features([name.strip() for name in first])
                else:
                    add(first)
            add(row)
        if first is not None and not decided:
            add(first)
    flush()
    return header


def _flatten(obj: dict[str, Any], prefix: str, into: dict[str, Any], depth: int) -> None:
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict) and value and depth < JSON_DEPTH:
            _flatten(value, name + ".", into, depth + 1)
        else:
            into[name] = value


def read_jsonl(files: list[Path], table: Table) -> None:
    positions: dict[str, int] = {}
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        for name, position in positions.items():
            table.features[position].add_json([row.get(name) for row in batch])
        batch.clear()

    for path in files:
        with _open(path) as handle:
            for line in _lines(handle, table):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    table.malformed += 1
                    continue
                if not isinstance(obj, dict):
                    table.malformed += 1
                    continue
                row: dict[str, Any] = {}
                _flatten(obj, "", row, 1)
                new = [name for name in row if name not in positions]
                if new:
                    table.add_features(new)
                    for name in new:
                        positions[name] = len(positions)
                table.rows += 1
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    flush()
    flush()


# ------------------------------------------------------------------------------ a channel
def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def _suffixes(paths: list[Path]) -> str:
    counts = Counter(path.suffix.lower() or "(none)" for path in paths)
    return ", ".join(f"{suffix} {count}" for suffix, count in sorted(counts.items())[:8])


def describe(
    channel: Path, limit: int
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """A channel's summary, statistics.json and constraints.json (None, None when skipped)."""
    started = time.monotonic()
    try:
        files = list(walk_files(channel, f"channel {channel.name!r}"))
    except Refused as exc:
        return {"skipped": str(exc)}, None, None
    kinds = {path: _kind(path) for path in files}
    found = sorted({kind for kind in kinds.values() if kind})
    if not files:
        return {"skipped": "the channel holds no files"}, None, None
    if not found:
        return (
            {"skipped": f"no CSV or JSON Lines files: {len(files)} file(s) ({_suffixes(files)})"},
            None,
            None,
        )
    if len(found) > 1:
        return {"skipped": "it holds both CSV and JSON Lines files"}, None, None
    kind = found[0]
    tabular = [path for path in files if kinds[path] == kind]
    table = Table(limit)
    summary: dict[str, Any] = {"format": kind, "files": len(tabular)}
    try:
        if kind == "csv":
            summary["header"] = read_csv(tabular, table)
        else:
            read_jsonl(tabular, table)
    except NotTabular as exc:
        return {"skipped": str(exc)}, None, None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return {"skipped": f"could not be read: {exc}"}, None, None
    if not table.rows:
        return {"skipped": f"no readable rows ({table.malformed} malformed)"}, None, None
    features = table.features
    summary.update(
        ignored_files=len(files) - len(tabular),
        rows=table.rows,
        features=len(features),
        malformed_rows=table.malformed,
        capped=table.capped,
        rank_error=round(max((f.rank_error() for f in features), default=0.0), 6),
        seconds=round(time.monotonic() - started, 3),
    )
    statistics = {
        "version": 0,
        "dataset": {"item_count": table.rows},
        "features": [feature.statistics(table.rows) for feature in features],
    }
    constraints = {
        "version": 0,
        "features": [feature.constraints(table.rows) for feature in features],
        "monitoring_config": MONITORING_CONFIG,
    }
    return summary, statistics, constraints


def _write(path: Path, document: dict[str, Any], indent: int | None) -> None:
    separators = (",", ":") if indent is None else None
    text = json.dumps(document, indent=indent, separators=separators, allow_nan=False)
    atomic_write(path, (text + "\n").encode())


def write_baseline(channels: dict[str, Path], target: Path, limit: int) -> dict[str, Any]:
    """Each channel's statistics.json and constraints.json into `target/<channel>/`; the
    summary of every channel ({name: summary}), a skipped one with its reason."""
    summaries: dict[str, Any] = {}
    for name, directory in channels.items():
        # Whatever goes wrong with one channel's data is that channel's reason, never the
        # run's failure (a sum past the largest float, a file vanishing, no memory left).
        try:
            summary, statistics, constraints = describe(directory, limit)
            if statistics is not None and constraints is not None:
                _write(target / name / STATISTICS_FILE, statistics, None)
                _write(target / name / CONSTRAINTS_FILE, constraints, 2)
        except Exception as exc:
            shutil.rmtree(target / name, ignore_errors=True)
            summary = {"skipped": f"the baseline failed: {type(exc).__name__}: {exc}"}
        summaries[name] = summary
    return summaries
