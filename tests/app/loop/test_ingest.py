"""`python -m app ingest`: NOAA's weekly file in, validated, atomic and idempotent appends.

The files here are written in the format of NOAA GML's `co2_weekly_mlo.txt`: `#` header lines,
then `yr mon day decimal ppm #days 1-yr-ago 10-yr-ago since-1800`, dated by the Sunday that
starts the week, -999.99 for no data.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.loop.ingest import IngestError, ingest, parse_noaa_weekly, read_rows, revisions_path
from app.store import Store
from tests.app.helpers import run_app

HEADER = """\
# --------------------------------------------------------------------
# USE OF NOAA GML DATA
# --------------------------------------------------------------------
#      Start of week      CO2 molfrac           (-999.99 = no data)  increase
# (yr, mon, day, decimal)    (ppm)  #days       1 yr ago  10 yr ago  since 1800
"""
FIRST_SUNDAY = date(2001, 12, 30)
"""The Sunday after the shipped series' last week (Saturday 2001-12-29)."""


def noaa_line(start: date, ppm: float, days: int = 7) -> str:
    decimal = start.year + (start.timetuple().tm_yday - 1) / 365
    when = f"  {start.year}  {start.month:2d}  {start.day:2d}  {decimal:9.4f}"
    return f"{when}    {ppm:7.2f}  {days}          -999.99   -999.99    -999.99"


def noaa_file(path: Path, values: list[float | None], first: date = FIRST_SUNDAY) -> Path:
    lines = [
        noaa_line(first + timedelta(weeks=i), -999.99 if v is None else v, 0 if v is None else 7)
        for i, v in enumerate(values)
    ]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.ensure_dataset()
    return store


def test_new_weeks_are_appended_on_the_shipped_series_week_ending_dates(store, tmp_path):
    before = read_rows(store.dataset_path)
    source = noaa_file(tmp_path / "co2_weekly_mlo.txt", [371.83, 372.01, 372.4])

    outcome = ingest(store, str(source))

    rows = read_rows(store.dataset_path)
    assert rows[: len(before)] == before
    # NOAA's week starting Sunday 2001-12-30 is the shipped series' week ending 2002-01-05.
    assert rows[len(before) :] == [
        (date(2002, 1, 5), 371.83),
        (date(2002, 1, 12), 372.01),
        (date(2002, 1, 19), 372.4),
    ]
    assert outcome["appended"] == 3 and outcome["changed"]
    assert outcome["sha256"] == sha(store.dataset_path) != outcome["sha256_before"]
    assert store.dataset_path.read_text().endswith("2002-01-19,372.4\n")


def test_reingesting_the_same_file_changes_nothing(store, tmp_path):
    source = noaa_file(tmp_path / "w.txt", [371.83, 372.01])
    ingest(store, str(source))
    digest, mtime = sha(store.dataset_path), store.dataset_path.stat().st_mtime_ns

    outcome = ingest(store, str(source))

    assert not outcome["changed"] and outcome["appended"] == 0 and outcome["revised"] == 0
    assert sha(store.dataset_path) == digest == outcome["sha256"]
    assert store.dataset_path.stat().st_mtime_ns == mtime
    assert not revisions_path(store).exists()


def test_missing_weeks_become_empty_values_and_trailing_ones_wait(store, tmp_path):
    source = noaa_file(tmp_path / "w.txt", [371.8, None, 372.2, None])

    outcome = ingest(store, str(source))

    rows = read_rows(store.dataset_path)
    assert rows[-3:] == [(date(2002, 1, 5), 371.8), (date(2002, 1, 12), None),
                         (date(2002, 1, 19), 372.2)]  # fmt: skip
    assert outcome["held_missing"] == 1
    # The held week arrives with the next observed one.
    noaa_file(tmp_path / "w.txt", [371.8, None, 372.2, None, 372.9])
    ingest(store, str(tmp_path / "w.txt"))
    assert read_rows(store.dataset_path)[-2:] == [(date(2002, 1, 26), None),
                                                  (date(2002, 2, 2), 372.9)]  # fmt: skip


