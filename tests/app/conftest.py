"""Shared fixtures of the app tests: one real training run, servers started as subprocesses.

`trained_store` is session-scoped and shared by every app test module: treat it as read-only and
copy it (`store_copy`) before changing anything in it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.pipeline.gate import decide
from app.pipeline.train import train
from app.pipeline.validate import validate
from app.store import Store
from tests.app.helpers import TEST_ROUNDS, ServerProcess

FIRST_RUN = "run-a"


def _train_first_run(root: Path) -> None:
    store = Store(root)
    assert validate(store, FIRST_RUN)["ok"]
    train(store, FIRST_RUN, rounds=TEST_ROUNDS, log_every=TEST_ROUNDS, threads=2, family="xgboost")
    assert decide(store, FIRST_RUN, margin=0.0)["promoted"]


@pytest.fixture(scope="session")
def trained_store(build_once) -> Path:
    """A store root with the shipped dataset, one validated and trained run (`run-a`, the
    xgboost family with few boosting rounds) promoted to models/CURRENT. Trained once per test
    run and shared by every worker: read-only, use `store_copy` to change things."""
    return build_once("trained-store", _train_first_run)


@pytest.fixture
def store_copy(trained_store: Path, tmp_path: Path) -> Store:
    """A private, writable copy of `trained_store`."""
    root = tmp_path / "store"
    shutil.copytree(trained_store, root)
    return Store(root)


@pytest.fixture
def server(store_copy: Store) -> Iterator[ServerProcess]:
    """`python -m app serve` on a free port over a private copy of the trained store."""
    with ServerProcess(store_copy.root) as process:
        process.wait_ready()
        yield process
