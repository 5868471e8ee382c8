"""Micro-batching: concurrent `/predict` requests share one model call.

A batch keeps collecting while requests keep arriving: after each turn of the event loop it
checks whether new requests joined. It runs as soon as a turn brings none (the server has
nothing else to do, so waiting would only add latency), when it holds `max_batch` instances, or
when `wait_s` has passed since its first request, whichever comes first. One call then predicts
every instance and each request's future gets its own slice. A request is never split: one
larger than `max_batch` forms a batch of its own.

The model call runs on the event loop thread: a batch costs well under a millisecond with the
booster pinned to one thread, cheaper than handing it to a worker thread and back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.model import Forecaster

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    histories: list[np.ndarray]
    horizons: list[int]
    future: asyncio.Future


@dataclass
class BatchResult:
    """One request's forecasts and the run id of the model that made them."""

    forecasts: list[np.ndarray]
    run_id: str


@dataclass
class MicroBatcher:
    """Collects requests into batches for `model()` (read at run time, so swaps apply)."""

    model: Callable[[], Forecaster | None]
    max_batch: int
    wait_s: float
    on_batch: Callable[[int], None] = lambda size: None
    _pending: list[_Pending] = field(default_factory=list)
    _instances: int = 0
    _check: asyncio.Handle | None = None
    _deadline: float = 0.0
    _seen: int = 0

    def submit(self, histories: list[np.ndarray], horizons: list[int]) -> asyncio.Future:
        """Queue one request; the future resolves to its BatchResult."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Pending(histories, horizons, future))
        self._instances += len(histories)
        if self._instances >= self.max_batch:
            self.flush()
        elif self._check is None:
            self._deadline = loop.time() + self.wait_s
            self._seen = len(self._pending)
            self._check = loop.call_soon(self._flush_when_quiet)
        return future

    def _flush_when_quiet(self) -> None:
        self._check = None
        loop = asyncio.get_running_loop()
        if len(self._pending) > self._seen and loop.time() < self._deadline:
            self._seen = len(self._pending)
            self._check = loop.call_soon(self._flush_when_quiet)
        else:
            self.flush()

    def flush(self) -> None:
        """Run the pending requests as one model call."""
        if self._check is not None:
            self._check.cancel()
            self._check = None
        batch, self._pending, self._instances = self._pending, [], 0
        if not batch:
            return
        forecaster = self.model()
        try:
            if forecaster is None:
                raise RuntimeError("no model loaded")
            histories = [h for item in batch for h in item.histories]
            horizons = [h for item in batch for h in item.horizons]
            forecasts = forecaster.predict(histories, horizons)
        except Exception as exc:
            log.exception("prediction failed for a batch of %d requests", len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.on_batch(len(horizons))
        start = 0
        for item in batch:
            end = start + len(item.horizons)
            if not item.future.done():  # the client may have gone away
                item.future.set_result(BatchResult(forecasts[start:end], forecaster.run_id))
            start = end
