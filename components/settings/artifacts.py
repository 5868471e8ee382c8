"""`mlops:artifacts`: every model that becomes current, also exported as SageMaker's
`model.tar.gz` to an S3 bucket of the stack (components/model_artifacts.py, docs/s3.md).

The platform exports what it promotes: its gate (no rollout) or `finish-rollout` (a rollout that
succeeded) uploads `models/<RUN_ID>/model.tar.gz` with the run's `report.json` and
`decision.json` beside it, then keeps the newest `keep_last` runs under `models/` and deletes the
rest, which versioning keeps as noncurrent versions for `noncurrent_days` before the bucket's
lifecycle rule removes them for good.

On by default wherever the platform promotes (a workload without a gate step of its own): a few
models of a few MB cost cents a month, and a model that exists only on one file system is what
the export is for. A workload with its own gate step (the reference workload) promotes by
itself, so the platform has nothing to export there: no bucket, and `export: true` given
explicitly is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.settings._section import Section, as_map, fail

SECTION = "artifacts"


@dataclass(frozen=True)
class ArtifactsSettings:
    export: bool = True
    """Export each model that becomes current to the stack's artifact bucket (where the platform
    promotes)."""
    keep_last: int = 10
    """The newest runs kept under models/; older ones are deleted (a delete marker: versioning
    keeps them as noncurrent versions)."""
    noncurrent_days: int = 30
    """Days a deleted or overwritten object's old version is kept before S3 removes it."""


def parse_artifacts(raw: Any) -> ArtifactsSettings:
    s = Section(SECTION, raw, ArtifactsSettings)
    return ArtifactsSettings(
        export=s.bool("export"),
        keep_last=s.int("keep_last", lo=1, hi=1000),
        noncurrent_days=s.int("noncurrent_days", lo=1, hi=3650),
    )


def check_export(raw: Any, workload_gates: bool) -> None:
    """`artifacts.export: true` written out on a stack whose workload gates itself: the platform
    does not promote there, so it would export nothing."""
    if workload_gates and as_map(SECTION, raw).get("export") is True:
        raise fail(
            f"{SECTION}.export",
            True,
            "the workload promotes with its own gate step (workload.steps.gate), so the "
            "platform exports nothing: leave it out or false",
        )
