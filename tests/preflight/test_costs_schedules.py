"""Schedule playback on its own: the scaling range between scheduled actions, as spans of the
reference year (`preflight.costs.schedules.scaled_spans`)."""

from __future__ import annotations

from preflight.costs.schedules import MINUTES_PER_YEAR, scaled_spans, schedule_fires

WEEKDAYS_2027 = 261


def dev_events() -> list[tuple[int, float | None, float | None]]:
    """Pulumi.dev.yaml's two schedules: none at night, 1..4 tasks from 07:00 on weekdays."""
    night = [(minute, 0, 0) for minute in schedule_fires("cron(0 20 * * ? *)")]
    morning = [(minute, 1, 4) for minute in schedule_fires("cron(0 7 ? * MON-FRI *)")]
    return night + morning


def test_spans_cover_the_reference_year_once() -> None:
    spans = scaled_spans(1, 0, 4, dev_events())
    assert sum(minutes for _, minutes in spans) == MINUTES_PER_YEAR


def test_dev_runs_one_task_on_weekdays_from_0700_to_2000_and_none_otherwise() -> None:
    spans = scaled_spans(1, 0, 4, dev_events())
    assert {running for running, _ in spans} == {0, 1}
    assert sum(minutes for running, minutes in spans if running) == WEEKDAYS_2027 * 13 * 60


def test_desired_count_is_clamped_into_the_range() -> None:
    assert scaled_spans(5, 0, 3, []) == [(3, MINUTES_PER_YEAR)]
    assert scaled_spans(1, 2, 4, []) == [(2, MINUTES_PER_YEAR)]


def test_events_play_in_time_order_and_the_year_wraps() -> None:
    # Given out of order; before the first (minute 300) the range is what the last (minute 600,
    # scale to zero) left at the end of the year before.
    spans = scaled_spans(1, 1, 4, [(600, 0, 0), (300, 2, 4)])
    assert spans == [(0, 300), (2, 300), (0, MINUTES_PER_YEAR - 600)]
