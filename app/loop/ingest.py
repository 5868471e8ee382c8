"""`python -m app ingest [--source URL|FILE]`: append new weekly observations to the dataset.

The default source is NOAA GML's weekly Mauna Loa file (`NOAA_WEEKLY_URL`), the live
continuation of the shipped series. Its data lines are whitespace-separated columns::

    #      Start of week      CO2 molfrac           (-999.99 = no data)  increase
    # (yr, mon, day, decimal)    (ppm)  #days       1 yr ago  10 yr ago  since 1800
      1974   5  19  1974.3795    333.34  6          -999.99   -999.99     50.36

Alignment with the shipped series: NOAA dates a week by its first day (a Sunday; its weeks run
Sunday to Saturday), the shipped series by its last (a Saturday), so a NOAA week lands on its
start date + 6 days. Both are the weekly mean CO2 mole fraction in dry air in ppm, so values are
taken as they are; NOAA's `-999.99` (no data) becomes an empty value, as in the shipped series.

What an ingest does, under a lock so two ingests never interleave:

* reads the source through a 16 MiB limit (regular files and URLs only) and refuses one whose
  last line has no newline (cut off) or that starts with a BOM;
* parses the whole source first, numbers in NOAA's own format only (`-?[0-9]+.[0-9]{2}`): one
  malformed line, a date that is not a Sunday, a value outside the physical bounds refuses the
  whole batch with an error naming the source line and reason;
* appends weeks after the dataset's last week (missing weeks at the end of the source, and
  revisions of the last weeks to no data, wait for a later observed week, so the series never
  ends on a gap);
* compares weeks this ingest appended earlier: a changed value is a revision, applied and
  recorded in `datasets/revisions.jsonl` (date, old and new value, source line, when), unless
  the source is older (its `# File Creation:` line, HTTP Last-Modified or mtime) than the newest
  ingested: then it is listed in `revisions_not_applied` and the newer value kept;
  weeks of the shipped base series are never compared, since NOAA's and Scripps' records of
  the same week are two programmes' measurements, not revisions of each other;
* runs the training data's validation (`app.pipeline.validate`, spikes included) on the dataset
  as it would be;
* writes its journal (`datasets/ingest.pending.json`: the records and outcome) before it
  replaces the dataset atomically, and only when a row changed: re-ingesting the same file
  writes nothing, so the dataset's sha256 changes exactly when its rows do; a journal a kill
  left is completed by the next ingest.

Every run records its outcome in `datasets/ingest.json` (shown on the dashboard).
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import fcntl
import hashlib
import itertools
import logging
import math
import os
import re
import stat
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.cli import command_settings, open_store
from app.processes import crash_point
from app.series import Series
from app.series import load as load_series
from app.store import (
    INGEST_PENDING_NAME,
    INGEST_STATE_NAME,
    SHIPPED_DATASET,
    Store,
    is_full,
    read_limited,
)

log = logging.getLogger(__name__)

NOAA_SOURCE_NAME = "co2_weekly_mlo.txt"
"""The name of NOAA's weekly file (`NOAA_WEEKLY_URL`), which the replay writes its weeks into."""
NOAA_FORMAT = "noaa_co2_weekly"
"""The `source_format` of a series in NOAA's weekly format (the shipped series)."""
SOURCE_FORMATS = (NOAA_FORMAT, None, "csv")
"""What ingest reads: NOAA's format, or (null or "csv") a `date,<column>` CSV like the dataset."""
NOAA_WEEKLY_URL = "https://gml.noaa.gov/webdata/ccgg/trends/co2/co2_weekly_mlo.txt"
MISSING = -999.99
"""NOAA's "no data" value."""
WEEK_END_OFFSET = timedelta(days=6)
"""NOAA's week starts on Sunday; the shipped series dates a week by its Saturday."""
FETCH_TIMEOUT_SECONDS = 60
MAX_SOURCE_BYTES = 16 * 1024 * 1024
"""NOAA's file is ~200 KB; anything far larger is not it."""
DECIMALS = 2
"""NOAA publishes two decimals; values are compared and written at that precision."""

STATE_NAME = INGEST_STATE_NAME
REVISIONS_NAME = "revisions.jsonl"
PENDING_NAME = INGEST_PENDING_NAME
LOCK_NAME = ".ingest.lock"


