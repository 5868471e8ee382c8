"""`python -m app local`: the whole product on this machine, with a local folder as the store.

1. Creates the store (`--store`, default `./.mlops-store`).
2. Runs validate → train → gate as child processes, one run id for the three. Skipped when
   `models/CURRENT` exists, unless `--retrain` is given.
3. Starts the api (`serve`, `--api-port`), the forecast ticker and the dashboard
   (`--dashboard-port`) as child processes and prints their URLs once they answer.
4. Prefixes every child's output lines with its name (`[api] ...`).

Ctrl-C or SIGTERM stops every child: SIGTERM to each child's process group, then SIGKILL to what is
left after `--stop-timeout` seconds, so no grandchild (gunicorn workers) outlives it. When this
process is killed outright (SIGKILL), the kernel kills its children (`PR_SET_PDEATHSIG`).

Exit status: 0 after a requested stop (Ctrl-C or SIGTERM); the failing step's status when
validate, train or gate fails; 1 when a service exits on its own or does not come up.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from app.local.children import Child, LinePrinter, stop_all
from app.local.replay import LocalReplay, ReplayError, add_replay_arguments
from app.processes import PACKAGE_ROOT, PARENT_ENV
from app.store import DamagedFileError, Store
from mlops_contract import new_run_id

SERVICES = (("api", "serve"), ("forecast", "forecast"), ("dashboard", "dashboard"))
"""Long-running children: the name their output lines carry and their `python -m app` command."""
HEARTBEAT_SECONDS = 15.0
"""While a pipeline step is silent this long, say that it is still running."""


class _Stopped(Exception):
    """Ctrl-C or SIGTERM arrived; unwind and stop the children."""


class Local:
    """Runs the pipeline and the services as children and stops them all on request."""

    def __init__(self, args: argparse.Namespace, printer: LinePrinter) -> None:
        self.args = args
        self.printer = printer
        self.store_dir = Path(args.store).expanduser().resolve()
        self.children: list[Child] = []
        self.services: list[Child] = []
        self.stop = threading.Event()
        self.stop_signal: str | None = None
        # Only this machine can reach the services unless HOST says otherwise (0.0.0.0 in a
        # container with published ports).
        self.host = os.environ.get("HOST", "127.0.0.1")
        self.probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "127.0.0.1") else self.host
        self.url_host = "localhost" if self.probe_host == "127.0.0.1" else self.host

    # --- plumbing ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.printer.line("local", text)

    def request_stop(self, signum: int, _frame: object = None) -> None:
        if not self.stop.is_set():
            self.stop_signal = signal.Signals(signum).name
            self.stop.set()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("RUN_ID", None)
        python_path = [str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            HOST=self.host,
            STORE_DIR=str(self.store_dir),
            PORT=str(self.args.api_port),
            DASHBOARD_PORT=str(self.args.dashboard_port),
            PYTHONPATH=os.pathsep.join(python_path),
            PYTHONUNBUFFERED="1",
        )
        # Children die with this process even when it is SIGKILLed and cannot stop them itself:
        # left running, they would hold the ports and the next run would fail.
        env[PARENT_ENV] = str(os.getpid())
        env.update(extra)
        return env

    def start(self, name: str, command: str, env: dict[str, str]) -> Child:
        child = Child(name, [sys.executable, "-m", "app", command], env, self.printer)
        self.children.append(child)
        return child

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped

    # --- the pipeline -------------------------------------------------------------------------

    def prepare_model(self) -> int:
        """validate → train → gate unless a model is promoted already; 0 or the failing status."""
        store = Store(self.store_dir)
        try:
            current = store.current_run_id()
        except DamagedFileError as exc:
            # The gate refuses to guess what is served, so training now could promote nothing.
            promoted = store.promoted_runs()
            last = f" (the last promoted run is {promoted[0]})" if promoted else ""
            self.say(f"{exc}: repair it first with `python -m app promote RUN_ID`{last}")
            return 2
        if current is not None and not self.args.retrain:
            self.say(f"model {current} is already promoted; skipping training (--retrain to train)")
            return 0
        run_id = os.environ.get("RUN_ID") or new_run_id()
        env = self.env(RUN_ID=run_id)
        steps = [
            ("validate", "checking the dataset"),
            ("train", "training the forecaster; progress follows"),
            ("gate", "deciding whether to promote the run"),
        ]
        for number, (step, doing) in enumerate(steps, start=1):
            self.say(f"step {number}/3 {step} (run {run_id}): {doing}")
            started = time.monotonic()
            child = self.start(step, step, env)
            status = self.wait_step(child, started)
            if status != 0:
                hint = ""
                if step == "validate":
                    hint = f"; see {store.report_path(run_id)}"
                self.say(f"{step} failed with exit status {status}{hint}")
                return status
            self.say(f"{step} done in {time.monotonic() - started:.1f}s")
        current = store.current_run_id()
        if current is None:
            self.say("no model was promoted: the api stays not-ready and the dashboard says so")
        else:
            self.say(f"serving model {current}")
        return 0

    def wait_step(self, child: Child, started: float) -> int:
        last_beat = started
        while (status := child.poll()) is None:
            self.sleep(0.1)
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_SECONDS:
                last_beat = now
                self.say(f"{child.name} still running ({now - started:.0f}s)")
        child.flush_output()
        return status

    # --- the services -------------------------------------------------------------------------

    def start_services(self) -> None:
        env = self.env()
        for name, command in (
            ("api", "serve"),
            ("forecast", "forecast"),
            ("dashboard", "dashboard"),
        ):
            self.services.append(self.start(name, command, env))

    def wait_until_up(self, timeout: float) -> bool:
        has_model = Store(self.store_dir).current_run_id() is not None
        api = f"http://{self.probe_host}:{self.args.api_port}/{'ready' if has_model else 'health'}"
        dashboard = f"http://{self.probe_host}:{self.args.dashboard_port}/dashboard/"
        checks: dict[str, Callable[[], bool]] = {
            "api": lambda: _answers_200(api),
            "dashboard": lambda: _answers_200(dashboard),
        }
        deadline = time.monotonic() + timeout
        while checks:
            self.check_services()
            for name in [name for name, check in checks.items() if check()]:
                del checks[name]
            if not checks:
                return True
            if time.monotonic() > deadline:
                self.say(f"not answering after {timeout:g}s: {', '.join(checks)}")
                return False
            self.sleep(0.25)
        return True

    def check_services(self) -> None:
        for child in self.services:
            status = child.poll()
            if status is not None:
                raise _ServiceExited(child.name, status)

    def print_urls(self, elapsed: float) -> None:
        api = f"http://{self.url_host}:{self.args.api_port}"
        self.say(f"up in {elapsed:.1f}s")
        self.say(f"  dashboard  http://{self.url_host}:{self.args.dashboard_port}/dashboard/")
        self.say(f"  api        {api}/model  (POST {api}/predict, GET {api}/metrics)")
        self.say(f"  store      {self.store_dir}")
        self.say("press Ctrl-C to stop")

    # --- main ---------------------------------------------------------------------------------

    def run(self) -> int:
        for port in (self.args.api_port, self.args.dashboard_port):
            if not _port_free(self.host, port):
                self.say(f"port {port} is in use; choose another with --api-port/--dashboard-port")
                return 1
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"store {self.store_dir}")
        try:
            replay = LocalReplay(self) if self.args.replay else None
        except ReplayError as exc:
            self.printer.line("replay", str(exc))
            return 2
        if replay is not None:
            replay.say(replay.plan())
        try:
            status = self.prepare_model()
            if status != 0:
                return status
            started = time.monotonic()
            self.start_services()
            if not self.wait_until_up(self.args.start_timeout):
                return 1
            self.print_urls(time.monotonic() - started)
            if replay is not None:
                replay.run()
            while True:
                self.check_services()
                self.sleep(0.5)
        except _Stopped:
            self.say(f"{self.stop_signal}: stopping")
            return 0
        except _ServiceExited as exc:
            self.say(f"{exc.name} exited with status {exc.status}; stopping the others")
            return 1
        finally:
            stop_all(self.children, self.args.stop_timeout, self.printer)
            self.say("stopped")


class _ServiceExited(Exception):
    def __init__(self, name: str, status: int) -> None:
        super().__init__(name, status)
        self.name = name
        self.status = status


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app local",
        description=(
            "Run the whole pipeline on this machine: validate, train and gate a model, then the "
            "api, the forecast ticker and the dashboard. Ctrl-C stops everything."
        ),
    )
    parser.add_argument(
        "--store", default="./.mlops-store", help="the store folder (default ./.mlops-store)"
    )
    parser.add_argument("--api-port", type=int, default=8080, help="api port (default 8080)")
    parser.add_argument(
        "--dashboard-port", type=int, default=8050, help="dashboard port (default 8050)"
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train a new run even when a model is promoted"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the api and dashboard to answer (default 90)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=15.0,
        help="seconds between SIGTERM and SIGKILL when stopping (default 15)",
    )
    add_replay_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    local = Local(args, LinePrinter(sys.stdout))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, local.request_stop)
    return local.run()
