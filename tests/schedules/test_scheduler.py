"""The scheduler as it runs: woken by a new schedule, unharmed by broken rows, inside a worker."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import add_schedule, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_running_scheduler_picks_up_a_new_schedule_at_once() -> None:
    running = Scheduler(poll_interval=3600)  # only a NOTIFY can wake it in time
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        wait_for(lambda: running._synced, what="scheduler started")
        add_schedule("every-second", "* * * * * *")
        wait_for(
            lambda: Job.objects.filter(key__startswith="pgjobs.cron:every-second:").exists(),
            what="first tick",
        )
    finally:
        running.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_a_schedule_for_an_unknown_job_is_skipped_not_fatal(scheduler: Scheduler) -> None:
    Schedule.objects.create(name="orphan-job", cron="* * * * *", job_name="gone.away")
    add_schedule("fine", "* * * * *")
    report = scheduler.run_once()
    assert report.initialised == 1  # the valid one still works
    assert Schedule.objects.get(name="orphan-job").next_run_at is None


def test_a_broken_row_never_stops_the_scheduler_or_starves_others() -> None:
    Schedule.objects.create(name="aaa-broken", cron="* * * * * *", job_name="test.record")
    Schedule.objects.create(name="bbb-no-handler", cron="* * * * * *", job_name="renamed.job")
    add_schedule("zzz-healthy", "* * * * * *")
    running = Scheduler(poll_interval=0.05)
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        wait_for(
            lambda: Schedule.objects.filter(next_run_at__isnull=False).count() >= 2, what="init"
        )
        # Break the first row's payload behind the model's back, as SQL could.
        with connection.cursor() as cur:
            cur.execute("UPDATE pgjobs_schedules SET payload = '[1, 2]' WHERE name = 'aaa-broken'")
        wait_for(
            lambda: Job.objects.filter(key__startswith="pgjobs.cron:zzz-healthy:").count() >= 3,
            what="the healthy schedule keeps firing",
        )
        assert thread.is_alive()
        assert set(running._quarantined) >= set(
            Schedule.objects.filter(name="bbb-no-handler").values_list("id", flat=True)
        )
    finally:
        running.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_worker_runs_the_scheduler_thread(make_worker: Any) -> None:
    add_schedule("every-second", "* * * * * *")
    worker = make_worker(scheduler=True, poll_interval=0.05)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(
            lambda: Job.objects.filter(
                key__startswith="pgjobs.cron:every-second:", status="completed"
            ).exists(),
            what="a tick fired by the worker's scheduler and run by the worker",
        )
    finally:
        worker.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    assert timezone.now()  # (keeps the import used)