class IngestError(Exception):
    """The batch was refused; `problems` says why, one sentence each (with source line numbers)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Week:
    """One observation of the source, already aligned to the shipped series' week-ending date."""

    week_end: date
    co2: float | None
    line: int
    offset: timedelta = timedelta(days=6)
    """From the source's own date of the week to the dataset's (NOAA: Sunday to Saturday)."""

    @property
    def source_date(self) -> date:
        return self.week_end - self.offset

    def describe(self) -> str:
        return (
            f"the week starting {self.source_date}" if self.offset else f"the week {self.week_end}"
        )


# --- parsing -----------------------------------------------------------------------------------


def parse_noaa_weekly(text: str, name: str = "source", series: Series | None = None) -> list[Week]:
    """The weeks of a file in NOAA's weekly format; IngestError lists every bad line. Values
    must lie in `series`' physical bounds (the shipped CO2 descriptor's when None)."""
    series = series or load_series(SHIPPED_DATASET)
    weeks: list[Week] = []
    problems: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            weeks.append(_parse_line(line, number, series))
        except ValueError as exc:
            problems.append(f"{name} line {number}: {exc}: {raw.strip()[:80]!r}")
    if problems:
        raise IngestError(_limit(problems))
    if not weeks:
        raise IngestError([f"{name}: no data lines (is this NOAA's weekly file?)"])
    return _in_order(weeks, name)


def _in_order(weeks: list[Week], name: str) -> list[Week]:
    """`weeks`, or IngestError naming every repeated or out-of-order week."""
    problems: list[str] = []
    seen: dict[date, int] = {}
    for week in weeks:
        if week.week_end in seen:
            problems.append(
                f"{name} line {week.line}: {week.describe()} "
                f"appears again (first on line {seen[week.week_end]})"
            )
        seen.setdefault(week.week_end, week.line)
    for previous, week in itertools.pairwise(weeks):
        if week.week_end <= previous.week_end:
            problems.append(
                f"{name} line {week.line}: weeks out of order "
                f"({week.source_date} after {previous.source_date})"
            )
    if problems:
        raise IngestError(_limit(problems))
    return weeks


_INTEGER = re.compile(r"[0-9]{1,4}")
_DECIMAL_YEAR = re.compile(r"[0-9]{4}\.[0-9]+")
_PPM = re.compile(r"-?[0-9]+\.[0-9]{2}")
"""NOAA's format of a value: two decimals, always. Not what `float()` accepts (`3_7_2.5`,
full-width digits, `1e2`, `nan`); fewer decimals is a value cut off mid-download."""


def _parse_line(line: str, number: int, series: Series) -> Week:
    fields = line.split()
    if len(fields) < 5:
        raise ValueError(f"expected at least 5 columns (yr mon day decimal ppm), got {len(fields)}")
    if not all(_INTEGER.fullmatch(field) for field in fields[:3]):
        raise ValueError("year, month and day must be integers (ASCII digits)")
    year, month, day = (int(field) for field in fields[:3])
    if not _DECIMAL_YEAR.fullmatch(fields[3]):
        raise ValueError(f"decimal date {fields[3]!r} is not a decimal year (like 1974.3795)")
    try:
        start = date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"not a date ({exc})") from None
    if start.weekday() != 6:
        raise ValueError(f"{start} is a {start:%A}; NOAA's weeks start on Sunday")
    if not _PPM.fullmatch(fields[4]):
        raise ValueError(
            f"ppm {fields[4]!r} is not a number in NOAA's format (digits, a dot, two decimals)"
        )
    value = float(fields[4])
    if value == MISSING:
        return Week(start + WEEK_END_OFFSET, None, number)
    low, high = series.minimum, series.maximum
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"ppm {value:g} is outside the physical bounds {low:g}-{high:g}")
    return Week(start + WEEK_END_OFFSET, round(value, DECIMALS), number)


def noaa_weekly_text(dates: np.ndarray, values: np.ndarray) -> str:
    """Weeks (dated by their Saturday, as in the dataset) written in NOAA's weekly format."""
    lines = [
        f"# Replay of the shipped series in the format of NOAA GML's {NOAA_SOURCE_NAME}",
        "#      Start of week      CO2 molfrac           (-999.99 = no data)  increase",
        "# (yr, mon, day, decimal)    (ppm)  #days       1 yr ago  10 yr ago  since 1800",
    ]
    for day, value in zip(dates.astype(object), values, strict=True):
        start: date = day - WEEK_END_OFFSET
        decimal = start.year + (start.timetuple().tm_yday - 1) / 365.0
        ppm, days = (MISSING, 0) if not np.isfinite(value) else (float(value), 7)
        lines.append(
            f"  {start.year:4d} {start.month:3d} {start.day:3d}  {decimal:9.4f}    "
            f"{ppm:7.2f}  {days:<10d} -999.99   -999.99   -999.99"
        )
    return "\n".join(lines) + "\n"


