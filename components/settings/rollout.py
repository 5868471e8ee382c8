"""`mlops:inference.rollout` (how a new revision of the service takes traffic) and
`mlops:workload.serving.samples` (the requests that check a candidate before it does).

ECS's own deployment strategies (`deploymentConfiguration.strategy`, ECS API Reference,
"DeploymentConfiguration"): ROLLING replaces tasks in place; BLUE_GREEN, CANARY and LINEAR start
the new revision beside the old one behind an alternate target group, shift the load balancer's
production listener rule to it (all at once, a canary percentage first, or in equal steps), bake,
and roll back on a failed lifecycle hook or a deployment alarm. The bounds below are the API's:
"CanaryConfiguration" (canaryPercent multiples of 0.1 from 0.1 to 100.0, canaryBakeTimeInMinutes
0-1440), "LinearConfiguration" (stepPercent multiples of 0.1 from 3.0 to 100.0,
stepBakeTimeInMinutes 0-1440), bakeTimeInMinutes (required with BLUE_GREEN).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from components.settings._section import Section, fail


class RolloutStrategy(StrEnum):
    ROLLING = "rolling"
    BLUE_GREEN = "blue-green"
    CANARY = "canary"
    LINEAR = "linear"

    @property
    def ecs(self) -> str:
        """ECS's name of the strategy."""
        return self.value.upper().replace("-", "_")

    @property
    def shifts_traffic(self) -> bool:
        """Beside the old revision, behind the alternate target group, with test traffic."""
        return self is not RolloutStrategy.ROLLING


@dataclass(frozen=True)
class RolloutSettings:
    strategy: RolloutStrategy = RolloutStrategy.BLUE_GREEN
    """blue-green by default: as cheap as rolling (both run the new tasks beside the old ones
    for a while) and the only one of the two that can check a revision before it serves."""
    canary_percent: float = 10.0
    """canary: the production traffic the new revision takes first."""
    canary_bake_minutes: int = 10
    """canary: how long it serves that share before it takes the rest."""
    linear_step_percent: float = 25.0
    """linear: the traffic each step shifts."""
    linear_step_bake_minutes: int = 5
    bake_minutes: int = 0
    """blue-green, canary, linear: both revisions run this long after the new one took all
    production traffic (paying for both); an alarm in that time still rolls back."""
    latency_budget_ms: int = 2000
    """The most one sample request (`workload.serving.samples`) may take through the test
    listener."""
    wait_minutes: int = 90
    """How long the pipeline waits for a model's rollout before it stops it (rolled back)."""

    def minimum_minutes(self) -> int:
        """The bake and step times a successful rollout takes at the least."""
        if self.strategy is RolloutStrategy.CANARY:
            return self.canary_bake_minutes + self.bake_minutes
        if self.strategy is RolloutStrategy.LINEAR:
            steps = math.ceil(100 / self.linear_step_percent)
            return (steps - 1) * self.linear_step_bake_minutes + self.bake_minutes
        if self.strategy is RolloutStrategy.BLUE_GREEN:
            return self.bake_minutes
        return 0


_ONLY = {
    "canary_percent": RolloutStrategy.CANARY,
    "canary_bake_minutes": RolloutStrategy.CANARY,
    "linear_step_percent": RolloutStrategy.LINEAR,
    "linear_step_bake_minutes": RolloutStrategy.LINEAR,
}
STARTUP_MINUTES = 10
"""What a rollout needs beyond its bake: new tasks start, pass their checks, the hook runs."""


def _tenths(s: Section, key: str, lo: float, hi: float) -> float:
    value = s.raw.get(key, s.defaults[key])
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(s.key(key), value, "it must be a number")
    if not lo <= value <= hi or abs(value * 10 - round(value * 10)) > 1e-9:
        raise fail(s.key(key), value, f"ECS takes a multiple of 0.1 from {lo} to {hi}")
    return round(float(value), 1)


