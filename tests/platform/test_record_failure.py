"""record-failure keeps how a failed pipeline task stopped with the run: in the report
collect-training wrote, or in a failed report of its own when the task was killed before
collect-training ran; never in a run that trained and was gated."""

from __future__ import annotations

import json
import os

import pytest

from tests.platform.conftest import Env

SPOT = {
    "stop_code": "SpotInterruption",
    "stopped_reason": "Your Spot Task was interrupted.",
    "exit_codes": {"stage-training": 0, "train": 143, "collect-training": None},
}


def _record(env: Env, stop: dict | str = SPOT, **extra: str):
    settings = {"RUN_ID": "r1", "MLOPS_FAILED_STEP": "train", **extra}
    settings.setdefault("MLOPS_TASK_STOP", stop if isinstance(stop, str) else json.dumps(stop))
    return env.run("record-failure", **settings)


def _report(env: Env) -> dict:
    return json.loads((env.models / "r1" / "report.json").read_text())


def test_a_task_killed_before_collect_training_leaves_a_failed_run(env: Env) -> None:
    result = _record(env)
    assert result.returncode == 0, result.stderr
    failure = (
        "the train task stopped: Your Spot Task was interrupted. (SpotInterruption); exit codes "
        "stage-training 0, train 143, collect-training none"
    )
    assert result.stdout.strip() == f"recorded failed run r1 (nothing was collected): {failure}"
    assert _report(env) == {
        "run_id": "r1",
        "status": "failed",
        "failure": failure,
        "files": {},
        "exit_code": 143,
        "exit_code_from": "the task's stop",
        "output_data": {},
        "task": {"step": "train", **SPOT},
    }
    assert sorted(p.name for p in env.models.iterdir()) == [".gate.lock", "r1"]
    gated = env.gate("r1")
    assert gated.returncode == 3
    assert "run r1 failed training: the train task stopped" in gated.stdout


def test_a_report_collect_training_wrote_gains_the_task(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"}, failure="CUDA out of memory")
    assert env.collect("r1", MLOPS_TRAINING_EXIT="1").returncode == 1
    collected = _report(env)
    stop = {
        **SPOT,
        "stop_code": "EssentialContainerExited",
        "stopped_reason": "Essential container in task exited",
        "exit_codes": {"train": 1, "collect-training": 1},
    }
    result = _record(env, stop)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("recorded in models/r1/report.json: the train task stopped")
    assert _report(env) == {**collected, "task": {"step": "train", **stop}}
    # A retried step records it again, the same way.
    assert _record(env, stop).returncode == 0
    assert _report(env)["task"]["exit_codes"] == {"train": 1, "collect-training": 1}
    # collect-training retried after it replaces the run, as any ungated attempt.
    env.trained("r1", 0.9)
    assert "task" not in _report(env)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root, as in the task")
def test_the_recorded_run_belongs_to_the_stores_owner(env: Env) -> None:
    os.chown(env.store, 10001, 10001)
    assert _record(env).returncode == 0
    for path in (
        env.models,
        env.models / ".gate.lock",
        env.models / "r1",
        env.models / "r1" / "report.json",
    ):
        assert path.stat().st_uid == 10001, path
    assert _record(env).returncode == 0  # rewritten report.json too
    assert (env.models / "r1" / "report.json").stat().st_uid == 10001


@pytest.mark.parametrize("rollout", ["", "1"])
def test_a_gated_run_is_never_touched(env: Env, rollout: str) -> None:
    env.trained("r1", 0.9)
    assert env.gate("r1", MLOPS_ROLLOUT=rollout).returncode == 0
    before = (env.models / "r1" / "report.json").read_bytes()
    result = _record(env)
    assert result.returncode == 1
    assert "models/r1 trained and was gated" in result.stderr
    assert (env.models / "r1" / "report.json").read_bytes() == before


def test_a_directory_without_a_report_is_left_alone(env: Env) -> None:
    (env.models / "r1").mkdir(parents=True)
    (env.models / "r1" / "model.bin").write_bytes(b"x")
    result = _record(env)
    assert result.returncode == 1
    assert "models/r1/ has no report.json" in result.stderr
    assert sorted(p.name for p in (env.models / "r1").iterdir()) == ["model.bin"]


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        ("not json", "MLOPS_TASK_STOP is not JSON"),
        ("[" * 5000, "MLOPS_TASK_STOP nests more than 32 levels deep"),
        (json.dumps({**SPOT, "stopped_reason": "x" * 9000}), "longer than 8192 bytes"),
        (json.dumps({**SPOT, "extra": 1}), "must be a JSON object"),
        (json.dumps({"stop_code": "X", "stopped_reason": "y"}), "must be a JSON object"),
        (json.dumps({**SPOT, "stop_code": 3}), "stop_code '3' is not an ECS stop code"),
        (json.dumps({**SPOT, "exit_codes": {"train": True}}), "the exit code of train is 'True'"),
        (json.dumps({**SPOT, "exit_codes": {"train": "1"}}), "the exit code of train is '1'"),
        (json.dumps({**SPOT, "exit_codes": {"../x": 1}}), "'../x' is not a container name"),
        (json.dumps({**SPOT, "exit_codes": {"train": 10**40}}), "integer of 41 digits"),
        (json.dumps({**SPOT, "exit_codes": []}), "must be a JSON object"),
    ],
    ids=[
        "not json",
        "deep",
        "too long",
        "extra key",
        "missing key",
        "stop code",
        "bool exit",
        "string exit",
        "container name",
        "huge exit",
        "exit codes list",
    ],
)
def test_anything_but_a_task_stop_is_refused(env: Env, stop: str, message: str) -> None:
    result = _record(env, stop)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (env.models / "r1").exists()


