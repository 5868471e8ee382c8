"""`mlops:monitoring.model_monitor`: the platform's model monitor, for any workload that serves.

On its schedule, `python -m mlops_platform monitor` (the platform image, platform/mlops_platform/
monitor.py) reads what the serving task's capture proxy recorded (`inference.capture`) since its
last run, compares each feature with the promoted model's training baseline
(`models/<run>/baseline/<channel>/`), writes `monitoring/model/` in the store, reports CloudWatch
metrics and, with `training.on_drift_event`, puts the drift event that starts a retraining.

It runs only where there is something to watch: capture on, a service, a schedule (decided once,
components/settings/decisions.py `model_monitor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings._section import Section, as_map, cron, fail

SECTION = "monitoring.model_monitor"


@dataclass(frozen=True)
class MonitorOutput:
    """What the model answered, compared with a baseline feature (its predicted class with the
    training label)."""

    field: str
    """The response field (a key of the JSON response, or of each of its predictions)."""
    baseline: str
    """The baseline feature it is compared with."""


@dataclass(frozen=True)
class ModelMonitorSettings:
    schedule: str = "rate(1 hour)"
    """When the monitor runs (EventBridge cron or rate); "" = no monitor."""
    channel: str = ""
    """The training channel whose baseline requests are compared with; "" = the first."""
    threshold: float = 0.1
    """A feature drifts past this distance from its baseline (0 < t <= 1)."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Per-feature distances over `threshold`."""
    min_rows: int = 200
    """Fewer captured rows than this since the last check decide nothing."""
    output: MonitorOutput | None = None
    """The response field compared with a baseline feature; None: outputs are only counted."""
    quality_margin: float = 0.05
    """The live objective (from ground truth) may fall this far short of the model's own."""
    cooldown_hours: int = 24
    """After a drift event, the same model sends no other for this long."""


def _distance(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise fail(key, value, "it must be a number above 0 and at most 1 (a distance)")
    return float(value)


def _output(raw: Any) -> MonitorOutput | None:
    if raw is None:
        return None
    key = f"{SECTION}.output"
    s = Section(key, raw, MonitorOutput)
    values = {}
    for name in ("field", "baseline"):
        value = s.raw.get(name)
        if not isinstance(value, str) or not value.strip():
            what = "a response field" if name == "field" else "a baseline feature"
            raise fail(
                s.key(name), value, f"it must be a non-empty string, {what}; or set output: null"
            )
        values[name] = value
    return MonitorOutput(**values)


def parse_model_monitor(raw: Any) -> ModelMonitorSettings:
    s = Section(SECTION, raw, ModelMonitorSettings)
    schedule = s.str("schedule")
    if schedule:
        cron(s.key("schedule"), schedule)
    thresholds = {}
    for name, value in as_map(s.key("thresholds"), s.raw.get("thresholds")).items():
        if not isinstance(name, str) or not name:
            raise fail(
                f"{s.key('thresholds')}.{name}", name, "a feature name (a string: quote a number)"
            )
        thresholds[name] = _distance(f"{s.key('thresholds')}.{name}", value)
    margin = s.raw.get("quality_margin", ModelMonitorSettings.quality_margin)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin <= 1:
        raise fail(s.key("quality_margin"), margin, "it must be a number from 0 to 1")
    return ModelMonitorSettings(
        schedule=schedule,
        channel=s.str("channel"),
        threshold=_distance(s.key("threshold"), s.raw.get("threshold", 0.1)),
        thresholds=thresholds,
        min_rows=s.int("min_rows", lo=20),
        output=_output(s.raw.get("output")),
        quality_margin=float(margin),
        cooldown_hours=s.int("cooldown_hours", lo=0, hi=720),
    )


def check_channel(monitor: ModelMonitorSettings, channels: Mapping[str, str]) -> None:
    """A channel named for the monitor is one the workload trains on (its baseline is kept with
    each run under that name)."""
    if not monitor.channel or monitor.channel in channels:
        return
    allowed = (
        f"it must be one of workload.training.channels ({', '.join(sorted(channels))}), "
        'or "" for the first'
        if channels
        else 'the workload declares no workload.training.channels: leave it ""'
    )
    raise fail(f"{SECTION}.channel", monitor.channel, allowed)
