"""Parsing and validation of `/predict` request bodies, by hand and fast.

A pydantic model per request would cost more than the model call itself, so the body is parsed
with orjson and checked here; the first problem becomes a 422 whose message names the field,
e.g. `instances[0].history: needs at least 56 values, got 10`.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.processes import die_with

MAX_HISTORY = 10_000
"""Longest history accepted; only the last few dozen values are used anyway."""
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body read; bigger ones are refused with 413 before parsing."""


_NUMBER_TYPES = frozenset((float, int))
"""What orjson makes of JSON numbers (bool is excluded: `type(True) is bool`)."""


class _TooLarge(str):
    """A JSON integer beyond float64's range, kept as its text so the 422 can say so."""


def _json_int(text: str) -> float | _TooLarge:
    # Only bodies orjson refused get here (it handles every 64-bit integer). Converting through
    # int() would accept integers that float() then refuses with OverflowError (a 500).
    value = float(text)
    return value if math.isfinite(value) else _TooLarge(text)


def start_parser_process(parent_pid: int) -> None:
    """Initializer of the server's body-parser process: die with the server. Defined here, so
    the process imports only this module (numpy, orjson), not the server's."""
    die_with(parent_pid)


class PayloadError(ValueError):
    """The request body breaks the contract; the message names the field."""


class PayloadTooLargeError(PayloadError):
    """The request body exceeds MAX_BODY_BYTES."""


@dataclass(frozen=True)
class PredictRequest:
    histories: list[np.ndarray]
    horizons: list[int]
    levels: tuple[int, ...] = ()
    """Interval levels (percent) to return bounds for; empty when the model has none."""


def _levels(value: Any, allowed: tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise PayloadError(f"levels: must be a list of integers, got {_describe(value)}")
    if len(value) > len(allowed):
        raise PayloadError(f"levels: at most {len(allowed)} levels, got {len(value)}")
    shown = ", ".join(map(str, allowed)) or "none (this model has no intervals)"
    levels: list[int] = []
    for i, level in enumerate(value):
        # As for `horizon`: JSON Schema counts 80.0 as an integer, and so does the schema.
        if type(level) is float and level.is_integer():
            level = int(level)
        if type(level) is not int:
            raise PayloadError(f"levels[{i}]: must be an integer, got {_describe(level)}")
        if level not in allowed:
            raise PayloadError(f"levels[{i}]: must be one of {shown}, got {level}")
        if level in levels:
            raise PayloadError(f"levels[{i}]: {level} is already asked for")
        levels.append(level)
    return tuple(levels)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, _TooLarge):
        return f"an integer too large for a 64-bit float ({len(value.lstrip('-'))} digits)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 20 else value[:17] + "..."
        return f"the string {text!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _load(body: bytes) -> tuple[Any, bool]:
    """The parsed body, and whether orjson parsed it: then every number in it is finite (orjson
    refuses NaN, Infinity and numbers beyond float64's range)."""
    if not body:
        raise PayloadError('body: empty; expected {"instances": [...]}')
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(body), True
    # orjson rejects NaN and Infinity; the standard parser accepts them, so the error can name
    # the field holding one. This path only runs for bodies that are already bad.
    try:
        return json.loads(body, parse_int=_json_int), False
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"body: not valid JSON ({exc})") from None


def _history(
    value: Any,
    where: str,
    min_history: int,
    history_range: tuple[float, float],
    finite: bool = False,
) -> np.ndarray:
    if not isinstance(value, list):
        raise PayloadError(f"{where}: must be a list of numbers, got {_describe(value)}")
    if len(value) < min_history:
        raise PayloadError(f"{where}: needs at least {min_history} values, got {len(value)}")
    if len(value) > MAX_HISTORY:
        raise PayloadError(f"{where}: at most {MAX_HISTORY} values, got {len(value)}")
    if not _NUMBER_TYPES.issuperset(map(type, value)):
        index, item = next((i, v) for i, v in enumerate(value) if type(v) not in _NUMBER_TYPES)
        raise PayloadError(f"{where}[{index}]: must be a number, got {_describe(item)}")
    low, high = history_range
    # The fast path: numbers known finite, checked against the range by Python's own min and
    # max over the list (a numpy reduction costs more than the whole loop for a short history).
    if finite and low <= min(value) and max(value) <= high:
        return np.array(value, dtype=np.float64)
    history = np.array(value, dtype=np.float64)
    finite = np.isfinite(history)
    if not finite.all():
        index = int(np.argmin(finite))
        raise PayloadError(f"{where}[{index}]: must be a finite number, got {value[index]}")
    if history.min() < low or history.max() > high:
        index = int(np.argmax((history < low) | (history > high)))
        raise PayloadError(
            f"{where}[{index}]: must be between {low:g} and {high:g} (the model's plausible "
            f"range), got {value[index]}"
        )
    return history


def _horizon(value: Any, where: str, max_horizon: int) -> int:
    # JSON Schema counts 4.0 as an integer, and so does the published schema.
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise PayloadError(f"{where}: must be an integer, got {_describe(value)}")
    if not 1 <= value <= max_horizon:
        raise PayloadError(f"{where}: must be between 1 and {max_horizon}, got {value}")
    return value


def parse_predict(
    body: bytes,
    *,
    min_history: int,
    max_horizon: int,
    max_instances: int,
    history_range: tuple[float, float],
    allowed_levels: tuple[int, ...] = (),
    default_levels: tuple[int, ...] = (),
) -> PredictRequest:
    """Parse a `/predict` body; raises PayloadError naming the first bad field.

    `levels` (optional) picks interval levels among `allowed_levels`; without it, the
    `default_levels` the model calibrated."""
    data, finite = _load(body)
    if not isinstance(data, dict):
        raise PayloadError(f'body: must be an object {{"instances": [...]}}, got {_describe(data)}')
    extra = sorted(set(data) - {"instances", "levels"})
    if extra:
        raise PayloadError(f"{extra[0]}: unknown field; only 'instances' and 'levels' are accepted")
    if "instances" not in data:
        raise PayloadError("instances: missing")
    instances = data["instances"]
    if not isinstance(instances, list):
        raise PayloadError(f"instances: must be a list, got {_describe(instances)}")
    if not instances:
        raise PayloadError("instances: must hold at least one instance")
    if len(instances) > max_instances:
        raise PayloadError(
            f"instances: at most {max_instances} instances per request, got {len(instances)}"
        )
    histories, horizons = [], []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise PayloadError(
                f'{where}: must be an object {{"history": [...], "horizon": n}}, '
                f"got {_describe(instance)}"
            )
        for field in ("history", "horizon"):
            if field not in instance:
                raise PayloadError(f"{where}.{field}: missing")
        if len(instance) > 2:
            unknown = sorted(set(instance) - {"history", "horizon"})[0]
            raise PayloadError(f"{where}.{unknown}: unknown field")
        histories.append(
            _history(instance["history"], f"{where}.history", min_history, history_range, finite)
        )
        horizons.append(_horizon(instance["horizon"], f"{where}.horizon", max_horizon))
    if "levels" in data:
        levels = _levels(data["levels"], allowed_levels)
    else:
        levels = tuple(level for level in default_levels if level in allowed_levels)
    return PredictRequest(histories, horizons, levels)
