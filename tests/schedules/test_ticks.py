"""When a schedule's ticks fire: the first from the database clock, each once with its fire time,
catch-up after an outage, windows, pauses and edits."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.db import connection

from django_pgjobs import enqueue, queries
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import add_schedule, db_now, make_schedule_due

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_schedule_gets_its_first_tick_from_the_database_clock(scheduler: Scheduler) -> None:
    add_schedule("minutely", "* * * * *")
    assert scheduler.run_once().initialised == 1
    row = Schedule.objects.get(name="minutely")
    assert row.next_run_at is not None
    assert timedelta(0) < row.next_run_at - db_now() <= timedelta(minutes=1)
    assert not Job.objects.exists()


def test_a_due_tick_enqueues_one_job_with_its_fire_time_and_key(scheduler: Scheduler) -> None:
    add_schedule("report", "0 * * * *", payload={"kind": "hourly"}, queue="reports", priority=5)
    scheduler.run_once()
    tick = make_schedule_due("report", at=db_now().replace(minute=0, second=0, microsecond=0))
    report = scheduler.run_once(now=tick + timedelta(seconds=1))
    assert report.enqueued == 1
    job_row = Job.objects.get()
    assert job_row.payload == {"kind": "hourly", "fire_time": tick.astimezone(UTC).isoformat()}
    assert job_row.key == f"pgjobs.cron:report:{tick.astimezone(UTC).isoformat()}"
    assert (job_row.job_name, job_row.queue, job_row.priority) == ("test.record", "reports", 5)
    assert job_row.scheduled_for == tick
    row = Schedule.objects.get()
    assert row.last_run_at == tick
    assert row.next_run_at == tick + timedelta(hours=1)
    assert scheduler.run_once().enqueued == 0  # nothing more is due


def test_a_user_key_shaped_like_a_tick_key_does_not_swallow_the_tick(
    scheduler: Scheduler,
) -> None:
    """Before: a pending user job holding 'cron:<name>:<fire time>' (a client-chosen key) made
    the tick insert nothing while the schedule recorded it as fired."""
    add_schedule("report", "0 * * * *")
    scheduler.run_once()
    tick = make_schedule_due("report", at=db_now().replace(minute=0, second=0, microsecond=0))
    stamp = tick.astimezone(UTC).isoformat()
    squatter = enqueue("test.record", {"by": "a client"}, key=f"cron:report:{stamp}")
    assert scheduler.run_once(now=tick + timedelta(seconds=1)).enqueued == 1
    fired = Job.objects.exclude(id=squatter).get()
    assert fired.key == f"pgjobs.cron:report:{stamp}"
    assert fired.payload["fire_time"] == stamp


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [("skip", 10, 1), ("latest", 10, 1), ("all", 5, 5), ("all", 500, 121)],
)
def test_catch_up_policies_after_an_outage(
    scheduler: Scheduler, policy: str, limit: int, expected: int
) -> None:
    """Two hours down with a minutely schedule: 121 ticks were missed (both ends included)."""
    add_schedule("minutely", "* * * * *", catch_up=policy, catch_up_limit=limit)
    scheduler.run_once()
    now = db_now().replace(second=30, microsecond=0)
    make_schedule_due("minutely", at=now.replace(second=0) - timedelta(hours=2))
    report = scheduler.run_once(now=now)
    assert report.enqueued == expected
    fire_times = sorted(j.scheduled_for for j in Job.objects.all())
    assert fire_times[-1] == now.replace(second=0)  # every policy keeps the newest tick
    if policy == "skip":
        assert report.skipped == 1  # (only the first missed one is counted)
    row = Schedule.objects.get()
    assert row.next_run_at == now.replace(second=0) + timedelta(minutes=1)


def test_skip_drops_a_tick_reached_too_late_but_still_advances(scheduler: Scheduler) -> None:
    add_schedule("daily", "0 3 * * *")
    scheduler.run_once()
    now = db_now()
    make_schedule_due("daily", at=now - timedelta(minutes=5))
    Schedule.objects.filter(name="daily").update(cron="* * * * *")  # trigger resets next_run_at
    scheduler.run_once(now=now)
    make_schedule_due("daily", at=(now - timedelta(minutes=5)).replace(second=0, microsecond=0))
    assert scheduler.run_once(now=now).enqueued == 1  # only the tick within the grace
    assert Schedule.objects.get().next_run_at > now  # type: ignore[operator]


def test_editing_the_timing_in_the_database_resets_the_next_tick(scheduler: Scheduler) -> None:
    add_schedule("edited", "0 0 1 1 *")  # yearly
    scheduler.run_once()
    assert Schedule.objects.get().next_run_at is not None
    Schedule.objects.filter(name="edited").update(cron="* * * * *")
    assert Schedule.objects.get().next_run_at is None
    scheduler.run_once()
    next_run = Schedule.objects.get().next_run_at
    assert next_run is not None and next_run - db_now() <= timedelta(minutes=1)


def test_disabled_schedules_do_not_fire_and_re_enabling_does_not_catch_up(
    scheduler: Scheduler,
) -> None:
    add_schedule("paused", "* * * * *", catch_up="all", catch_up_limit=100)
    scheduler.run_once()
    Schedule.objects.filter(name="paused").update(enabled=False)
    make_schedule_due("paused", ago=timedelta(hours=1))
    assert scheduler.run_once().enqueued == 0
    Schedule.objects.filter(name="paused").update(enabled=True)
    assert scheduler.run_once().enqueued == 0  # the paused hour is not replayed
    assert Schedule.objects.get().next_run_at > db_now()  # type: ignore[operator]


def test_windows_bound_the_ticks(scheduler: Scheduler) -> None:
    start = db_now() + timedelta(days=1)
    add_schedule("later", "0 * * * *", start_at=start, end_at=start + timedelta(hours=3))
    add_schedule("over", "* * * * *", end_at=db_now() - timedelta(minutes=1))
    scheduler.run_once()
    later = Schedule.objects.get(name="later").next_run_at
    assert later is not None and later >= start
    assert Schedule.objects.get(name="over").next_run_at is None


def test_a_tick_at_the_window_end_fires_and_then_the_scheduler_rests(scheduler: Scheduler) -> None:
    end = db_now().replace(microsecond=0) - timedelta(seconds=5)
    add_schedule("closing", "* * * * * *", end_at=end, catch_up="all", catch_up_limit=3)
    scheduler.run_once()  # initialises nothing: the window has closed
    make_schedule_due("closing", at=end - timedelta(seconds=2))
    report = scheduler.run_once()
    assert report.enqueued == 3  # end - 2 s, end - 1 s and the tick exactly at the end
    assert max(Job.objects.values_list("scheduled_for", flat=True)) == end
    with connection.cursor() as cur:
        assert queries.seconds_until_next_schedule(cur) is None  # nothing left: no busy loop


def test_a_tick_of_a_schedule_row_with_an_empty_queue_still_fires(scheduler: Scheduler) -> None:
    """Before: ``row["queue"] or handler.queue or "default"``; now resolve_options() refuses ""
    and the schedule is quarantined on every pass. Schedule rows come from the ORM and SQL too,
    and nothing in the table forbids ''."""
    add_schedule("report", "0 * * * *", queue="")
    scheduler.run_once()
    tick = make_schedule_due("report", at=db_now().replace(minute=0, second=0, microsecond=0))
    report = scheduler.run_once(now=tick + timedelta(seconds=1))
    assert report.enqueued == 1
    assert Job.objects.get().queue == "default"
    assert Schedule.objects.get().last_run_at == tick.astimezone(UTC)
