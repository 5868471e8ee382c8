"""`python -m benchmarks.load [--quick]`: load, cold-start and footprint figures of the api.

One run, on this machine:

1. footprint: installs `app/requirements.txt` into a fresh target directory, sizes it raw, then
   slims it as `app/Dockerfile` does (`python -m app.slim prune`, `strip`, `warm`) and sizes
   it again, per package: what the image carries. Every `python -m app` command below runs from
   that slimmed tree (`python -S`, nothing from this venv), so the figures are the image's;
2. trains a fresh model into a temp store with the real commands (`python -m app validate`,
   `train`, `gate`, default boosting rounds);
3. cold start: spawns `python -m app serve` and times the first 200 on `/ready` (median);
4. load: starts `python -m app serve` and the guide-style reference servers
   (`benchmarks/naive_server.py`, from this venv), warms each up, then runs `wrk` at 32
   connections, 2 threads, over every scenario in turn (interleaved, repeated); reads the api's
   RSS from /proc after the warm-up;
5. dashboard: `python -m app dashboard` from the slimmed tree serves its page, every script the
   page names and every chunk Dash loads later;
6. prints a table and writes `benchmarks/results/latest.json`.

`--before DIR` (a checkout of the code before a change, e.g. `git worktree add /tmp/before
main`): the same cold starts and the `/predict` and `/health` scenarios also run against
`python -m app serve` from DIR, on the same store, from the same slimmed tree, interleaved with
this checkout's, and a second table prints the figures side by side.

Needs `wrk` and binutils' `strip` (`apt-get install wrk binutils`). The figures are meant for a
quiet machine: the spread over the repeats is recorded next to each median. `--quick` takes
under 3 minutes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import cache_from_source
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "latest.json"
WRK_SCRIPT = REPO_ROOT / "benchmarks" / "wrk_report.lua"
SHIPPED_SERIES = REPO_ROOT / "app" / "data" / "co2_weekly.csv"
CONNECTIONS = 32
WRK_THREADS = 2
HISTORY_POINTS = 60
HORIZON = 4
BIG_REQUEST = 100
"""Instances in the big `/predict` request; above the api's default MAX_INSTANCES (64), so the
benchmark's server is started with MAX_INSTANCES set to it."""
MB = 1024 * 1024
"""Sizes are in MB of 2**20 bytes, as `du -m` counts them."""

TARGETS = {
    "predict_vs_health": 0.85,
    "predict_vs_naive": 40.0,
    "p99_ms": 10.0,
    "errors": 0,
    "cold_start_s": 1.2,
    "runtime_deps_mb": 250.0,
    "rss_mb": 200.0,
}


@dataclass(frozen=True)
class Plan:
    duration_s: int
    warmup_s: int
    repeats: int
    cold_starts: int


FULL = Plan(duration_s=15, warmup_s=5, repeats=3, cold_starts=5)
QUICK = Plan(duration_s=5, warmup_s=2, repeats=2, cold_starts=3)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str
    path: str
    body: Path | None


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_python(site: Path | None) -> list[str]:
    """The interpreter for `python -m app` children: isolated from this venv's site-packages when
    the slimmed image tree is there (its PYTHONPATH comes from `app_env`)."""
    return [sys.executable, "-S"] if site is not None else [sys.executable]


def app_env(
    store: Path, site: Path | None, code: Path = REPO_ROOT, **overrides: Any
) -> dict[str, str]:
    """The environment of a `python -m app` child of the code in `code`: this store, every other
    setting default."""
    env = {
        key: value
        for key, value in tree_env(site, code).items()
        if key not in ("RUN_ID", "RUN_DATE", "TRAIN_ROUNDS", "TRAIN_THREADS", "MAX_INSTANCES")
    }
    env.update(STORE_DIR=str(store), STORE_WAIT_SECONDS="5", PYTHONUNBUFFERED="1")
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def run_app(command: str, store: Path, site: Path | None, run_id: str) -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [*app_python(site), "-m", "app", command],
        cwd=REPO_ROOT,
        env=app_env(store, site, RUN_ID=run_id),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"python -m app {command} failed ({done.returncode}):\n{done.stderr}")
    log(f"app {command}: ok in {time.perf_counter() - started:.1f}s")


