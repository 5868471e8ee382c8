"""One log format for every command: plain lines on stderr, which CloudWatch Logs keeps as is."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send log records at `level` and above to stderr, replacing any earlier configuration."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr, force=True)
