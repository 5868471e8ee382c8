"""End to end: `python -m app local --replay --inject-shift 3` on a fresh store closes the loop.

Held-back weeks arrive through ingest, the monitor scores forecasts and detects the injected
+3 ppm step, validate -> train -> gate run in place of EventBridge, a second model is promoted,
the api hot-swaps to it and the dashboard shows the drift. Under five minutes of wall time.

About three minutes, so the plain `pytest` run leaves it out (pyproject.toml's addopts); the
README's test command runs it with `-m "containers or e2e"`.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.app.helpers import REPO_ROOT, app_env, free_port

pytestmark = pytest.mark.e2e

BUDGET_SECONDS = 300
PROMOTED = re.compile(r"\[replay\] retrain (\S+): promoted, hot-swapping")


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def test_replay_with_a_shift_ends_with_a_second_promoted_model_and_drift_shown(tmp_path):
    api_port, dashboard_port = free_port(), free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "local",
            "--store",
            str(tmp_path / "store"),
            "--api-port",
            str(api_port),
            "--dashboard-port",
            str(dashboard_port),
            "--replay",
            "--inject-shift",
            "3",
            "--weeks-per-tick",
            "4",
            "--tick-seconds",
            "0",
        ],
        cwd=REPO_ROOT,
        env=app_env(tmp_path / "store", TRAIN_THREADS="0", HOST="127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    promoted = None
    try:
        while promoted is None:
            left = BUDGET_SECONDS - (time.monotonic() - started)
            assert left > 0, "no second model promoted in time:\n" + "\n".join(seen[-40:])
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, "app local exited:\n" + "\n".join(seen[-40:])
            seen.append(line)
            if match := PROMOTED.search(line):
                promoted = match.group(1)

        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{api}/model", timeout=5).json()["run_id"] != promoted:
            assert time.monotonic() < deadline, "the api did not hot-swap to the new model"
            time.sleep(0.5)
        layout = httpx.get(
            f"http://127.0.0.1:{dashboard_port}/dashboard/_dash-layout", timeout=30
        ).text
        assert "drift-status" in layout and "Mann-Whitney U" in layout
        assert "last signal" in layout and (
            "forecast error: rolling MAE" in layout or "input drift: median annual change" in layout
        )
        assert promoted in layout  # the retrain and its gate decision
        elapsed = time.monotonic() - started
        assert elapsed < BUDGET_SECONDS
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert status == 0
    replay = [line for line in seen if line.startswith("[replay]")]
    print(f"\nsecond model {promoted} promoted and served after {elapsed:.0f}s")
    print("\n".join(line for line in replay if "DRIFT" in line or "retrain" in line))
