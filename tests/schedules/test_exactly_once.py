"""Exactly once without a leader: each tick's compare-and-set on next_run_at stops a racing
scheduler, a timing edited meanwhile and a stale save."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from django_pgjobs import queries
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import add_schedule, db_now, make_schedule_due

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tick_is_fired_once_even_when_two_schedulers_race_for_it(scheduler: Scheduler) -> None:
    add_schedule("race", "* * * * *")
    scheduler.run_once()
    tick = make_schedule_due("race", ago=timedelta(seconds=1))
    row = Schedule.objects.get()
    outcomes = []
    # Both read the same next_run_at; the second fires late, after the first tick's job already
    # completed and freed its key, so only the compare-and-set can stop a duplicate.
    for _ in range(2):
        Job.objects.update(status="completed")
        with connection.cursor() as cur:
            outcomes.append(
                queries.fire_tick(
                    cur,
                    schedule_id=row.id,
                    expected_next_run_at=tick,
                    next_run_at=tick + timedelta(minutes=1),
                    last_run_at=tick,
                    job={
                        "job_name": "test.record",
                        "queue": "default",
                        "priority": 0,
                        "max_attempts": 3,
                    },
                    fire_times=[tick],
                    payloads=["{}"],
                    keys=[f"pgjobs.cron:race:{tick.isoformat()}"],
                )
            )
    assert [fired.advanced for fired in outcomes] == [True, False]
    assert Job.objects.count() == 1


def test_first_tick_is_not_computed_from_a_timing_edited_meanwhile() -> None:
    row = add_schedule("edited-during-read", "0 0 1 1 *")
    with connection.cursor() as cur:
        _, rows = queries.due_schedules(cur)
        stale = next(r for r in rows if r["id"] == row.id)
        Schedule.objects.filter(id=row.id).update(cron="*/5 * * * *")
        assert not queries.set_next_run(cur, row=stale, next_run_at=db_now() + timedelta(days=300))
    assert Schedule.objects.get().next_run_at is None


def test_saving_a_loaded_schedule_never_brings_back_an_old_next_tick(scheduler: Scheduler) -> None:
    add_schedule("report", "* * * * *")
    scheduler.run_once()
    loaded = Schedule.objects.get()  # e.g. an admin form opened now
    tick = make_schedule_due("report", at=db_now().replace(second=0, microsecond=0))
    scheduler.run_once(now=tick + timedelta(seconds=1))  # the tick fires; next_run_at moves on
    advanced = Schedule.objects.get().next_run_at
    loaded.payload = {"changed": True}
    loaded.save()
    row = Schedule.objects.get()
    assert row.next_run_at == advanced and row.payload == {"changed": True}
    assert Job.objects.filter(scheduled_for=tick).count() == 1
