"""`python -m app local`: the pipeline, the three services, prefixed output and a clean stop."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.local.children import LinePrinter
from app.local.replay import LocalReplay
from app.local.supervisor import Local, parse_args
from app.store import Store
from tests.app.helpers import PATIENCE, REPO_ROOT, app_env, free_port

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """Fields after `comm` in /proc/<pid>/stat (state, ppid, pgrp, ...), or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _descendants(root: int) -> dict[int, int]:
    """{pid: pgid} of every live process below `root`."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] != "Z":
            parents[int(entry.name)] = (int(fields[1]), int(fields[2]))
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, pgid) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = pgid
                frontier.append(pid)
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _live_members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in any of the process groups `pgids`."""
    pids = [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if (f := _stat(pid)) and f[0] != "Z" and int(f[2]) in pgids]


class _Output:
    """Collects a child's stdout lines in a thread so the pipe never fills up."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} in the output of local:\n{self.text()}")


@pytest.mark.slow  # the whole pipeline (validate, train, gate, three services): ~20 s alone
def test_local_runs_the_pipeline_serves_and_stops_everything_on_sigint(store_copy: Store) -> None:
    api_port, dashboard_port = free_port(), free_port()
    env = app_env(store_copy.root, TRAIN_ROUNDS="3", FORECAST_INTERVAL_SECONDS="0.5")
    argv = [
        *("--store", str(store_copy.root)),
        *("--api-port", str(api_port), "--dashboard-port", str(dashboard_port)),
        "--retrain",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "local", *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _Output(process.stdout)
    try:
        output.wait_for("press Ctrl-C to stop", process, timeout=PATIENCE)

        ready = httpx.get(f"http://127.0.0.1:{api_port}/ready", timeout=5)
        assert ready.status_code == 200
        current = store_copy.current_run_id()
        assert ready.json()["model"] == current
        dashboard = f"http://127.0.0.1:{dashboard_port}/dashboard/"
        assert httpx.get(dashboard, timeout=5).status_code == 200
        assert current in httpx.get(dashboard + "_dash-layout", timeout=5).text

        latest = store_copy.forecasts_dir / "latest.json"
        deadline = time.monotonic() + PATIENCE
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert latest.exists(), output.text()

        text = output.text()
        for step in ("validate", "train", "gate"):
            assert f"[{step}] " in text
        assert "[local] step 2/3 train" in text
        for service in ("api", "forecast", "dashboard"):
            assert f"[{service}] " in text
        assert f"http://localhost:{dashboard_port}/dashboard/" in text

        children = _descendants(process.pid)
        # serve, the ticker, the gunicorn master and its two workers
        assert len(children) >= 5, children
        pgids = set(children.values())

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=PATIENCE) == 0, output.text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert [pid for pid in children if _alive(pid)] == []
    assert _live_members(pgids) == []
    assert "[local] SIGINT: stopping" in output.text()
    assert output.lines[-1] == "[local] stopped"


def test_local_skips_training_when_a_model_is_promoted(store_copy: Store) -> None:
    out = io.StringIO()
    local = Local(parse_args(["--store", str(store_copy.root)]), LinePrinter(out))

    assert local.prepare_model() == 0

    assert local.children == []
    assert f"model {store_copy.current_run_id()} is already promoted" in out.getvalue()


def test_local_stops_before_training_when_validation_fails(
    store_copy: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_copy.dataset_path.write_text("date,co2\n2001-01-06,371.2\n2001-01-13,9999\n")
    monkeypatch.setenv("RUN_ID", "bad-data-run")
    out = io.StringIO()
    local = Local(parse_args(["--store", str(store_copy.root), "--retrain"]), LinePrinter(out))

    assert local.prepare_model() == 1

    assert [child.name for child in local.children] == ["validate"]
    assert "validate failed with exit status 1" in out.getvalue()
    assert not store_copy.run_dir("bad-data-run").exists()
    assert store_copy.report_path("bad-data-run").exists()


@pytest.mark.slow
def test_local_killed_with_sigkill_takes_its_children_with_it(store_copy: Store) -> None:
    """The defect: SIGKILL leaves no chance to stop the children; they kept running and holding
    the ports, so the next `app local` failed with "port in use"."""
    api_port, dashboard_port = free_port(), free_port()
    argv = ["--store", str(store_copy.root), "--api-port", str(api_port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "local", *argv, "--dashboard-port", str(dashboard_port)],
        cwd=REPO_ROOT,
        env=app_env(store_copy.root, FORECAST_INTERVAL_SECONDS="0.5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _Output(process.stdout)
    try:
        output.wait_for("press Ctrl-C to stop", process, timeout=PATIENCE)
        children = _descendants(process.pid)
        assert len(children) >= 5, children  # serve, its parser, the ticker, gunicorn + workers
        process.kill()
        process.wait(timeout=PATIENCE)
        # A short-lived grandchild (a model probe started after the listing) may finish its
        # probe first; it too must be gone within the deadline, and it holds no port.
        groups = set(children.values())
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and (
            [pid for pid in children if _alive(pid)] or _live_members(groups)
        ):
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [pid for pid in children if _alive(pid)] == [], output.text()
    assert _live_members(groups) == []
    # The next run can have the port. Bind as the servers do (asyncio sets SO_REUSEADDR): the
    # killed api's closed connections may linger in TIME_WAIT, but no process may still listen.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", api_port))
        probe.listen()


def test_replay_on_a_store_the_quick_start_made_says_in_one_line_how_to_start_one(
    store_copy: Store,
) -> None:
    """The defect: it printed `releasing 0 held-back weeks` and `replay done: 0 weeks released`."""
    out = io.StringIO()
    args = ["--store", str(store_copy.root), "--replay", "--api-port", str(free_port())]
    local = Local(parse_args([*args, "--dashboard-port", str(free_port())]), LinePrinter(out))

    assert local.run() == 2

    assert local.children == []
    (said,) = [line for line in out.getvalue().splitlines() if line.startswith("[replay]")]
    assert "already holds every week of the shipped series to 2001-12-29" in said
    assert said.endswith(
        "nothing to release; replay into a new store: "
        "python -m app local --replay --store ./.mlops-replay"
    )


def test_replay_says_what_it_will_do_and_roughly_how_long(tmp_path: Path) -> None:
    out = io.StringIO()
    args = ["--store", str(tmp_path / "store"), "--replay", "--inject-shift", "3"]
    local = Local(
        parse_args([*args, "--weeks-per-tick", "4", "--tick-seconds", "1"]), LinePrinter(out)
    )
    replay = LocalReplay(local)

    # Four years held back: 208 weeks, 52 ticks of 4; the shift from the middle week.
    plan = replay.plan()
    assert plan.startswith(
        "will release 208 held-back weeks (1998-01-10 to 2001-12-29), 4 per tick every 1s "
        "(52 ticks), through ingest and the monitor"
    )
    assert "+3 ppm from the week of 2000-01-08" in plan
    assert "at most one per 8 weeks of data" in plan
    # No model yet: the ticks only. 52 x (1 s pause + 0.5 s measured).
    assert replay.estimate(0.5) == (
        "about 78s for the 52 remaining ticks (1s pause + 0.5s ingest and monitor each)"
    )
    # With a promoted model that trained in 30 s: a retrain costs about 30 + 5 s, and the
    # cooldown allows at most 208 / 8 = 26 of them.
    store = Store(tmp_path / "store")
    store.write_json(
        store.run_dir("m") / "metrics.json", {"train_seconds": 20.0, "backtest_seconds": 10.0}
    )
    store.set_current("m")
    assert replay.estimate(0.5) == (
        "about 78s for the 52 remaining ticks (1s pause + 0.5s ingest and monitor each), plus "
        "about 35s per drift retrain (up to 26: 16 min in all)"
    )
