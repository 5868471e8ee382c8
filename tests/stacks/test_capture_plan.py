"""`inference.capture` in the plan: the platform's capture proxy in front of the server, the load
balancer forwarding to it, and `capture/` the only part of the store its task may write.

What a user relies on: the image is not changed (the server keeps its port and command), the
load balancer reaches the server only through the proxy, a staged server's task still reads the
rest of the store only, and a bad value is refused naming the key.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from preflight.offline import Plan, run_stack

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
POLICY = "aws:iam/rolePolicy:RolePolicy"
FS_POLICY = "aws:efs/fileSystemPolicy:FileSystemPolicy"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.fixture(scope="module")
def captured() -> Plan:
    return run_stack("digits", {"inference": {"capture": {"percent": 10}}})


def _inference(plan: Plan) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    (task,) = [
        r for r in plan.of_type(TASK_DEFINITION) if r.inputs["family"].endswith("-inference")
    ]
    containers = {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}
    return containers, task.inputs["volumes"]


def test_the_proxy_fronts_the_unchanged_server_as_the_platform_images_user(captured: Plan):
    containers, volumes = _inference(captured)
    plain, _ = _inference(run_stack("digits"))
    assert containers["api"] == plain["api"]  # the workload's container is untouched
    proxy = containers["capture"]
    assert proxy["command"] == ["capture-proxy"]
    assert proxy["image"] == containers["stage-serving"]["image"]  # the platform image
    assert proxy["user"] == "10001:10001" and proxy["readonlyRootFilesystem"] is True
    assert proxy["essential"] is True
    assert [m["containerPort"] for m in proxy["portMappings"]] == [8089]
    env = {e["name"]: e["value"] for e in proxy["environment"]}
    assert env["MLOPS_CAPTURE_PERCENT"] == "10"
    assert env["MLOPS_CAPTURE_UPSTREAM_PORT"] == "8080"
    assert env["STORE_DIR"] == "/mnt/store"
    # capture/ only, through its own access point; not the store's volume.
    mounts = {m["sourceVolume"]: m for m in proxy["mountPoints"]}
    assert mounts["capture"]["containerPath"] == "/mnt/store/capture"
    assert "store" not in mounts
    points = {r.id: r.inputs["rootDirectory"]["path"] for r in captured.of_type(ACCESS_POINT)}
    capture_volume = next(v for v in volumes if v["name"] == "capture")
    efs = capture_volume["efsVolumeConfiguration"]
    assert efs["transitEncryption"] == "ENABLED" and efs["authorizationConfig"]["iam"] == "ENABLED"
    assert points[efs["authorizationConfig"]["accessPointId"]] == "/mlops/capture"


def test_the_load_balancer_reaches_the_server_only_through_the_proxy(captured: Plan):
    (service,) = captured.of_type(SERVICE)
    targets = [
        (b["containerName"], int(b["containerPort"])) for b in service.inputs["loadBalancers"]
    ]
    assert targets == [("capture", 8089)]
    from_alb = {
        int(r.inputs["fromPort"])
        for r in captured.of_type(INGRESS)
        if "referencedSecurityGroupId" in r.inputs and r.name.startswith("inference-")
    }
    assert 8089 in from_alb and 8080 not in from_alb


def test_the_serving_task_writes_capture_and_only_reads_the_rest(captured: Plan):
    points = {r.name: r for r in captured.of_type(ACCESS_POINT)}
    store_ap, capture_ap = points["store-ap"].id, points["store-capture-ap"].id
    role = captured.one("aws:iam/role:Role", "inference-task-role")
    role_arn = role.outputs["arn"]
    own = {r.name: json.loads(r.inputs["policy"]) for r in captured.of_type(POLICY)}
    store = own["inference-task-store"]["Statement"]
    assert [s["Action"] for s in store] == [["elasticfilesystem:ClientMount"]]
    (write,) = own["inference-task-capture"]["Statement"]
    assert "elasticfilesystem:ClientWrite" in write["Action"]
    assert write["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"].endswith(
        capture_ap
    )
    # The file system policy lets the role write through the capture access point alone.
    statements = json.loads(captured.one(FS_POLICY).inputs["policy"])["Statement"]
    writes = [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and "elasticfilesystem:ClientWrite" in s["Action"]
        and role_arn in s["Principal"]["AWS"]
    ]
    assert [s["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"] for s in writes] == [
        next(r.outputs["arn"] for r in captured.of_type(ACCESS_POINT) if r.id == capture_ap)
    ]
    assert store_ap != capture_ap


def test_off_by_default_declares_nothing_of_it():
    plan = run_stack("digits")
    containers, _ = _inference(plan)
    assert "capture" not in containers
    assert [r.name for r in plan.of_type(ACCESS_POINT)] == ["store-ap"]


def test_the_forecaster_gets_the_proxy_and_the_platform_image_it_runs():
    plan = run_stack("dev", {"inference": {"capture": {"percent": 100}}})
    containers, _ = _inference(plan)
    env = {e["name"]: e["value"] for e in containers["capture"]["environment"]}
    assert env["MLOPS_CAPTURE_PERCENT"] == "100" and env["MLOPS_CAPTURE_UPSTREAM_PORT"] == "8080"
    assert any(r.name.startswith("platform-image") for r in plan.resources)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"inference": {"capture": {"percent": 101}}}, "mlops:inference.capture.percent: 101"),
        ({"inference": {"capture": {"percent": "10%"}}}, "mlops:inference.capture.percent: '10%'"),
        ({"inference": {"capture": {"percent": True}}}, "mlops:inference.capture.percent: True"),
        ({"inference": {"capture": {"max_body_kib": 0}}}, "mlops:inference.capture.max_body_kib"),
        ({"inference": {"capture": {"sample": 10}}}, "inference.capture"),
        (
            {"inference": {"capture": {"percent": 5}}, "workload": {"serving": {"port": 8089}}},
            "mlops:workload.serving.port: 8089",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(overrides: dict[str, Any], named: str):
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("digits", overrides)
    assert named in str(caught.value), caught.value
