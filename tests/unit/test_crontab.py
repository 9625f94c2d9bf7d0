"""Fire times, computed without a database: month ends, leap days, DST both ways, seconds,
intervals and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from django_pgjobs.schedules.crontab import InvalidScheduleError, parse, upcoming

NEW_YORK = ZoneInfo("America/New_York")  # springs forward 2026-03-08, falls back 2026-11-01


def local(text: str, tz: tzinfo = NEW_YORK, *, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def walls(expression: str, after: datetime, count: int, tz: tzinfo = NEW_YORK) -> list[str]:
    spec = parse(expression, timezone=str(tz))
    return [t.astimezone(tz).isoformat() for t in upcoming(spec, after, count)]


def test_month_ends_skip_short_months() -> None:
    assert walls("0 0 31 * *", local("2026-01-01T00:00", UTC), 4, UTC) == [
        "2026-01-31T00:00:00+00:00",
        "2026-03-31T00:00:00+00:00",
        "2026-05-31T00:00:00+00:00",
        "2026-07-31T00:00:00+00:00",
    ]


def test_leap_day_waits_for_leap_years() -> None:
    assert walls("0 12 29 2 *", local("2026-01-01T00:00", UTC), 2, UTC) == [
        "2028-02-29T12:00:00+00:00",
        "2032-02-29T12:00:00+00:00",
    ]


def test_spring_forward_runs_a_skipped_fixed_time_shifted_by_the_gap() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: it runs at 03:30, then normally again.
    assert walls("30 2 * * *", local("2026-03-07T12:00"), 3) == [
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_spring_forward_keeps_a_periodic_schedule_periodic_in_real_time() -> None:
    assert walls("*/30 * * * *", local("2026-03-08T01:00"), 4) == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:00 and 02:30 never happened; one run at the change
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_fall_back_runs_a_fixed_time_once() -> None:
    assert walls("30 1 * * *", local("2026-10-31T12:00"), 2) == [
        "2026-11-01T01:30:00-04:00",  # first pass only
        "2026-11-02T01:30:00-05:00",
    ]


def test_fall_back_keeps_periodic_schedules_running_through_the_repeated_hour() -> None:
    assert walls("*/30 * * * *", local("2026-11-01T00:45"), 5) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    assert walls("0 * * * *", local("2026-11-01T00:30"), 3) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_latest_at_or_before_knows_which_pass_of_the_repeated_hour_it_is_in() -> None:
    spec = parse("*/30 * * * *", timezone="America/New_York")
    second_pass = local("2026-11-01T01:40", fold=1)
    assert spec.latest_at_or_before(second_pass).astimezone(NEW_YORK).isoformat() == (
        "2026-11-01T01:30:00-05:00"
    )
    fixed = parse("30 1 * * *", timezone="America/New_York")
    assert fixed.latest_at_or_before(local("2026-11-01T03:00")).astimezone(
        NEW_YORK
    ).isoformat() == ("2026-11-01T01:30:00-04:00")


def test_a_seconds_field_comes_first() -> None:
    assert walls("*/20 * * * * *", local("2026-01-01T00:00", UTC), 3, UTC) == [
        "2026-01-01T00:00:20+00:00",
        "2026-01-01T00:00:40+00:00",
        "2026-01-01T00:01:00+00:00",
    ]


def test_aliases() -> None:
    assert walls("@daily", local("2026-01-01T10:00", UTC), 1, UTC) == ["2026-01-02T00:00:00+00:00"]


def test_named_timezone_applies_to_cron_fields() -> None:
    assert walls("0 9 * * *", local("2026-06-01T00:00", UTC), 1) == ["2026-06-01T09:00:00-04:00"]


def test_intervals_align_to_the_epoch_or_the_start_and_ignore_dst() -> None:
    assert walls("every 15 minutes", local("2026-01-01T00:07", UTC), 2, UTC) == [
        "2026-01-01T00:15:00+00:00",
        "2026-01-01T00:30:00+00:00",
    ]
    start = local("2026-01-01T00:07", UTC)
    spec = parse("every 2 hours", start=start)
    assert [t.isoformat() for t in upcoming(spec, start, 2)] == [
        "2026-01-01T02:07:00+00:00",
        "2026-01-01T04:07:00+00:00",
    ]
    across_fall_back = parse("every 1 hour", timezone="America/New_York")
    times = upcoming(across_fall_back, local("2026-11-01T00:30"), 3)
    assert [b - a for a, b in pairwise(times)] == [timedelta(hours=1)] * 2
    assert parse("every 30 seconds").next_after(local("2026-01-01T00:00:10", UTC)).second == 30


def test_a_window_end_stops_the_series() -> None:
    spec = parse("0 * * * *", timezone="UTC")
    after = local("2026-01-01T00:00", UTC)
    assert len(upcoming(spec, after, 5, end=local("2026-01-01T03:00", UTC))) == 3


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "failed to find next date"),
        ("* * *", "use 5 fields"),
        ("every 0 minutes", "at least 1"),
        ("every five minutes", "use 5 fields"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(expression: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        parse(expression)


@pytest.mark.parametrize("expression", ["0 * * * *", "every 5 minutes"])
@pytest.mark.parametrize("zone", ["Mars/Olympus", 5])
def test_unknown_timezone_is_refused(expression: str, zone: Any) -> None:
    """Intervals ignore the zone, but every view of the schedule shows its times in it."""
    with pytest.raises(InvalidScheduleError, match="Unknown timezone"):
        parse(expression, timezone=zone)


def test_aliases_are_fixed_hour_schedules_when_midnight_repeats() -> None:
    # Cuba falls back from 01:00 to 00:00: midnight happens twice; @daily runs once.
    havana = ZoneInfo("America/Havana")
    daily = walls("@daily", local("2026-10-31T12:00", havana), 2, havana)
    assert daily == walls("0 0 * * *", local("2026-10-31T12:00", havana), 2, havana)
    assert len({d[:10] for d in daily}) == 2


def test_a_stepped_hour_field_runs_through_the_repeated_hour() -> None:
    assert walls("0 0-23/1 * * *", local("2026-11-01T00:30"), 2) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
    ]


def test_intervals_count_real_time_whatever_zone_the_times_come_in() -> None:
    paris = ZoneInfo("Europe/Paris")  # falls back on 2026-10-25
    start = local("2026-10-24T12:00", paris)
    spec = parse("every 1 hours", start=start)
    after = local("2026-10-25T01:30", paris)
    times = [after]
    for _ in range(4):
        times.append(spec.next_after(times[-1].astimezone(paris)))
    # (Compared in UTC: Python subtracts two datetimes of one tzinfo by their wall clocks.)
    utc = [t.astimezone(UTC) for t in times[1:]]
    assert [b - a for a, b in pairwise(utc)] == [timedelta(hours=1)] * 3


def test_an_interval_too_long_for_dates_is_refused() -> None:
    with pytest.raises(InvalidScheduleError, match="too long"):
        parse("every 100000000 days")
