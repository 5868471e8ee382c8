"""Provenance: a task proves it runs the image whose push triggered its run, or fails.

ECS RunTask cannot override a container's image, so a push-triggered run uses whatever image the
step's task definition names when the task starts; `pulumi up` may still be registering the new
revision then, or may have failed after the push. The state machine passes the pushed digest as
`TRIGGER_IMAGE_DIGEST`; every command compares it, at start-up, with the image this container
runs, read from the ECS task metadata endpoint v4, and exits 1 with a clear message when they
differ. The state machine's AwaitImage step (`python -m app check-image`) retries until they
agree, so no run records a digest it did not run.

ECS Developer Guide, "Amazon ECS task metadata endpoint version 4" (Fargate and EC2): ECS sets
`ECS_CONTAINER_METADATA_URI_V4` in every container; `GET ${ECS_CONTAINER_METADATA_URI_V4}`
returns this container's metadata, including `Image` (the image as the task definition names
it) and `ImageID` (a `sha256:` digest). The task definitions name images by digest
(`repo@sha256:...`), so `Image` carries the registry manifest digest that ECR's push event
reports; `ImageID` is the fallback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from mlops_contract import Env

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
TRIGGER_ENV = Env.TRIGGER_IMAGE_DIGEST
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
ATTEMPTS = 3
"""The metadata endpoint answers within milliseconds; three tries ride out a start-up blip."""


class ProvenanceError(RuntimeError):
    """This task cannot prove it runs the image its run was triggered by."""


def running_digest(metadata_uri: str, timeout: float = 2.0) -> str:
    """The manifest digest of the image this container runs, from the task metadata endpoint."""
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(metadata_uri, timeout=timeout) as response:
                container = json.load(response)
            break
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            last = exc
            time.sleep(0.2 * (attempt + 1))
    else:
        raise ProvenanceError(f"cannot read the task metadata endpoint {metadata_uri}: {last}")
    if not isinstance(container, Mapping):
        raise ProvenanceError(f"the task metadata endpoint answered {container!r}")
    image = str(container.get("Image", ""))
    _, _, pinned = image.partition("@")
    if DIGEST.fullmatch(pinned):
        return pinned
    image_id = str(container.get("ImageID", ""))
    if DIGEST.fullmatch(image_id):
        return image_id
    raise ProvenanceError(
        f"the task metadata names no image digest (Image {image!r}, ImageID {image_id!r})"
    )


def verify(environ: Mapping[str, str] | None = None) -> str | None:
    """The verified digest of a push-triggered run on ECS, None when there is nothing to check.

    Nothing to check: outside ECS (no metadata endpoint) or when the run was not triggered by an
    image push (no `sha256:` digest in `TRIGGER_IMAGE_DIGEST`). Raises ProvenanceError when the
    running image differs from the trigger's.
    """
    env = os.environ if environ is None else environ
    wanted = env.get(TRIGGER_ENV, "")
    uri = env.get(METADATA_ENV, "")
    if not uri or not DIGEST.fullmatch(wanted):
        return None
    running = running_digest(uri)
    if running != wanted:
        raise ProvenanceError(
            f"this task runs image {running}, but its run was triggered by the push of "
            f"{wanted}: the deploy registering that image has not finished (or failed); the "
            "state machine retries"
        )
    return running


def check_or_exit(environ: Mapping[str, str] | None = None) -> str | None:
    """`verify`, ending the process with exit code 1 and one line on stderr when it fails."""
    try:
        return verify(environ)
    except ProvenanceError as exc:
        print(f"error: provenance: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: list[str]) -> int:
    """`python -m app check-image`: the state machine's AwaitImage step."""
    if argv:
        print(f"error: check-image takes no arguments, got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    digest = check_or_exit()
    print(f"running {digest}" if digest else "nothing to check: not a push-triggered ECS task")
    return 0
