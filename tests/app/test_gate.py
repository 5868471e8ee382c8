"""`gate` and `promote`: which run models/CURRENT serves."""

from __future__ import annotations

import shutil

import pytest

from app.gate import GateError, decide, main, promote, promote_main
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import replace_model


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, store_copy: Store) -> Store:
    """Environment for calling the command entry points in-process on `store_copy`."""
    monkeypatch.setenv("STORE_DIR", str(store_copy.root))
    monkeypatch.setenv("STORE_WAIT_SECONDS", "0")
    monkeypatch.delenv("RUN_ID", raising=False)
    monkeypatch.delenv("PROMOTE_MARGIN", raising=False)
    return store_copy


def clone_run(store: Store, run_id: str, *, mae: float, naive_mae: float | None = None) -> None:
    """A copy of the first run with its holdout figures replaced."""
    shutil.copytree(store.run_dir(FIRST_RUN), store.run_dir(run_id))
    (store.run_dir(run_id) / "decision.json").unlink()
    metrics = store.read_json(store.run_dir(run_id) / "metrics.json")
    metrics["run_id"] = run_id
    metrics["holdout"]["mae"] = mae
    if naive_mae is not None:
        metrics["holdout"]["naive_mae"] = naive_mae
    store.write_json(store.run_dir(run_id) / "metrics.json", metrics)


def current_mae(store: Store) -> float:
    return store.read_json(store.run_dir(FIRST_RUN) / "metrics.json")["holdout"]["mae"]


def test_first_run_is_promoted(trained_store) -> None:
    store = Store(trained_store)
    assert store.current_run_id() == FIRST_RUN
    decision = store.read_json(store.run_dir(FIRST_RUN) / "decision.json")
    assert decision["promoted"] is True
    assert decision["previous"] is None
    assert decision["reason"].startswith("first model")


def test_better_run_is_promoted(store_copy: Store) -> None:
    clone_run(store_copy, "better", mae=current_mae(store_copy) * 0.9)
    decision = decide(store_copy, "better", margin=0.05)
    assert decision["promoted"] is True
    assert decision["previous"] == FIRST_RUN
    assert store_copy.current_run_id() == "better"
    assert store_copy.read_json(store_copy.run_dir("better") / "decision.json") == decision


def test_run_not_beating_the_current_model_by_the_margin_is_refused(store_copy: Store) -> None:
    clone_run(store_copy, "slightly-better", mae=current_mae(store_copy) * 0.98)
    decision = decide(store_copy, "slightly-better", margin=0.05)
    assert decision["promoted"] is False
    assert "does not beat the current model run-a" in decision["reason"]
    assert "5.0% margin" in decision["reason"]
    assert store_copy.current_run_id() == FIRST_RUN


def test_run_not_beating_seasonal_naive_is_refused(tmp_path) -> None:
    store = Store(tmp_path)
    store.run_dir("weak").mkdir(parents=True)
    store.write_json(
        store.run_dir("weak") / "metrics.json",
        {"run_id": "weak", "holdout": {"mae": 2.0, "naive_mae": 1.5}},
    )
    decision = decide(store, "weak", margin=0.0)
    assert decision["promoted"] is False
    assert decision["reason"] == "holdout MAE 2.0000 does not beat the seasonal-naive MAE 1.5000"
    assert store.current_run_id() is None


@pytest.mark.parametrize("recorded", [True, False], ids=["damaged-before-hashing", "truncated"])
def test_gate_refuses_a_better_run_whose_model_file_is_damaged(
    store_copy: Store, recorded: bool
) -> None:
    """The defect: decide() never loaded the candidate, so it promoted a run whose empty
    model.ubj then aborted every server that loaded it."""
    clone_run(store_copy, "empty", mae=current_mae(store_copy) * 0.5)
    replace_model(store_copy.run_dir("empty"), b"", record=recorded)
    reason = "killed the probe process" if recorded else "is 0 bytes"
    with pytest.raises(GateError, match=f"run empty cannot be served: .*{reason}"):
        decide(store_copy, "empty", margin=0.0)
    assert store_copy.current_run_id() == FIRST_RUN


def test_gate_cli_not_promoting_exits_0(
    cli_env: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    clone_run(cli_env, "worse", mae=current_mae(cli_env) * 1.5)
    monkeypatch.setenv("RUN_ID", "worse")
    assert main([]) == 0
    assert "run worse not promoted" in capsys.readouterr().err
    assert cli_env.current_run_id() == FIRST_RUN


def test_gate_cli_without_run_id_gates_the_newest_trained_run(cli_env: Store) -> None:
    clone_run(cli_env, "run-b", mae=current_mae(cli_env) * 0.5)
    assert main([]) == 0
    assert cli_env.current_run_id() == "run-b"


def test_gating_an_untrained_run_fails_clearly(store_copy: Store) -> None:
    with pytest.raises(GateError, match="run ghost has no trained model"):
        decide(store_copy, "ghost", margin=0.0)


def test_promote_rolls_back_to_an_earlier_run(
    cli_env: Store, capsys: pytest.CaptureFixture
) -> None:
    clone_run(cli_env, "newer", mae=current_mae(cli_env) * 0.5)
    decide(cli_env, "newer", margin=0.0)
    assert cli_env.current_run_id() == "newer"
    assert promote_main([FIRST_RUN]) == 0
    assert cli_env.current_run_id() == FIRST_RUN
    assert "CURRENT now run-a (was newer)" in capsys.readouterr().err


def test_promote_refuses_an_unknown_run(cli_env: Store, capsys: pytest.CaptureFixture) -> None:
    assert promote_main(["nope"]) == 1
    err = capsys.readouterr().err
    assert "error: unknown run 'nope'" in err
    assert "(runs: run-a)" in err
    assert cli_env.current_run_id() == FIRST_RUN


def test_promote_refuses_a_run_whose_model_does_not_load(store_copy: Store) -> None:
    clone_run(store_copy, "broken", mae=0.1)
    (store_copy.run_dir("broken") / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(
        GateError, match=r"run broken cannot be served: .* bytes, \d+ were recorded by train"
    ):
        promote(store_copy, "broken")
    assert store_copy.current_run_id() == FIRST_RUN


def test_promote_without_a_run_id_prints_usage(capsys: pytest.CaptureFixture) -> None:
    assert promote_main([]) == 2
    assert "usage: python -m app promote RUN_ID" in capsys.readouterr().err
