"""The model the api serves, and its hot reload.

`ModelSlot` holds the loaded forecaster and what is precomputed from it (the `/model` body, the
OpenAPI documents, the plausible history range). At start it loads the run models/CURRENT names;
then the api polls CURRENT and swaps in each newly promoted run once it passed its check
(`app.forecasting.model_check`). A run that fails to load is logged and counted and the old model
keeps serving; a server starting on a bad CURRENT serves the most recently promoted run that
passes, or stays up and not ready.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

import orjson

from app.forecasting.model import (
    DEFAULT_LEVELS,
    METRICS_FILE,
    MIN_HISTORY,
    MODEL_FILES,
    Forecaster,
    ModelLoadError,
)
from app.forecasting.model import MAX_HORIZON as DEFAULT_MAX_HORIZON
from app.forecasting.model_check import load_checked, plausible_range
from app.series import from_metrics
from app.serving.metrics import Metrics
from app.serving.openapi import openapi_document
from app.serving.payload import MAX_BODY_BYTES, MAX_HISTORY
from app.settings import AppSettings
from app.store import CurrentWatch, Store

log = logging.getLogger(__name__)

MAX_FALLBACK_RUNS = 3
"""At start with a bad CURRENT: how many earlier promoted runs to try before staying not ready."""


def _described(forecaster: Forecaster | None) -> dict[str, str]:
    """The served series' name and units and the plausible range's rule, for /openapi.json."""
    if forecaster is None:
        return {}
    series = from_metrics(forecaster.metrics)
    rule = (forecaster.metrics.get("history_range") or {}).get("rule")
    return {"series": series.in_units(series.label), "range_rule": str(rule or "")}


@dataclass
class ModelSlot:
    """The model being served and what the reloader knows about CURRENT."""

    store: Store
    metrics: Metrics
    settings: AppSettings
    device: str = "cpu"
    """Where models predict (`app.forecasting.device.serving_device`), chosen once at start."""
    forecaster: Forecaster | None = None
    history_range: tuple[float, float] = (-math.inf, math.inf)
    model_body: bytes = b""
    openapi_bodies: dict[bool, bytes] = field(default_factory=dict)
    served_key: tuple | None = None
    failed_key: tuple | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.current = CurrentWatch(self.store, log)
        self._describe(None)

    def _describe(self, forecaster: Forecaster | None) -> None:
        """The OpenAPI documents (public, internal) for the limits of `forecaster`."""
        for internal in (False, True):
            document = openapi_document(
                min_history=forecaster.min_history if forecaster else MIN_HISTORY,
                max_history=MAX_HISTORY,
                max_horizon=forecaster.max_horizon if forecaster else DEFAULT_MAX_HORIZON,
                max_instances=self.settings.max_instances,
                max_body_bytes=MAX_BODY_BYTES,
                history_range=self.history_range if forecaster else None,
                levels=forecaster.levels if forecaster else (),
                default_levels=DEFAULT_LEVELS,
                internal=internal or not self.settings.internal_port,
                **_described(forecaster),
            )
            self.openapi_bodies[internal] = orjson.dumps(document)

    def swap(self, forecaster: Forecaster, key: tuple) -> None:
        previous = self.forecaster
        self.history_range = plausible_range(forecaster.metrics)
        self._describe(forecaster)
        self.model_body = orjson.dumps(
            {
                "run_id": forecaster.run_id,
                "trained_at": forecaster.trained_at,
                "metrics": forecaster.metrics,
                "min_history": forecaster.min_history,
                "max_horizon": forecaster.max_horizon,
                "device": forecaster.device,
            }
        )
        # One assignment: requests batched after it use the new model, earlier ones the old.
        self.forecaster = forecaster
        self.served_key = key
        if previous is not None:
            self.metrics.model_info.remove(previous.run_id)
        self.metrics.model_info.labels(forecaster.run_id).set(1)
        self.metrics.reloads.inc()
        log.info(
            "serving run %s (was %s)", forecaster.run_id, previous.run_id if previous else "none"
        )

    def _key(self, run_id: str) -> tuple:
        """The promoted directory and the stamps of its files: what a reload is keyed on (not
        the run_id inside metrics.json, which a copied run keeps from its origin)."""
        stamps: list[tuple[int, int] | None] = []
        for name in (*MODEL_FILES.values(), METRICS_FILE):  # either family's model file
            try:
                stat = (self.store.run_dir(run_id) / name).stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except (OSError, ValueError):  # missing file, or CURRENT holds no valid run id
                stamps.append(None)
        return (run_id, *stamps)

    def _candidate(self) -> tuple[str, tuple] | None:
        """CURRENT's run id and key, when it differs from what is served. A damaged CURRENT
        (DamagedFileError) is logged once per change of state and reads as "no change"."""
        serving = self.forecaster.run_id if self.forecaster else "no model"
        readable, run_id = self.current.read(f"still serving {serving} until a run is promoted")
        if not readable or run_id is None or (self.served_key and self.served_key[0] == run_id):
            return None
        return run_id, self._key(run_id)

    def _count_check(self, how: str) -> None:
        self.metrics.current_checks.labels(how).inc()

    def _load(self, run_id: str, key: tuple) -> Forecaster | None:
        """The run's model, or None after logging and counting why it cannot be loaded."""
        try:
            return load_checked(
                self.store.run_dir(run_id), device=self.device, on_check=self._count_check
            )
        except (ModelLoadError, ValueError) as exc:
            self._failed(run_id, key, exc)
            return None

    def load_current(self) -> None:
        """Load CURRENT synchronously (at start-up, before the server listens). When it cannot
        be served, or is damaged, fall back to the most recently promoted run that can, or stay
        not ready."""
        candidate = self._candidate()
        if candidate is None and self.current.damaged is None:
            log.info("no promoted model yet (models/CURRENT); /ready answers 503 until one is")
            return
        if candidate is not None:
            forecaster = self._load(*candidate)
            if forecaster is not None:
                self.swap(forecaster, candidate[1])
                return
        bad = "is damaged"
        if candidate is not None:
            bad = f"names run {candidate[0]}, which cannot be served"
        self._fall_back(bad, exclude=candidate[0] if candidate else None)

    def _fall_back(self, bad: str, exclude: str | None) -> None:
        for run_id in self.store.promoted_runs(exclude=exclude)[:MAX_FALLBACK_RUNS]:
            key = self._key(run_id)
            try:
                forecaster = load_checked(
                    self.store.run_dir(run_id), device=self.device, on_check=self._count_check
                )
            except (ModelLoadError, ValueError) as exc:
                log.error("cannot load earlier promoted run %s either: %s", run_id, exc)
                continue
            log.warning(
                "CURRENT %s; serving the last good promoted run %s until a new run is promoted",
                bad,
                run_id,
            )
            self.swap(forecaster, key)
            return
        log.error(
            "no servable model: CURRENT %s, and no earlier promoted run loads; /ready answers "
            "503 until a good run is promoted",
            bad,
        )

    async def reload_if_changed(self) -> None:
        async with self.lock:
            was_damaged = self.current.damaged
            candidate = await asyncio.to_thread(self._candidate)
            newly_damaged = self.current.damaged and not was_damaged
            if candidate is None and newly_damaged and not self.forecaster:
                await asyncio.to_thread(self._fall_back, "is damaged", None)
            if candidate is None or candidate[1] == self.failed_key:
                return
            forecaster = await asyncio.to_thread(self._load, *candidate)
            if forecaster is not None:
                self.swap(forecaster, candidate[1])

    def _failed(self, run_id: str, key: tuple, exc: Exception) -> None:
        self.failed_key = key
        self.metrics.failed_reloads.inc()
        serving = self.forecaster.run_id if self.forecaster else "no model"
        log.error("cannot load promoted run %s: %s; still serving %s", run_id, exc, serving)
