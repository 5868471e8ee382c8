"""pick-trial: the best trial of a sweep by the workload's objective, read as the gate reads a
run; models/<run>/sweep.json lists every trial; the chosen run goes back to the state machine
through the task token (SendTaskSuccess to a local Step Functions endpoint, run_local's), or
SendTaskFailure when there is nothing to pick."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from preflight.run_local.callback import CallbackEndpoint
from tests.platform.conftest import Env

# slow: each test runs pick-trial in a child process against a callback endpoint
pytestmark = pytest.mark.slow

RUN = "20261208T030000Z-exec"
OBJECTIVE = {
    "MLOPS_OBJECTIVE_KEY": "accuracy",
    "MLOPS_OBJECTIVE_DIRECTION": "maximize",
}


def plan(*ids: str, tolerated: int = 1) -> str:
    trials = [{"id": i, "hyperparameters": {"max_depth": n + 2}} for n, i in enumerate(ids)]
    return json.dumps({"trials": trials, "tolerated_failures": tolerated})


def pick(env: Env, sweep: str, **extra: str):
    return env.run("pick-trial", RUN_ID=RUN, MLOPS_SWEEP=sweep, **{**OBJECTIVE, **extra})


def record(env: Env) -> dict[str, Any]:
    return json.loads((env.models / RUN / "sweep.json").read_text())


@pytest.fixture
def endpoint() -> Iterator[CallbackEndpoint]:
    server = CallbackEndpoint("127.0.0.1")
    yield server
    server.close()


def callback_env(endpoint: CallbackEndpoint, token: str) -> dict[str, str]:
    return {**endpoint.environment(), "MLOPS_TASK_TOKEN": token, "AWS_REGION": "us-east-1"}


def test_the_best_trial_by_the_objective_is_picked_and_every_trial_is_recorded(env: Env):
    env.trained(f"{RUN}-t01", 0.91)
    env.trained(f"{RUN}-t02", 0.97)
    env.train(f"{RUN}-t03", {"model.json": b"{}"}, failure="max_depth=17 is invalid")
    assert env.collect(f"{RUN}-t03").returncode == 1  # a failed trial, recorded as failed
    env.trained(f"{RUN}-t04", 0.95)
    picked = pick(env, plan("t01", "t02", "t03", "t04"))
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.strip() == (
        f"picked trial t02 (run {RUN}-t02): accuracy 0.97, the best of 4 trials, 1 failed; "
        f"models/{RUN}/sweep.json"
    )
    sweep = record(env)
    assert sweep["best"] == {"id": "t02", "run_id": f"{RUN}-t02", "objective": 0.97}
    assert sweep["objective"] == {
        "file": "metrics.json",
        "key": "accuracy",
        "direction": "maximize",
    }
    assert (sweep["failed"], sweep["tolerated_failures"]) == (1, 1)
    trials = {t["id"]: t for t in sweep["trials"]}
    assert list(trials) == ["t01", "t02", "t03", "t04"]
    assert trials["t01"] == {
        "id": "t01",
        "run_id": f"{RUN}-t01",
        "hyperparameters": {"max_depth": 2},
        "status": "trained",
        "objective": 0.91,
        "reason": None,
    }
    assert trials["t03"]["status"] == "failed" and trials["t03"]["objective"] is None
    assert "max_depth=17 is invalid" in trials["t03"]["reason"]
    # pick-trial decides nothing: no decision.json, models/CURRENT untouched.
    assert env.current() is None
    assert not (env.models / f"{RUN}-t02" / "decision.json").exists()


def test_minimize_picks_the_lowest_and_a_tie_goes_to_the_earlier_trial(env: Env):
    for trial, loss in (("t01", 0.4), ("t02", 0.2), ("t03", 0.2)):
        env.trained_with(f"{RUN}-{trial}", json.dumps({"loss": loss}).encode())
    picked = pick(
        env,
        plan("t01", "t02", "t03"),
        MLOPS_OBJECTIVE_KEY="loss",
        MLOPS_OBJECTIVE_DIRECTION="minimize",
    )
    assert picked.returncode == 0, picked.stderr
    assert record(env)["best"]["id"] == "t02"


def test_a_trial_never_collected_and_one_without_an_objective_are_not_picked(env: Env):
    env.trained_with(f"{RUN}-t01", b'{"accuracy": NaN}')
    env.trained(f"{RUN}-t02", 0.5)
    picked = pick(env, plan("t01", "t02", "t03", tolerated=2))
    assert picked.returncode == 0, picked.stderr
    trials = {t["id"]: t for t in record(env)["trials"]}
    assert trials["t01"]["status"] == "trained" and trials["t01"]["objective"] is None
    assert trials["t01"]["reason"].startswith("no objective: ")
    assert trials["t03"]["status"] == "failed"
    assert "never collected" in trials["t03"]["reason"]
    assert record(env)["best"]["id"] == "t02"


def test_the_chosen_run_goes_back_through_the_task_token(env: Env, endpoint: CallbackEndpoint):
    env.trained(f"{RUN}-t01", 0.8)
    env.trained(f"{RUN}-t02", 0.9)
    token = endpoint.new_token()
    picked = pick(env, plan("t01", "t02"), **callback_env(endpoint, token))
    assert picked.returncode == 0, picked.stderr
    callback = endpoint.result(token)
    assert callback is not None and callback.succeeded
    assert callback.output == {
        "run_id": f"{RUN}-t02",
        "trial": "t02",
        "objective": 0.9,
        "hyperparameters": {"max_depth": 3},
    }


def test_no_trial_to_pick_fails_the_state_and_still_records_the_sweep(
    env: Env, endpoint: CallbackEndpoint
):
    env.train(f"{RUN}-t01", {"model.json": b"{}"}, failure="out of memory")
    env.collect(f"{RUN}-t01")
    env.trained_with(f"{RUN}-t02", b'{"acc": 1}')
    token = endpoint.new_token()
    picked = pick(env, plan("t01", "t02"), **callback_env(endpoint, token))
    assert picked.returncode == 1
    assert "no trial has an objective to pick by" in picked.stdout
    callback = endpoint.result(token)
    assert callback is not None and callback.error == "Sweep.NoTrialToPick"
    assert "t01: run" in callback.cause and "out of memory" in callback.cause
    assert record(env)["best"] is None


def test_more_failures_than_tolerated_fail_the_sweep(env: Env, endpoint: CallbackEndpoint):
    env.trained(f"{RUN}-t01", 0.8)
    token = endpoint.new_token()
    picked = pick(env, plan("t01", "t02", "t03", tolerated=1), **callback_env(endpoint, token))
    assert picked.returncode == 1
    callback = endpoint.result(token)
    assert callback is not None and callback.error == "Sweep.TooManyFailures"
    assert record(env)["failed"] == 2


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("", "MLOPS_SWEEP: 'trials' must be a non-empty list"),
        ('{"trials": [{"id": "x1", "hyperparameters": {}}]}', "needs a unique id like t01"),
        ('{"trials": [{"id": "t1"}]}', "needs its hyperparameters"),
        ('{"trials": [{"id": "t1", "hyperparameters": {}}], "tolerated_failures": -1}', ">= 0"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_a_bad_plan_is_refused_in_one_line(env: Env, endpoint, sweep: str, message: str):
    token = endpoint.new_token()
    picked = pick(env, sweep, **callback_env(endpoint, token))
    assert picked.returncode == 1 and message in picked.stderr, picked.stderr
    assert len(picked.stderr.strip().splitlines()) == 1
    callback = endpoint.result(token)
    assert callback is not None and callback.error == "Sweep.Refused"


def test_every_trained_run_has_no_objective_to_pick_by(env: Env):
    picked = env.run(
        "pick-trial", RUN_ID=RUN, MLOPS_SWEEP=plan("t01"), MLOPS_PROMOTION="every-trained-run"
    )
    assert picked.returncode == 1 and "picks by an objective" in picked.stderr


def test_a_spent_or_unknown_token_is_refused_as_step_functions_refuses_it(endpoint):
    status, body = endpoint.answer(
        "SendTaskSuccess", json.dumps({"taskToken": "nope", "output": "{}"}).encode()
    )
    assert status == 400 and body["__type"] == "TaskTimedOut"
    token = endpoint.new_token()
    assert endpoint.answer(
        "SendTaskSuccess", json.dumps({"taskToken": token, "output": "{}"}).encode()
    ) == (200, {})
    assert (
        endpoint.answer("SendTaskFailure", json.dumps({"taskToken": token, "error": "x"}).encode())[
            0
        ]
        == 400
    )
    status, body = endpoint.answer(
        "SendTaskSuccess", json.dumps({"taskToken": endpoint.new_token(), "output": "{"}).encode()
    )
    assert (status, body["__type"]) == (400, "InvalidOutput")
