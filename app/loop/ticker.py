"""`python -m app forecast`: the real-time forecast ticker.

Every `FORECAST_INTERVAL_SECONDS` the ticker forecasts the next `FORECAST_HORIZON` weeks from the
latest observations in the store with the promoted model (`models/CURRENT`, reloaded only when it
changes), with the model's interval bounds at each level it calibrated, and writes:

    forecasts/latest.json     the newest forecast (atomic replace)
    forecasts/history.jsonl   recent forecasts, one JSON per line, oldest first: at least the
                              last `FORECAST_HISTORY_LIMIT` and at most twice as many

Lineage: it forecasts only from a dataset that passed validation as those exact bytes: the one
ingest last wrote, when its record (`datasets/ingest.json`, `validated: true`) names the file's
sha256 (ingest runs the training data's checks on the merged dataset before it writes it), so
the forecast starts from the newest week ingest accepted; else the one whose sha256 the newest
passing validation report names, cut at that report's last date. A dataset file that neither
names (rewritten by hand, or failed) is ignored with one warning: the ticker keeps forecasting
from the last accepted series it read, or writes nothing when it has none. The forecast origin is
the last observed week; trailing weeks without a value are never forecast from.

Several replicas may run; one writes. Each tick a replica that is not the writer tries an
exclusive, non-blocking POSIX lock (`lockf`) on `forecasts/.writer.lock`. POSIX locks work on EFS
(NFSv4.1 byte-range locks). The kernel drops the lock when the holder dies, so a standby replica
takes over on its next tick; on EFS the server releases a dead client's locks when its NFSv4 lease
lapses, so there the takeover waits for the lease period.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.cli import command_settings, open_store
from app.forecasting.model import DEFAULT_LEVELS, Forecaster, ModelLoadError, fill_gaps, read_series
from app.forecasting.model_check import load_checked
from app.pipeline.lineage import file_sha256, passing_reports
from app.settings import AppSettings
from app.store import INGEST_PENDING_NAME as PENDING_NAME
from app.store import INGEST_STATE_NAME as STATE_NAME
from app.store import CurrentWatch, Store

log = logging.getLogger(__name__)

LATEST_NAME = "latest.json"
HISTORY_NAME = "history.jsonl"
LOCK_NAME = ".writer.lock"
MAX_RETRY_GAP_TICKS = 32
"""A promoted run that failed to load is retried on the next tick, then after 1, 2, 4... ticks up
to this many (every retry costs a probe process)."""


def writer_identity() -> str:
    """`host:pid`, recorded with every forecast so an operator can tell which replica wrote it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WriterLock:
    """An exclusive, non-blocking POSIX lock on a file: at most one holder across processes/hosts.

    POSIX locks belong to the process and are released when it closes *any* descriptor of the
    file, so this object is the only code in the process that may open the lock file.
    """

    def __init__(self, path: Path, identity: str) -> None:
        self.path = path
        self.identity = identity
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True while this process holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        # Writing through the locked descriptor tells standbys who the writer is.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.identity}\n".encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as the holder recorded it (best effort, for log lines)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def forecast_dates(dates: np.ndarray, horizon: int) -> np.ndarray:
    """The `horizon` dates after the last observation, spaced like the recent observations."""
    recent = np.diff(dates[-9:]).astype("timedelta64[D]").astype(np.int64)
    step = int(np.median(recent)) if recent.size else 7
    return dates[-1] + np.arange(1, horizon + 1) * np.timedelta64(max(step, 1), "D")


def _ingest_record(store: Store) -> dict[str, Any] | None:
    """Ingest's record of the dataset it last wrote, when it validated those bytes."""
    try:
        record = store.read_json(store.datasets_dir / STATE_NAME)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("validated") is not True:
        return None
    return record


