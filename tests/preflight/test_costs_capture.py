"""Data capture in the plan's cost: the records it keeps on the store, from the captured percent
the serving task declares, the request volume and record size assumed, and the retention the
model monitor enforces (a year's growth when nothing deletes them)."""

from __future__ import annotations

import pytest

from preflight import prices
from preflight.costs import estimate_cost
from preflight.offline import run_stack


def _capture_lines(overrides: dict, assume: dict | None = None) -> dict:
    estimate = estimate_cost(run_stack("digits", overrides=overrides), assume)
    return {line.item: line for line in estimate.lines if "data capture" in line.item}


def test_capture_off_costs_nothing() -> None:
    assert _capture_lines({}) == {}


def test_kept_records_follow_percent_volume_size_and_retention() -> None:
    capture = {"inference": {"capture": {"percent": 10, "retention_days": 30}}}
    lines = _capture_lines(capture, {"invocations_million_per_month": 2, "capture_record_kib": 4})
    monthly_gb = 2e6 * 0.10 * 4 / 1024**2
    stored = lines["data capture records on EFS Standard"]
    assert stored.quantity == pytest.approx(monthly_gb * 30 / (365 / 12))
    price = prices.PRICES["efs_standard_gb_month"].usd
    assert stored.monthly_usd == pytest.approx(stored.quantity * price)
    assert lines["data capture writes (EFS Elastic Throughput)"].quantity == pytest.approx(
        monthly_gb
    )


def test_without_a_monitor_nothing_deletes_so_a_year_is_priced() -> None:
    capture = {
        "inference": {"capture": {"percent": 100}},
        "monitoring": {"model_monitor": {"schedule": ""}},
    }
    stored = _capture_lines(capture)["data capture records on EFS Standard"]
    assert stored.quantity == pytest.approx(1e6 * 2 / 1024**2 * 12)
    assert "a year's growth" in stored.note