def test_a_revised_week_is_applied_and_recorded(store, tmp_path):
    ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, 372.01, 372.4])))
    before = sha(store.dataset_path)

    outcome = ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, 372.11, 372.4, 372.6])))

    assert outcome["revised"] == 1 and outcome["appended"] == 1
    assert (date(2002, 1, 12), 372.11) in read_rows(store.dataset_path)
    assert sha(store.dataset_path) != before
    (revision,) = [line for line in revisions_path(store).read_text().splitlines() if line.strip()]
    assert '"date":"2002-01-12"' in revision
    assert '"old":372.01' in revision and '"new":372.11' in revision
    assert '"line":7' in revision  # the source line of the revised week


def test_weeks_of_the_shipped_series_are_not_compared(store, tmp_path):
    """NOAA's own record of 2001 differs from Scripps' by a few tenths: that is no revision."""
    shipped = sha(store.dataset_path)
    source = noaa_file(tmp_path / "w.txt", [370.9, 371.0], first=date(2001, 12, 16))

    outcome = ingest(store, str(source))

    assert not outcome["changed"] and outcome["revised"] == 0
    assert sha(store.dataset_path) == shipped


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "  2002   1  6  2002.0137    abc  7  -999.99 -999.99 -999.99",
            "ppm 'abc' is not a number",
        ),
        ("  2002   1  6", "expected at least 5 columns"),
        ("  2002   1  9  2002.0219    372.10  7  -999.99 -999.99 -999.99", "is a Wednesday"),
        ("  2002  13  6  2002.0137    372.10  7  -999.99 -999.99 -999.99", "not a date"),
        ("  2002   1  6  2002.0137    672.10  7  -999.99 -999.99 -999.99", "physical bounds"),
    ],
)
def test_a_bad_line_refuses_the_batch_naming_line_and_reason(store, tmp_path, line, reason):
    source = noaa_file(tmp_path / "w.txt", [371.83])
    source.write_text(source.read_text() + line + "\n")
    shipped = sha(store.dataset_path)

    with pytest.raises(IngestError) as refused:
        ingest(store, str(source))

    (problem,) = refused.value.problems
    assert problem.startswith("w.txt line 7: ") and reason in problem
    assert sha(store.dataset_path) == shipped
    left = [p.name for p in store.datasets_dir.iterdir() if p.name != ".ingest.lock"]
    assert sorted(left) == ["co2_weekly.csv", "co2_weekly.series.json"]  # no temp file left


def test_skipped_weeks_are_refused(store, tmp_path):
    source = noaa_file(tmp_path / "w.txt", [371.83])
    source.write_text(
        source.read_text() + noaa_line(FIRST_SUNDAY + timedelta(weeks=3), 372.5) + "\n"
    )

    with pytest.raises(IngestError, match=r"line 7: the week starting 2002-01-20 does not follow"):
        ingest(store, str(source))


def test_a_batch_the_training_validation_refuses_does_not_land(store, tmp_path):
    shipped = sha(store.dataset_path)
    source = noaa_file(tmp_path / "w.txt", [371.8, *[None] * 21, 373.0])

    with pytest.raises(IngestError, match="would fail validation: co2: gap without a value"):
        ingest(store, str(source))
    assert sha(store.dataset_path) == shipped


def test_parse_rejects_duplicate_and_unordered_weeks():
    lines = [noaa_line(FIRST_SUNDAY, 371.8), noaa_line(FIRST_SUNDAY, 371.9)]
    with pytest.raises(IngestError, match="line 2: the week starting 2001-12-30 appears again"):
        parse_noaa_weekly("\n".join(lines), "w.txt")
    with pytest.raises(IngestError, match="no data lines"):
        parse_noaa_weekly(HEADER, "w.txt")


def test_cli_ingest_reports_the_refused_line_and_exits_1(tmp_path):
    store_root = tmp_path / "store"
    store_root.mkdir()
    source = noaa_file(tmp_path / "w.txt", [371.83])
    source.write_text(source.read_text() + "  2002 1 6 2002.01 x 7 -999.99 -999.99 -999.99\n")

    result = run_app("ingest", "--source", str(source), store_root=store_root)

    assert result.returncode == 1
    assert "refused, the dataset is unchanged" in result.stderr
    assert "w.txt line 7: ppm 'x' is not a number" in result.stderr

    noaa_file(source, [371.83, 372.01])
    result = run_app("ingest", "--source", str(source), store_root=store_root)
    assert result.returncode == 0, result.stderr
    assert "2 weeks appended (2 observed), 0 revised" in result.stderr