def parse_rollout(raw: Any) -> RolloutSettings:
    s = Section("inference.rollout", raw, RolloutSettings)
    strategy = s.enum("strategy", RolloutStrategy)
    for key, only in _ONLY.items():
        if s.has(key) and strategy is not only:
            raise fail(s.key(key), s.raw[key], f"it applies with strategy {only.value} only")
    if s.has("bake_minutes") and not strategy.shifts_traffic:
        raise fail(
            s.key("bake_minutes"),
            s.raw["bake_minutes"],
            "a rolling deployment has no bake time; use blue-green, canary or linear",
        )
    settings = RolloutSettings(
        strategy=strategy,
        canary_percent=_tenths(s, "canary_percent", 0.1, 100.0),
        canary_bake_minutes=s.int("canary_bake_minutes", lo=0, hi=1440),
        linear_step_percent=_tenths(s, "linear_step_percent", 3.0, 100.0),
        linear_step_bake_minutes=s.int("linear_step_bake_minutes", lo=0, hi=1440),
        bake_minutes=s.int("bake_minutes", lo=0, hi=1440),
        latency_budget_ms=s.int("latency_budget_ms", lo=1, hi=60_000),
        wait_minutes=s.int("wait_minutes", lo=5, hi=2880),
    )
    least = settings.minimum_minutes() + STARTUP_MINUTES
    if settings.wait_minutes < least:
        raise fail(
            s.key("wait_minutes"),
            settings.wait_minutes,
            f"the rollout bakes {settings.minimum_minutes()} minute(s) and needs about "
            f"{STARTUP_MINUTES} more to start its tasks: wait at least {least}",
        )
    return settings


# ------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class SampleRequest:
    """One request the candidate must answer through the test listener before it takes
    production traffic."""

    path: str
    method: str = "POST"
    content_type: str = "application/json"
    body: str = ""
    expect_status: int = 200

    def as_hook_detail(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "content_type": self.content_type,
            "body": self.body,
            "expect_status": self.expect_status,
        }


METHODS = ("GET", "POST", "PUT")
SAMPLE_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,1023}$")
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]{0,200})?$")
MAX_SAMPLES = 10
MAX_SAMPLE_BODY = 4096
"""Each body travels in the lifecycle hook's `hookDetails` on every invocation: kept small."""


def _sample(key: str, raw: Any) -> SampleRequest:
    s = Section(key, raw, SampleRequest)
    if not s.has("path"):
        raise fail(s.key("path"), None, "a sample needs the path it is sent to, e.g. /invocations")
    path = s.raw["path"]
    if not isinstance(path, str) or not SAMPLE_PATH.fullmatch(path):
        raise fail(s.key("path"), path, "an HTTP path starting with /, e.g. /invocations")
    method = s.raw.get("method", "POST")
    if method not in METHODS:
        raise fail(s.key("method"), method, f"allowed: {', '.join(METHODS)}")
    content_type = s.str("content_type")
    if not CONTENT_TYPE.fullmatch(content_type):
        raise fail(s.key("content_type"), content_type, "a media type, e.g. application/json")
    body = s.str("body")
    if len(body.encode()) > MAX_SAMPLE_BODY:
        raise fail(s.key("body"), f"<{len(body.encode())} bytes>", f"at most {MAX_SAMPLE_BODY}")
    if method == "GET" and body:
        raise fail(s.key("body"), "<body>", "a GET sample sends no body")
    return SampleRequest(
        path=path,
        method=method,
        content_type=content_type,
        body=body,
        expect_status=s.int("expect_status", lo=200, hi=299),
    )


def parse_samples(key: str, raw: Any) -> tuple[SampleRequest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise fail(key, raw, "a list of requests {path, method, content_type, body, expect_status}")
    if len(raw) > MAX_SAMPLES:
        raise fail(key, f"<{len(raw)} samples>", f"at most {MAX_SAMPLES}")
    return tuple(_sample(f"{key}[{i}]", item) for i, item in enumerate(raw))


def check_samples_need_test_traffic(
    rollout: RolloutSettings, samples: tuple[SampleRequest, ...]
) -> None:
    if samples and not rollout.strategy.shifts_traffic:
        raise fail(
            "workload.serving.samples",
            f"<{len(samples)} sample(s)>",
            "samples reach a new revision through the load balancer's test listener rule, which "
            "a rolling deployment has not: set inference.rollout.strategy to blue-green, canary "
            "or linear",
        )
