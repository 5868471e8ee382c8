"""preflight/run_local.py without Docker: what it reads from the stack and the `docker run`
arguments it derives from a container definition (tests/containers runs them for real)."""

from __future__ import annotations

import pytest

from preflight import run_local
from preflight.offline import Plan
from preflight.run_local import LocalTask, RunLocalError, matcher_accepts, read_stack


@pytest.fixture
def view(dev_plan: Plan) -> run_local.StackView:
    return read_stack(dev_plan)


def _task(view: run_local.StackView, family: str, tmp_path) -> LocalTask:
    task = LocalTask(view.tasks[family], "img:1", tmp_path, view.access_point, "s1")
    task.holder = "holder"
    for definition in task.spec.containers:
        task.containers[definition["name"]] = run_local.ContainerState(definition)
    task.volumes = {"store": str(tmp_path / "mlops"), "scratch": "vol-scratch"}
    return task


def test_reads_the_declared_tasks_checks_and_access_point(view: run_local.StackView) -> None:
    assert view.inference_family == "mlops-dev-inference"
    assert {"mlops-dev-training-validate", "mlops-dev-training-train"} <= set(view.tasks)
    assert view.access_point == run_local.AccessPoint(10001, 10001, "/mlops", 0o750)
    api = next(c for c in view.checks if c.container == "api")
    assert (api.port, api.matcher, api.healthy_threshold, api.unhealthy_threshold) == (
        8080, "200", 2, 3,
    )  # fmt: skip
    assert view.state_machine["StartAt"] in view.state_machine["States"]


def test_container_definition_becomes_fargate_like_docker_run(view, tmp_path, monkeypatch):
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset({"/tmp"}))
    task = _task(view, view.inference_family, tmp_path)
    args = task.docker_run_args(task.containers["api"])
    joined = " ".join(args)
    assert args[args.index("--user") : args.index("--user") + 2] == ["--user", "10001:10001"]
    for flag in ("--read-only", "--init", "--network container:holder", "--stop-timeout 120"):
        assert flag in joined
    assert "--memory 1024m --cpus 0.5" in joined  # the task's size
    assert "--health-interval 15s --health-timeout 5s --health-retries 3" in joined
    assert "--health-start-period 120s" in joined
    assert f"type=bind,src={tmp_path / 'mlops'},dst=/mnt/store" in joined
    # The image declares /tmp: Docker copies it in, as Fargate does.
    assert "type=volume,src=vol-scratch,dst=/tmp --" in joined + " --"
    assert args[-2:] == ["img:1", "serve"]
    forecaster = " ".join(task.docker_run_args(task.containers["forecaster"]))
    assert "--no-healthcheck" in forecaster


def test_an_undeclared_scratch_path_is_an_empty_volume(view, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset())
    task = _task(view, view.inference_family, tmp_path)
    joined = " ".join(task.docker_run_args(task.containers["api"]))
    assert "type=volume,src=vol-scratch,dst=/tmp,volume-nocopy" in joined


def test_fargate_refuses_tmpfs_and_privileged(view, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset())
    task = _task(view, view.inference_family, tmp_path)
    task.containers["api"].definition["privileged"] = True
    with pytest.raises(RunLocalError, match="privileged"):
        task.docker_run_args(task.containers["api"])
    spec = view.tasks[view.inference_family]
    spec.containers[0]["linuxParameters"] = {"tmpfs": [{"containerPath": "/x", "size": 64}]}
    with pytest.raises(RunLocalError, match="no tmpfs"):
        LocalTask(spec, "img:1", tmp_path, view.access_point, "s2").start()


@pytest.mark.parametrize(
    ("matcher", "status", "accepted"),
    # ELB API reference, Matcher.HttpCode: "200", "200,202" or "200-299".
    [("200", 200, True), ("200", 503, False), ("200,202", 202, True), ("200-299", 204, True)],
)
def test_target_group_matcher(matcher: str, status: int, accepted: bool) -> None:
    assert matcher_accepts(matcher, status) is accepted


def test_run_task_command_overrides_replace_the_container_command(view, tmp_path, monkeypatch):
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset())
    family = "mlops-dev-training-validate"
    task = _task(view, family, tmp_path)
    task.commands = {"validate": ["check-image"]}
    task.overrides = {"validate": {"RUN_ID": "r1"}}
    args = task.docker_run_args(task.containers["validate"])
    assert args[-2:] == ["img:1", "check-image"] and "RUN_ID=r1" in args
    environments, commands = run_local.pipeline._overrides(
        {"Overrides": {"ContainerOverrides": [{"Name": "validate", "Command": ["check-image"],
                                               "Environment": [{"Name": "A", "Value": "1"}]}]}}
    )  # fmt: skip
    assert environments == {"validate": {"A": "1"}} and commands == {"validate": ["check-image"]}