def train_store(root: Path, site: Path | None) -> Path:
    store = root / "store"
    store.mkdir()
    for command in ("validate", "train", "gate"):
        run_app(command, store, site, "bench")
    return store


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@contextmanager
def spawn(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> Iterator[subprocess.Popen]:
    """A child process, logging to `log_path`, stopped (SIGTERM, then SIGKILL) on exit."""
    with open(log_path, "wb") as output:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_for(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> float:
    """Poll `url` until it answers 200; returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"{url}: server exited {process.returncode}:\n{log_path.read_text()}")
        if http_status(url, timeout=0.5) == 200:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit(f"{url} not 200 after {timeout}s:\n{log_path.read_text()}")


def serve_args(site: Path | None) -> list[str]:
    return [*app_python(site), "-m", "app", "serve"]


def naive_args(port: int, array_features: bool) -> list[str]:
    args = [sys.executable, "-m", "benchmarks.naive_server", "--port", str(port)]
    return [*args, "--array-features"] if array_features else args


def cold_starts(
    store: Path, site: Path | None, root: Path, count: int, codes: dict[str, Path]
) -> dict[str, list[float]]:
    """Seconds from spawning `python -m app serve` to its first 200 on `/ready`, `count` times
    for each checkout in `codes` (by name), taking turns."""
    times: dict[str, list[float]] = {name: [] for name in codes}
    for i in range(count):
        for name, code in codes.items():
            port = free_port()
            env = app_env(store, site, code, HOST="127.0.0.1", PORT=port)
            log_path = root / f"cold-{name}-{i}.log"
            started = time.perf_counter()
            with spawn(serve_args(site), env, log_path, code) as process:
                wait_for(f"http://127.0.0.1:{port}/ready", process, log_path)
                times[name].append(time.perf_counter() - started)
            log(f"cold start {name} {i + 1}/{count}: {times[name][-1]:.2f}s")
    return times


def distribution_sizes(target: Path) -> dict[str, int]:
    """Bytes on disk per installed distribution (files listed in its RECORD), plus any files no
    RECORD lists under "(unlisted)"."""
    sizes: dict[str, int] = {}
    claimed: set[Path] = set()
    for record in sorted(target.glob("*.dist-info/RECORD")):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        total = 0
        for line in record.read_text().splitlines():
            relative = line.rsplit(",", 2)[0]
            # Data files and scripts are recorded relative to site-packages (`../../../share/`);
            # --target puts them at the top of the target directory.
            while relative.startswith("../"):
                relative = relative[3:]
            path = (target / relative).resolve()
            if path in claimed or not path.is_file():
                continue
            # Bytecode written after installation (`app.slim warm`) belongs to its source.
            compiled = Path(cache_from_source(str(path))) if path.suffix == ".py" else None
            for file in (path, compiled):
                if file is not None and file.is_file():
                    claimed.add(file)
                    total += file.stat().st_size
        sizes[name] = total
    unlisted = sum(
        path.stat().st_size
        for path in target.rglob("*")
        if path.is_file() and not path.is_symlink() and path.resolve() not in claimed
    )
    if unlisted:
        sizes["(unlisted)"] = unlisted
    return sizes


def runtime_deps(root: Path) -> tuple[dict[str, Any], Path | None]:
    """Install app/requirements.txt into a fresh directory and slim it as app/Dockerfile does
    (`python -m app.slim prune`, `strip`, `warm`): its size raw and as the image has it, per
    package, and the slimmed tree the app's commands in this benchmark run from (None when
    pip could not install)."""
    target = root / "deps"
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"),
            *("--disable-pip-version-check", "--no-warn-script-location"),
            *("-r", str(REPO_ROOT / "app" / "requirements.txt"), "--target", str(target)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        log(f"pip install failed, no footprint figure:\n{done.stderr[-2000:]}")
        return {"error": done.stderr[-2000:]}, None
    raw = distribution_sizes(target)
    steps = {}
    for step, *roots in (("prune", str(target)), ("strip", str(target)), ("warm",)):
        done = subprocess.run(
            [sys.executable, "-S", "-m", "app.slim", step, *roots],
            cwd=REPO_ROOT,
            env=tree_env(target),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise SystemExit(f"python -m app.slim {step} failed:\n{done.stdout}{done.stderr}")
        steps[step] = done.stdout.strip()
        log(f"app.slim {step}: {steps[step]}")
    image = distribution_sizes(target)
    log(f"runtime deps installed and slimmed in {time.perf_counter() - started:.1f}s")
    by_package = {
        name: {"raw_mb": round(raw.get(name, 0) / MB, 1), "image_mb": round(image[name] / MB, 1)}
        for name in sorted(image, key=lambda n: image[n], reverse=True)
    }
    sizes = {
        "raw_mb": round(sum(raw.values()) / MB, 1),
        "image_mb": round(sum(image.values()) / MB, 1),
        "by_package": by_package,
        "slim": steps,
        "python": platform.python_version(),
    }
    return sizes, target


def tree_env(site: Path | None, code: Path = REPO_ROOT) -> dict[str, str]:
    """PYTHONPATH for a child started with `python -S`: the slimmed tree, then the checkout in
    `code` (this repository unless `--before`), and nothing from this venv, as in the image."""
    if site is None:
        return {**os.environ, "PYTHONPATH": str(code)}
    return {**os.environ, "PYTHONPATH": os.pathsep.join((str(site), str(code)))}


def rss_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        key: round(int(fields[name].split()[0]) / 1024, 1)
        for key, name in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))
    }


def wrk(
    url: str,
    body: Path | None,
    seconds: int,
    *,
    threads: int = WRK_THREADS,
    connections: int = CONNECTIONS,
    content_type: str = "",
) -> dict[str, Any]:
    """One wrk run; its requests/s, latency percentiles (ms) and errors. `body`: POSTed as
    `content_type` (application/json by default), else a GET."""
    env = {
        **os.environ,
        "WRK_BODY": str(body) if body else "",
        "WRK_CONTENT_TYPE": content_type,
    }
    args = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s"),
        *("--timeout", "5s", "-s", str(WRK_SCRIPT), url),
    ]
    load_before = os.getloadavg()[0]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    errors = sum(raw[key] for key in ("non2xx", "connect", "read", "write", "timeout"))
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "requests": raw["requests"],
        "errors": errors,
        "error_kinds": {
            key: raw[key] for key in ("non2xx", "connect", "read", "write", "timeout") if raw[key]
        },
        "loadavg_1m_before": round(load_before, 2),
    }


def write_bodies(root: Path) -> tuple[Path, Path]:
    """The one-instance and BIG_REQUEST-instance bodies: the shipped series' last observations."""
    values = []
    for line in SHIPPED_SERIES.read_text().splitlines()[1:]:
        text = line.split(",")[1].strip() if "," in line else ""
        if text:
            values.append(float(text))
    instance = {"history": values[-HISTORY_POINTS:], "horizon": HORIZON}
    one, big = root / "predict1.json", root / "predict100.json"
    one.write_text(json.dumps({"instances": [instance]}))
    big.write_text(json.dumps({"instances": [instance] * BIG_REQUEST}))
    return one, big


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over the repeats of one scenario."""
    summary: dict[str, Any] = {}
    for key in ("rps", "p50_ms", "p99_ms", "max_ms"):
        values = [run[key] for run in runs]
        summary[key] = round(statistics.median(values), 2)
        summary[f"{key}_range"] = [min(values), max(values)]
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["runs"] = runs
    return summary


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "wrk": wrk_version.splitlines()[0].strip() if wrk_version else "unknown",
    }


def dashboard_assets(store: Path, site: Path, root: Path) -> dict[str, Any]:
    """Starts `python -m app dashboard` from the slimmed tree and fetches its page, every script
    the page names, and every chunk Dash loads later (dcc's and dash_table's `async-*.js`,
    plotly.js): proof that slimming kept what a browser asks for."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/dashboard/"
    log_path = root / "dashboard.log"
    env = app_env(store, site, HOST="127.0.0.1", DASHBOARD_PORT=port)
    with spawn([*app_python(site), "-m", "app", "dashboard"], env, log_path) as process:
        wait_for(base, process, log_path)
        with urllib.request.urlopen(base, timeout=10) as response:
            page = response.read().decode()
        urls = [
            urllib.parse.urljoin(base, src) for src in re.findall(r'<script src="([^"]+)"', page)
        ]
        suites = urllib.parse.urljoin(base, "_dash-component-suites/")
        for library in ("dcc", "dash_table"):
            urls += [
                f"{suites}dash/{library}/{chunk.name}"
                for chunk in sorted((site / "dash" / library).glob("async-*.js"))
            ]
        urls.append(f"{suites}plotly/package_data/plotly.min.js")
        failed = [url for url in urls if http_status(url, timeout=10) != 200]
    log(f"dashboard from the slimmed tree: {len(urls) - len(failed)}/{len(urls)} assets served")
    if failed:
        raise SystemExit(f"dashboard assets missing from the slimmed tree: {failed}")
    return {"assets_served": len(urls), "failed": failed}


def measure_load(
    store: Path, site: Path | None, root: Path, plan: Plan, before: Path | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, float], int]:
    """Warm up, then run every scenario `plan.repeats` times, interleaved."""
    one, big = write_bodies(root)
    ports = {name: free_port() for name in ("api", "naive", "naive_array", "api_before")}
    scenarios = [
        Scenario("predict", "/predict, 1 instance", "api", "/predict", one),
        Scenario("predict100", f"/predict, {BIG_REQUEST} instances", "api", "/predict", big),
        Scenario("health", "/health", "api", "/health", None),
        Scenario("naive", "naive /predict, 1 instance", "naive", "/predict", one),
        Scenario("naive_array", "naive (numpy rows), 1 inst.", "naive_array", "/predict", one),
    ]
    if before is not None:
        scenarios += [
            Scenario("before_predict", "before: /predict, 1 inst.", "api_before", "/predict", one),
            Scenario("before_health", "before: /health", "api_before", "/health", None),
        ]
    api_env = app_env(store, site, HOST="127.0.0.1", PORT=ports["api"], MAX_INSTANCES=BIG_REQUEST)
    naive_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(spawn(serve_args(site), api_env, root / "api.log"))
        naive = stack.enter_context(
            spawn(naive_args(ports["naive"], False), naive_env, root / "naive.log")
        )
        lean = stack.enter_context(
            spawn(naive_args(ports["naive_array"], True), naive_env, root / "naive_array.log")
        )
        servers = {"api": api, "naive": naive, "naive_array": lean}
        if before is not None:
            env = app_env(store, site, before, HOST="127.0.0.1", PORT=ports["api_before"])
            servers["api_before"] = stack.enter_context(
                spawn(serve_args(site), env, root / "api_before.log", before)
            )
        for name, process in servers.items():
            path = "/health" if name.startswith("naive") else "/ready"
            wait_for(f"http://127.0.0.1:{ports[name]}{path}", process, root / f"{name}.log")
        warmup_errors = 0
        for scenario in scenarios:
            url = f"http://127.0.0.1:{ports[scenario.server]}{scenario.path}"
            warm = wrk(url, scenario.body, plan.warmup_s)
            if scenario.server.startswith("api"):
                warmup_errors += warm["errors"]
            log(f"warm-up {scenario.key}: {warm['rps']:.0f} req/s, {warm['errors']} errors")
        memory = rss_mb(api.pid)
        runs: dict[str, list[dict[str, Any]]] = {scenario.key: [] for scenario in scenarios}
        for repeat in range(plan.repeats):
            for scenario in scenarios:
                url = f"http://127.0.0.1:{ports[scenario.server]}{scenario.path}"
                result = wrk(url, scenario.body, plan.duration_s)
                runs[scenario.key].append(result)
                log(
                    f"run {repeat + 1}/{plan.repeats} {scenario.key}: {result['rps']:.0f} req/s, "
                    f"p99 {result['p99_ms']:.1f} ms, {result['errors']} errors"
                )
        memory["peak_rss_mb"] = rss_mb(api.pid)["peak_rss_mb"]
    results = {scenario.key: summarize(runs[scenario.key]) for scenario in scenarios}
    for scenario in scenarios:
        results[scenario.key]["label"] = scenario.label
    return results, memory, warmup_errors


