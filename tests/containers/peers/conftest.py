"""The peers' image, built once per test run and kept under a tag that names its content."""

from __future__ import annotations

import pytest

from tests.containers import peers


@pytest.fixture(scope="session")
def peer_image(base: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`mlops-peers:<hash>` on the Debian base; left in place so the next run reuses it."""
    return peers.build(base, tmp_path_factory.mktemp("peers-context"))
