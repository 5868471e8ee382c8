"""What the served series is: its descriptor, read from the store, never written into the code.

A dataset in the store is `datasets/<name>.csv` (header `date,<column>`, one row per week) with an
optional descriptor beside it, `datasets/<name>.series.json`::

    {"name": "gasoline", "title": "US gasoline product supplied", "column": "value",
     "units": "million barrels/day", "cadence": "weekly", "min": 0, "max": 20,
     "source_format": null, "description": "...",
     "drift": {"history_tolerance": 0.5, "level_shift": 5.0, "growth_per_year": 4.0},
     "monitor": {"min_drift_shift": 2.0}}

Every key but `name` is optional. Without a descriptor (a plain two-column CSV), the series is
named after the file, its column is the CSV's second header field, it has no units and no
physical bounds (validate then only refuses non-finite values; the API's plausible range comes
from the training data, `model_check.history_range`), and the drift tolerances are multiples of
the accepted dataset's week-to-week noise (`validate.drift_tolerances`).

Which series the store holds (`Store.series_name`): `SERIES_NAME` when set; else the one
descriptor in `datasets/`; else the one CSV there; else the series shipped with the app
(`app/data/`, copied into an empty store with its descriptor).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).parent / "data"
DESCRIPTOR_SUFFIX = ".series.json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Series names name files in the store: no `/`, no leading `.`."""
_NAME = re.compile(NAME_PATTERN)
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CADENCES = ("weekly",)
"""The forecaster is seasonal over 52 weeks; only weekly series are supported."""
MAX_DESCRIPTOR_BYTES = 64 * 1024


class SeriesError(ValueError):
    """A descriptor or a series name is unusable; the message names the file, key and value."""


@dataclass(frozen=True)
class Series:
    """The descriptor of one weekly series (see the module docstring for the file)."""

    name: str
    column: str = "value"
    title: str = ""
    units: str = ""
    cadence: str = "weekly"
    minimum: float | None = None
    maximum: float | None = None
    source_format: str | None = None
    description: str = ""
    drift: dict[str, float] = field(default_factory=dict)
    monitor: dict[str, float] = field(default_factory=dict)
    described: bool = True
    """False when no descriptor file exists and everything comes from the CSV."""

    @property
    def label(self) -> str:
        """The series' display name: its title, else its name."""
        return self.title or self.name

    @property
    def has_bounds(self) -> bool:
        return self.minimum is not None and self.maximum is not None

    def unit_suffix(self) -> str:
        """` <units>` for appending to a number, or "" for a series without units."""
        return f" {self.units}" if self.units else ""

    def in_units(self, text: str) -> str:
        """`text (units)`, or `text` for a series without units."""
        return f"{text} ({self.units})" if self.units else text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "column": self.column,
            "units": self.units,
            "cadence": self.cadence,
            "min": self.minimum,
            "max": self.maximum,
            "source_format": self.source_format,
            "described": self.described,
        }
        if self.description:
            out["description"] = self.description
        if self.drift:
            out["drift"] = dict(self.drift)
        if self.monitor:
            out["monitor"] = dict(self.monitor)
        return out


def check_name(name: str, what: str = "series name") -> str:
    if not _NAME.fullmatch(name):
        raise SeriesError(
            f"{what} {name!r} is not allowed: 1-64 letters, digits, '_' or '-', "
            "not starting with '_' or '-'"
        )
    return name


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SeriesError(f"{path}: {key} must be a finite number, got {value!r}")
    return float(value)


