"""`python -m app monitor`: forecasts scored against what happened, both drift checks, the event.

New weeks continue the shipped series the way it behaves (each week its value 52 weeks earlier
plus a steady annual growth) and arrive through `app.loop.ingest`, in NOAA's weekly format.
"""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from app.forecasting.model import fill_gaps, read_series
from app.local.replay import noaa_weekly_text
from app.loop.ingest import ingest
from app.loop.monitor import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    MonitorSettings,
    check,
    drift_detail,
    events_client,
    publish_drift_event,
)
from app.store import Store
from components.documents.triggers import drift_pattern
from preflight.offline import run_stack
from tests.app.helpers import run_app

GROWTH_PPM = 1.6
"""About the series' annual growth around 2000."""
SETTINGS = MonitorSettings(monitor_on_drift="log")


class Future:
    """The weeks after the store's dataset, released cumulatively as NOAA publishes them."""

    def __init__(self, store: Store, weeks: int = 80) -> None:
        dates, values = read_series(store.dataset_path)
        series = list(fill_gaps(values))
        for _ in range(weeks):
            series.append(series[-52] + GROWTH_PPM)
        self.store = store
        self.dates = dates[-1] + np.arange(1, weeks + 1) * np.timedelta64(7, "D")
        self.values = np.round(np.array(series[-weeks:]), 2)
        self.released = 0
        self.shift_ppm = 0.0
        self.shift_from = 0

    def shift(self, ppm: float) -> None:
        """Every week from the next one on reads `ppm` higher."""
        self.shift_ppm, self.shift_from = ppm, self.released

    def release(self, weeks: int) -> None:
        self.released += weeks
        values = self.values[: self.released].copy()
        values[self.shift_from :] += self.shift_ppm
        source = self.store.root / "source.txt"
        source.write_text(noaa_weekly_text(self.dates[: self.released], values))
        ingest(self.store, str(source))


def test_forecasts_are_scored_once_their_target_weeks_are_observed(store_copy):
    first = check(store_copy, SETTINGS).status
    assert first["forecasts_archived"] == 1 and first["steps_scored"] == 0

    Future(store_copy).release(4)
    check(store_copy, SETTINGS)

    scores = store_copy.read_json(store_copy.root / "monitoring" / "scores.json")
    from_first = [row for row in scores["scores"] if row["origin"] == "2001-12-29"]
    assert [row["horizon"] for row in from_first] == [1, 2, 3, 4]
    assert [row["target"] for row in from_first] == [
        "2002-01-05", "2002-01-12", "2002-01-19", "2002-01-26"
    ]  # fmt: skip
    for row in from_first:
        assert row["error"] == pytest.approx(row["forecast"] - row["observed"], abs=1e-3)
    assert set(scores["per_horizon_mae_current"]) >= {"1", "2", "3", "4"}


def test_the_ticker_forecasts_are_archived_once_each(store_copy):
    forecast = {
        "run_id": "run-a",
        "last_observed": "2001-12-22",
        "generated_at": "2026-11-29T00:00:00+00:00",
        "forecast": [{"date": "2001-12-29", "value": 371.0}],
    }
    store_copy.forecasts_dir.mkdir(exist_ok=True)
    line = json.dumps(forecast) + "\n"
    (store_copy.forecasts_dir / "history.jsonl").write_text(line * 3)

    status = check(store_copy, SETTINGS).status
    check(store_copy, SETTINGS)

    archive = (store_copy.root / "monitoring" / "forecasts.jsonl").read_text().splitlines()
    assert len(archive) == 2  # the ticker's one, and the monitor's own from 2001-12-29
    assert status["steps_scored"] == 1


def test_a_normal_continuation_trips_nothing(store_copy):
    check(store_copy, SETTINGS)
    future = Future(store_copy)
    for _ in range(13):
        future.release(2)
        status = check(store_copy, SETTINGS).status
        assert not status["drift"], status["reasons"]
    by_name = {c["check"]: c for c in status["checks"]}
    assert by_name["forecast_error"]["realized_mae"] is not None
    assert by_name["input_drift"]["p_value"] is not None
    assert by_name["input_drift"]["recent_weeks"] == 26


def test_a_three_ppm_step_trips_both_checks_and_signals_once(store_copy):
    future = Future(store_copy)
    check(store_copy, SETTINGS)
    future.release(4)
    check(store_copy, SETTINGS)
    future.shift(3.0)
    statuses = []
    for _ in range(24):
        future.release(1)
        statuses.append(check(store_copy, SETTINGS).status)

    tripped = {c["check"] for s in statuses for c in s["checks"] if c["tripped"]}
    assert tripped == {"forecast_error", "input_drift"}
    signalled = [s for s in statuses if s["signalled"]]
    # One signal, then the cooldown (8 weeks), then the next while the drift persists.
    assert 2 <= len(signalled) <= 3
    first = signalled[0]
    assert first["reasons"] and first["dataset_sha256"]
    history = (store_copy.root / "monitoring" / "history.jsonl").read_text().splitlines()
    assert len(history) == 26