def table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table, with the targets and whether each is met."""
    load = result["load"]
    ok = result["targets_met"]

    def mark(key: str) -> str:
        return "ok" if ok.get(key) else "MISS"

    def spread(key: str, field: str, digits: int = 0) -> str:
        low, high = load[key][f"{field}_range"]
        return f"{low:,.{digits}f}-{high:,.{digits}f}" if low != high else ""

    rows = [
        ("figure", "value", "spread", "target", ""),
        ("---", "---:", "---:", "---", "---"),
    ]
    for key in ("predict", "predict100", "health", "naive", "naive_array"):
        rows.append(
            (f"{load[key]['label']}: req/s", f"{load[key]['rps']:,.0f}", spread(key, "rps"), "", "")
        )
    for key in ("predict", "predict100", "health", "naive", "naive_array"):
        rows.append(
            (
                f"{load[key]['label']}: p50 / p99 ms",
                f"{load[key]['p50_ms']:.1f} / {load[key]['p99_ms']:.1f}",
                spread(key, "p99_ms", 1),
                f"p99 <= {TARGETS['p99_ms']:g}" if key == "predict" else "",
                mark("p99_ms") if key == "predict" else "",
            )
        )
    ratios = result["ratios"]
    deps = result["runtime_deps"]
    rows += [
        (
            "predict / health",
            f"{ratios['predict_vs_health']:.2f}x",
            "",
            f">= {TARGETS['predict_vs_health']:g}x",
            mark("predict_vs_health"),
        ),
        (
            "predict / naive",
            f"{ratios['predict_vs_naive']:.1f}x",
            "",
            f">= {TARGETS['predict_vs_naive']:g}x",
            mark("predict_vs_naive"),
        ),
        ("predict / naive (numpy rows)", f"{ratios['predict_vs_naive_array']:.1f}x", "", "", ""),
        ("errors (api, incl. warm-up)", str(result["errors"]), "", "0", mark("errors")),
        (
            f"cold start to /ready, median of {len(result['cold_start_runs_s'])}",
            f"{result['cold_start_s']:.2f} s",
            f"{min(result['cold_start_runs_s']):.2f}-{max(result['cold_start_runs_s']):.2f}",
            f"<= {TARGETS['cold_start_s']:g} s",
            mark("cold_start_s"),
        ),
        (
            "runtime deps (image: slimmed by app.slim)",
            f"{result['runtime_deps_mb']} MB",
            f"raw {deps.get('raw_mb')} MB",
            "<= 250 MB",
            mark("runtime_deps_mb"),
        ),
        (
            "api RSS after warm-up",
            f"{result['rss_mb']} MB",
            f"peak {result['peak_rss_mb']} MB",
            "<= 200 MB",
            mark("rss_mb"),
        ),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def side_by_side(result: dict[str, Any]) -> str:
    """Before and after, measured in the same run: the issue's four targets."""
    before, ratios = result["before"], result["ratios"]
    rows = [
        ("figure", "before", "after", "target"),
        ("---", "---:", "---:", "---"),
        (
            "/predict / own /health",
            f"{before['ratios']['predict_vs_health']:.2f}x",
            f"{ratios['predict_vs_health']:.2f}x",
            f">= {TARGETS['predict_vs_health']:g}x",
        ),
        (
            "/predict / naive server",
            f"{before['ratios']['predict_vs_naive']:.1f}x",
            f"{ratios['predict_vs_naive']:.1f}x",
            f">= {TARGETS['predict_vs_naive']:g}x",
        ),
        (
            f"/predict p99 at c={CONNECTIONS}",
            f"{before['p99_ms']:.1f} ms",
            f"{result['p99_ms']:.1f} ms",
            f"<= {TARGETS['p99_ms']:g} ms",
        ),
        (
            "cold start to /ready (median)",
            f"{before['cold_start_s']:.2f} s",
            f"{result['cold_start_s']:.2f} s",
            f"<= {TARGETS['cold_start_s']:g} s",
        ),
        (
            "/predict req/s (/health req/s)",
            f"{before['predict_rps']:,.0f} ({before['health_rps']:,.0f})",
            f"{result['predict_rps']:,.0f} ({result['health_rps']:,.0f})",
            "",
        ),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (under 3 minutes)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before a change: its api measured side by side",
    )
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "app" / "__main__.py").is_file():
        print(f"error: --before {args.before}: no app/__main__.py there", file=sys.stderr)
        return 2
    before = args.before.resolve() if args.before is not None else None
    for tool, package in (("wrk", "wrk"), ("strip", "binutils")):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (apt-get install {package})", file=sys.stderr)
            return 2
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        root = Path(tmp)
        deps, site = runtime_deps(root)
        if site is None:
            log("the app runs from this venv: the slimmed image tree could not be built")
        store = train_store(root, site)
        codes = {"after": REPO_ROOT, **({"before": before} if before else {})}
        colds = cold_starts(store, site, root, plan.cold_starts, codes)
        cold = colds["after"]
        load, memory, warmup_errors = measure_load(store, site, root, plan, before)
        if site is not None:
            deps["dashboard"] = dashboard_assets(store, site, root)

    api_keys = [key for key in load if key.startswith(("predict", "health", "before_"))]
    errors = warmup_errors + sum(load[key]["errors"] for key in api_keys)
    ratios = {
        "predict_vs_health": round(load["predict"]["rps"] / load["health"]["rps"], 3),
        "predict_vs_naive": round(load["predict"]["rps"] / load["naive"]["rps"], 1),
        "predict_vs_naive_array": round(load["predict"]["rps"] / load["naive_array"]["rps"], 1),
    }
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": "python -m benchmarks.load"
        + (" --quick" if args.quick else "")
        + (" --before DIR" if before else ""),
        "machine": machine(),
        "plan": {
            "connections": CONNECTIONS,
            "wrk_threads": WRK_THREADS,
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "repeats": plan.repeats,
            "cold_starts": plan.cold_starts,
            "request": f"{HISTORY_POINTS} history points, horizon {HORIZON}",
            "api_env": {"MAX_INSTANCES": BIG_REQUEST},
            "aggregate": "median over the repeats; *_range is min and max",
        },
        "predict_rps": load["predict"]["rps"],
        "predict100_rps": load["predict100"]["rps"],
        "predict100_instances_per_s": round(load["predict100"]["rps"] * BIG_REQUEST),
        "health_rps": load["health"]["rps"],
        "naive_rps": load["naive"]["rps"],
        "naive_array_rps": load["naive_array"]["rps"],
        "p50_ms": load["predict"]["p50_ms"],
        "p99_ms": load["predict"]["p99_ms"],
        "errors": errors,
        "naive_errors": load["naive"]["errors"] + load["naive_array"]["errors"],
        "cold_start_s": round(statistics.median(cold), 3),
        "cold_start_runs_s": [round(value, 3) for value in cold],
        "runtime_deps_mb": deps.get("image_mb"),
        "runtime_deps_raw_mb": deps.get("raw_mb"),
        "rss_mb": memory["rss_mb"],
        "peak_rss_mb": memory["peak_rss_mb"],
        "ratios": ratios,
        "targets": TARGETS,
        "load": load,
        "runtime_deps": deps,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    deps_mb = result["runtime_deps_mb"]
    result["targets_met"] = {
        "predict_vs_health": ratios["predict_vs_health"] >= TARGETS["predict_vs_health"],
        "predict_vs_naive": ratios["predict_vs_naive"] >= TARGETS["predict_vs_naive"],
        "p99_ms": result["p99_ms"] <= TARGETS["p99_ms"],
        "errors": errors == TARGETS["errors"],
        "cold_start_s": result["cold_start_s"] <= TARGETS["cold_start_s"],
        "runtime_deps_mb": deps_mb is not None and deps_mb <= TARGETS["runtime_deps_mb"],
        "rss_mb": result["rss_mb"] <= TARGETS["rss_mb"],
    }
    if before is not None:
        result["before"] = {
            "code": str(before),
            "predict_rps": load["before_predict"]["rps"],
            "health_rps": load["before_health"]["rps"],
            "p99_ms": load["before_predict"]["p99_ms"],
            "cold_start_s": round(statistics.median(colds["before"]), 3),
            "cold_start_runs_s": [round(value, 3) for value in colds["before"]],
            "ratios": {
                "predict_vs_health": round(
                    load["before_predict"]["rps"] / load["before_health"]["rps"], 3
                ),
                "predict_vs_naive": round(load["before_predict"]["rps"] / load["naive"]["rps"], 1),
            },
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(table(result))
    print()
    if before is not None:
        print(side_by_side(result))
        print()
    top = list(deps.get("by_package", {}).items())[:8]
    breakdown = ", ".join(f"{name} {size['image_mb']}" for name, size in top)
    print(f"runtime deps by package (image MB): {breakdown}")
    info = result["machine"]
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"Python {info['python']}, Linux {info['kernel']}; {result['date']}; "
        f"{result['wall_s']:.0f} s; written to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