# --- secrets ------------------------------------------------------------------------------------

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"


def test_a_secret_reaches_docker_by_name_only(view, tmp_path, monkeypatch) -> None:
    """As ECS injects a secret at start: the container sees the value; the `docker run` command
    line (and so `ps` and the log) carries only the name."""
    monkeypatch.setattr(run_local.task, "image_volumes", lambda image: frozenset({"/tmp"}))
    task = _task(view, view.inference_family, tmp_path)
    api = task.containers["api"]
    api.definition = {**api.definition, "secrets": [{"name": "DB_PASSWORD", "valueFrom": ARN}]}
    task.secrets = {"DB_PASSWORD": "hunter2"}
    args = task.docker_run_args(api)
    assert args[args.index("DB_PASSWORD") - 1] == "--env"
    assert "hunter2" not in " ".join(args)
    assert task.secret_environment(api.definition) == {"DB_PASSWORD": "hunter2"}


def test_a_secret_without_a_local_value_names_it_and_where_to_put_it(view, tmp_path) -> None:
    task = _task(view, view.inference_family, tmp_path)
    definition = {"name": "api", "secrets": [{"name": "DB_PASSWORD", "valueFrom": ARN}]}
    with pytest.raises(
        RunLocalError,
        match=r"DB_PASSWORD \(arn:aws:secretsmanager.*\).*"
        r"\.run-local-secrets\.env.*RUN_LOCAL_SECRET_DB_PASSWORD",
    ):
        task.secret_environment(definition)


def test_local_secret_values_come_from_the_file_then_the_environment(tmp_path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text('# local stand-ins\n\nDB_PASSWORD="p w"\nexport API_TOKEN=abc=def\n')
    values = run_local.load_secrets(path, {"RUN_LOCAL_SECRET_API_TOKEN": "from-env", "HOME": "/"})
    assert values == {"DB_PASSWORD": "p w", "API_TOKEN": "from-env"}
    assert run_local.load_secrets(tmp_path / "absent.env", {}) == {}
    path.write_text("DB_PASSWORD hunter2\n")
    with pytest.raises(RunLocalError, match=r"secrets\.env:1: not a NAME=value") as error:
        run_local.load_secrets(path, {})
    assert "hunter2" not in str(error.value)


# --- Step Functions' error handling --------------------------------------------------------


def test_error_names_match_as_the_states_language_says() -> None:
    """States.ALL matches every error; States.TaskFailed every error but States.Timeout
    (https://states-language.net/spec.html, "Errors")."""
    matches = run_local.pipeline.matches
    assert matches(["States.ALL"], "States.Timeout")
    assert matches(["States.TaskFailed"], "ECS.AmazonECSException")
    assert not matches(["States.TaskFailed"], "States.Timeout")
    assert matches(["ECS.AmazonECSException"], "ECS.AmazonECSException")
    assert not matches(["ECS.AmazonECSException"], "States.TaskFailed")


def test_retry_intervals_grow_by_the_backoff_rate_up_to_the_cap() -> None:
    delay = run_local.pipeline.retry_delay
    retrier = {"IntervalSeconds": 30, "BackoffRate": 2.0}
    assert [delay(retrier, n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert delay({**retrier, "MaxDelaySeconds": 100}, 4) == 100
    assert delay({}, 1) == 1.0  # the defaults: 1 s, rate 2.0


def test_a_state_fails_on_any_non_zero_exit_or_a_stop_of_another_kind() -> None:
    outcome = run_local.TaskOutcome
    ok = outcome("f", {"stage": 0, "train": 0, "collect": 0}, "EssentialContainerExited", "")
    assert not ok.failed
    # A non-essential container's non-zero exit fails the state too.
    assert outcome(
        "f", {"stage": 0, "train": 1, "collect": 0}, "EssentialContainerExited", ""
    ).failed
    assert outcome(
        "f", {"train": None}, "SpotInterruption", "Your Spot Task was interrupted."
    ).failed
    assert outcome("f", {"train": 0}, "EssentialContainerExited", "", timed_out=True).failed
    description = ok.description()
    assert description["StopCode"] == "EssentialContainerExited"
    assert {c["Name"]: c["ExitCode"] for c in description["Containers"]}["train"] == 0
