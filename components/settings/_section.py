"""What every config section parser shares: the error shape (`fail`), the key-by-key reader
(`Section`) and the readers used by more than one section."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Any

import pulumi

from components.aws_facts import FARGATE_MEMORY, GPU_INSTANCES
from components.cron import CronError, check_cron

PROJECT = "mlops"


def fail(key: str, value: Any, allowed: str) -> pulumi.RunError:
    return pulumi.RunError(f"{PROJECT}:{key}: {value!r} is not allowed; {allowed}")


class Section:
    """Reads one config section, key by key, with messages that name `mlops:<section>.<key>`."""

    def __init__(self, name: str, raw: Any, cls: type):
        self.name = name
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise fail(name, raw, "it must be a map of keys (structured YAML)")
        known = [f.name for f in fields(cls)]
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise pulumi.RunError(
                    f"{PROJECT}:{name}.{key}: unknown key; {hint}known keys: {', '.join(known)}"
                )
        self.raw = raw
        self.defaults = {f.name: f.default for f in fields(cls)}

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def has(self, key: str) -> bool:
        return key in self.raw

    def int(self, key: str, lo: int | None = 0, hi: int | None = None) -> int:
        value = self.raw.get(key, self.defaults[key])
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(self.key(key), value, "it must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"from {lo}" + (f" to {hi}" if hi is not None else " up")
            raise fail(self.key(key), value, f"it must be an integer {span}")
        return value

    def number(self, key: str, lo: float, hi: float) -> float:
        value = self.raw.get(key, self.defaults[key])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(self.key(key), value, "it must be a number")
        if not lo <= value < hi:
            raise fail(self.key(key), value, f"it must be at least {lo} and below {hi}")
        return float(value)

    def bool(self, key: str) -> bool:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, bool):
            raise fail(self.key(key), value, "it must be true or false")
        return value

    def str(self, key: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, str):
            raise fail(self.key(key), value, "it must be a string")
        if value and pattern is not None and not pattern.fullmatch(value):
            raise fail(self.key(key), value, allowed)
        return value

    def enum(self, key: str, enum: type[StrEnum]) -> Any:
        value = self.raw.get(key, self.defaults[key])
        try:
            return enum(value)
        except ValueError:
            options = ", ".join(e.value for e in enum)
            raise fail(self.key(key), value, f"allowed: {options}") from None

    def choice(self, key: str, options: tuple[int, ...], off: bool = False) -> int:
        """One of `options`, or 0 meaning "never" when `off`."""
        value = self.int(key, lo=None)
        if value not in options and not (off and value == 0):
            allowed = ", ".join(str(o) for o in options)
            raise fail(self.key(key), value, f"allowed: {'0 (never) or ' if off else ''}{allowed}")
        return value

    def list(self, key: str, item: Callable[[str, Any], Any]) -> tuple[Any, ...]:
        value = self.raw.get(key, self.defaults[key])
        if not isinstance(value, list | tuple):
            raise fail(self.key(key), value, "it must be a list")
        return tuple(item(f"{self.key(key)}[{i}]", v) for i, v in enumerate(value))


def as_map(key: str, raw: Any) -> Mapping[str, Any]:
    """A map value (None: empty), refused naming its key otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise fail(key, raw, "it must be a map")
    return raw


def cidr_block(key: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except (TypeError, ValueError) as exc:
        raise fail(key, value, f"it must be a CIDR block like 10.0.0.0/16 ({exc})") from None


def fargate_size(section: Section, what: str) -> tuple[int, int]:
    cpu = section.int("cpu", lo=None)
    if cpu not in FARGATE_MEMORY:
        allowed = ", ".join(str(c) for c in FARGATE_MEMORY)
        raise fail(section.key("cpu"), cpu, f"{what} needs a Fargate CPU value: {allowed}")
    memory = section.int("memory", lo=None)
    options = FARGATE_MEMORY[cpu]
    if memory not in options:
        step = options[1] - options[0]
        allowed = (
            ", ".join(str(m) for m in options)
            if cpu == 256
            else f"{options[0]}-{options[-1]} in steps of {step}"
        )
        raise fail(section.key("memory"), memory, f"with cpu {cpu} Fargate accepts {allowed}")
    return cpu, memory


def gpu_type(key: str, value: Any) -> str:
    if value not in GPU_INSTANCES:
        families = sorted({t.split(".")[0] for t in GPU_INSTANCES})
        raise fail(
            key,
            value,
            f"gpu-ec2 needs an x86_64 NVIDIA GPU instance type ({', '.join(families)}), "
            "e.g. g5.xlarge",
        )
    return value


def cron(key: str, expression: Any, *, allow_at: bool = False) -> str:
    """A schedule expression (components/cron.py), refused with this key's name."""
    try:
        return check_cron(expression, allow_at=allow_at)
    except CronError as exc:
        raise fail(key, expression, str(exc)) from None
