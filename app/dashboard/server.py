"""`python -m app dashboard`: the Dash dashboard on DASHBOARD_PORT under `/dashboard/`.

The page (`app.dashboard.page`) is served by gunicorn (gthread workers), embedded with gunicorn's
`BaseApplication`, not by Flask's development server.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from app.cli import command_settings
from app.dashboard.page import PREFIX, create_app

log = logging.getLogger(__name__)


class _GunicornApp(BaseApplication):
    """gunicorn embedded in-process: serves one ready-made WSGI app with fixed options."""

    def __init__(self, wsgi: Any, options: dict[str, Any]) -> None:
        self._wsgi = wsgi
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._wsgi


def gunicorn_options(host: str, port: int, workers: int, log_level: str) -> dict[str, Any]:
    return {
        "bind": [f"{host}:{port}"],
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        # Under ECS's stop timeout, so in-flight requests finish before SIGKILL.
        "graceful_timeout": 10,
        "keepalive": 5,
        "loglevel": log_level.lower(),
        "errorlog": "-",
        "accesslog": None,
        "proc_name": "mlops-dashboard",
        # The control socket defaults to ~/.gunicorn/, which is read-only in the task and would be
        # shared by every instance on one machine.
        "control_socket_disable": True,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app dashboard",
        description="Serve the dashboard with gunicorn on HOST:DASHBOARD_PORT under /dashboard/.",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    args = parser.parse_args(argv)
    settings = command_settings("dashboard")
    app = create_app(settings.store_dir, refresh_seconds=settings.forecast_interval_seconds)
    options = gunicorn_options(
        settings.host, settings.dashboard_port, args.workers, settings.log_level
    )
    log.info(
        "dashboard on http://%s:%d%s reading %s",
        settings.host,
        settings.dashboard_port,
        PREFIX,
        settings.store_dir,
    )
    _GunicornApp(app.server, options).run()
    return 0
