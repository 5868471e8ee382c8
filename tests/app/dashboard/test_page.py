"""The dashboard: what it reads from the store, and the page in a real headless Chromium."""

from __future__ import annotations

import os
import pkgutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from app.dashboard.page import create_app, read_snapshot
from app.loop.ticker import Ticker
from app.settings import AppSettings
from app.store import Store
from tests.app.helpers import PATIENCE, REPO_ROOT, free_port

SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
"""Rewritten only with UPDATE_SCREENSHOT=1, so a plain test run leaves the tree clean."""
CHROMIUM = Path("/usr/bin/chromium")
MAIN_PLOT = "#forecast-graph .subplot.xy .scatterlayer"
"""The main plot's traces (the range slider below it draws a second, miniature copy)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def store(store_copy: Store) -> Store:
    """A private copy of the trained store with one forecast written by the ticker."""
    ticker = Ticker(store_copy, AppSettings(store_dir=store_copy.root), identity="test:1")
    ticker.tick()
    ticker.lock.release()
    return store_copy


def test_page_renders_before_any_model_exists(tmp_path: Path) -> None:
    client = create_app(tmp_path / "empty-store").server.test_client()

    assert client.get("/dashboard/").status_code == 200
    layout = client.get("/dashboard/_dash-layout")
    assert layout.status_code == 200
    assert b"No model yet" in layout.data
    assert b"No runs yet" in layout.data


def test_a_script_file_missing_from_the_image_is_a_404_not_a_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a browser's developer tools meet in the image, where app/slim.py pruned source maps:
    # Dash finds the path registered, then reading the file raises FileNotFoundError.
    client = create_app(tmp_path).server.test_client()
    url = "/dashboard/_dash-component-suites/dash/dcc/async-graph.js.map"
    assert client.get(url).status_code == 200  # this venv still has it

    def missing(package: str, resource: str) -> bytes:
        raise FileNotFoundError(2, "No such file or directory", resource)

    monkeypatch.setattr(pkgutil, "get_data", missing)
    response = client.get(url)
    assert response.status_code == 404
    assert response.data == b"not in this image\n"


def test_bare_paths_redirect_to_the_dashboard(tmp_path: Path) -> None:
    client = create_app(tmp_path).server.test_client()
    for path in ("/", "/dashboard"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/dashboard/")


def test_snapshot_shows_series_forecast_metrics_and_run_history(store: Store) -> None:
    current = store.current_run_id()
    failed = store.reports_dir / "00000000T000000Z-bad" / "validation.json"
    failed.parent.mkdir(parents=True)
    failed.write_bytes(
        orjson.dumps({"ok": False, "rows": 3, "problems": ["only 3 rows, need at least 200"]})
    )

    snapshot = read_snapshot(store)

    assert len(snapshot.values) > 2000
    assert snapshot.current == current
    assert snapshot.latest["run_id"] == current
    assert snapshot.metrics["backtest"]["mean"]["mae"] > 0
    runs = {run.run_id: run for run in snapshot.runs}
    promoted = runs[current]
    assert promoted.current and promoted.validated and promoted.promoted
    assert promoted.reason
    assert promoted.mae == pytest.approx(snapshot.metrics["backtest"]["mean"]["mae"])
    assert promoted.family == "xgboost"
    rejected = runs["00000000T000000Z-bad"]
    assert rejected.validated is False
    assert "only 3 rows" in rejected.validation_note
    assert rejected.promoted is None and rejected.mae is None


# --- the real thing: gunicorn + headless Chromium ---------------------------------------------


def _wait_for_200(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the dashboard exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


@pytest.fixture
def dashboard_url(store: Store, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "STORE_DIR": str(store.root),
        "DASHBOARD_PORT": str(port),
        "FORECAST_INTERVAL_SECONDS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    log_path = tmp_path / "dashboard.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "dashboard"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/dashboard/"
    try:
        _wait_for_200(url, process, timeout=PATIENCE)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Using worker: gthread" in log_path.read_text()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian package `chromium`)"
)
@pytest.mark.slow
def test_dashboard_plots_the_series_and_forecast_in_a_real_browser(
    dashboard_url: str, store: Store, tmp_path: Path
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.goto(dashboard_url)
            try:
                page.wait_for_selector(f"{MAIN_PLOT} .trace path.js-line", state="attached")
            except PlaywrightTimeoutError:
                raise AssertionError(f"no plot was drawn; page errors: {errors}") from None

            # The figure the browser holds: every observation plus the forecast.
            traces = page.evaluate(
                """() => document.querySelector('#forecast-graph .js-plotly-plot').data
                       .map(trace => ({name: trace.name, points: trace.x.length}))"""
            )
            observed, band95, band80, forecast = traces
            assert observed["name"].startswith("observed") and observed["points"] > 2000
            assert forecast["name"].startswith("forecast") and forecast["points"] == 26 + 1
            # The interval bands: each a closed outline, upper bounds out and lower bounds back.
            assert (band95["name"], band80["name"]) == ("95% interval", "80% interval")
            assert band95["points"] == band80["points"] == 2 * 26
            # What plotly drew: line vertices per trace in the visible window (the last years).
            drawn = page.evaluate(
                """(plot) => Array.from(document.querySelectorAll(plot + ' .trace')).map(
                       trace => Array.from(trace.querySelectorAll('path.js-line'))
                           .map(path => (path.getAttribute('d') || '').split(/[ML]/).length - 1)
                           .reduce((a, b) => a + b, 0))""",
                MAIN_PLOT,
            )
            assert len(drawn) == 4
            assert drawn[0] > 100, f"observed line has only {drawn[0]} vertices"
            assert drawn[-1] > 10, f"forecast line has only {drawn[-1]} vertices"
            # Plotly drops collinear line vertices but draws every marker: one per forecast week.
            assert page.locator(f"{MAIN_PLOT} .trace .point").count() == 26 + 1

            current = store.current_run_id()
            assert current in page.inner_text("#model")
            assert "promoted" in page.inner_text("#runs")
            assert "generated" in page.inner_text("#status")
            assert "validated by run run-a" in page.inner_text("#status")
            assert "model family" in page.inner_text("#model")
            assert "skill vs seasonal naive + drift" in page.inner_text("#model")

            # The interval refresh goes through the Dash callback under the same prefix.
            with page.expect_response(
                lambda response: "/dashboard/_dash-update-component" in response.url,
                timeout=PATIENCE * 1000,
            ) as refresh:
                pass
            assert refresh.value.status == 200
            assert errors == []

            shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "d.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000


def test_a_forecast_behind_the_data_is_one_ordered_line_from_its_own_origin(
    tmp_path: Path,
) -> None:
    import numpy as np

    from app.dashboard.page import Snapshot, build_figure

    dates = np.arange(np.datetime64("2001-01-06"), np.datetime64("2001-12-30"), 7)
    values = np.linspace(370.0, 372.0, len(dates))
    # Forecast from 2001-02-24 while the data runs to 2001-12-29, its points out of order.
    weeks = [str(np.datetime64("2001-02-24") + np.timedelta64(7 * h, "D")) for h in (1, 3, 2)]
    forecast = [
        {"date": day, "value": 371.0 + i, "lower": {}, "upper": {}} for i, day in enumerate(weeks)
    ]
    snapshot = Snapshot(
        tmp_path, True, dates, values, latest={"run_id": "r", "forecast": forecast, "levels": []}
    )
    (line,) = [trace for trace in build_figure(snapshot).data if trace.name.startswith("forecast")]
    assert list(line.x) == ["2001-02-24", "2001-03-03", "2001-03-10", "2001-03-17"]
    origin = int(np.nonzero(dates == np.datetime64("2001-02-24"))[0][0])
    assert line.y[0] == values[origin]  # starts at its origin's observation, not the newest one


def test_empty_loop_charts_say_why(tmp_path: Path) -> None:
    from app.dashboard.loop_section import error_band_figure, forecasts_vs_actuals_figure, read_loop

    loop = read_loop(Store(tmp_path))
    for figure in (forecasts_vs_actuals_figure(loop), error_band_figure(loop)):
        (note,) = figure.layout.annotations
        assert note.text.startswith("No ")
