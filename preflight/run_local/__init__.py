"""Run the stack's own ECS task definitions in Docker, the way Fargate runs them.

    python -m preflight.run_local dev --task pipeline            # validate -> train -> gate
    python -m preflight.run_local dev --task inference           # api, dashboard, forecaster
    python -m preflight.run_local prod --task train --store DIR --base-image mlops-base:bookworm

1. The stack is evaluated offline (`preflight.offline.run_stack`, the mocks harness the tests
   use), and the task definitions, the EFS access point, the service's target-group checks and
   grace period and the state machine are taken as declared (stack.py). Nothing is retyped here.
2. The images are built the way `ImageRepo` builds them (images.py), or, when the stack builds
   none (`mlops:image.pin`, `mlops:workload.image.location`), taken from this machine.
3. Each task runs with ECS's semantics (task.py): awsvpc, users, read-only roots, volumes as
   Fargate makes them, `dependsOn` and its `startTimeout`, essential containers, restart
   policies, StopTask's SIGTERM then SIGKILL, and the task metadata endpoint (metadata.py).
4. `--task pipeline` walks the state machine with Step Functions' semantics (pipeline.py):
   timeouts, Retry and Catch, the execution's RUN_ID on every attempt, a simulated Fargate Spot
   interruption on request; `--task inference` runs the service behind probes that judge it as
   its target groups and grace period do (service.py).

Everything it starts (containers, volumes) carries a `mlops.run-local` label and is removed on
exit, on Ctrl-C, SIGINT, SIGTERM and on failure. Where Docker differs from AWS:
docs/local-containers.md.
"""

from preflight.run_local.cli import DEFAULT_STORE, TASK_CHOICES, main, parse_args
from preflight.run_local.docker import (
    LABEL,
    RunLocalError,
    builder_env,
    docker,
    image_volumes,
    remove_session,
)
from preflight.run_local.images import build_image, build_resource
from preflight.run_local.local_secrets import DEFAULT_SECRETS, load_secrets
from preflight.run_local.pipeline import walk_state_machine
from preflight.run_local.service import (
    LocalService,
    TargetProbe,
    matcher_accepts,
    serve_inference,
)
from preflight.run_local.session import Session
from preflight.run_local.stack import (
    AccessPoint,
    StackView,
    TargetCheck,
    TaskSpec,
    read_stack,
)
from preflight.run_local.task import ContainerState, LocalTask, TaskOutcome

__all__ = [
    "DEFAULT_SECRETS",
    "DEFAULT_STORE",
    "LABEL",
    "TASK_CHOICES",
    "AccessPoint",
    "ContainerState",
    "LocalService",
    "LocalTask",
    "RunLocalError",
    "Session",
    "StackView",
    "TargetCheck",
    "TargetProbe",
    "TaskOutcome",
    "TaskSpec",
    "build_image",
    "build_resource",
    "builder_env",
    "docker",
    "image_volumes",
    "load_secrets",
    "main",
    "matcher_accepts",
    "parse_args",
    "read_stack",
    "remove_session",
    "serve_inference",
    "walk_state_machine",
]
