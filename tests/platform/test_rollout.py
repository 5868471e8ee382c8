"""A promoted run becomes what models/CURRENT names only once its rollout succeeded
(finish-rollout), and a rollout's pinned task definition revision stages exactly its run, only
while that run may be served (stage-serving with MLOPS_SERVE_RUN)."""

from __future__ import annotations

import json

import pytest

from tests.platform.conftest import Env

DEPLOYMENT = "arn:aws:ecs:eu-west-1:123456789012:service-deployment/mlops/api/abc123"


@pytest.fixture
def candidate(env: Env) -> Env:
    """r1 is current; r4, better, is the candidate of a rollout."""
    env.trained("r1", 0.9)
    assert env.gate("r1").returncode == 0
    env.trained("r4", 0.95)
    gated = env.gate("r4", MLOPS_ROLLOUT="1")
    assert gated.returncode == 0, gated.stderr
    assert env.current() == "r1"
    return env


def _finish(env: Env, status: str, run_id: str = "r4", **extra: str):
    return env.run(
        "finish-rollout",
        RUN_ID=run_id,
        MLOPS_ROLLOUT_STATUS=status,
        MLOPS_SERVICE_DEPLOYMENT=DEPLOYMENT,
        **extra,
    )


def test_a_succeeded_rollout_makes_the_run_current(candidate: Env) -> None:
    env = candidate
    result = _finish(env, "succeeded")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"run r4 is current: its rollout succeeded ({DEPLOYMENT})"
    assert env.current() == "r4"
    rollout = env.decision("r4")["rollout"]
    assert (rollout["status"], rollout["deployment"], rollout["previous_run"]) == (
        "succeeded",
        DEPLOYMENT,
        "r1",
    )
    assert rollout["finished_at"].endswith("Z")
    assert env.decision("r4")["promoted"] is True
    # A retry changes nothing: not the record, not CURRENT.
    recorded = (env.models / "r4" / "decision.json").read_bytes()
    retried = _finish(env, "succeeded")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith("run r4: its rollout already succeeded (recorded ")
    assert (env.models / "r4" / "decision.json").read_bytes() == recorded
    assert env.current() == "r4"


def test_a_retried_success_finishes_the_swap_it_did_not_get_to(candidate: Env) -> None:
    env = candidate
    assert _finish(env, "succeeded").returncode == 0
    (env.models / "CURRENT").write_text("r1\n")  # as if it had stopped before CURRENT moved
    retried = _finish(env, "succeeded")
    assert retried.returncode == 0
    assert "(recorded earlier; models/CURRENT replaced now)" in retried.stdout
    assert env.current() == "r4"


def test_a_damaged_current_is_left_as_it_is(candidate: Env) -> None:
    env = candidate
    (env.models / "CURRENT").write_text("../../etc\n")
    result = _finish(env, "succeeded")
    assert result.returncode == 1
    assert "models/CURRENT is damaged" in result.stderr
    assert (env.models / "CURRENT").read_text() == "../../etc\n"
    assert env.decision("r4")["rollout"] == {"status": "pending"}


def test_a_failed_rollout_is_recorded_and_current_stays(candidate: Env) -> None:
    env = candidate
    gate_reason = env.decision("r4")["reason"]
    result = _finish(
        env, "failed", MLOPS_ROLLOUT_REASON="alarm api-5xx went off\x1b[31m during the bake"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "run r4 was not made current: rollout failed: alarm api-5xx went off\\x1b[31m during "
        "the bake; models/CURRENT still names r1"
    )
    assert env.current() == "r1"
    decision = env.decision("r4")
    assert decision["promoted"] is False
    assert decision["gate_reason"] == gate_reason
    assert decision["reason"] == "rollout failed: alarm api-5xx went off\\x1b[31m during the bake"
    assert decision["rollout"]["status"] == "failed"
    assert decision["rollout"]["deployment"] == DEPLOYMENT
    # the same status again is a retry; the other one is refused
    assert _finish(env, "failed").returncode == 0
    wrong = _finish(env, "succeeded")
    assert wrong.returncode == 1
    assert "not a candidate waiting for its rollout" in wrong.stderr
    assert "rollout failed" in wrong.stderr
    assert env.current() == "r1"
    # a retried gate keeps the failed rollout's decision: kept
    regated = env.gate("r4", MLOPS_ROLLOUT="1")
    assert regated.returncode == 3
    assert regated.stdout.startswith("refused run r4 (decided earlier): rollout failed: alarm")


