"""Roll the inference service to a model as one ECS service deployment (handler `deploy.handler`).

The state machine invokes this function (`arn:aws:states:::lambda:invoke`) three ways, by the
event's `action`:

- `deploy`: registers a new revision of the service's current task definition whose serving
  container (`container`, the platform's `stage-serving`) has `MLOPS_SERVE_RUN=<run_id>` in its
  environment, so every task of that revision stages exactly that run; then UpdateService to it.
  ECS's own deployment (ROLLING, BLUE_GREEN, LINEAR or CANARY, with the circuit breaker, alarms
  and lifecycle hooks the service declares) takes it from there, and on failure rolls back to the
  previous revision, which serves the previous model. Returns the new and previous task
  definition ARNs and the service deployment's ARN.
- `status`: the service deployment's state, mapped to IN_PROGRESS, SUCCEEDED or FAILED.
- `stop`: StopServiceDeployment with `stopType` ROLLBACK, when the state machine's bounded wait
  ran out.

One file, the function's whole archive: it imports nothing from the repository. The run-id rule
is therefore copied from `mlops_contract.RUN_ID_PATTERN` (tests/rollout checks they are equal),
rather than shipping the contract beside it: the contract is the images' module, with file
locking and the store's layout, none of which a Lambda function needs.

boto3: the Lambda runtime's own. From boto3's CHANGELOG.rst and botocore's ECS model history
(`botocore/data/ecs/2014-11-13/service-2.json`):
- boto3 1.35.52 (2024-10-30, "service deployments and service revisions") added
  ListServiceDeployments and DescribeServiceDeployments;
- boto3 1.38.1 (2025-04-23, "roll back an In_Progress ECS Service Deployment") added
  StopServiceDeployment, its stopType (ABORT | ROLLBACK) and the ROLLBACK_REQUESTED status;
- boto3 1.41.1 (2025-11-20, the ECS Express Mode release) added Service
  `currentServiceDeployment`.
So the function needs boto3 >= 1.38.1 and refuses to run on an older one; before 1.41.1 botocore
drops `currentServiceDeployment` from UpdateService's response and the deployment is found with
ListServiceDeployments instead. The runtime's boto3 also decides which task definition fields
exist: what RegisterTaskDefinition accepts is read from its service model at run time, and a
task definition holding a field that model does not know is refused, never registered without it.

AWS documentation: ECS API Reference, RegisterTaskDefinition, DescribeTaskDefinition,
UpdateService, ListServiceDeployments, DescribeServiceDeployments, StopServiceDeployment,
ServiceDeployment (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/Welcome.html);
Developer Guide, "View service history using Amazon ECS service deployments"
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-deployment.html) and
"Stopping Amazon ECS service deployments"
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stop-service-deployment.html).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import botocore
from botocore.exceptions import ClientError

SERVE_RUN = "MLOPS_SERVE_RUN"
"""`mlops_contract.Env.SERVE_RUN`: the run a task definition revision's tasks serve."""
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A copy of `mlops_contract.RUN_ID_PATTERN` (this file is the function's whole archive)."""

ACTIONS = ("deploy", "status", "stop")
NEEDS = {
    "deploy": ("cluster", "service", "container", "run_id"),
    "status": ("deployment",),
    "stop": ("deployment", "waited_seconds"),
}
"""The event fields each action reads; other fields of the state's input are ignored."""

_PATTERNS = {
    "cluster": (
        r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9_-]{1,255}$",
        "an ECS cluster ARN",
    ),
    # Service and container names: up to 255 letters, digits, hyphens and underscores (ECS API
    # Reference, CreateService `serviceName`, ContainerDefinition `name`).
    "service": (r"^[A-Za-z0-9_-]{1,255}$", "an ECS service name"),
    "container": (r"^[A-Za-z0-9_-]{1,255}$", "a container name"),
    "run_id": (RUN_ID_PATTERN, "a run id (letters, digits, '.', '_', '-'; at most 128)"),
    "deployment": (
        r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:service-deployment/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+$",
        "an ECS service deployment ARN",
    ),
}

