"""The gate compares a drift retrain with the current model on the candidate's holdout weeks."""

from __future__ import annotations

import pytest

from app.gate import decide
from app.train import train
from app.validate import validate
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import TEST_ROUNDS
from tests.app.test_monitor import Future


def test_the_current_model_is_scored_on_the_candidates_weeks(store_copy):
    recorded = store_copy.read_json(store_copy.run_dir(FIRST_RUN) / "metrics.json")["holdout"]
    future = Future(store_copy)
    future.release(8)
    future.shift(3.0)
    future.release(12)
    assert validate(store_copy, "after-shift")["ok"]
    train(store_copy, "after-shift", rounds=TEST_ROUNDS, log_every=TEST_ROUNDS, threads=1)

    decision = decide(store_copy, "after-shift", margin=0.0)

    # The shifted weeks are in the candidate's holdout: the current model is scored on them too,
    # not on the easier weeks of its own holdout.
    assert decision["previous_mae"] > recorded["mae"] + 0.1
    assert decision["previous_mae"] == pytest.approx(decision["holdout_mae"], rel=0.2)
    assert "on the same weeks" in decision["reason"]