def _numbers(path: Path, key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SeriesError(f"{path}: {key} must be an object, got {value!r}")
    out = {}
    for inner, number in value.items():
        if inner not in allowed:
            raise SeriesError(f"{path}: unknown key {key}.{inner}; allowed: {', '.join(allowed)}")
        out[inner] = _number(path, f"{key}.{inner}", number)
        if out[inner] < 0:
            raise SeriesError(f"{path}: {key}.{inner} must be at least 0, got {number!r}")
    return out


DRIFT_KEYS = ("history_tolerance", "level_shift", "growth_per_year")
MONITOR_KEYS = ("min_drift_shift",)
_KEYS = {"name", "title", "column", "units", "cadence", "min", "max", "source_format",
         "description", "drift", "monitor", "described"}  # fmt: skip


def parse_descriptor(path: Path, data: bytes) -> Series:
    """The Series a descriptor file describes; SeriesError naming the key for anything wrong."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise SeriesError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise SeriesError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SeriesError(f"{path}: unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    expected = path.name[: -len(DESCRIPTOR_SUFFIX)]
    name = raw.get("name", expected)
    if not isinstance(name, str) or name != expected:
        raise SeriesError(f"{path}: name must be {expected!r} (the file's name), got {name!r}")
    text = {}
    for key in ("title", "units", "description"):
        value = raw.get(key) or ""
        # No markup: Plotly renders tags in legend and axis text (the dashboard shows these).
        if not isinstance(value, str) or len(value) > 200 or any(c in value for c in "\n<>&"):
            raise SeriesError(
                f"{path}: {key} must be one line of at most 200 characters without <, > or &, "
                f"got {value!r}"
            )
        text[key] = value
    column = raw.get("column", "value")
    if not isinstance(column, str) or not _COLUMN.fullmatch(column) or column == "date":
        raise SeriesError(f"{path}: column must be an identifier other than 'date', got {column!r}")
    cadence = raw.get("cadence", "weekly")
    if cadence not in CADENCES:
        raise SeriesError(f"{path}: cadence {cadence!r} is not supported; allowed: {CADENCES}")
    low = None if raw.get("min") is None else _number(path, "min", raw["min"])
    high = None if raw.get("max") is None else _number(path, "max", raw["max"])
    if (low is None) != (high is None):
        raise SeriesError(f"{path}: give both min and max, or neither (got min={low}, max={high})")
    if low is not None and high is not None and not low < high:
        raise SeriesError(f"{path}: min {low:g} must be below max {high:g}")
    source = raw.get("source_format")
    if source is not None and not isinstance(source, str):
        raise SeriesError(f"{path}: source_format must be a string or null, got {source!r}")
    return Series(
        name=name,
        column=column,
        title=text["title"],
        units=text["units"],
        cadence=cadence,
        minimum=low,
        maximum=high,
        source_format=source,
        description=text["description"],
        drift=_numbers(path, "drift", raw.get("drift"), DRIFT_KEYS),
        monitor=_numbers(path, "monitor", raw.get("monitor"), MONITOR_KEYS),
    )


def csv_column(csv_path: Path) -> str:
    """The second header field of a `date,<column>` CSV ("value" when unreadable)."""
    try:
        with open(csv_path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline(4096).strip().split(",")
    except OSError:
        return "value"
    column = header[1].strip() if len(header) > 1 else ""
    return column if _COLUMN.fullmatch(column) and column != "date" else "value"


def load(csv_path: Path) -> Series:
    """The descriptor of the dataset at `csv_path`: its `<name>.series.json`, else one made from
    the CSV alone (no units, no bounds)."""
    name = csv_path.name.removesuffix(".csv")
    descriptor = csv_path.with_name(name + DESCRIPTOR_SUFFIX)
    try:
        data = descriptor.read_bytes()[: MAX_DESCRIPTOR_BYTES + 1]
    except FileNotFoundError:
        return Series(name=name, column=csv_column(csv_path), described=False)
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise SeriesError(f"{descriptor}: larger than {MAX_DESCRIPTOR_BYTES} bytes")
    return parse_descriptor(descriptor, data)


def shipped_name() -> str:
    """The name of the series shipped with the app (the one descriptor in `app/data/`)."""
    (descriptor,) = sorted(SHIPPED_DIR.glob("*" + DESCRIPTOR_SUFFIX))
    return descriptor.name[: -len(DESCRIPTOR_SUFFIX)]


def shipped_dataset() -> Path:
    return SHIPPED_DIR / f"{shipped_name()}.csv"


def shipped_descriptor() -> Path:
    return SHIPPED_DIR / f"{shipped_name()}{DESCRIPTOR_SUFFIX}"


def from_metrics(metrics: dict[str, Any]) -> Series:
    """The descriptor a training run recorded in its metrics (the shipped one for older runs)."""
    record = metrics.get("series")
    if isinstance(record, dict) and isinstance(record.get("name"), str):
        try:
            series = parse_descriptor(
                Path(record["name"] + DESCRIPTOR_SUFFIX),
                json.dumps({k: v for k, v in record.items() if k != "described"}).encode(),
            )
        except SeriesError:
            return Series(name=str(record["name"]), described=False)
        return Series(**{**series.__dict__, "described": bool(record.get("described", True))})
    return load(shipped_dataset())