def test_drift_detail_carries_reasons_figures_and_dataset_sha(store_copy):
    status = check(store_copy, SETTINGS).status
    detail = drift_detail({**status, "reasons": ["input drift: test"]})
    assert detail["reasons"] == ["input drift: test"]
    assert detail["dataset_sha256"] == status["dataset_sha256"]
    assert {c["check"] for c in detail["checks"]} == {"forecast_error", "input_drift"}
    assert len(json.dumps(detail)) < 256 * 1024  # PutEvents' entry size limit


def test_publish_sends_one_data_drift_detected_to_the_default_bus():
    client = events_client("us-east-1")
    detail = {"reasons": ["forecast error: ..."], "dataset_sha256": "ab" * 32}
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "11710aed-b79e-4468-a20b"}]},
            {
                "Entries": [
                    {
                        "Source": "mlops.monitoring",
                        "DetailType": "DataDriftDetected",
                        "Detail": json.dumps(detail, separators=(",", ":")),
                        "EventBusName": "default",
                    }
                ]
            },
        )
        assert publish_drift_event(client, detail, "default") == "11710aed-b79e-4468-a20b"
        stub.assert_no_pending_responses()


def test_publish_fails_when_eventbridge_refuses_the_entry():
    client = events_client("us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
            },
        )
        with pytest.raises(RuntimeError, match="InternalFailure: try again"):
            publish_drift_event(client, {"reasons": []}, "default")


def test_the_event_matches_the_stacks_drift_rule_in_eventbridge(store_copy):
    """The rule's pattern as `__main__.py` declares it, matched by moto's EventBridge."""
    rule = run_stack("dev").one("aws:cloudwatch/eventRule:EventRule", "training-on-drift")
    pattern = rule.inputs["eventPattern"]
    pattern = pattern if isinstance(pattern, str) else json.dumps(pattern)
    assert json.loads(pattern) == drift_pattern()
    detail = drift_detail({**check(store_copy, SETTINGS).status, "reasons": ["input drift"]})

    with mock_aws():
        region = "us-east-1"
        sqs = boto3.client("sqs", region_name=region)
        events = boto3.client("events", region_name=region)
        queue_url = sqs.create_queue(QueueName="retrain")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        events.put_rule(Name="training-on-drift", EventPattern=pattern)
        events.put_targets(
            Rule="training-on-drift",
            Targets=[{"Id": "pipeline", "Arn": queue_arn["Attributes"]["QueueArn"]}],
        )
        publish_drift_event(events, detail, "default")
        # Another source with the same detail type must not start a retrain.
        events.put_events(
            Entries=[{"Source": "someone.else", "DetailType": EVENT_DETAIL_TYPE, "Detail": "{}"}]
        )
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]

    (message,) = messages
    event = json.loads(message["Body"])
    assert event["source"] == EVENT_SOURCE and event["detail-type"] == EVENT_DETAIL_TYPE
    assert event["detail"]["dataset_sha256"] == detail["dataset_sha256"]


def test_cli_monitor_logs_the_checks(store_copy):
    result = run_app("monitor", store_root=store_copy.root, MONITOR_ON_DRIFT="log")
    assert result.returncode == 0, result.stderr
    assert "check forecast_error: ok" in result.stderr
    assert "no drift at 2001-12-29 (model run-a)" in result.stderr


def test_cli_monitor_rejects_a_bad_threshold(store_copy):
    result = run_app("monitor", store_root=store_copy.root, MONITOR_DRIFT_P_VALUE="2")
    assert result.returncode == 2
    assert "MONITOR_DRIFT_P_VALUE='2'" in result.stderr


def test_the_band_leaves_out_the_weeks_around_a_drift_signal() -> None:
    from app.forecasting.model import HARMONIC_PARAMS, Forecaster
    from app.loop.monitor import SIGNAL_EXCLUSION_WEEKS, backtest_band
    from app.store import SHIPPED_DATASET

    dates, values = read_series(SHIPPED_DATASET)
    values = fill_gaps(values)
    # A +3 ppm step 60 weeks before the end of the model's data: inside its 104-week holdout.
    shifted = values.copy()
    shifted[-60:] += 3.0
    last = str(dates[-1])
    model = Forecaster(
        "m", "", {"dataset": {"last_date": last}}, family="harmonic", harmonic=HARMONIC_PARAMS
    )
    calm = backtest_band(model, dates, values, SETTINGS)
    inflated = backtest_band(model, dates, shifted, SETTINGS)
    signal = str(dates[-60 + 4])  # the monitor tripped four weeks after the step
    kept = backtest_band(model, dates, shifted, SETTINGS, signals=[signal])
    assert inflated["p95"] > 2 * calm["p95"]  # the shift alone widens the band
    assert kept["p95"] < 1.3 * calm["p95"]  # ... unless its weeks are left out
    assert kept["signals"] == [signal] and SIGNAL_EXCLUSION_WEEKS == 26
