"""`python -m benchmarks.screenshot`: the README's picture, `docs/dashboard.png`, made again.

1. runs `python -m app local --replay --inject-shift 3 --tick-seconds 0` on a fresh store in a
   temporary folder, api and dashboard on free ports, and waits for the replay's last line
   (`[replay] replay done: ...`): every held-back week released, the drift checks tripped by the
   step, the drift retrains gated;
2. opens the dashboard in Debian's headless Chromium (`/usr/bin/chromium`, driven by the
   `playwright` package), waits until the main figure holds the observations, the forecast and
   both interval bands and the loop's two figures are drawn, and the drift and retrain panels
   are filled;
3. writes a full-page PNG (`--output`, `--width` pixels wide), stops everything it started, and
   reduces the PNG to a 256-colour palette with `pngquant` when it is installed (a page of flat
   colours and text: about a third of the size, the same to the eye).

Needs `chromium` (and `fonts-liberation` for its text), `pngquant` for a small file, and a few
minutes: the replay trains a model for every drift retrain. `--keep-store DIR` keeps the store.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.load import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "dashboard.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REPLAY_ARGS = ["--replay", "--inject-shift", "3", "--tick-seconds", "0"]
DONE = "[replay] replay done:"
MAIN_PLOT = "#forecast-graph .js-plotly-plot"
LOOP_PLOTS = "#loop .js-plotly-plot"
BANDS = ("95% interval", "80% interval")


def log(message: str) -> None:
    print(f"[screenshot] {message}", file=sys.stderr, flush=True)


def run_replay(store: Path, api_port: int, dashboard_port: int) -> subprocess.Popen[str]:
    """`app local --replay` as its own process group, its output merged into one pipe."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "local",
            *REPLAY_ARGS,
            "--store",
            str(store),
            "--api-port",
            str(api_port),
            "--dashboard-port",
            str(dashboard_port),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_line(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    """The first line starting with `marker`; echoes the replay's own lines while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SystemExit(f"error: no {marker!r} line within {timeout:g}s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise SystemExit(f"error: app local exited before printing {marker!r}")
        if line.startswith(("[replay]", "[local]")):
            log(line.rstrip())
        if line.startswith(marker):
            return line


def wait_for_live_forecast(store: Path, timeout: float) -> None:
    """Wait until the ticker's latest forecast starts from the store's last week: the replay's
    last line can come up to one forecast interval (10 s) before the ticker's next tick."""
    last_week = (store / "datasets" / "co2_weekly.csv").read_text().rstrip().rsplit("\n", 1)[1]
    last_week = last_week.split(",", 1)[0]
    latest = store / "forecasts" / "latest.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(latest.read_text()).get("last_observed") == last_week:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"error: {latest} did not reach {last_week} within {timeout:.0f}s")


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, which `app local` answers by stopping its children; SIGKILL what is left."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def shoot(url: str, output: Path, width: int, timeout: float) -> None:
    """The dashboard page, once everything the picture is for is drawn, as a full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(timeout * 1000)
            page.goto(url)
            page.wait_for_selector(f"{MAIN_PLOT} .scatterlayer .trace path.js-line")
            names = page.evaluate(
                "(plot) => document.querySelector(plot).data.map(trace => trace.name)", MAIN_PLOT
            )
            missing = [band for band in BANDS if band not in names]
            if missing:
                raise SystemExit(f"error: the main figure has no {missing}; traces: {names}")
            page.wait_for_function(
                """(plots) => {
                    const drawn = Array.from(document.querySelectorAll(plots))
                        .filter(plot => plot.querySelector('.scatterlayer .trace'));
                    return drawn.length >= 2;
                }""",
                arg=LOOP_PLOTS,
            )
            page.wait_for_selector("#drift-status")
            page.wait_for_selector("#loop table.runs tbody tr")
            if errors:
                raise SystemExit(f"error: the page raised: {errors}")
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def quantize(png: Path) -> None:
    """The PNG in place as a palette image, if pngquant is here and meets the quality floor."""
    if shutil.which("pngquant") is None:
        log("pngquant is not installed (apt-get install pngquant): the PNG stays full-colour")
        return
    command = ["pngquant", "--quality=70-95", "--speed=1", "--strip", "--force"]
    result = subprocess.run([*command, "--output", str(png), "--", str(png)], check=False)
    if result.returncode != 0:  # 99: the palette would fall below the quality floor
        log(f"pngquant exited with {result.returncode}: the PNG stays full-colour")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="page width in pixels (1280)")
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="seconds the replay may take (1200)"
    )
    parser.add_argument("--keep-store", type=Path, help="keep the replay's store here")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.keep_store and args.keep_store.exists():
        print(f"error: --keep-store {args.keep_store} exists; name a new folder", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="mlops-screenshot-") as tmp:
        store = Path(tmp) / "store"
        dashboard_port = free_port()
        process = run_replay(store, free_port(), dashboard_port)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        started = time.monotonic()
        try:
            wait_for_line(lines, DONE, args.timeout)
            wait_for_live_forecast(store, timeout=120)
            url = f"http://127.0.0.1:{dashboard_port}/dashboard/"
            log(f"replay done in {time.monotonic() - started:.0f}s; photographing {url}")
            shoot(url, args.output, args.width, timeout=60)
        finally:
            stop(process)
        if args.keep_store:
            shutil.copytree(store, args.keep_store)
    quantize(args.output)
    size = args.output.stat().st_size
    log(f"wrote {args.output} ({size / 1024:.0f} KiB, {args.width} px wide)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