_CSV_VALUE = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?")
"""A plain decimal number: not everything `float()` accepts (`nan`, `inf`, `1_0`, full-width
digits)."""


def parse_csv_weekly(text: str, name: str, series: Series) -> list[Week]:
    """The weeks of a `date,<column>` CSV in the dataset's own format (`source_format` null or
    "csv"): ISO dates one week apart, an empty value for a missing week, values inside the
    series' physical bounds where it has them. IngestError lists every bad line."""
    lines = text.split("\n")
    header = [field.strip() for field in lines[0].split(",")] if lines else []
    if len(header) < 2 or header[0] != "date" or (series.described and header[1] != series.column):
        wanted = f"date,{series.column}" if series.described else "date,<column>"
        raise IngestError(
            [f"{name} line 1: header must start with {wanted!r}, got {lines[0][:80]!r}"]
        )
    weeks: list[Week] = []
    problems: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = [field.strip() for field in raw.split(",")]
        try:
            day = date.fromisoformat(fields[0]) if _ISO_DATE.fullmatch(fields[0]) else None
            if day is None:
                raise ValueError(f"{fields[0]!r} is not a YYYY-MM-DD date")
            text_value = fields[1] if len(fields) > 1 else ""
            if not text_value:
                weeks.append(Week(day, None, number, timedelta(0)))
                continue
            if not _CSV_VALUE.fullmatch(text_value):
                raise ValueError(f"{text_value!r} is not a plain number")
            value = float(text_value)
            low, high = series.minimum, series.maximum
            if not math.isfinite(value) or (
                low is not None and high is not None and not low <= value <= high
            ):
                bounds = f"{low:g}-{high:g}" if low is not None and high is not None else "finite"
                raise ValueError(f"{value:g} is outside the physical bounds {bounds}")
            weeks.append(Week(day, value, number, timedelta(0)))
        except ValueError as exc:
            problems.append(f"{name} line {number}: {exc}: {raw.strip()[:80]!r}")
    if problems:
        raise IngestError(_limit(problems))
    if not weeks:
        raise IngestError([f"{name}: no data lines after the header"])
    return _in_order(weeks, name)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _limit(problems: list[str], shown: int = 10) -> list[str]:
    if len(problems) <= shown:
        return problems
    return [*problems[:shown], f"... and {len(problems) - shown} more"]


# --- the dataset ---------------------------------------------------------------------------


def read_rows(path: Path) -> list[tuple[date, float | None]]:
    """The dataset's rows (date, value or None); ValueError names the first bad line."""
    from app.forecasting.model import read_series

    dates, values = read_series(path)
    return [
        (date.fromisoformat(str(day)), None if math.isnan(value) else float(value))
        for day, value in zip(dates, values, strict=True)
    ]


def render_rows(rows: list[tuple[date, float | None]], column: str = "co2") -> bytes:
    """The dataset CSV, in the shipped file's format (`date,<column>`, empty for a missing
    week)."""
    lines = [f"date,{column}"]
    lines += [f"{day.isoformat()},{'' if value is None else _number(value)}" for day, value in rows]
    return ("\n".join(lines) + "\n").encode()