# ServiceDeployment `status` (ECS API Reference, ServiceDeployment; botocore's
# ServiceDeploymentStatus enum). The Developer Guide's "service deployment states" puts
# STOP_REQUESTED, ROLLBACK_REQUESTED and ROLLBACK_IN_PROGRESS in the "ongoing" phase: ECS has
# already decided against the candidate and is restoring the previous revision, so the rollout
# has failed even though ECS is still working.
IN_PROGRESS_STATES = frozenset({"PENDING", "IN_PROGRESS"})
SUCCEEDED_STATES = frozenset({"SUCCESSFUL"})
FAILED_STATES = frozenset(
    {
        "STOP_REQUESTED",
        "STOPPED",
        "ROLLBACK_REQUESTED",
        "ROLLBACK_IN_PROGRESS",
        "ROLLBACK_SUCCESSFUL",
        "ROLLBACK_FAILED",
    }
)

REQUIRED_OPERATIONS = (
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "StopServiceDeployment",
)
LIST_ATTEMPTS = 5
LIST_PAUSE_SECONDS = 2.0
"""UpdateService returns before ListServiceDeployments may show the deployment it started."""
CLOCK_ALLOWANCE = timedelta(seconds=1)
"""How far this function's clock may run ahead of ECS's when it filters deployments by
`createdAt` (both are kept by Amazon Time Sync; a second is ample)."""
_GUARD_ID = "mlops-rollout-unmodelled-task-definition-fields"
_NEVER = datetime.min.replace(tzinfo=UTC)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: one action per invocation (module docstring)."""
    return handle(event, _ecs())


@cache
def _ecs() -> Any:
    """One client per execution environment, reused by warm invocations."""
    return boto3.client("ecs")


def handle(event: Any, ecs: Any, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """`event` checked, then its action run with `ecs` (a botocore ECS client)."""
    request = parse_event(event)
    _require_operations(ecs)
    action = request["action"]
    if action == "deploy":
        result = deploy(
            ecs,
            request["cluster"],
            request["service"],
            request["container"],
            request["run_id"],
            sleep=sleep,
        )
    elif action == "status":
        result = status(ecs, request["deployment"])
    else:
        result = stop(ecs, request["deployment"], request["waited_seconds"])
    print(json.dumps({"action": action, **result}))
    return result


def parse_event(event: Any) -> dict[str, Any]:
    """The fields `event`'s action needs, each checked; ValueError naming the first bad one."""
    if not isinstance(event, Mapping):
        raise ValueError(f"the event must be a JSON object, not {type(event).__name__}")
    action = event.get("action")
    if action not in ACTIONS:
        raise ValueError(f"event.action: {action!r} is not one of {', '.join(ACTIONS)}")
    request: dict[str, Any] = {"action": action}
    for field in NEEDS[action]:
        if field not in event:
            raise ValueError(
                f"event.{field} is missing: action {action!r} needs {', '.join(NEEDS[action])}"
            )
        value = event[field]
        if field == "waited_seconds":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"event.waited_seconds: {value!r} is not a whole number >= 0")
        else:
            pattern, what = _PATTERNS[field]
            if not isinstance(value, str) or not re.match(pattern, value):
                raise ValueError(f"event.{field}: {value!r} is not {what}")
        request[field] = value
    return request


def _require_operations(ecs: Any) -> None:
    missing = [
        name for name in REQUIRED_OPERATIONS if name not in ecs.meta.service_model.operation_names
    ]
    if missing:
        raise RuntimeError(
            f"botocore {botocore.__version__} has no {', '.join(missing)}: ECS service "
            "deployments need boto3 >= 1.38.1; package a newer boto3 with the function"
        )


