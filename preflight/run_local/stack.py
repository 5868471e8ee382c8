"""What run_local takes from the stack's plan, as the program declares it: task definitions, the
EFS access point, the service's target-group checks and grace period, the state machine, and
where each image comes from. Nothing is retyped here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from preflight.offline import Plan, Resource
from preflight.run_local.docker import RunLocalError

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
IMAGE = "docker:index/image:Image"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
FUNCTION = "aws:lambda/function:Function"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
SCHEDULE_TARGET_SUFFIX = "-schedule-target"


def as_int(value: Any) -> int:
    """Numbers arrive from the mocks as floats (10001.0)."""
    return int(float(value))


@dataclass(frozen=True)
class AccessPoint:
    uid: int
    gid: int
    root: str
    permissions: int


@dataclass(frozen=True)
class TargetCheck:
    """One target group's health check, bound to the container and port it checks."""

    name: str
    container: str
    port: int
    path: str
    matcher: str
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class TaskSpec:
    family: str
    cpu: int
    memory: int
    containers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    flavour: str
    """The image flavour its containers use (cpu or gpu)."""


@dataclass(frozen=True)
class ImageSource:
    """Where the workload's image comes from: built here from the stack's docker.Image resources
    (`build`), a pushed digest the stack deploys (`pin`, `mlops:image.pin`), or an image built
    elsewhere (`location`, `mlops:workload.image.location`)."""

    kind: str
    reference: str = ""
    """The reference the task definitions name (pin, location)."""

    def missing(self) -> str:
        """Why no local image can be built, and what to do: for error messages."""
        if self.kind == "pin":
            return (
                f"the stack deploys the pushed digest {self.reference} (mlops:image.pin) and "
                "builds nothing: unset mlops:image.pin to build it here, or pass --image with a "
                "local image"
            )
        return (
            f"the stack runs {self.reference} (mlops:workload.image.location), which is not on "
            "this machine: `docker pull` it, or `docker tag` a local build of it with that exact "
            "name, or pass --image with a local image"
        )


@dataclass
class StackView:
    plan: Plan
    tasks: dict[str, TaskSpec]
    """By family."""
    access_point: AccessPoint
    """The store's access point (every task's `store` volume)."""
    images: dict[str, Resource]
    """The release docker.Image of the workload, per flavour (empty unless `source` is build)."""
    inference_family: str | None
    checks: list[TargetCheck]
    state_machine: dict[str, Any]
    others: dict[str, Resource] = field(default_factory=dict)
    """Other images the stack builds (the platform's staging image), by the reference its task
    definitions name."""
    grace_period: int = 0
    """The service's `healthCheckGracePeriodSeconds`: target checks ignored that long."""
    source: ImageSource = field(default_factory=lambda: ImageSource("build"))
    functions: dict[str, str] = field(default_factory=dict)
    """The stack's Lambda functions: ARN -> the rollout/ module its handler names."""
    service: dict[str, Any] = field(default_factory=dict)
    """The inference service's inputs (its deployment configuration), {} without one."""
    access_points: dict[str, AccessPoint] = field(default_factory=dict)
    """Every access point of the stack by id (the store's, and `capture/`'s with capture)."""
    scheduled: dict[str, str] = field(default_factory=dict)
    """The stack's scheduled ECS tasks (an EventBridge schedule's ECS target): the component's
    name (`monitoring`: the workload's job, `model-monitor`: the platform's monitor) -> family."""


def _access_point(resource: Resource) -> AccessPoint:
    ap = resource.inputs
    info = ap["rootDirectory"]["creationInfo"]
    return AccessPoint(
        uid=as_int(ap["posixUser"]["uid"]),
        gid=as_int(ap["posixUser"]["gid"]),
        root=ap["rootDirectory"]["path"],
        permissions=int(str(info["permissions"]), 8),
    )


