"""collect-training takes back only what may be kept: never a file posing as the platform's own
record, never more than MLOPS_MODEL_MAX_BYTES (measured as a copy would write it, before copying),
and never a workload's text as raw escape sequences."""

from __future__ import annotations

import json
import os
import time

import pytest

from mlops_contract import KEPT_EXIT
from tests.platform.conftest import Env


def _report(env: Env, run_id: str = "r1") -> dict:
    return json.loads((env.models / run_id / "report.json").read_text())


@pytest.mark.parametrize("record", ["report.json", "decision.json"])
def test_a_planted_record_fails_the_run(env: Env, record: str) -> None:
    planted = {"run_id": "r1", "status": "trained", "promoted": True, "files": {}}
    env.train(
        "r1",
        {
            "model.json": b"{}",
            "metrics.json": b'{"accuracy": 0.99}',
            record: json.dumps(planted).encode(),
        },
    )
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"model/{record}: a name the platform keeps for its own records" in last
    report = _report(env)
    assert (report["status"], report["files"]) == ("failed", {})
    assert record in report["failure"]
    assert sorted(p.name for p in (env.models / "r1").iterdir()) == ["report.json"]
    gated = env.gate("r1")
    assert gated.returncode == KEPT_EXIT
    assert env.current() is None


def test_failure_text_is_made_printable(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"}, failure="boom\x1b[31m red\x00end\r\ntab\there\n")
    result = env.collect("r1", MLOPS_TRAINING_EXIT="1")
    assert result.returncode == 1
    for raw in ("\x1b", "\x00", "\r"):
        assert raw not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "collect-training: boom\\x1b[31m red\\x00end\\x0d / tab here"
    )
    failure = _report(env)["failure"]
    assert failure == "boom\\x1b[31m red\\x00end\\x0d\ntab\there\n"


def test_a_file_name_with_escapes_reaches_no_terminal_raw(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})
    (env.ml / "model" / "x\x1b]0;owned\x07").symlink_to("/etc/passwd")
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "x\\x1b]0;owned\\x07" in result.stderr
    assert "symlink" in _report(env)["failure"]
    assert "\x1b" not in _report(env)["failure"]


def test_a_sparse_model_over_the_limit_is_refused_before_any_copy(env: Env) -> None:
    env.train("r1", {"model.json": b"{}", "metrics.json": b'{"accuracy": 0.9}'})
    sparse = env.ml / "model" / "weights.bin"
    with open(sparse, "wb") as handle:
        handle.write(b"\x01" * 4096)
    os.truncate(sparse, 2 << 30)
    assert sparse.stat().st_blocks * 512 < 1 << 20, "the file system here does not keep it sparse"
    started = time.monotonic()
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0", MLOPS_MODEL_MAX_BYTES=str(1 << 20))
    assert time.monotonic() - started < 10  # measured, not copied
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "holds 2 GiB (2147483667 bytes)" in last  # 2 GiB and the 2 + 17 bytes beside it
    assert "more than MLOPS_MODEL_MAX_BYTES=1048576 (1 MiB (1048576 bytes))" in last
    assert "a sparse file counts at its full size" in last
    report = _report(env)
    assert (report["status"], report["files"]) == ("failed", {})
    assert sorted(p.name for p in (env.models / "r1").iterdir()) == ["report.json"]


def test_output_data_over_the_limit_is_not_kept(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})
    data = env.ml / "output" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "dump.bin").touch()
    os.truncate(data / "dump.bin", 2 << 30)
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0", MLOPS_MODEL_MAX_BYTES=str(1 << 20))
    assert result.returncode == 1
    assert f"{data} holds 2 GiB" in result.stderr
    report = _report(env)
    assert (report["status"], report["output_data"]) == ("failed", {})
    assert list(report["files"]) == ["model.json"]  # the model was within the limit
    assert not (env.store / "outputs" / "r1").exists()


def test_the_limit_is_inclusive(env: Env) -> None:
    env.train("r1", {"model.json": b"0123456789"})
    assert env.collect("r1", MLOPS_TRAINING_EXIT="0", MLOPS_MODEL_MAX_BYTES="10").returncode == 0
    env.train("r2", {"model.json": b"0123456789A"})
    over = env.collect("r2", MLOPS_TRAINING_EXIT="0", MLOPS_MODEL_MAX_BYTES="10")
    assert over.returncode == 1
    assert "holds 11 bytes, more than MLOPS_MODEL_MAX_BYTES=10 (10 bytes)" in over.stderr


@pytest.mark.parametrize("value", ["0", "-1", "10GB", "1e9", "٣", "9" * 21])
def test_a_bad_limit_is_refused_before_anything_is_collected(env: Env, value: str) -> None:
    env.train("r1", {"model.json": b"{}"})
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0", MLOPS_MODEL_MAX_BYTES=value)
    assert result.returncode == 1
    assert result.stderr.startswith("collect-training: MLOPS_MODEL_MAX_BYTES=")
    assert "positive whole number of bytes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (env.models / "r1").exists()
