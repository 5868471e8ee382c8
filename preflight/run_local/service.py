"""The inference service as ECS and its load balancer run it: the task behind probes that judge
it the way the ALB's target group does, within the service's health-check grace period.

- A target is `initial` until `healthyThreshold` consecutive checks pass (`healthy`) or
  `unhealthyThreshold` consecutive checks fail (`unhealthy`); checks are `interval` seconds apart,
  each with its `timeout`, and pass on a status the `matcher` accepts (ELB User Guide, "Health
  checks for Application Load Balancer target groups").
- For `healthCheckGracePeriodSeconds` after a task starts, the ECS service scheduler ignores an
  unhealthy target (ECS API Reference, "CreateService": healthCheckGracePeriodSeconds): a server
  that answers only after 30 s inside a 120 s grace period is not replaced.
- `roll()` is UpdateService with forceNewDeployment under the deployment circuit breaker: a new
  task, its target checks, then the old one stops; a new task found unhealthy after its grace
  period, or one that stops, is stopped and the old one keeps serving (the rollback).
- `deploy()` is a model's rollout (preflight/run_local/rollout.py): a new revision's task, its
  target checks, the lifecycle hook, the bake; the revision then serves every task the service
  starts (`scale_out`), or the old task and revision keep serving.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from preflight.run_local.rollout import wait
from preflight.run_local.stack import TargetCheck
from preflight.run_local.task import LocalTask

if TYPE_CHECKING:
    from preflight.run_local.session import Session


def matcher_accepts(matcher: str, status: int) -> bool:
    """ELB target group `Matcher.HttpCode`: "200", "200,202" or "200-299"."""
    for part in matcher.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            if int(low) <= status <= int(high):
                return True
        elif part and int(part) == status:
            return True
    return False


@dataclass
class TargetProbe:
    """Probes one target the way the ALB does and keeps its verdict."""

    check: TargetCheck
    host_port: int
    out: Callable[[str], None] = print
    state: str = "initial"
    successes: int = 0
    failures: int = 0
    last: str = ""

    def probe_once(self) -> bool:
        url = f"http://127.0.0.1:{self.host_port}{self.check.path}"
        try:
            with urllib.request.urlopen(url, timeout=self.check.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, urllib.error.URLError) as exc:
            self.last = f"no answer ({getattr(exc, 'reason', exc)})"
            return False
        self.last = f"HTTP {status}"
        return matcher_accepts(self.check.matcher, status)

    def step(self) -> None:
        ok = self.probe_once()
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)
        before = self.state
        if ok and self.successes >= self.check.healthy_threshold:
            self.state = "healthy"
        elif not ok and self.failures >= self.check.unhealthy_threshold:
            self.state = "unhealthy"
        if self.state != before:
            self.out(f"[alb] {self.describe()}")

    def describe(self) -> str:
        c = self.check
        return (
            f"target group {c.name} ({c.container}:{c.port}{c.path}, matcher {c.matcher}): "
            f"{self.state} (last {self.last or 'none'})"
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.check.interval)


def verdict(task: LocalTask, probes: list[TargetProbe], started: float, grace: float) -> str:
    """`healthy`, `unhealthy` (stopped, or unhealthy past the grace period) or `pending`."""
    task.poll()
    if task.stopping:
        return "unhealthy"
    if probes and all(probe.state == "healthy" for probe in probes):
        return "healthy"
    if time.monotonic() - started >= grace and any(p.state == "unhealthy" for p in probes):
        return "unhealthy"
    return "pending"


def settle_timeout(checks: list[TargetCheck], grace: float) -> float:
    """How long a new task may take to be judged: its grace period, then as many checks as the
    slowest target group needs to call it either way."""
    slowest = max(
        (c.interval * max(c.healthy_threshold, c.unhealthy_threshold) + c.timeout for c in checks),
        default=0,
    )
    return grace + slowest + 30


@dataclass
class LocalService:
    """The stack's inference service as ECS runs it: one task behind the target-group probes."""

    session: Session
    task: LocalTask | None = None
    probes: list[TargetProbe] = field(default_factory=list)
    revision: dict[str, dict[str, str]] = field(default_factory=dict)
    """The service's current revision, as environment per container over the declared task
    definition (a rollout's revision pins MLOPS_SERVE_RUN): every task it starts runs it."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: float = 0.0

    def start(self) -> LocalTask:
        self.task, self.probes, self._stop, self._started = self._launch()
        self.session.service = self
        return self.task

    def _launch(
        self, revision: dict[str, dict[str, str]] | None = None
    ) -> tuple[LocalTask, list[TargetProbe], threading.Event, float]:
        view = self.session.view
        assert view.inference_family is not None, "a training-only stack has no service"
        task = self.session.task(
            view.inference_family, self.revision if revision is None else revision
        )
        task.start()
        started = time.monotonic()
        stop = threading.Event()
        probes = [TargetProbe(c, task.ports[c.port], self.session.out) for c in view.checks]
        for probe in probes:
            threading.Thread(target=probe.run, args=(stop,), daemon=True).start()
        return task, probes, stop, started

    def wait_healthy(self, timeout: float | None = None) -> bool:
        assert self.task is not None
        view = self.session.view
        deadline = time.monotonic() + (
            timeout if timeout is not None else settle_timeout(view.checks, view.grace_period)
        )
        while time.monotonic() < deadline:
            state = verdict(self.task, self.probes, self._started, view.grace_period)
            if state != "pending":
                return state == "healthy"
            time.sleep(1)
        return False

    def roll(self, timeout: float | None = None) -> bool:
        """A new deployment: True when the new task passed its checks and replaced the old."""
        assert self.task is not None
        old = (self.task, self.probes, self._stop, self._started)
        self.task, self.probes, self._stop, self._started = self._launch()
        if self.wait_healthy(timeout):
            old[2].set()
            old[0].stop()
            return True
        self._stop.set()
        self.task.stop()
        self.task, self.probes, self._stop, self._started = old
        return False

    def deploy(
        self,
        revision: dict[str, dict[str, str]],
        check: Callable[[dict[int, int], int], list[str]],
        bake_seconds: float,
    ) -> tuple[bool, str]:
        """A deployment of a new revision beside the serving task: its target checks, then
        `check(ports, server port)` (the lifecycle hook after test traffic), then the bake, in
        which it must stay running and healthy. (True, why) once it replaced the old task;
        (False, why) after a rollback, the old task and revision still serving."""
        assert self.task is not None
        old = (self.task, self.probes, self._stop, self._started)
        new = self._launch(revision)
        self.task, self.probes, self._stop, self._started = new
        task, probes = new[0], new[1]

        def rollback(reason: str) -> tuple[bool, str]:
            self._stop.set()
            task.stop()
            task.wait_stopped(120)
            self.task, self.probes, self._stop, self._started = old
            return False, reason

        if not self.wait_healthy():
            states = "; ".join(p.describe() for p in probes) or task.stopped_reason
            return rollback(f"the new task failed its target checks ({states})")
        server = self.session.view.checks[0].port
        problems = check(task.ports, server)
        if problems:
            return rollback("the sample check failed: " + "; ".join(problems))
        if bake_seconds > 0:
            self.session.out(f"[rollout] baking {bake_seconds:g} s: the new task must stay healthy")

        def still_good() -> bool:
            return verdict(task, probes, 0.0, 0.0) != "unhealthy"

        if not wait(bake_seconds, still_good):
            return rollback("the new task turned unhealthy during the bake")
        self.revision = revision
        old[2].set()
        old[0].stop()
        old[0].wait_stopped(120)
        return True, "the new task passed its target checks, the sample check and the bake"

    def scale_out(self) -> LocalTask:
        """One more task of the service's current revision, as ECS starts one on a scale-out or
        to replace a stopped task."""
        task = self.session.task(self.session.view.inference_family or "", self.revision)
        task.start()

        def follow() -> None:  # starts its containers as their dependencies allow (dependsOn)
            while not task.stopping:
                task.poll()
                time.sleep(1)

        threading.Thread(target=follow, daemon=True).start()
        return task

    def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            self.task.stop()
        if self.session.service is self:
            self.session.service = None


def serve_inference(
    session: Session,
    duration: float | None,
    ready: Callable[[LocalTask], None] | None = None,
    until: threading.Event | None = None,
) -> int:
    """Run the inference task and the ALB's probes until Ctrl-C, `duration` seconds or `until`.

    `ready(task)` is called once the task runs (for callers that exercise it)."""
    service = LocalService(session)
    task = service.start()
    for port, host in sorted(task.ports.items()):
        session.out(f"[run-local] container port {port} -> http://127.0.0.1:{host}")
    if ready is not None:
        ready(task)
    deadline = None if duration is None else time.monotonic() + duration
    last_report = time.monotonic()
    try:
        while not task.stopping and (deadline is None or time.monotonic() < deadline):
            if until is not None and until.is_set():
                break
            task.poll()
            if time.monotonic() - last_report >= 30:
                report(session, task, service.probes)
                last_report = time.monotonic()
            time.sleep(1)
    finally:
        report(session, task, service.probes)
        service.stop()
        task.wait_stopped(300)
    return 1 if task.stopped_reason and task.stop_code != "UserInitiated" else 0


def report(session: Session, task: LocalTask, probes: list[TargetProbe]) -> None:
    for name, text in task.health().items():
        session.out(f"[status] container {name}: {text}")
    for probe in probes:
        session.out(f"[status] {probe.describe()}")