def test_the_step_must_be_named(env: Env) -> None:
    for step, message in (("", "MLOPS_FAILED_STEP is not set"), ("a b", "is not a step name")):
        result = _record(env, MLOPS_FAILED_STEP=step)
        assert result.returncode == 1
        assert message in result.stderr
    assert not (env.models / "r1").exists()


def test_a_stopped_reason_with_escapes_is_recorded_printable(env: Env) -> None:
    result = _record(env, {**SPOT, "stopped_reason": "OOM\x1b[2J\x00killed"})
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert _report(env)["task"]["stopped_reason"] == "OOM\\x1b[2J\\x00killed"
    assert "OOM\\x1b[2J\\x00killed" in _report(env)["failure"]


def test_the_stopped_containers_as_step_functions_passes_them_are_read(env: Env) -> None:
    # documents/task_outcome.py passes the stopped task's `Containers` (DescribeTasks fields in
    # PascalCase, every other field of a container left in): exit codes by name, none when absent.
    containers = [
        {"Name": "stage-training", "ExitCode": 0, "LastStatus": "STOPPED", "Image": "p@sha256:1"},
        {"Name": "train", "ExitCode": 1, "LastStatus": "STOPPED", "RuntimeId": "abc"},
        {"Name": "collect-training", "LastStatus": "STOPPED"},
    ]
    stop = {
        "stop_code": "EssentialContainerExited",
        "stopped_reason": "Essential container in task exited",
        "containers": containers,
    }
    result = _record(env, stop)
    assert result.returncode == 0, result.stderr
    report = _report(env)
    assert report["exit_code"] == 1
    assert report["task"]["exit_codes"] == {
        "stage-training": 0,
        "train": 1,
        "collect-training": None,
    }
    assert "exit codes stage-training 0, train 1, collect-training none" in report["failure"]
    refused = _record(env, {**stop, "containers": [{"ExitCode": 1}]}, RUN_ID="r2")
    assert refused.returncode == 1 and "each container needs its Name" in refused.stderr