class Ticker:
    """Forecasts from the promoted model and writes them, when this process holds the lock."""

    def __init__(self, store: Store, settings: AppSettings, identity: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.identity = identity or writer_identity()
        self.lock = WriterLock(store.forecasts_dir / LOCK_NAME, self.identity)
        self.model: Forecaster | None = None
        self._loaded_run_id: str | None = None
        self._failed_run_id: str | None = None
        self._retry_gap = 0
        self._ticks_until_retry = 0
        self._waiting_logged = False
        self.current = CurrentWatch(store, log)
        self._series_key: tuple | None = None
        self._series: tuple[np.ndarray, np.ndarray] | None = None
        self._series_report: dict[str, Any] | None = None
        self._history_lines: int | None = None

    @property
    def latest_path(self) -> Path:
        return self.store.forecasts_dir / LATEST_NAME

    @property
    def history_path(self) -> Path:
        return self.store.forecasts_dir / HISTORY_NAME

    def tick(self) -> dict[str, Any] | None:
        """One tick. Returns the forecast written, or None when this replica did not write."""
        # Standbys keep the promoted model loaded too: loading one probes it in a child process
        # first (seconds), which would otherwise delay a takeover.
        model = self._current_model()
        was_writer = self.lock.held
        if not self.lock.try_acquire():
            log.debug("standby: the writer lock is held by %s", self.lock.holder())
            return None
        if not was_writer:
            log.info("took the writer lock %s; this replica writes forecasts", self.lock.path)
        series = self._load_series()
        if model is None or series is None:
            return None
        payload = self._forecast(model, *series)
        self.store.write_json(self.latest_path, payload)
        self._append_history(payload)
        return payload

    def _current_model(self) -> Forecaster | None:
        """The promoted model, loaded again only when models/CURRENT names another run.

        A run that fails to load is retried on the next tick (on EFS, a newly promoted run's
        files can lag behind CURRENT), then with growing gaps while it keeps failing."""
        # While CURRENT is damaged the ticker keeps forecasting from the model it has (as the
        # api serves the last good run).
        kept = self._loaded_run_id or "none"
        readable, run_id = self.current.read(
            f"keeping model {kept} until it is repaired (python -m app promote RUN_ID)"
        )
        if not readable:
            return self.model
        if run_id is None:
            if self.model is None and not self._waiting_logged:
                self._waiting_logged = True
                log.info("no model yet: waiting for a run to be promoted to models/CURRENT")
            return self.model
        if run_id == self._loaded_run_id:
            return self.model
        if run_id == self._failed_run_id and self._ticks_until_retry > 0:
            self._ticks_until_retry -= 1
            return self.model
        try:
            model = load_checked(self.store.run_dir(run_id))
        except (ModelLoadError, ValueError) as exc:
            kept = self._loaded_run_id or "none"
            if run_id != self._failed_run_id:
                self._failed_run_id, self._retry_gap = run_id, 0
                log.error("cannot load promoted run %s (keeping %s): %s", run_id, kept, exc)
            else:
                self._retry_gap = min(max(1, 2 * self._retry_gap), MAX_RETRY_GAP_TICKS)
                log.warning(
                    "still cannot load promoted run %s (keeping %s), next try in %d ticks: %s",
                    run_id,
                    kept,
                    self._retry_gap + 1,
                    exc,
                )
            self._ticks_until_retry = self._retry_gap
            return self.model
        log.info("loaded model %s (previous: %s)", run_id, self._loaded_run_id or "none")
        self.model = model
        self._loaded_run_id = run_id
        self._failed_run_id = None
        return model

    def _load_series(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The newest accepted series, checked again when the file, the reports or ingest's
        record change: the dataset as ingest last wrote it when ingest validated those exact
        bytes (`datasets/ingest.json`), else the one the newest passing validation report names,
        cut at its last date."""
        path = self.store.dataset_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            log.warning("no dataset at %s yet", path)
            return self._series
        reports = passing_reports(self.store)
        newest = reports[-1] if reports else None
        ingested = _ingest_record(self.store)
        key = (
            stat.st_mtime_ns,
            stat.st_size,
            newest and newest.get("checked_at"),
            len(reports),
            ingested and ingested.get("ingested_at"),
        )
        if key == self._series_key:
            return self._series
        kept = "the last accepted series" if self._series is not None else "nothing"
        sha256 = file_sha256(path)
        if ingested is not None and ingested.get("sha256") == sha256:
            accepted = {
                "dataset_sha256": sha256,
                "run_id": "ingest",
                "ingested_at": ingested.get("ingested_at"),
                "last_date": None,
            }
        elif newest is not None and newest["dataset_sha256"] == sha256:
            accepted = newest
        elif (self.store.datasets_dir / PENDING_NAME).exists():
            # An ingest is between writing the dataset and its record: look again next tick.
            log.debug("ingest in progress: forecasting from %s", kept)
            return self._series
        else:
            self._series_key = key
            log.warning(
                "%s (sha256 %s…) was accepted neither by ingest nor by a validation run "
                "(newest passing: %s); forecasting from %s",
                path,
                sha256[:12],
                newest.get("run_id") if newest else "none",
                kept,
            )
            return self._series
        self._series_key = key
        dates, values = read_series(path)
        if accepted.get("last_date"):
            keep = dates <= np.datetime64(accepted["last_date"])
            dates, values = dates[keep], values[keep]
        observed = np.flatnonzero(~np.isnan(values))
        if observed.size == 0:
            return self._series
        # The origin is the last observed week: trailing empty weeks are dropped, not filled.
        last = int(observed[-1]) + 1
        self._series = (dates[:last], values[:last])
        self._series_report = accepted
        return self._series

    def _forecast(self, model: Forecaster, dates: np.ndarray, values: np.ndarray) -> dict[str, Any]:
        horizon = min(self.settings.forecast_horizon, model.max_horizon)
        levels = [level for level in DEFAULT_LEVELS if level in model.levels]
        made = model.forecast([fill_gaps(values)], [horizon], levels)
        ((predicted,), (bounds,)) = made.points, made.bounds
        future = np.datetime_as_string(forecast_dates(dates, horizon), unit="D")
        points = [
            {"date": str(day), "value": round(float(value), 4)}
            for day, value in zip(future, predicted, strict=True)
        ]
        for i, point in enumerate(points):
            for side, by_level in bounds.items():
                point[side] = {lv: round(float(b[i]), 4) for lv, b in by_level.items()}
        report = self._series_report or {}
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run_id": model.run_id,
            "family": model.family,
            "last_observed": str(np.datetime_as_string(dates[-1], unit="D")),
            "horizon": horizon,
            "levels": levels,
            "forecast": points,
            "dataset": {
                "sha256": report.get("dataset_sha256"),
                "validated_by": report.get("run_id"),
                "last_date": report.get("last_date"),
                **({"ingested_at": report["ingested_at"]} if "ingested_at" in report else {}),
            },
            "writer": self.identity,
        }

    def _append_history(self, payload: dict[str, Any]) -> None:
        """Append one line; compact to the newest `limit` lines once the file holds 2 x limit.

        Rewriting the whole history every tick would write ~limit x 1 KB per tick to EFS, which
        bills Elastic Throughput per byte; appending writes one line, and the amortised cost of
        compaction is one more. Only the lock holder writes, so appends never interleave.
        """
        limit = self.settings.forecast_history_limit
        line = orjson.dumps(payload) + b"\n"
        if self._history_lines is None:
            self._history_lines = self._check_history()
        if self._history_lines + 1 > 2 * limit:
            lines = self.history_path.read_bytes().splitlines()[-(limit - 1) :] if limit > 1 else []
            self.store.write_bytes(self.history_path, b"".join(row + b"\n" for row in lines) + line)
            self._history_lines = len(lines) + 1
            return
        with open(self.history_path, "ab") as history:
            history.write(line)
            history.flush()
            os.fsync(history.fileno())
        self._history_lines += 1

    def _check_history(self) -> int:
        """Line count of the history; drops a torn last line left by a writer that died."""
        try:
            data = self.history_path.read_bytes()
        except FileNotFoundError:
            return 0
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            self.store.write_bytes(self.history_path, data)
        return data.count(b"\n")

    def run(self, stop: threading.Event) -> None:
        """Tick every interval until `stop` is set, then release the lock."""
        interval = self.settings.forecast_interval_seconds
        log.info(
            "forecast ticker %s: every %gs, horizon %d, store %s",
            self.identity,
            interval,
            self.settings.forecast_horizon,
            self.store.root,
        )
        next_tick = time.monotonic()
        standby_logged = False
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    payload = self.tick()
                except Exception:
                    log.exception("forecast tick failed")
                    payload = None
                elapsed_ms = (time.monotonic() - started) * 1000
                if payload is not None:
                    standby_logged = False
                    log.info(
                        "tick %.1f ms: wrote %d weeks after %s with model %s",
                        elapsed_ms,
                        payload["horizon"],
                        payload["last_observed"],
                        payload["run_id"],
                    )
                elif not self.lock.held and not standby_logged:
                    standby_logged = True
                    log.info(
                        "tick %.1f ms: standby, %s writes the forecasts",
                        elapsed_ms,
                        self.lock.holder(),
                    )
                else:
                    log.debug("tick %.1f ms: nothing written", elapsed_ms)
                next_tick += interval
                now = time.monotonic()
                if next_tick < now:  # a slow tick: skip the missed slots rather than burst
                    next_tick = now + interval
                stop.wait(next_tick - now)
        finally:
            self.lock.release()
        log.info("forecast ticker stopped")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app forecast",
        description="Write fresh forecasts to the store's forecasts/ folder on a fixed interval.",
    )
    parser.add_argument("--once", action="store_true", help="run a single tick and exit")
    args = parser.parse_args(argv)
    settings = command_settings("forecast")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    store = open_store(settings)
    ticker = Ticker(store, settings)
    if args.once:
        try:
            written = ticker.tick()
        finally:
            ticker.lock.release()
        if written is None:
            print("no forecast written (no model yet, or another replica holds the lock)")
        return 0
    ticker.run(stop)
    return 0