def _number(value: float) -> str:
    """`value` as `g` writes it (the shipped file's style) when that loses nothing, else in
    full (`g` keeps 6 significant digits)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def dataset_lock(store: Store) -> Iterator[None]:
    """An exclusive POSIX lock (works on EFS) held while the dataset is read and replaced."""
    path = store.datasets_dir / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def state_path(store: Store) -> Path:
    return store.datasets_dir / STATE_NAME


def revisions_path(store: Store) -> Path:
    return store.datasets_dir / REVISIONS_NAME


def read_state(store: Store) -> dict[str, Any]:
    try:
        state = store.read_json(state_path(store))
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


# --- ingest --------------------------------------------------------------------------------


def ingest_weeks(
    store: Store,
    weeks: list[Week],
    source: str,
    source_date: datetime | None = None,
    spike: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """Merge `weeks` into the store's dataset; returns what happened (also in ingest.json).

    `source_date` is the source's own date (`read_dated_source`): a source older than the
    newest one ingested may append weeks but revises none (its revisions are listed as not
    applied), so an older file never overwrites a newer value.

    Raises IngestError, writing nothing to the dataset, when the merged dataset would not pass
    the training data's validation.
    """
    from app.pipeline.validate import check_dataset

    source_date = source_date or datetime.now(UTC)
    with dataset_lock(store):
        dataset = store.ensure_dataset()
        candidate = dataset.with_name(f".{dataset.name}.candidate")
        candidate.unlink(missing_ok=True)  # left by a killed ingest (we hold the lock)
        complete_pending(store)
        before_sha = sha256(dataset)
        rows = read_rows(dataset)
        state = read_state(store)
        newest = state.get("newest_source_date")
        try:
            older = newest is not None and source_date < datetime.fromisoformat(newest)
        except (TypeError, ValueError):
            older = False
        # Weeks up to base_last_date came with the image; later ones through ingest.
        base_last = date.fromisoformat(state.get("base_last_date") or rows[-1][0].isoformat())
        index = {day: position for position, (day, _) in enumerate(rows)}
        last = rows[-1][0]

        revisions: list[dict[str, Any]] = []
        not_applied: list[dict[str, Any]] = []
        appended: list[tuple[date, float | None]] = []
        pending_missing: list[Week] = []
        tail = last
        for week in weeks:
            if week.week_end <= last:
                position = index.get(week.week_end)
                if week.week_end <= base_last or position is None:
                    continue
                old = rows[position][1]
                if old != week.co2 and older:
                    not_applied.append(
                        {"date": week.week_end.isoformat(), "kept": old, "older": week.co2}
                    )
                elif old != week.co2:
                    rows[position] = (week.week_end, week.co2)
                    revisions.append(
                        {
                            "date": week.week_end.isoformat(),
                            "old": old,
                            "new": week.co2,
                            "line": week.line,
                        }
                    )
                continue
            expected = tail + timedelta(days=7)
            if week.week_end != expected:
                raise IngestError(
                    [
                        f"{source} line {week.line}: {week.describe()} does not follow the "
                        f"dataset's weeks (expected "
                        f"{Week(expected, None, 0, week.offset).describe()}): weeks are "
                        "missing from the source"
                    ]
                )
            tail = week.week_end
            if week.co2 is None:
                pending_missing.append(week)
                continue
            appended += [(missing.week_end, None) for missing in pending_missing]
            pending_missing = []
            appended.append((week.week_end, week.co2))

        # A revision to "no data" of the dataset's last weeks waits for a later observed week:
        # the series never ends on a gap (NOAA marks a week it has not yet finished as missing).
        if not appended:
            by_date = {revision["date"]: revision for revision in revisions}
            position = len(rows) - 1
            while position >= 0 and rows[position][1] is None:
                revision = by_date.get(rows[position][0].isoformat())
                if revision is None:
                    break
                rows[position] = (rows[position][0], revision["old"])
                revisions.remove(revision)
                pending_missing.append(Week(rows[position][0], None, revision["line"]))
                position -= 1

        now = datetime.now(UTC).isoformat(timespec="seconds")
        outcome: dict[str, Any] = {
            "ingested_at": now,
            "source": source,
            "source_weeks": len(weeks),
            "appended": len(appended),
            "appended_observed": sum(value is not None for _, value in appended),
            "revised": len(revisions),
            "held_missing": len(pending_missing),
            "base_last_date": base_last.isoformat(),
            "sha256_before": before_sha,
            "source_date": source_date.isoformat(),
            "newest_source_date": newest if older else source_date.isoformat(),
            "revisions_not_applied": not_applied,
        }
        if not_applied:
            log.warning(
                "%s is dated %s, older than the newest source ingested (%s): %d revision(s) "
                "not applied, the newer values kept",
                source,
                source_date.isoformat(),
                newest,
                len(not_applied),
            )
        if not appended and not revisions:
            # Unchanged bytes stay as validated as the previous ingest left them.
            validated = state.get("validated") is True and state.get("sha256") == before_sha
            outcome.update(
                changed=False, sha256=before_sha, last_date=last.isoformat(), validated=validated
            )
            store.write_json(state_path(store), outcome)
            return outcome

        merged = rows + appended
        series = store.series()
        data = render_rows(merged, series.column)
        try:
            candidate.write_bytes(data)
            _, problems = check_dataset(candidate, series, None, *(spike or ()))
        finally:
            candidate.unlink(missing_ok=True)
        if problems:
            raise IngestError(
                [f"the dataset after this ingest would fail validation: {p}" for p in problems]
            )
        outcome.update(
            changed=True,
            sha256=hashlib.sha256(data).hexdigest(),
            last_date=merged[-1][0].isoformat(),
            first_appended=appended[0][0].isoformat() if appended else None,
            # The merged dataset passed the training data's checks (schema, bounds, spikes)
            # as these exact bytes: the forecast ticker may forecast from it (`forecast`).
            validated=True,
            series=series.name,
        )
        # The audit before the data: the journal names the new dataset's sha256 and holds the
        # revision records and the outcome; a kill after the dataset's rename is completed by
        # the next ingest (complete_pending), so no value changes without its record.
        try:
            revisions_size = revisions_path(store).stat().st_size
        except FileNotFoundError:
            revisions_size = 0
        journal = {
            "sha256": outcome["sha256"],
            "revisions_size": revisions_size,
            "revisions": [{**r, "source": source, "ingested_at": now} for r in revisions],
            "outcome": outcome,
        }
        store.write_json(pending_path(store), journal)
        crash_point("ingest:journal")
        store.write_bytes(dataset, data)
        crash_point("ingest:dataset")
        _finish(store, journal)
        return outcome


def pending_path(store: Store) -> Path:
    return store.datasets_dir / PENDING_NAME


def _finish(store: Store, journal: dict[str, Any]) -> None:
    """Write the journal's revision records and outcome, then drop it. Idempotent: the
    records go after the first `revisions_size` bytes of revisions.jsonl, so a rerun after a
    kill between the writes never records a revision twice."""
    path = revisions_path(store)
    if journal["revisions"]:
        try:
            existing = read_limited(path, MAX_SOURCE_BYTES * 4)[: journal["revisions_size"]]
        except FileNotFoundError:
            existing = b""
        lines = b"".join(orjson.dumps(record) + b"\n" for record in journal["revisions"])
        store.write_bytes(path, existing + lines)
        crash_point("ingest:revisions")
    store.write_json(state_path(store), journal["outcome"])
    pending_path(store).unlink(missing_ok=True)


def complete_pending(store: Store) -> None:
    """Finish an ingest a kill interrupted (`datasets/ingest.pending.json`): when the dataset is
    the one the journal names, its records are written; when it is not, the kill came before
    the dataset's rename and the journal is dropped (this ingest starts over)."""
    try:
        journal = store.read_json(pending_path(store))
    except FileNotFoundError:
        return
    except ValueError as exc:
        log.warning("dropping a damaged ingest journal: %s", exc)
        pending_path(store).unlink(missing_ok=True)
        return
    if store.dataset_path.exists() and sha256(store.dataset_path) == journal.get("sha256"):
        log.warning("completing the records of an ingest that was killed after its data landed")
        _finish(store, journal)
    else:
        pending_path(store).unlink(missing_ok=True)


