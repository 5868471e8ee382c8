"""`python -m app <command>`: one container image, several commands."""

from __future__ import annotations

import importlib
import os
import sys

# One BLAS thread (before numpy loads): the harmonic grid's batched solves are many small
# matrices, where OpenBLAS's thread start-up costs more than it saves on a shared 2-core task.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from app.processes import die_with_parent_if_asked
from app.series import SeriesError
from app.store import StoreFullError, is_full

COMMANDS = {
    "validate": ("app.pipeline.validate", "check the dataset in the store; exit 1 on anomalies"),
    "train": ("app.pipeline.train", "train a forecaster into models/<RUN_ID>/"),
    "gate": (
        "app.pipeline.gate",
        "promote the run to models/CURRENT if it beats the current model",
    ),
    "promote": (
        "app.pipeline.gate",
        "promote RUN_ID: point models/CURRENT at an existing run (rollback)",
    ),
    "serve": ("app.serving.server", "the inference API on PORT"),
    "forecast": ("app.loop.ticker", "write fresh forecasts to forecasts/ every few seconds"),
    "dashboard": ("app.dashboard.server", "the Dash dashboard on DASHBOARD_PORT under /dashboard"),
    "ingest": (
        "app.loop.ingest",
        "append new weekly observations (NOAA's file, or a CSV)",
    ),
    "monitor": (
        "app.loop.monitor",
        "score past forecasts, check for drift, signal DataDriftDetected",
    ),
    "local": ("app.local.supervisor", "the whole pipeline on this machine with a local store"),
    "check-image": ("app.provenance", "exit 1 unless this ECS task runs TRIGGER_IMAGE_DIGEST"),
}


def usage() -> str:
    lines = ["usage: python -m app <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        if args and args[0] in ("-h", "--help", "help"):
            print(usage())
            return 0
        problem = f"unknown command {args[0]!r}" if args else "missing command"
        print(f"error: {problem}\n\n{usage()}", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    die_with_parent_if_asked()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        if command == "promote":
            return module.promote_main(rest)
        return module.main(rest)
    except SeriesError as exc:
        # Which series, or its descriptor, is unusable: one line naming the file, key and value.
        print(f"error: {command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A full store (or file size limit) ends every command the same way: one line naming
        # the path and the space it needed, no traceback; other OS errors stay loud.
        if not is_full(exc):
            raise
        if not isinstance(exc, StoreFullError):
            where = f" writing {exc.filename}" if exc.filename else ""
            exc = OSError(
                exc.errno, f"no space left{where} ({exc.strerror}); free space in the store"
            )
        print(f"error: {command}: {exc.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
