"""`validate`: the shipped data passes; each kind of bad data fails with a message naming it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.pipeline.validate import validate
from app.store import SHIPPED_DATASET, Store
from tests.app.helpers import run_app

Rows = list[list[str]]


def shipped_rows() -> Rows:
    lines = SHIPPED_DATASET.read_text().splitlines()[1:]
    return [line.split(",") for line in lines]


def write_rows(store: Store, rows: Rows, header: str = "date,co2") -> None:
    text = "\n".join([header, *(",".join(row) for row in rows)]) + "\n"
    store.write_text(store.dataset_path, text)


def set_value(rows: Rows, index: int, value: str) -> Rows:
    rows[index][1] = value
    return rows


def blank_weeks(rows: Rows, start: int, count: int) -> Rows:
    for row in rows[start : start + count]:
        row[1] = ""
    return rows


def swap_rows(rows: Rows, index: int) -> Rows:
    rows[index], rows[index + 1] = rows[index + 1], rows[index]
    return rows


def shift_date(rows: Rows, index: int, days: int) -> Rows:
    rows[index][0] = (date.fromisoformat(rows[index][0]) + timedelta(days=days)).isoformat()
    return rows


BAD_DATA: dict[str, tuple[Callable[[Rows], Rows], str]] = {
    "non-numeric value": (
        lambda r: set_value(r, 100, "n/a"),
        "co2: not a number at line 102 ('n/a')",
    ),
    "value above physical bounds": (
        lambda r: set_value(r, 200, "9999"),
        "co2: values outside the physical bounds 250-500 ppm at line 202 (9999)",
    ),
    "negative value": (
        lambda r: set_value(r, 300, "-1.5"),
        "values outside the physical bounds 250-500 ppm at line 302 (-1.5)",
    ),
    "unparsable date": (
        lambda r: [*r[:50], ["31/12/1960", "317.0"], *r[51:]],
        "date: not a YYYY-MM-DD date at line 52 ('31/12/1960')",
    ),
    "duplicate timestamp": (
        lambda r: [*r[:400], r[400], *r[400:]],
        "date: duplicate timestamps at line 402",
    ),
    "timestamps out of order": (
        lambda r: swap_rows(r, 500),
        "date: timestamps out of order at line 503",
    ),
    "not weekly": (
        lambda r: shift_date(r, 600, 3),
        "date: not on a weekly cadence (steps of 7 days) at line 602",
    ),
    "gap longer than allowed": (
        lambda r: blank_weeks(r, 1000, 25),
        "co2: gap without a value longer than 20 weeks: line 1027 (26 weeks before",
    ),
    "too few rows": (lambda r: r[:300], "too few rows: 300, at least 520 needed"),
    "too many missing values": (
        lambda r: [row if i % 5 else [row[0], ""] for i, row in enumerate(r)],
        "co2: 22% of the weeks have no value, at most 10% allowed",
    ),
}


def test_shipped_data_passes_and_becomes_the_accepted_baseline(tmp_path: Path) -> None:
    store = Store(tmp_path)
    report = validate(store, "good")
    assert report["ok"], report["problems"]
    assert report["rows"] == 2284
    assert report["problems"] == []
    assert report["stats"]["max_gap_weeks"] == 19  # the real 1964 outage is allowed
    assert store.read_json(store.report_path("good")) == report
    assert store.read_json(store.accepted_stats_path)["rows"] == 2284
    # Lineage: the report vouches for exactly these bytes and rows.
    assert report["dataset_sha256"] == hashlib.sha256(store.dataset_path.read_bytes()).hexdigest()
    assert (report["first_date"], report["last_date"]) == ("1958-03-29", "2001-12-29")
    assert report["run_date"] is None


@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_data_fails_with_a_message_naming_the_problem(tmp_path: Path, kind: str) -> None:
    store = Store(tmp_path)
    corrupt, expected = BAD_DATA[kind]
    write_rows(store, corrupt(shipped_rows()))
    report = validate(store, "bad")
    assert not report["ok"]
    assert any(expected in problem for problem in report["problems"]), report["problems"]
    assert not store.accepted_stats_path.exists()


def test_run_date_validates_only_the_data_known_on_that_date(tmp_path: Path) -> None:
    report = validate(Store(tmp_path), "as-of-1990", run_date=date(1990, 12, 31))
    assert report["ok"], report["problems"]
    assert report["stats"]["last_date"] == "1990-12-29"
    assert report["rows"] < 2284
    assert (report["last_date"], report["run_date"]) == ("1990-12-29", "1990-12-31")


def test_wrong_header_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path)
    write_rows(store, shipped_rows(), header="week,ppm")
    report = validate(store, "bad")
    assert report["problems"] == ["header must start with 'date,co2', got 'week,ppm'"]


def test_rewritten_history_is_flagged_as_drift(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert validate(store, "baseline")["ok"]
    rows = shipped_rows()
    for row in rows:  # every week of 1968 shifted up by 2 ppm, still in bounds
        if row[0].startswith("1968") and row[1]:
            row[1] = f"{float(row[1]) + 2:.1f}"
    write_rows(store, rows)
    report = validate(store, "rewritten")
    assert report["drift_checked"]
    assert any("history was rewritten" in p and "1968 by +2" in p for p in report["problems"])


def test_a_jump_in_level_is_flagged_as_drift(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert validate(store, "baseline")["ok"]
    rows = shipped_rows()
    for row in rows[-52:]:
        if row[1]:
            row[1] = f"{float(row[1]) + 12:.1f}"
    write_rows(store, rows)
    problems = validate(store, "jump")["problems"]
    assert any("latest year's mean moved +12" in p for p in problems), problems


def test_noisier_data_is_flagged_as_drift(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert validate(store, "baseline")["ok"]
    rows = shipped_rows()
    for i, row in enumerate(rows):
        if row[1]:
            row[1] = f"{float(row[1]) + (1.5 if i % 2 else -1.5):.1f}"
    write_rows(store, rows)
    problems = validate(store, "noisy")["problems"]
    assert any("week-to-week noise is" in p for p in problems), problems


def test_cli_exits_1_with_a_human_summary_on_stderr(tmp_path: Path) -> None:
    store = Store(tmp_path)
    write_rows(store, set_value(shipped_rows(), 10, "abc"))
    result = run_app("validate", store_root=tmp_path, RUN_ID="cli-bad")
    assert result.returncode == 1
    assert "validation failed for run cli-bad: 1 problem(s)" in result.stderr
    assert "co2: not a number at line 12 ('abc')" in result.stderr
    assert "Traceback" not in result.stderr
    assert store.read_json(store.report_path("cli-bad"))["ok"] is False


def test_cli_copies_the_shipped_data_into_an_empty_store_and_passes(tmp_path: Path) -> None:
    result = run_app("validate", store_root=tmp_path, RUN_ID="cli-good")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "datasets" / "co2_weekly.csv").exists()
    assert Store(tmp_path).read_json(Store(tmp_path).report_path("cli-good"))["ok"]
