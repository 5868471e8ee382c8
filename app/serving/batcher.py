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

from app.forecasting.model import Forecaster

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    histories: list[np.ndarray]
    horizons: list[int]
    levels: tuple[int, ...]
    future: asyncio.Future


@dataclass
class BatchResult:
    """One request's forecasts, their interval bounds (per instance; `{}` when none were asked
    for or the model that made them has none), and that model, all from one model call."""

    forecasts: list[np.ndarray]
    bounds: list[dict[str, dict[str, np.ndarray]]]
    model: Forecaster
    nonfinite: str = ""
    """"forecast" or "interval" when a figure of this request is not a finite number."""


def _nonfinite(forecasts: list[np.ndarray], bounds: list[dict[str, dict[str, np.ndarray]]]) -> str:
    if not all(np.isfinite(forecast).all() for forecast in forecasts):
        return "forecast"
    for by_side in bounds:
        for arrays in by_side.values():
            if not all(np.isfinite(array).all() for array in arrays.values()):
                return "interval"
    return ""


@dataclass
class MicroBatcher:
    """Collects requests into batches for `model()` (read at run time, so swaps apply)."""

    model: Callable[[], Forecaster | None]
    max_batch: int
    wait_s: float
    decimals: int | None = 4
    """Figures are rounded to this many decimals, once per batch (the response's precision)."""
    on_batch: Callable[[int], None] = lambda size: None
    _pending: list[_Pending] = field(default_factory=list)
    _instances: int = 0
    _check: asyncio.Handle | None = None
    _deadline: float = 0.0
    _seen: int = 0

    def submit(
        self, histories: list[np.ndarray], horizons: list[int], levels: tuple[int, ...] = ()
    ) -> asyncio.Future:
        """Queue one request, with the interval levels it wants bounds for; the future resolves
        to its BatchResult."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Pending(histories, horizons, levels, future))
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
            known = forecaster.levels
            # Bounds at every level any request of the batch asked for, in the same call. A
            # request validated against a model swapped out since gets no bounds, as before.
            wanted = {item.levels for item in batch if set(item.levels) <= set(known)}
            levels = wanted.pop() if len(wanted) == 1 else tuple(sorted(set().union(*wanted)))
            histories = [h for item in batch for h in item.histories]
            horizons = [h for item in batch for h in item.horizons]
            made = forecaster.forecast(histories, horizons, levels, self.decimals)
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
                forecasts = made.points[start:end]
                if not item.levels or not set(item.levels) <= set(known):
                    bounds = [{}] * len(forecasts)
                elif item.levels == levels:
                    bounds = made.bounds[start:end]
                else:
                    names = [str(level) for level in item.levels]
                    bounds = [
                        {side: {lv: by[lv] for lv in names} for side, by in b.items()}
                        for b in made.bounds[start:end]
                    ]
                nonfinite = "" if made.finite else _nonfinite(forecasts, bounds)
                item.future.set_result(BatchResult(forecasts, bounds, forecaster, nonfinite))
            start = end
