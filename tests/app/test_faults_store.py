"""Faults of the store itself: damaged files written from outside, a full disk, stale temp files.

The damage is the operator's reproduction from issue 24: `printf '\\xff\\xfe garbage\\n' >
models/CURRENT`, and its empty and oversized variants.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.loop.ticker import Ticker
from app.pipeline.gate import GateError, decide, promote
from app.settings import AppSettings
from app.store import DamagedFileError, Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import (
    PATIENCE,
    REPO_ROOT,
    ServerProcess,
    app_env,
    free_port,
    run_app,
    wait_for,
)

DAMAGE = {
    "undecodable": b"\xff\xfe garbage\n",
    "empty": b"",
    "oversized": b"run-a" + b" " * 100_000 + b"\n",
    "not a run id": b"../etc/passwd\n",
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_current_reads_as_damaged_not_as_a_crash(tmp_path: Path, kind: str) -> None:
    store = Store(tmp_path)
    store.current_path.parent.mkdir(parents=True)
    store.current_path.write_bytes(DAMAGE[kind])
    with pytest.raises(DamagedFileError) as raised:
        store.current_run_id()
    assert str(store.current_path) in str(raised.value)


def test_a_missing_current_means_nothing_promoted(tmp_path: Path) -> None:
    assert Store(tmp_path).current_run_id() is None


@pytest.mark.parametrize("content", [b"", b"\xff\xfe{", b'{"a": ', b"x" * 64])
def test_damaged_json_is_a_damaged_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(DamagedFileError, match=r"metrics\.json is damaged"):
        Store(tmp_path).read_json(path, limit=32)


def test_a_server_starting_on_undecodable_current_serves_the_last_good_run(
    store_copy: Store,
) -> None:
    store_copy.current_path.write_bytes(DAMAGE["undecodable"])
    with ServerProcess(store_copy.root) as server:
        server.wait_ready()
        assert httpx.get(server.url + "/ready").json() == {"status": "ready", "model": FIRST_RUN}
        time.sleep(1.0)  # five polls of a still damaged CURRENT: none logs it again
        log = server.log()
    assert "Traceback" not in log
    assert log.count("models/CURRENT is damaged") == 1, log
    assert f"serving the last good promoted run {FIRST_RUN}" in log


@pytest.mark.slow
def test_a_running_server_logs_damage_once_and_its_repair_once(store_copy: Store) -> None:
    with ServerProcess(store_copy.root) as server:
        server.wait_ready()
        store_copy.current_path.write_bytes(DAMAGE["undecodable"])
        wait_for(lambda: "models/CURRENT is damaged" in server.log())
        time.sleep(1.0)  # five more polls of the still damaged CURRENT: none logs it again
        assert httpx.get(server.url + "/ready").json()["model"] == FIRST_RUN
        store_copy.set_current(FIRST_RUN)
        wait_for(lambda: "models/CURRENT is readable again" in server.log())
        time.sleep(0.6)
        log = server.log()
    assert "Traceback" not in log
    assert log.count("models/CURRENT is damaged") == 1, log
    assert log.count("models/CURRENT is readable again") == 1, log


def test_gate_refuses_a_damaged_current_and_promote_repairs_it(store_copy: Store) -> None:
    store_copy.current_path.write_bytes(DAMAGE["undecodable"])
    with pytest.raises(GateError, match=r"CURRENT is damaged.*python -m app promote"):
        decide(store_copy, FIRST_RUN, margin=0.0)
    assert store_copy.current_path.read_bytes() == DAMAGE["undecodable"]  # not guessed over
    result = run_app("gate", store_root=store_copy.root, RUN_ID=FIRST_RUN)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "models/CURRENT is damaged" in result.stderr
    assert promote(store_copy, FIRST_RUN)["previous"] is None
    assert store_copy.current_run_id() == FIRST_RUN


def test_the_ticker_keeps_forecasting_through_a_damaged_current(
    store_copy: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ticker = Ticker(store_copy, AppSettings(store_dir=store_copy.root), identity="test:1")
    try:
        assert ticker.tick()["run_id"] == FIRST_RUN
        store_copy.current_path.write_bytes(DAMAGE["empty"])
        with caplog.at_level(logging.INFO, logger="app.loop.ticker"):
            for _ in range(3):
                assert ticker.tick()["run_id"] == FIRST_RUN  # the model it had, no traceback
            store_copy.set_current(FIRST_RUN)
            ticker.tick()
    finally:
        ticker.lock.release()
    text = caplog.text
    assert text.count("models/CURRENT is damaged") == 1, text
    assert "python -m app promote RUN_ID" in text
    assert text.count("models/CURRENT is readable again") == 1, text


def test_app_local_on_a_damaged_current_names_the_repair_and_starts_nothing(
    store_copy: Store,
) -> None:
    store_copy.current_path.write_bytes(DAMAGE["undecodable"])
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "-m", "app", "local", "--store", str(store_copy.root), *ports],
        cwd=REPO_ROOT,
        env=app_env(store_copy.root),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "models/CURRENT is damaged" in result.stdout
    assert f"python -m app promote RUN_ID` (the last promoted run is {FIRST_RUN})" in result.stdout
    assert "step 1/3" not in result.stdout
    assert store_copy.current_path.read_bytes() == DAMAGE["undecodable"]


def run_with_file_limit(
    limit: int, *args: str, store_root: Path, run_id: str = "run-full"
) -> subprocess.CompletedProcess:
    """`python -m app <args>` that may write no file larger than `limit` bytes (RLIMIT_FSIZE:
    the writes past it fail with EFBIG, as on a full disk; no privileges needed)."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env=app_env(store_root, RUN_ID=run_id),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_files,
    )


