"""Runtime settings of the container, read once from environment variables.

Every command calls `load_settings()`; a bad value stops the process with one line naming the
variable, its value and what is allowed (exit code 2), never a traceback.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_contract import RUN_ID_PATTERN, new_run_id


class AppSettings(BaseSettings):
    """Environment variables of every `python -m app` command (names are the upper-cased fields)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    store_dir: Path = Path("./.mlops-store")
    """The shared store (an EFS mount in AWS, a local folder on a laptop)."""
    store_wait_seconds: float = Field(60.0, ge=0, le=3600)
    """How long to wait at start-up for the store to exist and be writable."""
    run_id: str | None = Field(None, pattern=RUN_ID_PATTERN)
    """The run being validated, trained or gated. Unset: a new timestamp id (`run_id_or_new`)."""
    run_date: date | None = None
    """As-of date of a run: only observations up to this date are validated and trained on."""

    host: str = "0.0.0.0"
    """Address the api and dashboard listen on."""
    port: int = Field(8080, ge=1, le=65535)
    dashboard_port: int = Field(8050, ge=1, le=65535)
    internal_port: int = Field(0, ge=0, le=65535)
    """Port on which the api also answers `/metrics` and `/model`, for callers inside the VPC;
    with it set, `PORT` (the load balancer's) answers 404 for them. 0: both answer on `PORT`."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    promote_margin: float = Field(0.0, ge=0.0, lt=1.0)
    """A run must beat the current model's mean backtest MAE, on the same folds, by this fraction
    to be promoted."""
    coverage_slack: float = Field(1.0, ge=0.0, le=50.0)
    """Percentage points by which a candidate's interval coverage may be further off a level than
    the current model's on the same folds (beyond the fixed 5-point band) and still promote."""
    model_family: Literal["auto", "xgboost", "harmonic"] = "auto"
    """Which model family `train` backtests: `auto` and `harmonic` choose among the harmonic
    family's settings (`HARMONIC_GRID`) on the backtest; `xgboost` trains the booster."""

    validate_spike_z: float = Field(15.0, gt=0, le=1000)
    """`validate` and `ingest` refuse an isolated spike: a week whose week-on-week change is
    more than this many robust z-scores (median and MAD of the window's changes) from the
    usual, and whose next change goes back as far. The shipped series peaks at 5.7."""
    validate_spike_window_weeks: int = Field(52, ge=8, le=1040)
    """Observed weeks of changes before a week that its robust z-score is measured against."""

    train_rounds: int = Field(100, ge=1, le=100_000)
    """Boosting rounds of a full training run."""
    train_log_every: int = Field(10, ge=1)
    """Log training progress every this many boosting rounds."""
    train_threads: int = Field(0, ge=0, le=1024)
    """Training threads; 0 uses every core this process may run on."""

    max_batch: int = Field(64, ge=1, le=4096)
    """Most instances the serving batcher puts into one model call."""
    batch_wait_ms: float = Field(1.0, ge=0.0, le=50.0)
    """Longest a batch waits for more requests (it runs sooner once no more arrive)."""
    max_instances: int = Field(64, ge=1, le=4096)
    """Most instances one /predict request may carry."""
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A request's headers must be complete this long after its first byte (else 408)."""
    body_timeout_seconds: float = Field(30.0, gt=0, le=600)
    """A request's body must be complete this long after its headers (else 408); 30 s lets an
    8 MiB body through at ~280 KB/s."""
    reload_interval_seconds: float = Field(2.0, gt=0, le=3600)
    """How often the server checks models/CURRENT for a newly promoted run."""

    forecast_interval_seconds: float = Field(10.0, gt=0, le=86_400)
    forecast_horizon: int = Field(26, ge=1, le=52)
    forecast_history_limit: int = Field(500, ge=1)

    def run_id_or_new(self) -> str:
        """`RUN_ID` when set, else a new timestamp-based id."""
        return self.run_id or new_run_id()


class SettingsError(SystemExit):
    """Raised (as exit code 2) when an environment variable has a bad value."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def _describe(error: dict) -> str:
    env_var = "_".join(str(part) for part in error["loc"]).upper()
    return f"invalid environment variable {env_var}={error['input']!r}: {error['msg']}"


def load_settings() -> AppSettings:
    """Read the settings from the environment; on a bad value print one clear line and exit 2."""
    try:
        return AppSettings()
    except ValidationError as exc:
        message = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        print(f"error: {message}", file=sys.stderr)
        raise SettingsError(message) from None
