"""`Session.environment`: variables every container of a run_local session gets, as ECS gives
every container its own, beneath each definition's values and RunTask's overrides: how the
container tests point the platform's botocore at moto's S3 (AWS_ENDPOINT_URL_S3 and keys)."""

from __future__ import annotations

from preflight import run_local
from preflight.offline import Plan
from preflight.run_local import Session, read_stack


def _environment(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--env"]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def test_every_container_gets_the_sessions_environment_beneath_its_own(
    dev_plan: Plan, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset({"/tmp"}))
    view = read_stack(dev_plan)
    extra = {"AWS_ENDPOINT_URL_S3": "http://172.17.0.1:5000", "STORE_DIR": "/elsewhere"}
    session = Session(view=view, store=tmp_path, image="img:1", environment=extra)
    task = session.task(view.inference_family, overrides={"api": {"LOG_LEVEL": "DEBUG"}})
    task.holder = "holder"
    task.volumes = {"store": str(tmp_path / "mlops"), "scratch": "vol-scratch"}
    for definition in task.spec.containers:
        state = run_local.ContainerState(definition)
        environment = _environment(task.docker_run_args(state))
        assert environment["AWS_ENDPOINT_URL_S3"] == "http://172.17.0.1:5000", definition["name"]
        # The definition's own value wins over the session's.
        assert environment["STORE_DIR"] == "/mnt/store"
    api = next(d for d in task.spec.containers if d["name"] == "api")
    assert _environment(task.docker_run_args(run_local.ContainerState(api)))["LOG_LEVEL"] == "DEBUG"
