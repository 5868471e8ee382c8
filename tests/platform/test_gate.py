"""The platform gate refuses, never crashes: whatever a training leaves as its objective, the gate
exits by its decision (0 promoted, 3 kept) with one line and a decision.json; 1 only when no
decision could be made. With MLOPS_ROLLOUT=1 a promoted run is the candidate and models/CURRENT
stays where it was."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_contract import KEPT_EXIT
from tests.platform.conftest import Env


def _plant_symlink_to_passwd(run: Path) -> None:
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to("/etc/passwd")


def _plant_fifo(run: Path) -> None:
    (run / "metrics.json").unlink()
    os.mkfifo(run / "metrics.json")


def _plant_symlinked_directory(run: Path) -> None:
    outside = run.parents[2] / "outside"
    outside.mkdir()
    (outside / "metrics.json").write_text('{"accuracy": 0.99}')
    (run / "eval").symlink_to(outside)


HOSTILE = {
    "nested 100000 deep": (
        b'{"accuracy": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        None,
        "nests more than 32 levels deep",
    ),
    "a 401-digit integer": (
        b'{"accuracy": 1' + b"0" * 400 + b"}",
        None,
        "an integer of 401 digits, more than the limit of 30",
    ),
    "2 MiB": (
        b'{"accuracy": 0.9, "pad": "' + b"x" * (2 << 20) + b'"}',
        None,
        "larger than 1 MiB (1048576 bytes), the limit",
    ),
    "NaN": (b'{"accuracy": NaN}', None, "holds NaN"),
    "Infinity": (b'{"accuracy": -Infinity}', None, "holds -Infinity"),
    "true": (b'{"accuracy": true}', None, "accuracy = True is not a finite number"),
    "a symlink to /etc/passwd": (
        b'{"accuracy": 0.9}',
        _plant_symlink_to_passwd,
        "metrics.json is a symlink",
    ),
    "a FIFO": (b'{"accuracy": 0.9}', _plant_fifo, "metrics.json is not a regular file"),
    "a symlinked directory": (
        b'{"accuracy": 0.9}',
        _plant_symlinked_directory,
        "eval is a symlink",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_objective_is_refused_with_one_line_and_a_decision(env: Env, case: str) -> None:
    metrics, plant, message = HOSTILE[case]
    env.trained_with("r1", metrics)
    if plant is not None:
        plant(env.models / "r1")
    extra = {"MLOPS_OBJECTIVE_FILE": "eval/metrics.json"} if case == "a symlinked directory" else {}
    result = env.gate("r1", **extra)
    assert result.returncode == KEPT_EXIT, result.stderr
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith("refused run r1: no objective: models/r1/")
    assert message in result.stdout
    decision = env.decision("r1")
    assert decision["promoted"] is False
    assert message in decision["reason"]
    assert env.current() is None


def test_a_hostile_current_objective_does_not_stop_the_next_gate(env: Env) -> None:
    env.trained("r1", 0.9)
    assert env.gate("r1").returncode == 0
    (env.models / "r1" / "metrics.json").write_bytes(b"[" * 100_000)
    env.trained("r2", 0.5)
    result = env.gate("r2")
    assert result.returncode == 0, result.stderr
    assert "current run r1 has no comparable objective" in result.stdout
    assert "nests more than 32 levels deep" in result.stdout
    assert env.current() == "r2"


def test_exit_codes_promoted_kept_and_no_decision(env: Env) -> None:
    env.trained("r1", 0.9)
    env.trained("r2", 0.8)
    assert env.gate("r1").returncode == 0
    kept = env.gate("r2")
    assert kept.returncode == KEPT_EXIT
    assert kept.stdout.startswith("refused run r2: accuracy 0.8 vs 0.9 of run r1")
    env.trained("r3", 0.95)
    bad = env.gate("r3", MLOPS_ROLLOUT="yes")
    assert bad.returncode == 1
    assert bad.stderr.startswith("gate: MLOPS_ROLLOUT='yes'")
    assert not (env.models / "r3" / "decision.json").exists()
    missing = env.gate("r9")
    assert missing.returncode == 1
    assert "models/r9/ does not exist" in missing.stderr


def test_a_run_without_a_report_is_not_promoted(env: Env) -> None:
    """Only what collect-training recorded as trained is promoted: a directory someone put in
    models/ with a metrics file is not a trained run."""
    (env.models / "r1").mkdir(parents=True)
    (env.models / "r1" / "metrics.json").write_text('{"accuracy": 0.99}')
    result = env.gate("r1")
    assert result.returncode == KEPT_EXIT
    assert "run r1 has no report.json" in result.stdout
    assert env.current() is None


def test_a_retried_gate_keeps_its_decision(env: Env) -> None:
    env.trained("r1", 0.9)
    env.trained("r2", 0.8)
    assert env.gate("r1").returncode == 0
    assert env.gate("r2").returncode == KEPT_EXIT
    recorded = (env.models / "r2" / "decision.json").read_bytes()
    (env.models / "r2" / "metrics.json").write_text('{"accuracy": 0.99}')  # changed since
    retried = env.gate("r2")
    assert retried.returncode == KEPT_EXIT
    assert retried.stdout.startswith("refused run r2 (decided earlier): accuracy 0.8 vs 0.9")
    assert (env.models / "r2" / "decision.json").read_bytes() == recorded
    assert env.current() == "r1"


def test_a_retried_gate_finishes_a_swap_it_did_not_get_to(env: Env) -> None:
    """The decision is written before CURRENT moves: a gate stopped in between left a promoted
    decision for a model not served. Its retry replaces CURRENT, as long as CURRENT still names
    the run the decision compared with."""
    env.trained("r1", 0.9)
    env.trained("r2", 0.95)
    assert env.gate("r1").returncode == 0
    assert env.gate("r2").returncode == 0
    (env.models / "CURRENT").write_text("r1\n")  # as if the gate had stopped before the swap
    retried = env.gate("r2")
    assert retried.returncode == 0
    assert "(decided earlier; models/CURRENT now names it)" in retried.stdout
    assert env.current() == "r2"
    env.trained("r3", 0.99)
    assert env.gate("r3").returncode == 0
    assert env.gate("r2").returncode == 0  # its decision stands, but CURRENT has moved on
    assert env.current() == "r3"


def test_a_damaged_decision_is_no_decision(env: Env) -> None:
    env.trained("r1", 0.9)
    (env.models / "r1" / "decision.json").write_bytes(b"[" * 50_000)
    result = env.gate("r1")
    assert result.returncode == 1
    assert "models/r1/decision.json nests more than 32 levels deep" in result.stderr
    assert env.current() is None


# ------------------------------------------------------------------------------ rollout mode
def test_rollout_mode_makes_the_promoted_run_the_candidate(env: Env) -> None:
    env.trained("r1", 0.9)
    assert env.gate("r1").returncode == 0
    env.trained("r4", 0.95)
    result = env.gate("r4", MLOPS_ROLLOUT="1", MLOPS_OBJECTIVE_MARGIN="0.01")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "promoted run r4 as the candidate: accuracy 0.95 vs 0.9 of run r1: higher by 0.05 > "
        "margin 0.01; models/CURRENT names it once its rollout succeeds"
    )
    decision = env.decision("r4")
    assert (decision["promoted"], decision["rollout"]) == (True, {"status": "pending"})
    assert env.current() == "r1"
    # The next run is compared with CURRENT, not with the candidate.
    env.trained("r5", 0.92)
    assert env.gate("r5", MLOPS_ROLLOUT="1").returncode == 0
    assert env.decision("r5")["current_run"] == "r1"
    assert env.current() == "r1"
    retried = env.gate("r4", MLOPS_ROLLOUT="1")
    assert retried.returncode == 0
    assert retried.stdout.startswith("promoted run r4 as the candidate (decided earlier)")


@pytest.mark.parametrize(
    ("prepare", "promoted"),
    [(lambda env: env.trained("r1", 0.9), True), (lambda env: env.train("r1", {}), False)],
    ids=["trained", "failed"],
)
def test_rollout_mode_first_model_and_a_failed_run(
    env: Env, prepare: Callable[[Env], None], promoted: bool
) -> None:
    prepare(env)
    env.collect("r1")
    result = env.gate("r1", MLOPS_ROLLOUT="1")
    assert result.returncode == (0 if promoted else KEPT_EXIT)
    assert ("rollout" in env.decision("r1")) is promoted
    assert env.current() is None


def test_every_trained_run_in_rollout_mode(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})
    assert env.collect("r1").returncode == 0
    result = env.run("gate", RUN_ID="r1", MLOPS_PROMOTION="every-trained-run", MLOPS_ROLLOUT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("promoted run r1 as the candidate: run r1 trained")
    assert env.decision("r1")["rollout"] == {"status": "pending"}
    assert env.current() is None


def test_a_failed_runs_failure_text_reaches_the_line_as_one_printable_line(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"}, failure="line one\n\x1b[2Jline two\x00")
    env.collect("r1")
    result = env.gate("r1")
    assert result.returncode == KEPT_EXIT
    assert result.stdout.splitlines() == [
        "refused run r1: run r1 failed training: line one / \\x1b[2Jline two\\x00; "
        "nothing is promoted yet"
    ]
    assert json.loads((env.models / "r1" / "decision.json").read_text())["promoted"] is False
