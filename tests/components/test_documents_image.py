"""The ECR lifecycle policy: what ECR accepts, and which images it expires."""

from __future__ import annotations

import json

import pytest

from components.documents.image import IMAGE_FLAVOURS, ecr_lifecycle_policy


def test_untagged_images_expire_one_day_after_push():
    untagged = ecr_lifecycle_policy(20)["rules"][0]
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }
    assert untagged["action"] == {"type": "expire"}


def test_each_flavour_keeps_its_newest_release_tags():
    policy = ecr_lifecycle_policy(7)
    kept = {
        rule["selection"]["tagPrefixList"][0]: rule["selection"]
        for rule in policy["rules"]
        if rule["selection"]["tagStatus"] == "tagged"
    }
    assert set(kept) == {f"{flavour}-" for flavour in IMAGE_FLAVOURS}
    for selection in kept.values():
        assert selection["countType"] == "imageCountMoreThan"
        assert selection["countNumber"] == 7
        # Several prefixes in one rule would select only images carrying all of them.
        assert len(selection["tagPrefixList"]) == 1


def test_policy_follows_the_ecr_rules():
    policy = ecr_lifecycle_policy(50)
    assert json.loads(json.dumps(policy)) == policy
    priorities = [rule["rulePriority"] for rule in policy["rules"]]
    assert len(set(priorities)) == len(priorities)
    for rule in policy["rules"]:
        selection = rule["selection"]
        has_tags = "tagPrefixList" in selection or "tagPatternList" in selection
        # ECR: `tagged` needs a prefix or pattern list; `untagged` must have neither.
        assert has_tags == (selection["tagStatus"] == "tagged")
        assert selection["tagStatus"] != "any"


def test_cache_tags_are_never_expired_by_count():
    prefixes = [
        prefix
        for rule in ecr_lifecycle_policy(5)["rules"]
        for prefix in rule["selection"].get("tagPrefixList", [])
    ]
    assert not any("cache-cpu".startswith(prefix) for prefix in prefixes)


@pytest.mark.parametrize("keep", [0, -1, 1001, True])
def test_keep_images_out_of_range_is_rejected(keep):
    with pytest.raises(ValueError, match="keep_images"):
        ecr_lifecycle_policy(keep)


@pytest.mark.parametrize("flavours", [[], ["cpu", "cpu"], ["CPU"], ["gpu*"]])
def test_bad_flavours_are_rejected(flavours):
    with pytest.raises(ValueError, match="flavour"):
        ecr_lifecycle_policy(10, flavours)
