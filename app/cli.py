"""What every `python -m app` command does first: settings, logging, and the store.

Failures end the command with one clear line on stderr and the conventional exit code: 2 for
a usage or settings error, 1 when the store never became available.
"""

from __future__ import annotations

import sys

from app import provenance
from app.logging_setup import configure_logging
from app.settings import AppSettings, load_settings
from app.store import Store, StoreUnavailableError


def command_settings(command: str, argv: list[str] | None = None) -> AppSettings:
    """Load the settings and configure logging; `argv` must be empty when given."""
    if argv:
        print(f"error: {command} takes no arguments, got {' '.join(argv)!r}", file=sys.stderr)
        raise SystemExit(2)
    settings = load_settings()
    configure_logging(settings.log_level)
    provenance.check_or_exit()  # a push-triggered ECS task runs the pushed image, or exits 1
    return settings


def open_store(settings: AppSettings) -> Store:
    """Wait for the store (an EFS mount can lag the task's start), or exit 1 saying why."""
    try:
        return Store.wait(settings.store_dir, settings.store_wait_seconds)
    except StoreUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