_FILE_CREATION = re.compile(r"^#\s*File Creation:\s*(.+?)\s*$", re.MULTILINE)


def noaa_creation_date(text: str) -> datetime | None:
    """The `# File Creation: Fri Nov 28 04:41:02 2025` line of NOAA's header, as UTC."""
    found = _FILE_CREATION.search(text[:8192])
    if not found:
        return None
    try:
        stamp = datetime.strptime(" ".join(found.group(1).split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC)


def _read_local(source: str) -> bytes:
    """A regular file's bytes, read through MAX_SOURCE_BYTES + 1 (a FIFO, a device or a huge
    sparse file is refused without reading it whole, or waiting on a writer)."""
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or (stat.S_ISBLK(mode))
                else "not a regular file"
            )
            raise IngestError([f"{source}: {kind}, not a file; ingest reads regular files"])
        return handle.read(MAX_SOURCE_BYTES + 1)


def read_source(source: str) -> str:
    """The text of a URL (http/https) or a local regular file, read through MAX_SOURCE_BYTES;
    IngestError for an oversized, non-UTF-8, BOM-prefixed or cut-off (no final newline)
    source."""
    return read_dated_source(source)[0]


def read_dated_source(source: str) -> tuple[str, datetime]:
    """`read_source`, and the source's own date: NOAA's `# File Creation:` header line, else
    the HTTP `Last-Modified` header, else the file's modification time (else now)."""
    stated: datetime | None = None
    if source.startswith(("https://", "http://")):
        request = urllib.request.Request(source, headers={"User-Agent": "mlops-ingest"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            data = response.read(MAX_SOURCE_BYTES + 1)
            with contextlib.suppress(TypeError, ValueError):
                stated = email.utils.parsedate_to_datetime(response.headers["Last-Modified"])
    else:
        data = _read_local(source)
        with contextlib.suppress(OSError):
            stated = datetime.fromtimestamp(os.stat(source).st_mtime, UTC)
    if len(data) > MAX_SOURCE_BYTES:
        raise IngestError([f"{source}: larger than {MAX_SOURCE_BYTES // 1024 // 1024} MiB"])
    if data.startswith(b"\xef\xbb\xbf"):
        raise IngestError(
            [f"{source}: starts with a UTF-8 byte order mark (BOM); NOAA's file has none"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError([f"{source}: not UTF-8 text ({exc})"]) from None
    if text and not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        raise IngestError(
            [
                f"{source}: the last line has no newline, so it may be cut off "
                f"({last.strip()[:60]!r}); the whole batch is refused"
            ]
        )
    dated = noaa_creation_date(text) or stated or datetime.now(UTC)
    return text, dated if dated.tzinfo else dated.replace(tzinfo=UTC)


def ingest(store: Store, source: str, spike: tuple[float, int] | None = None) -> dict[str, Any]:
    """Read, parse and merge `source` into the store's dataset; `spike` is (VALIDATE_SPIKE_Z,
    VALIDATE_SPIKE_WINDOW_WEEKS), their defaults when None."""
    series = store.series()
    if series.source_format not in SOURCE_FORMATS:
        raise IngestError(
            [
                f"series {series.name!r} has source_format {series.source_format!r}; ingest "
                f"reads {', '.join(repr(f) for f in SOURCE_FORMATS)}"
            ]
        )
    if series.source_format != NOAA_FORMAT and source == NOAA_WEEKLY_URL:
        raise IngestError(
            [
                f"series {series.name!r} is not NOAA's weekly CO2 file: give its new weeks as a "
                f"date,{series.column} CSV with --source or INGEST_SOURCE"
            ]
        )
    text, source_date = read_dated_source(source)
    if series.source_format == NOAA_FORMAT:
        weeks = parse_noaa_weekly(text, Path(source).name or source, series)
    else:
        weeks = parse_csv_weekly(text, Path(source).name or source, series)
    return ingest_weeks(store, weeks, source, source_date, spike)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app ingest",
        description="Append new weekly observations (NOAA's weekly Mauna Loa format) to the "
        "store's dataset.",
    )
    parser.add_argument(
        "--source",
        default=os.environ.get("INGEST_SOURCE", NOAA_WEEKLY_URL),
        help=f"URL or file in NOAA's weekly format (default INGEST_SOURCE or {NOAA_WEEKLY_URL})",
    )
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="then run `python -m app monitor` (what the scheduled task in AWS does)",
    )
    args = parser.parse_args(argv)
    settings = command_settings("ingest")
    store = open_store(settings)
    store.clean_stale()
    try:
        spike = (settings.validate_spike_z, settings.validate_spike_window_weeks)
        outcome = ingest(store, args.source, spike)
    except (IngestError, OSError, ValueError) as exc:
        if is_full(exc):
            raise  # `python -m app` names the path and the space it needed
        problems = getattr(exc, "problems", [str(exc)])
        print(
            f"error: ingest of {args.source} refused, the dataset is unchanged:\n"
            + "\n".join(f"  - {problem}" for problem in problems),
            file=sys.stderr,
        )
        return 1
    log.info(
        "ingest of %s: %d weeks appended (%d observed), %d revised, %d missing weeks held; "
        "dataset %s to %s, sha256 %s",
        args.source,
        outcome["appended"],
        outcome["appended_observed"],
        outcome["revised"],
        outcome["held_missing"],
        "changed" if outcome["changed"] else "unchanged",
        outcome["last_date"],
        outcome["sha256"][:12],
    )
    if args.monitor:
        from app.loop.monitor import main as monitor_main

        return monitor_main([])
    return 0
