"""The readers a time Python cannot read back used to break (issue 13, attacker's review D1, D2):
with such a write refused (migration 0014), the claim, the dashboard, the admin lists, the
``pgjobs`` command and the scheduler run with every other row. Each test fails before the fix:
the write is accepted, then the reader raises ``DataError``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DataError, IntegrityError, connection, transaction
from django.test import Client

from django_pgjobs import enqueue_many
from django_pgjobs.models import FailedJob, Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker import Worker
from tests.admin.changelists import changelist
from tests.helpers import add_schedule, db_now, make_schedule_due

pytestmark = pytest.mark.django_db(transaction=True)

OUT_OF_RANGE = ["-infinity", "infinity", "0500-01-01 BC", "10000-01-01"]


def refused(statement: str, params: list[Any]) -> None:
    """The statement is refused (function: 22023, CHECK: 23514); the caller's work goes on."""
    with (
        pytest.raises((DataError, IntegrityError)),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(statement, params)


def enqueue_from_sql(when: str) -> None:
    refused("SELECT pgjobs_enqueue('test.record', '{}', scheduled_for => %s)", [when])


@pytest.mark.parametrize("when", ["-infinity", "0500-01-01 BC"])
def test_the_claim_runs_the_batch_a_refused_time_would_have_poisoned(
    make_worker: type[Worker], when: str
) -> None:
    """Before: the claim committed, then decoding -infinity raised; the batch stayed running and
    -infinity, sorting first, was claimed again after every rescue."""
    enqueue_many("test.record", [{"label": f"good {n}"} for n in range(3)])
    enqueue_from_sql(when)
    refused("UPDATE pgjobs_job_queue SET scheduled_for = %s", [when])
    make_worker(concurrency=4).run_once()
    assert sorted(Job.objects.values_list("status", flat=True)) == ["completed"] * 3


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_the_admin_dashboard_and_command_list_every_other_row(
    admin_client: Client, make_worker: type[Worker], when: str
) -> None:
    enqueue_many("test.fail", [{}], max_attempts=1)
    enqueue_many("test.record", [{}])
    make_worker().run_once()  # one dead letter, one completed job, one live worker
    enqueue_many("test.record", [{}])
    add_schedule("hourly", "0 * * * *")
    enqueue_from_sql(when)
    refused(
        "INSERT INTO pgjobs_failed_jobs (job_name, error, original_created_at, failed_at) "
        "VALUES ('test.record', 'x', %s, %s)",
        [when, when],
    )
    refused(
        "INSERT INTO pgjobs_workers (id, queues, last_heartbeat_at) VALUES ('w1', '[]', %s)",
        [when],
    )
    refused("UPDATE pgjobs_schedules SET start_at = %s, next_run_at = %s", [when, when])
    for model in ("job", "failedjob", "worker", "schedule", "workflowexecution", "dashboard"):
        assert admin_client.get(changelist(model)).status_code == 200, model
    assert "test.fail" in pgjobs("list", "--status", "dead")
    assert pgjobs("list").count("test.record") == 2
    assert "dead letters: 1" in pgjobs("status")
    assert "hourly" in pgjobs("schedules")
    assert (Job.objects.count(), FailedJob.objects.count()) == (2, 1)


@pytest.mark.parametrize(("column", "when"), [("end_at", "infinity"), ("start_at", "-infinity")])
def test_one_schedule_cannot_stop_every_schedule(column: str, when: str) -> None:
    """Before: the due list's read raised DataError, so no schedule fired, forever."""
    add_schedule("good", "* * * * *")
    add_schedule("other", "* * * * *")
    tick = db_now().replace(second=0, microsecond=0)
    make_schedule_due("good", at=tick)
    make_schedule_due("other", at=tick)
    refused(f"UPDATE pgjobs_schedules SET {column} = %s WHERE name = 'other'", [when])
    running = Scheduler(poll_interval=3600)
    try:
        assert running.run_once(now=tick + timedelta(seconds=1)).enqueued == 2
    finally:
        running.close()
    assert "good" in pgjobs("schedules")


def test_a_schedule_whose_first_tick_no_table_stores_is_over_and_the_others_fire() -> None:
    """The first tick of this schedule lies at 9000-01-01, which the next_run_at CHECK would
    refuse: the schedule is over, as past its window's end (once it was quarantined and logged
    as an ERROR every minute; tests/schedules/test_last_tick.py)."""
    add_schedule("new-year-9000", "0 0 1 1 *", start_at="8999-12-31T23:59:59+00:00")
    add_schedule("zzz-good", "* * * * *")
    running = Scheduler(poll_interval=3600)
    try:
        assert running.run_once().initialised == 1
        far = Schedule.objects.get(name="new-year-9000")
        assert far.next_run_at is None and far.id not in running._quarantined
        tick = make_schedule_due("zzz-good", at=db_now().replace(second=0, microsecond=0))
        # The connection is still good, and the ended row fires nothing.
        assert running.run_once(now=tick + timedelta(seconds=1)).enqueued == 1
    finally:
        running.close()
