"""Faults of ingest's input (issue 24, points 2 and 7): a download cut off mid-value, numbers
only Python's `float()` reads, a BOM, FIFOs, devices and huge files, a trailing gap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from app.loop.ingest import IngestError, ingest, read_rows, revisions_path
from app.store import Store
from tests.app.helpers import REPO_ROOT, app_env, run_app
from tests.app.loop.test_ingest import FIRST_SUNDAY, HEADER, noaa_file, noaa_line, sha


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.ensure_dataset()
    return store


def cut_source(tmp_path: Path, tail: str) -> Path:
    """Two full weeks, then the third week's line cut after `tail` characters of its value."""
    full = noaa_line(FIRST_SUNDAY + timedelta(weeks=2), 373.98)
    cut = full[: full.index("373.98") + len(tail)]
    path = tmp_path / "cut.txt"
    lines = [noaa_line(FIRST_SUNDAY + timedelta(weeks=i), 372.0 + i / 10) for i in range(2)]
    path.write_text(HEADER + "\n".join([*lines, cut]))
    return path


@pytest.mark.parametrize("tail", ["373", "373.", "373.9", "373.98"])
def test_a_download_cut_off_mid_value_is_refused(store, tmp_path, tail):
    """The defect: `... 2002.1301    373.` stored 373 (the truth is 373.98) and exited 0."""
    shipped = sha(store.dataset_path)
    with pytest.raises(IngestError, match="the last line has no newline, so it may be cut off"):
        ingest(store, str(cut_source(tmp_path, tail)))
    assert sha(store.dataset_path) == shipped


@pytest.mark.parametrize(
    "value",
    ["373", "373.", "373.9", "3_7_2.50", "\uff13\uff17\uff12.\uff15\uff10", "3.72e2", "nan"],
)
def test_a_value_not_in_noaa_format_is_refused_even_with_a_newline(store, tmp_path, value):
    source = noaa_file(tmp_path / "w.txt", [371.83])
    line = noaa_line(FIRST_SUNDAY + timedelta(weeks=1), 372.5).replace("372.50", value)
    source.write_text(source.read_text() + line + "\n")
    with pytest.raises(IngestError) as refused:
        ingest(store, str(source))
    (problem,) = refused.value.problems
    assert "line 7:" in problem and "not a number in NOAA's format" in problem
    assert read_rows(store.dataset_path)[-1][0] == date(2001, 12, 29)


def test_a_bom_is_named_as_a_bom(store, tmp_path):
    source = noaa_file(tmp_path / "w.txt", [371.83])
    source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    with pytest.raises(IngestError, match="byte order mark"):
        ingest(store, str(source))


def test_a_fifo_is_refused_without_waiting_for_a_writer(store, tmp_path):
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ingest(store, str(fifo))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "ingest hung on a FIFO"
    assert isinstance(outcome[0], IngestError) and "a FIFO" in str(outcome[0])


def test_a_device_is_refused(store):
    with pytest.raises(IngestError, match="a device"):
        ingest(store, "/dev/zero")


def test_a_huge_sparse_file_is_refused_without_reading_it_whole(store, tmp_path):
    """The defect: the whole file was read before the size check (1 GiB peaked at 1,060 MiB)."""
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as handle:
        handle.truncate(256 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(IngestError, match="larger than 16 MiB"):
            ingest(store, str(huge))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024 * 1024


def test_a_trailing_week_revised_to_no_data_waits_for_a_later_week(store, tmp_path):
    """The defect: the dataset ended on a gap, which the README says cannot happen."""
    ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, 372.01])))
    outcome = ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, None])))
    assert outcome["revised"] == 0 and outcome["held_missing"] == 1
    assert read_rows(store.dataset_path)[-1] == (date(2002, 1, 12), 372.01)
    outcome = ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, None, 372.4])))
    assert outcome["revised"] == 1
    assert read_rows(store.dataset_path)[-2:] == [(date(2002, 1, 12), None),
                                                  (date(2002, 1, 19), 372.4)]  # fmt: skip


def dated_file(path: Path, values: list[float | None], created: str) -> Path:
    """A NOAA weekly file whose header says when NOAA created it (as the real file's does)."""
    noaa_file(path, values)
    path.write_text(f"# File Creation: {created}\n" + path.read_text())
    return path


def test_an_older_file_ingested_after_a_newer_one_revises_nothing(store, tmp_path):
    """The defect: in 1 of 6 concurrent runs the older file ran last and put a week back."""
    ingest(store, str(dated_file(tmp_path / "a.txt", [371.83, 372.01], "Sat Jan  5 04:40:53 2002")))
    newer = dated_file(tmp_path / "new.txt", [371.83, 372.11, 372.4], "Sat Jan 19 04:41:02 2002")
    older = dated_file(tmp_path / "old.txt", [371.83, 372.01, 372.4], "Sat Jan 12 04:40:11 2002")
    older.touch()  # written to disk last: the header's date decides, not the mtime
    assert ingest(store, str(newer))["revised"] == 1
    outcome = ingest(store, str(older))
    assert outcome["revised"] == 0
    assert outcome["revisions_not_applied"] == [
        {"date": "2002-01-12", "kept": 372.11, "older": 372.01}
    ]
    assert outcome["newest_source_date"] == "2002-01-19T04:41:02+00:00"
    assert (date(2002, 1, 12), 372.11) in read_rows(store.dataset_path)


