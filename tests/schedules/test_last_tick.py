"""A schedule whose next tick falls at or after ``LATEST_TIME`` (9000-01-01, the last time the
tables store) is over, as one past its window's end: no tick, no CHECK violation, no ERROR every
minute. Declarations whose first tick is already past the bound are refused up front."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from django_pgjobs.jobs.validation import LATEST_TIME
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.crontab import parse, upcoming
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.schedules.validation import declaration_problems
from tests.helpers import add_schedule, db_now

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_7118_YEARS = "every 2600000 days"


@pytest.mark.parametrize(
    ("cron", "start"),
    [(EVERY_7118_YEARS, None), ("@yearly", datetime(8999, 12, 31, 12, tzinfo=UTC))],
)
def test_a_schedule_that_would_first_fire_past_the_bound_is_refused(
    cron: str, start: datetime | None
) -> None:
    problems = declaration_problems(
        cron=cron, timezone="UTC", start=start, end=None, job_name="test.record", payload={}
    )
    assert "would never run" in problems["cron"] and "9000-01-01 (UTC)" in problems["cron"]


def test_the_last_tick_before_the_bound_is_accepted_and_listed_alone() -> None:
    start = datetime(8998, 12, 31, 12, tzinfo=UTC)
    assert not declaration_problems(
        cron="@yearly", timezone="UTC", start=start, end=None, job_name="test.record", payload={}
    )
    assert upcoming(parse("@yearly", start=start), start, 5) == [datetime(8999, 1, 1, tzinfo=UTC)]


def test_the_scheduler_ends_a_schedule_whose_next_tick_is_past_the_bound(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    # Written as SQL or an old version would: it passed no check.
    never = add_schedule("never", EVERY_7118_YEARS)
    # Fires once (its start), then its next tick, 7118 years on, cannot be stored.
    start = db_now() - timedelta(hours=1)
    once = add_schedule("once", EVERY_7118_YEARS, start_at=start, next_run_at=start, catch_up="all")
    with caplog.at_level(logging.ERROR, logger="django_pgjobs"):
        scheduler.run_once()
        scheduler.run_once()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert scheduler._quarantined == {}
    assert Job.objects.filter(key__startswith="pgjobs.cron:once:").count() == 1
    once.refresh_from_db()
    never.refresh_from_db()
    assert (once.last_run_at, once.next_run_at) == (start, None)
    assert never.next_run_at is None and never.last_run_at is None
    assert not Job.objects.filter(key__startswith="pgjobs.cron:never:").exists()
    assert Schedule.objects.filter(next_run_at__gte=LATEST_TIME).count() == 0