def test_a_long_reason_is_cut_to_4_kib(candidate: Env) -> None:
    result = _finish(candidate, "failed", MLOPS_ROLLOUT_REASON="é" * 5000)
    assert result.returncode == 0, result.stderr
    assert candidate.decision("r4")["rollout"]["reason"] == "é" * 2048


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda env: env.trained("r4", 0.95), "models/r4/decision.json does not exist"),
        (lambda env: None, "models/r4/ does not exist"),
        (
            lambda env: (env.trained("r4", 0.95), env.gate("r4")),
            "its decision says promoted True, rollout none",
        ),
        (
            lambda env: (
                env.trained("r1", 0.9),
                env.gate("r1"),
                env.trained("r4", 0.5),
                env.gate("r4", MLOPS_ROLLOUT="1"),
            ),
            "its decision says promoted False, rollout none",
        ),
    ],
    ids=["not gated", "no run", "promoted without a rollout", "kept"],
)
def test_finish_rollout_refuses_a_run_that_is_not_a_candidate(
    env: Env, setup, message: str
) -> None:
    setup(env)
    before = env.current()
    result = _finish(env, "succeeded")
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert env.current() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MLOPS_ROLLOUT_STATUS": "done"}, "MLOPS_ROLLOUT_STATUS='done': use succeeded or failed"),
        ({"MLOPS_SERVICE_DEPLOYMENT": "deployment 1"}, "is not an ARN"),
        ({"RUN_ID": "../r4"}, "RUN_ID"),
    ],
)
def test_finish_rollout_refuses_bad_inputs(candidate: Env, extra: dict, message: str) -> None:
    settings = {"RUN_ID": "r4", "MLOPS_ROLLOUT_STATUS": "succeeded", **extra}
    result = candidate.run("finish-rollout", **settings)
    assert result.returncode == 1
    assert message in result.stderr
    assert candidate.decision("r4")["rollout"] == {"status": "pending"}
    assert candidate.current() == "r1"


# ------------------------------------------------------------------------------ stage-serving pin
def test_a_pinned_revision_stages_its_candidate(candidate: Env) -> None:
    env = candidate
    (env.models / "r4" / "model.json").write_bytes(b'{"w": 4}')
    result = env.run("stage-serving", MLOPS_SERVE_RUN="r4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("staged model of run r4 (MLOPS_SERVE_RUN): 2 file(s)")
    assert (env.ml / "model" / "model.json").read_bytes() == b'{"w": 4}'
    unpinned = env.run("stage-serving")  # the running service's revision: CURRENT
    assert unpinned.stdout.startswith("staged model of run r1:")
    assert (env.ml / "model" / "model.json").read_bytes() == b'{"w": 1}'
    assert _finish(env, "succeeded").returncode == 0
    assert env.run("stage-serving", MLOPS_SERVE_RUN="r4").returncode == 0


def test_a_pinned_revision_refuses_a_failed_rollout(candidate: Env) -> None:
    env = candidate
    assert _finish(env, "failed", MLOPS_ROLLOUT_REASON="tasks failed health checks").returncode == 0
    (env.ml / "model").mkdir(exist_ok=True)
    (env.ml / "model" / "kept").write_text("untouched")
    result = env.run("stage-serving", MLOPS_SERVE_RUN="r4")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "stage-serving: MLOPS_SERVE_RUN=r4: its rollout failed (tasks failed health checks): "
        "this revision may not serve it"
    )
    assert (env.ml / "model" / "kept").read_text() == "untouched"


@pytest.mark.parametrize(
    ("setup", "pin", "message"),
    [
        (lambda env: env.trained("r2", 0.5), "r2", "the gate has not decided on it"),
        (
            lambda env: (
                env.trained("r1", 0.9),
                env.gate("r1"),
                env.trained("r2", 0.5),
                env.gate("r2"),
            ),
            "r2",
            "the gate did not promote it (accuracy 0.5 vs 0.9 of run r1",
        ),
        (lambda env: None, "r9", "models/r9/ does not exist"),
        (lambda env: None, "../r1", "MLOPS_SERVE_RUN='../r1' is not a run id"),
    ],
    ids=["not gated", "kept", "no run", "not a run id"],
)
def test_a_pinned_revision_refuses_what_may_not_serve(
    env: Env, setup, pin: str, message: str
) -> None:
    setup(env)
    result = env.run("stage-serving", MLOPS_SERVE_RUN=pin)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_pinned_run_must_have_trained(env: Env) -> None:
    """A decision saying promoted is not enough: the run's report must say it trained."""
    env.trained("r1", 0.9)
    assert env.gate("r1", MLOPS_ROLLOUT="1").returncode == 0
    report = env.models / "r1" / "report.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), "status": "failed"}))
    result = env.run("stage-serving", MLOPS_SERVE_RUN="r1")
    assert result.returncode == 1
    assert "its report.json does not say trained ('failed')" in result.stderr