def test_concurrent_older_and_newer_ingests_keep_the_newer_value(tmp_path):
    store_root = tmp_path / "store"
    base = dated_file(tmp_path / "a.txt", [371.83, 372.01], "Sat Jan  5 04:40:53 2002")
    ingest(Store(store_root), str(base))
    newer = dated_file(tmp_path / "new.txt", [371.83, 372.11, 372.4], "Sat Jan 19 04:41:02 2002")
    older = dated_file(tmp_path / "old.txt", [371.83, 372.01, 372.4], "Sat Jan 12 04:40:11 2002")
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "ingest", "--source", str(source)],
            cwd=REPO_ROOT,
            env=app_env(store_root),
            stderr=subprocess.DEVNULL,
        )
        for source in (newer, older)
    ]
    assert [process.wait(120) for process in both] == [0, 0]
    assert (date(2002, 1, 12), 372.11) in read_rows(Store(store_root).dataset_path)


@pytest.mark.parametrize("point", ["ingest:journal", "ingest:dataset", "ingest:revisions"])
def test_a_kill_between_data_and_audit_never_loses_a_revision(tmp_path, point):
    """The defect: the dataset was replaced before revisions.jsonl; a kill in between left the
    new value with no record, and the rerun saw "no change"."""
    store_root = tmp_path / "store"
    store = Store(store_root)
    ingest(store, str(noaa_file(tmp_path / "a.txt", [371.83, 372.01])))
    revised = noaa_file(tmp_path / "b.txt", [371.83, 372.11, 372.4])
    killed = run_app(
        "ingest", "--source", str(revised), store_root=store_root, MLOPS_CRASH_AT=point
    )
    assert killed.returncode == -signal.SIGKILL
    ingest(store, str(revised))  # the rerun
    store = Store(store_root)
    records = [orjson.loads(line) for line in revisions_path(store).read_bytes().splitlines()]
    assert [(r["date"], r["old"], r["new"]) for r in records] == [("2002-01-12", 372.01, 372.11)]
    assert (date(2002, 1, 12), 372.11) in read_rows(store.dataset_path)
    assert not (store.datasets_dir / "ingest.pending.json").exists()
    state = orjson.loads((store.datasets_dir / "ingest.json").read_bytes())
    assert state["last_date"] == "2002-01-19"


def test_an_in_range_spike_is_refused_naming_the_week_and_figures(store, tmp_path):
    """The defect: one 499 ppm week among values around 372 passed ingest and validate."""
    shipped = sha(store.dataset_path)
    source = noaa_file(tmp_path / "w.txt", [371.83, 372.01, 499.0, 372.2, 372.3])
    with pytest.raises(IngestError) as refused:
        ingest(store, str(source))
    (problem,) = refused.value.problems
    assert "an isolated spike at line" in problem and "2002-01-19, 499 ppm" in problem
    assert "+126.99 ppm" in problem and "VALIDATE_SPIKE_Z is 15" in problem
    assert sha(store.dataset_path) == shipped


def test_a_spike_in_the_last_week_is_refused_too(store, tmp_path):
    with pytest.raises(IngestError, match=r"isolated spike .*2002-01-12, 499 ppm"):
        ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83, 499.0])))


def test_a_lasting_step_is_no_spike(store, tmp_path):
    """Replay's `--inject-shift 3` step must reach the drift checks, not be refused here."""
    values = [371.83, 372.01, 372.1, 375.2, 375.3, 375.25, 375.4]
    assert ingest(store, str(noaa_file(tmp_path / "w.txt", values)))["appended"] == 7


def test_validate_refuses_a_spike_and_the_threshold_is_a_setting(tmp_path):
    store_root = tmp_path / "store"
    store = Store(store_root)
    text = store.ensure_dataset().read_text().splitlines()
    position = len(text) - 10
    day, _ = text[position].split(",")
    text[position] = f"{day},499"
    store.dataset_path.write_text("\n".join(text) + "\n")
    refused = run_app("validate", store_root=store_root, RUN_ID="spiky")
    assert refused.returncode == 1
    assert f"an isolated spike at line {position + 1} ({day}, 499 ppm)" in refused.stderr
    passed = run_app("validate", store_root=store_root, RUN_ID="lax", VALIDATE_SPIKE_Z="1000")
    assert passed.returncode == 0, passed.stderr


def test_a_candidate_left_by_a_killed_ingest_is_removed_by_the_next(store, tmp_path):
    """The defect: a killed ingest could leave `.co2_weekly.csv.candidate` for good."""
    stale = store.datasets_dir / ".co2_weekly.csv.candidate"
    stale.write_bytes(b"date,co2\n")
    ingest(store, str(noaa_file(tmp_path / "w.txt", [371.83])))
    assert not stale.exists()


def test_the_week_after_a_spike_is_not_reported_as_a_second_one(store, tmp_path):
    source = noaa_file(tmp_path / "w.txt", [371.83, 372.01, 499.0, 372.2])
    with pytest.raises(IngestError) as refused:
        ingest(store, str(source))
    (problem,) = refused.value.problems
    assert "2002-01-19, 499 ppm" in problem
