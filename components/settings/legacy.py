"""Keys of the old stack config that became workload environment (`deprecated_keys` in
`workloads/defaults.yaml`):
still read, with a warning, and set in the workload's job or sidecar."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pulumi
import yaml

from components.settings._section import PROJECT, fail
from components.settings.workload import DEFAULTS, WorkloadSpec

HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?")


def deprecated_keys() -> dict[str, dict[str, Any]]:
    """`section.key` -> {into: job | sidecar <name>, variable, check, min, max}."""
    return yaml.safe_load(DEFAULTS.read_text())["deprecated_keys"]


def _deprecated_value(key: str, value: Any, rule: Mapping[str, Any]) -> str:
    check = rule["check"]
    if check == "https-url":
        if not isinstance(value, str) or not re.fullmatch(
            r"https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?", value
        ):
            raise fail(key, value, "it must be an https:// URL")
        return value
    kind = int if check == "integer" else float
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        raise fail(key, value, f"it must be a{'n integer' if kind is int else ' number'}")
    if not rule["min"] <= value <= rule["max"]:
        raise fail(key, value, f"it must be from {rule['min']} to {rule['max']}")
    return str(kind(value))


def pop_deprecated(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The config without the deprecated keys, and their values as environment per target
    (`job` or `sidecar <name>`), each with a warning naming the key's new home."""
    rules = deprecated_keys()
    cleaned = {name: value for name, value in raw.items()}
    moved: dict[str, dict[str, str]] = {}
    for dotted, rule in rules.items():
        section, key = dotted.split(".", 1)
        values = cleaned.get(section)
        if not isinstance(values, Mapping) or key not in values:
            continue
        cleaned[section] = {k: v for k, v in values.items() if k != key}
        value = _deprecated_value(dotted, values[key], rule)
        moved.setdefault(rule["into"], {})[rule["variable"]] = value
        where = "job" if rule["into"] == "job" else f"sidecars[{rule['into'].split()[1]}]"
        pulumi.log.warn(
            f"{PROJECT}:{dotted} is deprecated: set {rule['variable']} in "
            f"{PROJECT}:workload.{where}.environment instead (docs/configuration.md#workload)"
        )
    return cleaned, moved


def apply_deprecated(
    workload: WorkloadSpec, moved: Mapping[str, Mapping[str, str]]
) -> WorkloadSpec:
    for into, environment in moved.items():
        names = ", ".join(environment)
        if into == "job":
            if workload.job is None:
                raise fail("workload.job", None, f"the deprecated keys setting {names} need a job")
            job = replace(workload.job, environment={**workload.job.environment, **environment})
            workload = replace(workload, job=job)
            continue
        name = into.split()[1]
        if name not in [c.name for c in workload.sidecars]:
            raise fail(
                "workload.sidecars",
                None,
                f"the deprecated key setting {names} needs sidecar {name}",
            )
        workload = replace(
            workload,
            sidecars=tuple(
                replace(c, environment={**c.environment, **environment}) if c.name == name else c
                for c in workload.sidecars
            ),
        )
    return workload
