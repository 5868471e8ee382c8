"""The schedule grammar EventBridge and Application Auto Scaling accept.

`cron(...)`, `rate(...)` and, for scheduled scaling only, `at(...)`. Pure (no Pulumi): a refused
expression raises `CronError` saying what is allowed; the config parser adds the key.
"""

from __future__ import annotations

import re

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _cron_field_ok(text: str, lo: int, hi: int, names: list[str], extra: str) -> bool:
    """One cron field: `*`, values, ranges, lists and `/` increments, plus the field's specials."""
    if text == "*":
        return True
    for part in text.split(","):
        if "L" in extra and (part in ("L", "LW") or re.fullmatch(r"[1-7]L", part)):
            continue
        if "W" in extra and re.fullmatch(r"\d{1,2}W", part):
            if lo <= int(part[:-1]) <= hi:
                continue
            return False
        if "#" in extra and re.fullmatch(r"\d#[1-5]", part):
            if lo <= int(part[0]) <= hi:
                continue
            return False
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) >= 1):
            return False
        if base == "*" and step:
            continue
        bounds = base.split("-")
        if len(bounds) > 2:
            return False
        for bound in bounds:
            upper = bound.upper()
            if upper in names:
                continue
            if not bound.isdigit() or not lo <= int(bound) <= hi:
                return False
    return True


class CronError(ValueError):
    """A schedule expression EventBridge or Application Auto Scaling would refuse; the message
    says what is allowed."""


def check_cron(expression: str, *, allow_at: bool = False) -> str:
    """Reject what EventBridge / Application Auto Scaling would refuse.

    Format (EventBridge "Schedule expressions for rules"; Application Auto Scaling
    "Scheduled scaling"): `cron(minutes hours day-of-month month day-of-week year)` with exactly
    one of day-of-month / day-of-week set to `?`, or `rate(value unit)`; App Auto Scaling also
    takes `at(yyyy-mm-ddThh:mm:ss)`.
    """
    allowed = (
        "use cron(min hour day-of-month month day-of-week year) with exactly one of "
        "day-of-month/day-of-week set to '?', or rate(N minute|minutes|hour|hours|day|days)"
        + (", or at(yyyy-mm-ddThh:mm:ss)" if allow_at else "")
    )
    if not isinstance(expression, str):
        raise CronError(allowed)
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise CronError("rate() needs a positive value, singular unit for 1")
        return expression
    if allow_at and re.fullmatch(r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)", expression):
        return expression
    match = re.fullmatch(r"cron\((.*)\)", expression)
    if not match:
        raise CronError(allowed)
    parts = match.group(1).split()
    if len(parts) != 6:
        raise CronError(f"cron() needs 6 fields, got {len(parts)}; {allowed}")
    minute, hour, dom, month, dow, year = parts
    if (dom == "?") == (dow == "?"):
        raise CronError("exactly one of day-of-month and day-of-week must be '?'")
    checks = [
        ("minutes", minute, 0, 59, [], ""),
        ("hours", hour, 0, 23, [], ""),
        ("day-of-month", dom, 1, 31, [], "LW"),
        ("month", month, 1, 12, _MONTHS, ""),
        ("day-of-week", dow, 1, 7, _DAYS, "L#"),
        ("year", year, 1970, 2199, [], ""),
    ]
    for name, text, lo, hi, names, extra in checks:
        if text == "?" and name in ("day-of-month", "day-of-week"):
            continue
        if not _cron_field_ok(text, lo, hi, names, extra):
            raise CronError(f"the {name} field {text!r} must be within {lo}-{hi}")
    return expression
