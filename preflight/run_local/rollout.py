"""A model's rollout, on this machine, as the stack declares it (components/documents/rollout.py).

On AWS the pipeline's `Deploy` state invokes the deploy function (rollout/deploy.py): a revision of
the service's task definition whose stage-serving container has `MLOPS_SERVE_RUN=<run>`, and an
ECS deployment of it with the service's strategy. Here the same states call `LocalRollout`:

- `deploy` starts the new revision's task beside the serving one (the session's `LocalService`),
  with that variable as the revision's override; the deployment fails, and the old task keeps
  serving, when the new task fails its target-group checks, when the service's lifecycle hook
  (the real rollout/sample_check.py `check`, with the hook details the stack declares) finds a
  problem sending the workload's samples to the new task with the test header, or when the new
  task turns unhealthy or stops during the bake (the deployment alarms' part here); otherwise the
  old task stops and the new revision is the service's (a task started later runs it too);
- `status` answers what the deployment came to, `stop` what a stop with rollback answers.

The answers have the deploy function's shapes. The bake (canary and linear steps, then the bake
time) is waited `Session.retry_scale` times over, as the pipeline's retry intervals are.
Without a service in the session nothing serves: the deployment succeeds with nothing to check,
as the first deployment of a service that runs no task would, and says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from preflight.run_local.docker import RunLocalError
from preflight.run_local.stack import as_int

if TYPE_CHECKING:
    from preflight.run_local.session import Session

ROLLOUT_CODE = Path(__file__).resolve().parents[2] / "rollout"
LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"


def load_function(module: str) -> ModuleType:
    """A rollout function's module, from the file its Lambda archive ships."""
    path = ROLLOUT_CODE / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"mlops_rollout_{module}", path)
    if spec is None or spec.loader is None:
        raise RunLocalError(f"cannot load {path}")
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    loaded = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: its dataclasses look their module up.
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@dataclass(frozen=True)
class RolloutView:
    """The service's deployment as the stack declares it."""

    strategy: str
    bake_seconds: float
    """What a successful deployment waits after its checks: canary bake, linear steps, bake."""
    hook: Mapping[str, Any] | None
    """The sample-check hook's `hookDetails`, if the service has one."""


def read_rollout(service: Mapping[str, Any]) -> RolloutView:
    config = service.get("deploymentConfiguration") or {}
    strategy = str(config.get("strategy") or "ROLLING")
    bake = as_int(config.get("bakeTimeInMinutes") or 0)
    if strategy == "CANARY":
        bake += as_int((config.get("canaryConfiguration") or {}).get("canaryBakeTimeInMinutes", 0))
    if strategy == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        steps = math.ceil(100 / float(linear.get("stepPercent", 100)))
        bake += (steps - 1) * as_int(linear.get("stepBakeTimeInMinutes", 0))
    hook = None
    for entry in config.get("lifecycleHooks") or []:
        if "POST_TEST_TRAFFIC_SHIFT" in entry.get("lifecycleStages", []):
            details = entry.get("hookDetails")
            hook = json.loads(details) if isinstance(details, str) else details
    return RolloutView(strategy=strategy, bake_seconds=bake * 60.0, hook=hook)


@dataclass
class Outcome:
    status: str
    reason: str


class LocalRollout:
    """The deploy function's actions, run against the session's service."""

    def __init__(self, session: Session, view: RolloutView) -> None:
        self.session = session
        self.view = view
        self.outcomes: dict[str, Outcome] = {}
        self.revision = 1

    def invoke(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        action = payload.get("action")
        if action == "deploy":
            return self.deploy(payload)
        if action in ("status", "stop"):
            outcome = self.outcomes.get(str(payload.get("deployment")))
            if outcome is None:
                reason = f"no service deployment {payload.get('deployment')} in this session"
                return {"status": "FAILED", "ecs_status": None, "reason": reason}
            return {"status": outcome.status, "ecs_status": None, "reason": outcome.reason}
        raise RunLocalError(f"the deploy function has no action {action!r}")

    def deploy(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        out = self.session.out
        run = str(payload["run_id"])
        container = str(payload["container"])
        service_name = str(payload["service"])
        arn = (
            f"arn:aws:ecs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:service-deployment/local/"
            f"{service_name}/{uuid.uuid4().hex[:20]}"
        )
        family = self.session.view.inference_family or service_name
        previous = f"{family}:{self.revision}"
        self.revision += 1
        registered = f"{family}:{self.revision}"
        service = self.session.service
        if service is None:
            self.outcomes[arn] = Outcome(
                "SUCCEEDED",
                "no service runs in this session: nothing serves the candidate to check, as with "
                "a service that has no task; a service started later serves models/CURRENT",
            )
            out(f"[rollout] {registered} (MLOPS_SERVE_RUN={run}): no service in this session")
            return {
                "task_definition": registered,
                "previous_task_definition": previous,
                "deployment": arn,
            }
        out(
            f"[rollout] {self.view.strategy} deployment of {registered}: {container} stages run "
            f"{run} (MLOPS_SERVE_RUN)"
        )
        ok, reason = service.deploy(
            {container: {"MLOPS_SERVE_RUN": run}},
            check=self._check,
            bake_seconds=self.view.bake_seconds * self.session.retry_scale,
        )
        self.outcomes[arn] = Outcome("SUCCEEDED" if ok else "FAILED", reason)
        out(f"[rollout] {'succeeded' if ok else 'rolled back'}: {reason}")
        return {
            "task_definition": registered,
            "previous_task_definition": previous,
            "deployment": arn,
        }

    def _check(self, ports: Mapping[int, int], server_port: int) -> list[str]:
        """The lifecycle hook after test traffic moved: the real sample check, sent to the new
        task (the test listener rule's target) with the stack's header."""
        hook = self.view.hook
        if hook is None:
            return []
        check = load_function("sample_check").check
        base = f"http://127.0.0.1:{ports[server_port]}"
        self.session.out(
            f"[hook] POST_TEST_TRAFFIC_SHIFT: {len(hook['samples'])} sample(s) to {base}"
        )
        said = io.StringIO()  # the function's own log lines (CloudWatch Logs on AWS)
        try:
            with contextlib.redirect_stdout(said):
                return check(
                    base,
                    hook["header"],
                    hook["header_value"],
                    hook["samples"],
                    hook["latency_budget_ms"],
                    hook["timeout_seconds"],
                )
        except ValueError as exc:
            return [f"the hook's details are malformed: {exc}"]
        finally:
            for line in said.getvalue().splitlines():
                self.session.out(f"[hook] {line}")


def _answer(registered: str, previous: str, deployment: str) -> dict[str, Any]:
    """The deploy function's answer to `deploy` (rollout/deploy.py)."""
    return {
        "task_definition": registered,
        "previous_task_definition": previous,
        "deployment": deployment,
    }


def wait(seconds: float, until_false: Any) -> bool:
    """Wait `seconds`, checking `until_false()` every second; False as soon as it is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not until_false():
            return False
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return bool(until_false())
