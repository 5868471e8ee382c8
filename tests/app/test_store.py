"""The shared store: layout, atomic writes, waiting for the mount."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from app.store import SHIPPED_DATASET, Store, StoreUnavailableError


def test_reader_never_sees_a_partial_file_during_500_rewrites(tmp_path: Path) -> None:
    store = Store(tmp_path)
    target = tmp_path / "models" / "metrics.json"
    store.write_json(target, {"version": 0, "padding": "x" * 20_000})
    done = threading.Event()
    seen: list[int] = []
    torn: list[str] = []

    def read_until_done() -> None:
        while not done.is_set():
            try:
                seen.append(store.read_json(target)["version"])
            except Exception as exc:  # a torn or missing file would land here
                torn.append(repr(exc))

    reader = threading.Thread(target=read_until_done)
    reader.start()
    for version in range(1, 501):
        store.write_json(target, {"version": version, "padding": "x" * (20_000 + version)})
    done.set()
    reader.join()
    assert torn == []
    assert len(seen) > 0
    assert seen == sorted(seen)  # versions only move forward
    assert store.read_json(target)["version"] == 500
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temp files left


def test_wait_fails_clearly_when_the_store_never_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "efs"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError) as raised:
        Store.wait(missing, timeout_s=0.6, poll_s=0.2)
    assert 0.5 < time.monotonic() - started < 3
    assert f"store directory {missing} does not exist after waiting 0.6s" in str(raised.value)
    assert "STORE_WAIT_SECONDS" in str(raised.value)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) >= 2


def test_wait_returns_once_the_mount_appears(tmp_path: Path) -> None:
    late = tmp_path / "late-mount"
    threading.Timer(0.3, late.mkdir).start()
    store = Store.wait(late, timeout_s=5, poll_s=0.1)
    assert store.root == late


def test_wait_rejects_a_file_in_place_of_the_directory(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "store"
    not_a_dir.write_text("oops")
    with pytest.raises(StoreUnavailableError, match="is not a directory"):
        Store.wait(not_a_dir, timeout_s=0)


def test_ensure_dataset_copies_the_shipped_series_only_when_missing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.ensure_dataset()
    assert path == tmp_path / "datasets" / "co2_weekly.csv"
    assert path.read_bytes() == SHIPPED_DATASET.read_bytes()
    path.write_text("date,co2\n")
    store.ensure_dataset()
    assert path.read_text() == "date,co2\n"


def test_layout_and_current_pointer(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.current_run_id() is None
    assert store.list_runs() == []
    store.run_dir("20261122T010203Z").mkdir(parents=True)
    store.run_dir("20261121T000000Z").mkdir(parents=True)
    store.set_current("20261122T010203Z")
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "20261122T010203Z"
    assert store.current_run_id() == "20261122T010203Z"
    assert store.list_runs() == ["20261121T000000Z", "20261122T010203Z"]
    assert store.report_path("r1") == tmp_path / "reports" / "r1" / "validation.json"
    assert store.forecasts_dir == tmp_path / "forecasts"


@pytest.mark.parametrize("bad", ["../etc", ".hidden", "a/b", ""])
def test_run_ids_cannot_escape_the_store(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        Store(tmp_path).run_dir(bad)
