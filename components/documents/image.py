"""The image repository: ECR lifecycle policies of the release and build-cache repositories."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

IMAGE_FLAVOURS = ("cpu", "gpu")
"""Every image flavour; a release tag is `<flavour>-<content hash>` (components/image_repo.py)."""


def ecr_lifecycle_policy(
    keep_images: int, flavours: Sequence[str] = IMAGE_FLAVOURS
) -> dict[str, Any]:
    """The ECR lifecycle policy: untagged images go after a day, each flavour keeps its newest N.

    ECR User Guide, "Lifecycle policy properties": `tagStatus: tagged` needs a `tagPrefixList`
    or `tagPatternList`, `untagged` must have neither; every `rulePriority` is unique. Several
    prefixes in one rule select only images carrying all of them, so each flavour gets its own
    rule and `keep_images` counts per flavour. Tags outside these prefixes (the moving
    `cache-<flavour>` build-cache tags) are never expired by count.
    """
    if isinstance(keep_images, bool) or not 1 <= keep_images <= 1000:
        raise ValueError(f"keep_images {keep_images!r} must be an integer from 1 to 1000")
    if not flavours or len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours {list(flavours)!r} must be a non-empty list without repeats")
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": "Expire untagged images one day after push",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
    for priority, flavour in enumerate(flavours, start=2):
        if not re.fullmatch(r"[a-z0-9]+", flavour):
            raise ValueError(f"flavour {flavour!r}: use lowercase letters and digits")
        rules.append(
            {
                "rulePriority": priority,
                "description": f"Keep the newest {keep_images} {flavour} images",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [f"{flavour}-"],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules}


BUILD_CACHE_SUFFIX = "-build-cache"
"""The one mutable repository's name ends so: it holds only `cache-<flavour>` build caches."""


def ecr_cache_lifecycle_policy(flavours: Sequence[str] = IMAGE_FLAVOURS) -> dict[str, Any]:
    """The build-cache repository's lifecycle policy: each `cache-<flavour>` tag keeps one image
    (the tag moves to every new build), and the images it moved off expire a day later."""
    if not flavours or len(set(flavours)) != len(flavours):
        raise ValueError(f"flavours {list(flavours)!r} must be a non-empty list without repeats")
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": "Expire replaced build caches one day after push",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
    for priority, flavour in enumerate(flavours, start=2):
        rules.append(
            {
                "rulePriority": priority,
                "description": f"Keep one {flavour} build cache",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [f"cache-{flavour}"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules}
