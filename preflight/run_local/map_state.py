"""A Map state, walked on this machine as Step Functions runs it (JSONPath).

- the items: `ItemsPath` (default `$`) on the state's input after `InputPath`, a JSON array;
  each iteration's input is `ItemSelector` rendered with `$$.Map.Item.Index` and
  `$$.Map.Item.Value` in the context object, or the item itself
  (input-output-itemspath.html, input-output-itemselector.html);
- the iterations run on threads, at most `MaxConcurrency` at once (0 or absent: all), each one's
  states walked as the execution's are (pipeline.py: Retry, Catch, timeouts); every log line of
  an iteration is tagged `<Map state>[<index> <item id>]`, and its start and end are logged with
  the wall-clock time, so how many ran at once can be read off the log;
- `ItemProcessor.ProcessorConfig.Mode` `DISTRIBUTED`: each iteration is a child execution with
  its own `$$.Execution` (state-map-distributed.html); `ToleratedFailureCount` and
  `ToleratedFailurePercentage` (Distributed mode only; both 0 by default) are the failures the
  Map Run survives: past either, no iteration starts any more, those running are stopped
  (aborted, as Step Functions aborts a failed Map Run's children) and the state fails with
  `States.ExceedToleratedFailureThreshold` (maprun-fail-threshold.html);
- `INLINE` (the default): the first iteration that fails fails the state with its error, and the
  others are stopped;
- the result is the list of the iterations' outputs in item order, a tolerated failure's entry
  its `{"Error", "Cause"}`; then `ResultSelector`, `ResultPath`, `OutputPath` as for any state.

`ItemReader`, `ItemBatcher`, `ResultWriter`, `Items` (JSONata) and the `*Path` forms of the
limits are refused: this walk does not implement them.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from preflight import asl

if TYPE_CHECKING:
    from preflight.run_local.pipeline import Walk

EXCEEDED = "States.ExceedToleratedFailureThreshold"
UNSUPPORTED = (
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "Items",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
)
DISTRIBUTED_ONLY = ("ToleratedFailureCount", "ToleratedFailurePercentage", "Label")


def _clock() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def _label(item: Any) -> str:
    ident = item.get("id") if isinstance(item, Mapping) else None
    return f" {ident}" if isinstance(ident, str) and ident.isprintable() and len(ident) < 40 else ""


def _check(name: str, state: Mapping[str, Any], distributed: bool) -> None:
    for field in UNSUPPORTED:
        if field in state:
            raise asl.AslError(f"Map {name}: {field} is not implemented here")
    if not distributed:
        for field in DISTRIBUTED_ONLY:
            if field in state:
                raise asl.AslError(f"Map {name}: {field} exists only in Distributed mode")


def exceeded(failed: int, total: int, state: Mapping[str, Any]) -> bool:
    """Whether `failed` of `total` iterations pass the Map Run's tolerated failure threshold:
    more than ToleratedFailureCount, or a larger share than ToleratedFailurePercentage, whichever
    is given; neither given, any failure."""
    count = state.get("ToleratedFailureCount")
    percentage = state.get("ToleratedFailurePercentage")
    if count is None and percentage is None:
        return failed > 0
    return (count is not None and failed > count) or (
        percentage is not None and total > 0 and failed * 100 / total > percentage
    )


def run_map(walk: Walk, name: str, state: Mapping[str, Any]) -> list[Any]:
    """Run the Map state `name` of `walk`; its raw result (before ResultPath)."""
    from preflight.run_local.pipeline import StateFailed, Walk, execution_context

    processor = state.get("ItemProcessor") or state.get("Iterator")
    if not isinstance(processor, Mapping):
        raise asl.AslError(f"Map {name}: no ItemProcessor")
    distributed = (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED"
    _check(name, state, distributed)
    effective = walk.data
    if "InputPath" in state:
        path = state["InputPath"]
        effective = {} if path is None else asl.read_path(path, walk.data, walk.context)
    items = asl.read_path(state.get("ItemsPath", "$"), effective, walk.context)
    if not isinstance(items, list):
        raise StateFailed("States.Runtime", f"Map {name}: ItemsPath is not an array")
    inputs = []
    for index, item in enumerate(items):
        context = {**walk.context, "Map": {"Item": {"Index": index, "Value": item}}}
        selector = state.get("ItemSelector", state.get("Parameters"))
        inputs.append(item if selector is None else asl.render(selector, effective, context))
    limit = state.get("MaxConcurrency", 0) or len(items)
    mode = "Distributed" if distributed else "Inline"
    walk.out(
        f"{walk.tag} {name}: Map ({mode}) over {len(items)} items, at most {limit} at once"
        + (f", {state.get('ToleratedFailureCount', 0)} failure(s) tolerated" if distributed else "")
    )

    results: list[Any] = [None] * len(items)
    finished: queue.Queue[tuple[int, Walk, int, float]] = queue.Queue()
    running: dict[int, Walk] = {}
    pending = list(range(len(items)))
    failures: list[tuple[int, Walk]] = []
    stopping = False

    def iterate(index: int, child: Walk) -> None:
        begun = time.monotonic()
        try:
            code = child.run()
        except StateFailed as failure:  # raised by a state with no Catch of its own
            child.error, child.cause, code = failure.error, failure.cause, 1
        except Exception as exc:  # a walk that broke: the iteration fails, the Map says why
            child.error, child.cause, code = "States.Runtime", f"{type(exc).__name__}: {exc}", 1
        finished.put((index, child, code, time.monotonic() - begun))

    while pending or running:
        while pending and len(running) < limit and not stopping:
            index = pending.pop(0)
            tag = f"{walk.tag} {name}[{index}{_label(items[index])}]"
            context = (
                execution_context(inputs[index], uuid.uuid4().hex[:8])
                if distributed
                else walk.context
            )
            child = Walk(
                walk.session,
                walk.only,
                inputs[index],
                machine=processor,
                context=context,
                shared=walk.shared,
                tag=tag,
            )
            running[index] = child
            walk.out(f"{tag} started at {_clock()} ({len(running)} running)")
            threading.Thread(target=iterate, args=(index, child), daemon=True).start()
        index, child, code, seconds = finished.get()
        del running[index]
        outcome = "succeeded" if code == 0 else f"failed ({child.error})"
        walk.out(f"{child.tag} {outcome} at {_clock()} after {seconds:.1f} s")
        if code == 0:
            results[index] = child.data
            continue
        results[index] = {"Error": child.error, "Cause": child.cause}
        failures.append((index, child))
        if not stopping and (not distributed or exceeded(len(failures), len(items), state)):
            stopping = True
            pending.clear()
            for other in running.values():
                other.aborted.set()
                if other.task is not None:
                    other.task.stop(reason=f"the Map state {name} failed")
    if not failures:
        return results
    if distributed and not exceeded(len(failures), len(items), state):
        return results
    first = failures[0][1]
    if not distributed:
        raise StateFailed(first.error, first.cause)
    raise StateFailed(
        EXCEEDED,
        f"Map {name}: {len(failures)} of {len(items)} iterations failed, past the tolerated "
        f"{state.get('ToleratedFailureCount', 0)} (first: {first.error}: {first.cause[:500]})",
    )
