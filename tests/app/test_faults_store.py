"""Faults of the store itself: damaged files written from outside, a full disk, stale temp files.

The damage is the operator's reproduction from issue 24: `printf '\\xff\\xfe garbage\\n' >
models/CURRENT`, and its empty and oversized variants.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app.gate import GateError, decide, promote
from app.store import DamagedFileError, Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import ServerProcess, run_app

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
        server.wait_ready(timeout=30)
        assert httpx.get(server.url + "/ready").json() == {"status": "ready", "model": FIRST_RUN}
        time.sleep(1.0)  # five polls of a still damaged CURRENT
        log = server.log()
    assert "Traceback" not in log
    assert log.count("models/CURRENT is damaged") == 1, log
    assert f"serving the last good promoted run {FIRST_RUN}" in log


def test_a_running_server_logs_damage_once_and_its_repair_once(store_copy: Store) -> None:
    with ServerProcess(store_copy.root) as server:
        server.wait_ready(timeout=30)
        store_copy.current_path.write_bytes(DAMAGE["undecodable"])
        time.sleep(1.0)
        assert httpx.get(server.url + "/ready").json()["model"] == FIRST_RUN
        store_copy.set_current(FIRST_RUN)
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
