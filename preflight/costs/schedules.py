"""Schedule playback: when EventBridge, EventBridge Scheduler and Application Auto Scaling
schedule expressions fire over a reference year, and what a service's scaling range is between
its scheduled actions.

Expressions as EventBridge and Application Auto Scaling read them: `cron(minutes hours
day-of-month month day-of-week year)`, exactly one of the two day fields `?`, and `rate(N unit)`.
Prices nothing itself: the families turn fires into runs and spans into task-hours.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from preflight.costs.core import MONTHS_PER_YEAR, as_number

REFERENCE_YEAR = 2027
"""Schedules are played over this (non-leap) year, in their own time zone, DST ignored."""
MINUTES_PER_YEAR = 365 * 24 * 60

ScalingEvent = tuple[int, float | None, float | None]
"""A scheduled action firing: (minute of the reference year, new minimum, new maximum); None
leaves that bound as it was."""

_DAY_NAMES = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
_MONTH_NAMES = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}


def _expand(text: str, lo: int, hi: int, names: Mapping[str, int]) -> set[int]:
    if text in ("*", "?"):
        return set(range(lo, hi + 1))
    values: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, end = lo, hi
        else:
            bounds = [names.get(b.upper(), None) or int(b) for b in base.split("-")]
            start = bounds[0]
            end = bounds[-1] if len(bounds) > 1 else (hi if step else bounds[0])
        values.update(range(start, end + 1, int(step) if step else 1))
    return values


def _day_matches(day: dt.date, dom: str, dow: str) -> bool:
    aws_dow = (day.isoweekday() % 7) + 1  # AWS: SUN=1 .. SAT=7
    if dom != "?":
        if dom == "L":
            return (day + dt.timedelta(days=1)).month != day.month
        if dom.endswith("W"):  # nearest weekday: close enough for a monthly estimate
            return day.day == int(dom[:-1])
        return day.day in _expand(dom, 1, 31, {})
    if "#" in dow:
        weekday, nth = dow.split("#")
        target = _DAY_NAMES.get(weekday.upper()) or int(weekday)
        return aws_dow == target and (day.day - 1) // 7 + 1 == int(nth)
    if dow.endswith("L") and len(dow) > 1:
        target = _DAY_NAMES.get(dow[:-1].upper()) or int(dow[:-1])
        return aws_dow == target and (day + dt.timedelta(days=7)).month != day.month
    return aws_dow in _expand(dow, 1, 7, _DAY_NAMES)


def schedule_fires(expression: str) -> list[int]:
    """Minutes from the start of the reference year at which a schedule expression fires.

    `cron(min hour dom month dow year)` and `rate(N unit)` as EventBridge and Application Auto
    Scaling read them; `at(...)` is a one-off and does not shape a monthly estimate.
    """
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression or "")
    if rate:
        every = int(rate.group(1)) * {"m": 1, "h": 60, "d": 1440}[rate.group(2)[0]]
        return list(range(0, MINUTES_PER_YEAR, max(every, 1)))
    cron = re.fullmatch(r"cron\((.*)\)", expression or "")
    if not cron or len(cron.group(1).split()) != 6:
        return []
    minute, hour, dom, month, dow, year = cron.group(1).split()
    if year not in ("*", "?") and REFERENCE_YEAR not in _expand(year, 1970, 2199, {}):
        return []
    minutes = sorted(_expand(minute, 0, 59, {}))
    hours = sorted(_expand(hour, 0, 23, {}))
    months = _expand(month, 1, 12, _MONTH_NAMES)
    fires = []
    day = dt.date(REFERENCE_YEAR, 1, 1)
    for index in range(365):
        current = day + dt.timedelta(days=index)
        if current.month in months and _day_matches(current, dom, dow):
            fires += [index * 1440 + h * 60 + m for h in hours for m in minutes]
    return fires


def fires_per_month(expression: str) -> float:
    return len(schedule_fires(expression)) / MONTHS_PER_YEAR


def scaled_spans(
    desired: float, low: float, high: float, events: Sequence[ScalingEvent]
) -> list[tuple[float, int]]:
    """(running tasks, minutes) spans that cover the reference year: `desired` clamped into the
    scaling range `low`..`high` as the events move its bounds (Application Auto Scaling keeps a
    service's count inside its target's min..max).

    The year repeats: before its first event the range is what the last event left.
    """
    events = sorted(events, key=lambda e: e[0])
    for _, new_low, new_high in events:
        low = as_number(new_low, low)
        high = as_number(new_high, high)
    spans = []
    start = 0
    for minute, new_low, new_high in [*events, (MINUTES_PER_YEAR, None, None)]:
        spans.append((min(max(desired, low), high), minute - start))
        start = minute
        low = as_number(new_low, low)
        high = as_number(new_high, high)
    return spans
