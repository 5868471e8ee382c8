"""Lineage from data to forecast: which dataset a validation report passed, by its sha256.

`validate` records the sha256 and row range of the dataset it checked; `train` refuses a dataset
without a passing report for that exact sha (and the same `RUN_DATE` cut); the forecast ticker
forecasts only from the dataset of the newest passing report. No pandas here: the ticker uses it.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from app.store import Store


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        report = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


def passing_reports(store: Store) -> list[dict[str, Any]]:
    """Every passing validation report that names its dataset's sha256, oldest check first."""
    try:
        folders = [entry for entry in store.reports_dir.iterdir() if entry.is_dir()]
    except OSError:
        return []
    reports = [_read(folder / "validation.json") for folder in folders]
    passing = [r for r in reports if r and r.get("ok") and r.get("dataset_sha256")]
    return sorted(passing, key=lambda r: (str(r.get("checked_at", "")), str(r.get("run_id"))))


def report_for(
    store: Store, run_id: str, sha256: str, run_date: date | None
) -> tuple[dict[str, Any] | None, str]:
    """The passing report that covers this dataset and cut, or None and why there is none.

    The run's own report decides when it exists (a failed one is final); otherwise any passing
    report of the same sha and `RUN_DATE` will do (retraining on data validated before)."""
    wanted_cut = run_date.isoformat() if run_date else None
    own = _read(store.report_path(run_id))
    if own is not None:
        if not own.get("ok"):
            return None, f"validation of run {run_id} failed: see {store.report_path(run_id)}"
        if own.get("dataset_sha256") != sha256:
            return None, (
                f"run {run_id} validated a dataset with sha256 "
                f"{str(own.get('dataset_sha256'))[:12]}…, the store now holds {sha256[:12]}… "
                "(changed since validation); validate again"
            )
        if own.get("run_date") != wanted_cut:
            return None, (
                f"run {run_id} was validated with RUN_DATE {own.get('run_date')}, "
                f"training asks for {wanted_cut}"
            )
        return own, ""
    for report in reversed(passing_reports(store)):
        if report["dataset_sha256"] == sha256 and report.get("run_date") == wanted_cut:
            return report, ""
    return None, (
        f"no passing validation report for this dataset (sha256 {sha256[:12]}…"
        f"{', RUN_DATE ' + wanted_cut if wanted_cut else ''}); run validate first"
    )
