"""README "Rollback" and its neighbours, played against one mock ECR, each step twice in a row.

The mock registry behaves like ECR with IMMUTABLE tags and a non-reproducible build: pushing a
tag that already names another digest fails with ImageTagAlreadyExistsException
(preflight/offline.py `EcrState`). The steps: pin an earlier digest, unpin, revert `app/` to an
earlier content, and retry an `up` that was interrupted after its push.
"""

from __future__ import annotations

import pytest

from components import image_repo
from preflight.offline import EcrState, Plan, run_stack

IMAGE = "docker:index/image:Image"


@pytest.fixture
def app_version(monkeypatch: pytest.MonkeyPatch):
    """Set which content `app/` has: its release tag is `<flavour>-<version>`."""

    def use(version: str) -> None:
        monkeypatch.setattr(
            image_repo, "context_tag", lambda _context, flavour: f"{flavour}-{version}"
        )

    return use


def deploy(ecr: EcrState, pin: str = "") -> Plan:
    return run_stack("dev", {"image": {"pin": pin}}, ecr=ecr)


def digest_of(plan: Plan) -> str:
    return plan.exports["image_ref"].split("@", 1)[1]


@pytest.mark.slow
def test_every_rollback_step_works_twice_in_a_row(app_version):
    ecr = EcrState()
    app_version("v1")
    v1 = digest_of(deploy(ecr))
    app_version("v2")
    v2 = digest_of(deploy(ecr))
    assert v1 != v2 and ecr.builds == 2 * 2  # a release and a cache push per build
    builds = ecr.builds
    for _ in range(2):
        # Pin an earlier image: nothing is built, the pinned digest is deployed.
        pinned = deploy(ecr, pin=v1)
        assert pinned.of_type(IMAGE) == [] and digest_of(pinned) == v1
        # Unpin with app/ unchanged (v2): its tag is in ECR, so its digest is reused.
        unpinned = deploy(ecr)
        assert unpinned.of_type(IMAGE) == [] and digest_of(unpinned) == v2
        # git revert app/ to v1: the v1 tag is in ECR, so v1's digest is reused.
        app_version("v1")
        reverted = deploy(ecr)
        assert reverted.of_type(IMAGE) == [] and digest_of(reverted) == v1
        app_version("v2")
    assert ecr.builds == builds  # nothing was rebuilt, no tag was pushed twice


def test_a_retry_after_an_interrupted_up_reuses_the_pushed_image(app_version):
    ecr = EcrState()
    app_version("v3")
    pushed = digest_of(deploy(ecr))  # the push landed; say the rest of the `up` failed
    for _ in range(2):
        retried = deploy(ecr)
        assert retried.of_type(IMAGE) == [] and digest_of(retried) == pushed


def test_the_mock_registry_refuses_a_rebuild_under_an_existing_tag(app_version):
    """What the reuse avoids: a second build of the same content under its immutable tag."""
    ecr = EcrState()
    ecr.push("123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-dev:cpu-v1")
    with pytest.raises(RuntimeError, match="ImageTagAlreadyExistsException"):
        ecr.push("123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-dev:cpu-v1")