def read_stack(plan: Plan) -> StackView:
    built = [r for r in plan.of_type(IMAGE) if not r.name.endswith("-cache")]
    # The platform's own image (ImageRepo's "platform-" children) stages /opt/ml around a
    # SageMaker workload; the rest are the workload's flavours.
    images = {
        r.inputs["build"]["args"]["FLAVOUR"]: r for r in built if not r.name.startswith("platform-")
    }
    others = {r.outputs.get("repoDigest"): r for r in built if r.name.startswith("platform-")}
    flavour_of = {r.outputs.get("repoDigest"): flavour for flavour, r in images.items()}
    tasks = {}
    workload_refs: set[str] = set()
    for resource in plan.of_type(TASK_DEFINITION):
        inputs = resource.inputs
        containers = json.loads(inputs["containerDefinitions"])
        refs = {c["image"] for c in containers} - set(others)
        workload_refs |= refs
        flavours = {flavour_of.get(ref) for ref in refs}
        if None in flavours and images:
            raise RunLocalError(f"{inputs['family']}: an image this stack does not build")
        tasks[inputs["family"]] = TaskSpec(
            family=inputs["family"],
            cpu=as_int(inputs.get("cpu", 1024)),
            memory=as_int(inputs.get("memory", 2048)),
            containers=containers,
            volumes=list(inputs.get("volumes") or []),
            flavour=(flavours.pop() if flavours and images else "cpu") or "cpu",
        )
    access_points = {r.id or r.name: _access_point(r) for r in plan.of_type(ACCESS_POINT)}
    access_point = _access_point(plan.one(ACCESS_POINT, "store-ap"))
    services = plan.of_type(SERVICE)
    inference, checks, grace = None, [], 0
    if services:
        service = services[0]
        by_arn = {r.outputs.get("arn"): r for r in plan.of_type(TASK_DEFINITION)}
        inference = by_arn[service.inputs["taskDefinition"]].inputs["family"]
        checks = _target_checks(plan, service)
        grace = as_int(service.inputs.get("healthCheckGracePeriodSeconds", 0))
    machine = json.loads(plan.one(STATE_MACHINE).inputs["definition"])
    functions = {
        r.outputs["arn"]: str(r.inputs["handler"]).split(".", 1)[0] for r in plan.of_type(FUNCTION)
    }
    families = {r.outputs.get("arn"): r.inputs["family"] for r in plan.of_type(TASK_DEFINITION)}
    scheduled = {
        r.name.removesuffix(SCHEDULE_TARGET_SUFFIX): families[
            r.inputs["ecsTarget"]["taskDefinitionArn"]
        ]
        for r in plan.of_type(EVENT_TARGET)
        if r.name.endswith(SCHEDULE_TARGET_SUFFIX) and r.inputs.get("ecsTarget")
    }
    return StackView(
        functions=functions,
        scheduled=scheduled,
        service=dict(services[0].inputs) if services else {},
        plan=plan,
        tasks=tasks,
        access_point=access_point,
        access_points=access_points,
        images=images,
        inference_family=inference,
        checks=checks,
        state_machine=machine,
        others=others,
        grace_period=grace,
        source=_image_source(plan, images, workload_refs),
    )


def _target_checks(plan: Plan, service: Resource) -> list[TargetCheck]:
    groups = {r.outputs.get("arn"): r for r in plan.of_type(TARGET_GROUP)}
    checks = []
    for attachment in service.inputs.get("loadBalancers", []):
        group = groups[attachment["targetGroupArn"]]
        health = group.inputs["healthCheck"]
        port = as_int(attachment["containerPort"])
        if health.get("port", "traffic-port") != "traffic-port":
            port = as_int(health["port"])
        checks.append(
            TargetCheck(
                name=group.name,
                container=attachment["containerName"],
                port=port,
                path=health.get("path", "/"),
                matcher=str(health.get("matcher", "200")),
                interval=as_int(health.get("interval", 30)),
                timeout=as_int(health.get("timeout", 5)),
                healthy_threshold=as_int(health.get("healthyThreshold", 5)),
                unhealthy_threshold=as_int(health.get("unhealthyThreshold", 2)),
            )
        )
    return checks


def _image_source(plan: Plan, images: dict[str, Resource], refs: set[str]) -> ImageSource:
    if images:
        return ImageSource("build")
    reference = sorted(refs)[0] if refs else ""
    own = {
        r.outputs.get("repositoryUrl")
        for r in plan.of_type(ECR_REPOSITORY)
        if not str(r.inputs.get("name", "")).endswith(("-build-cache", "-platform"))
    }
    if reference.split("@", 1)[0] in own:
        return ImageSource("pin", reference)
    return ImageSource("location", reference)