# ------------------------------------------------------------------------------ deploy
def deploy(
    ecs: Any,
    cluster: str,
    service: str,
    container: str,
    run_id: str,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Register the service's task definition again with `container` serving `run_id`, update
    the service to it and return the new and previous revisions and the service deployment."""
    current = _active_service(ecs.describe_services(cluster=cluster, services=[service]), service)
    previous = current["taskDefinition"]
    # A field this botocore does not model would be dropped from the parsed description, and so
    # from the new revision, without a word: the guard refuses such a definition instead.
    ecs.meta.events.register(
        "after-call.ecs.DescribeTaskDefinition", _refuse_unmodelled_fields, unique_id=_GUARD_ID
    )
    described = ecs.describe_task_definition(taskDefinition=previous, include=["TAGS"])
    request = registration(ecs, described, container, run_id)
    registered = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    updating = datetime.now(UTC)
    updated = ecs.update_service(cluster=cluster, service=service, taskDefinition=registered)
    deployment = updated["service"].get("currentServiceDeployment") or _newest_deployment(
        ecs, cluster, service, updating, sleep
    )
    return {
        "task_definition": registered,
        "previous_task_definition": previous,
        "deployment": deployment,
    }


def _active_service(response: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    services = response.get("services") or []
    if not services:
        why = "; ".join(
            f"{failure.get('reason', '?')} {failure.get('detail', '')}".strip()
            for failure in response.get("failures", [])
        )
        raise ValueError(f"service {name!r} was not found: {why or 'no such service'}")
    found = services[0]
    if found.get("status") != "ACTIVE":
        raise ValueError(f"service {name!r} is {found.get('status')}, not ACTIVE")
    # UpdateService may change the task definition itself only under ECS's own deployment
    # controller (ECS API Reference, UpdateService; DeploymentController).
    controller = (found.get("deploymentController") or {}).get("type", "ECS")
    if controller != "ECS":
        raise ValueError(
            f"service {name!r} uses the {controller} deployment controller; the rollout needs "
            "ECS's own (deploymentController type ECS)"
        )
    return found


def registration(
    ecs: Any, described: Mapping[str, Any], container: str, run_id: str
) -> dict[str, Any]:
    """RegisterTaskDefinition's input: every field of the described definition that the
    operation accepts (read from the client's service model, so a field ECS adds is carried over
    as soon as botocore knows it, and read-only ones such as `revision`, `status`,
    `requiresAttributes`, `compatibilities`, `registeredAt` never are), its tags, and
    `MLOPS_SERVE_RUN=<run_id>` in `container`'s environment."""
    accepted = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members
    definition = described["taskDefinition"]
    request = {key: copy.deepcopy(value) for key, value in definition.items() if key in accepted}
    # Keys starting with `aws:` are AWS's own and may not be set by a caller (ECS API Reference,
    # DescribeTaskDefinition `tags`: "reserved for AWS use. You cannot edit or delete tag keys
    # or values with this prefix").
    tags = [tag for tag in described.get("tags") or [] if not tag["key"].lower().startswith("aws:")]
    if tags:
        request["tags"] = tags
    names = [c.get("name") for c in request.get("containerDefinitions", [])]
    if container not in names:
        raise ValueError(
            f"container {container!r} is not in task definition "
            f"{definition.get('taskDefinitionArn')}: it has {', '.join(map(str, names))}"
        )
    target = request["containerDefinitions"][names.index(container)]
    if any(secret.get("name") == SERVE_RUN for secret in target.get("secrets", [])):
        raise ValueError(
            f"container {container!r} takes {SERVE_RUN} from a secret; the rollout sets it"
        )
    # `environment` takes precedence over `environmentFiles` (ECS API Reference,
    # ContainerDefinition `environmentFiles`), so this value wins over any file's.
    target["environment"] = with_variable(target.get("environment", []), SERVE_RUN, run_id)
    return request


def with_variable(environment: list[dict[str, str]], name: str, value: str) -> list[dict[str, str]]:
    """`environment` (ECS KeyValuePair list) with `name` set to `value`: the first entry of that
    name replaced in place and any later duplicates dropped, or one entry appended."""
    result: list[dict[str, str]] = []
    placed = False
    for pair in environment:
        if pair.get("name") != name:
            result.append(pair)
        elif not placed:
            result.append({"name": name, "value": value})
            placed = True
    if not placed:
        result.append({"name": name, "value": value})
    return result


def _refuse_unmodelled_fields(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
    """botocore `after-call` handler: ValueError when DescribeTaskDefinition's raw response
    holds fields this botocore's model does not know."""
    if getattr(http_response, "raw", None) is None or http_response.status_code >= 300:
        return  # botocore's Stubber (no HTTP body), or an error botocore raises itself
    unknown = unmodelled_fields(json.loads(http_response.content), model.output_shape)
    if unknown:
        raise ValueError(
            f"the task definition has fields botocore {botocore.__version__} does not know "
            f"({', '.join(unknown)}): registering it again would drop them; package a newer "
            "boto3 with the function"
        )


def unmodelled_fields(value: Any, shape: Any, path: str = "") -> list[str]:
    """The paths (`containerDefinitions[].name`) of `value`'s keys that `shape` does not model."""
    found: list[str] = []
    if shape.type_name == "structure" and isinstance(value, dict):
        if getattr(shape, "is_document_type", False):
            return found
        members = {
            member.serialization.get("name", name): member for name, member in shape.members.items()
        }
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in members:
                found += unmodelled_fields(item, members[key], where)
            else:
                found.append(where)
    elif shape.type_name == "list" and isinstance(value, list):
        for item in value:
            found += unmodelled_fields(item, shape.member, f"{path}[]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for item in value.values():
            found += unmodelled_fields(item, shape.value, f"{path}{{}}")
    return sorted(set(found))


def _newest_deployment(
    ecs: Any, cluster: str, service: str, since: datetime, sleep: Callable[[float], None]
) -> str:
    """The newest service deployment created at or after `since` (the update), for a botocore
    without Service `currentServiceDeployment`."""
    after = since - CLOCK_ALLOWANCE
    for attempt in range(1, LIST_ATTEMPTS + 1):
        briefs = ecs.list_service_deployments(
            cluster=cluster, service=service, createdAt={"after": after}
        ).get("serviceDeployments", [])
        briefs = [brief for brief in briefs if brief.get("createdAt", _NEVER) >= after]
        if briefs:
            return max(briefs, key=lambda brief: brief["createdAt"])["serviceDeploymentArn"]
        if attempt < LIST_ATTEMPTS:
            sleep(LIST_PAUSE_SECONDS)
    raise RuntimeError(
        f"service {service!r} was updated but ListServiceDeployments showed no deployment "
        f"created since {after.isoformat()} after {LIST_ATTEMPTS} tries"
    )


# ------------------------------------------------------------------------------ status, stop
def status(ecs: Any, deployment: str) -> dict[str, Any]:
    """`{"status": IN_PROGRESS | SUCCEEDED | FAILED, "ecs_status", "reason"}` of `deployment`."""
    response = ecs.describe_service_deployments(serviceDeploymentArns=[deployment])
    found = [
        d
        for d in response.get("serviceDeployments", [])
        if d.get("serviceDeploymentArn") == deployment
    ]
    if not found:
        why = "; ".join(
            f"{failure.get('reason', '?')} {failure.get('detail', '')}".strip()
            for failure in response.get("failures", [])
        )
        return {
            "status": "FAILED",
            "ecs_status": None,
            "reason": f"ECS has no service deployment {deployment}: {why or 'not returned'}",
        }
    described = found[0]
    ecs_status = described.get("status", "")
    reason = described.get("statusReason", "")
    rollback = (described.get("rollback") or {}).get("reason")
    if rollback:
        reason = f"{reason} (rollback: {rollback})" if reason else f"rollback: {rollback}"
    if ecs_status in SUCCEEDED_STATES:
        mapped = "SUCCEEDED"
    elif ecs_status in FAILED_STATES:
        mapped = "FAILED"
    else:
        # PENDING, IN_PROGRESS, or a status newer than this code: keep waiting; the state
        # machine's bounded wait stops the deployment with a rollback if it never ends.
        mapped = "IN_PROGRESS"
        if ecs_status not in IN_PROGRESS_STATES:
            reason = f"unknown ECS status {ecs_status!r}, waiting; {reason}".rstrip("; ")
    return {"status": mapped, "ecs_status": ecs_status, "reason": reason}


def stop(ecs: Any, deployment: str, waited_seconds: int) -> dict[str, Any]:
    """Stop `deployment` with a rollback to the previous revision (StopServiceDeployment,
    stopType ROLLBACK). A deployment that finished meanwhile cannot be stopped (the Developer
    Guide lists the states a stop applies to): then its own outcome is returned, so a candidate
    that did go live is not recorded as failed."""
    try:
        ecs.stop_service_deployment(serviceDeploymentArn=deployment, stopType="ROLLBACK")
    except ClientError as error:
        now = status(ecs, deployment)
        if now["status"] == "IN_PROGRESS":
            raise
        detail = error.response.get("Error", {})
        return {
            **now,
            "reason": (
                f"the rollout did not finish within {waited_seconds} s and the stop was refused "
                f"({detail.get('Code')}: {detail.get('Message')}); ECS reports "
                f"{now['ecs_status']}: {now['reason']}"
            ),
        }
    return {
        "status": "FAILED",
        "reason": f"the rollout did not finish within {waited_seconds} s: stopped and rolled back",
    }