def assert_one_line_naming(result: subprocess.CompletedProcess, path: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert path in errors[0] and "needs" in errors[0] and "free" in errors[0], errors[0]


@pytest.mark.slow
def test_train_on_a_full_disk_fails_in_one_line_and_leaves_no_run_directory(
    store_copy: Store,
) -> None:
    """The defect: a traceback, and models/<run>/ with model.json and card.md but no
    metrics.json. The harmonic run's model.json (130 bytes) and card.md (2 KB) fit in 8 KB, its
    metrics.json (14 KB) does not."""
    assert run_app("validate", store_root=store_copy.root, RUN_ID="run-full").returncode == 0
    result = run_with_file_limit(8192, "train", store_root=store_copy.root)
    assert_one_line_naming(result, "metrics.json")
    assert sorted(p.name for p in store_copy.models_dir.iterdir()) == [
        ".gate.lock",
        "CURRENT",
        FIRST_RUN,
    ]


def test_gate_on_a_full_disk_fails_in_one_line_and_keeps_current(store_copy: Store) -> None:
    result = run_with_file_limit(100, "gate", store_root=store_copy.root, run_id=FIRST_RUN)
    assert_one_line_naming(result, "decision.json")
    assert store_copy.current_run_id() == FIRST_RUN


def test_validate_on_a_full_disk_fails_in_one_line(store_copy: Store) -> None:
    result = run_with_file_limit(100, "validate", store_root=store_copy.root)
    assert_one_line_naming(result, "validation.json")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a 2 MiB tmpfs needs root")
def test_train_on_a_small_file_system_fails_in_one_line(store_copy: Store, tmp_path: Path) -> None:
    """A real full file system (ENOSPC), not a file size limit: a 1 MiB tmpfs that the
    store's dataset and one run fill."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        root = mount / "store"
        shutil.copytree(store_copy.root, root, ignore=shutil.ignore_patterns("*.ubj"))
        assert run_app("validate", store_root=root, RUN_ID="run-full").returncode == 0
        ballast = mount / "ballast"
        free = shutil.disk_usage(mount).free
        ballast.write_bytes(b"\0" * (free - 8192))
        result = run_app("train", store_root=root, RUN_ID="run-full")
        assert_one_line_naming(result, str(root / "models"))
        assert not (root / "models" / "run-full").exists()
        assert not [p for p in (root / "models").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_clean_stale_removes_what_a_killed_writer_left_and_nothing_live(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_json(store.run_dir("run-a") / "metrics.json", {"run_id": "run-a"})
    old = time.time() - 3600
    stale_file = store.run_dir("run-a") / ".metrics.json.x1y2.tmp"
    stale_file.write_bytes(b"{")
    os.utime(stale_file, (old, old))
    fresh_file = store.datasets_dir / ".co2_weekly.csv.abc.tmp"
    fresh_file.parent.mkdir(parents=True)
    fresh_file.write_bytes(b"date")  # a write in progress elsewhere: young, kept
    dead = store.models_dir / ".run-b.k1ll3d.tmp"  # a staging directory with no live holder
    dead.mkdir()
    (dead / "model.json").write_bytes(b"{}")
    (dead / ".lock").touch()
    ready = store.models_dir / ".run-c.n3arly.tmp"  # complete, killed between the renames
    ready.mkdir()
    (ready / "metrics.json").write_bytes(b"{}")
    removed = store.clean_stale()
    assert sorted(removed) == sorted([stale_file, dead])
    assert fresh_file.exists()
    assert (store.run_dir("run-c") / "metrics.json").exists()
    assert [p.name for p in store.models_dir.iterdir() if p.name.startswith(".")] == []
