"""Behind PgBouncer in transaction mode, with LISTEN_DATABASE going straight to PostgreSQL:
statements go through the pooler, wake-ups come by NOTIFY, not by the next poll.

Every process here polls once a minute (POLL_INTERVAL 60): what happens within the bounds
below (a quarter of that, or less) was woken by a notification."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue, send, start_workflow
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import add_schedule, in_thread, make_schedule_due, start_worker, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "pooled"]),
    pytest.mark.usefixtures("pgbouncer"),
    pytest.mark.slow,
]

LISTENING = {"DATABASE": "pooled", "LISTEN_DATABASE": "default", "POLL_INTERVAL": 60}
BOUND = 15.0


@pytest.fixture
def listening_worker(processes: list[subprocess.Popen[bytes]], tmp_path: Path) -> Iterator[Path]:
    """A worker process whose statements go through the pooler; yields its log."""
    log = tmp_path / "worker.log"
    processes.append(start_worker("--concurrency", "2", settings=LISTENING, log=log))
    with override_settings(PGJOBS=LISTENING):
        yield log
    # It heard its own probe: no warning about what to set.
    assert "does not hear" not in log.read_text()


def test_an_idle_worker_behind_the_pooler_is_woken_by_notify(listening_worker: Path) -> None:
    for n in range(4):
        label = f"woken {n}"
        enqueue("test.record", {"label": label})  # through the pooler: its NOTIFY too
        wait_for(
            lambda label=label: Run.objects.filter(label=label).exists(),  # type: ignore[misc]
            timeout=BOUND,
            what=f"job {n} to run (the worker polls only once a minute)",
        )
    assert Job.objects.filter(status="completed").count() == 4


def test_a_workflow_behind_the_pooler_sleeps_receives_and_returns(
    listening_worker: Path,
) -> None:
    sleeper = start_workflow(wf.sleeper, "pooled", 1.5)  # longer than an in-process sleep
    receiver = start_workflow(wf.receiver, "go", 60)
    wait_for(lambda: waiting(receiver.workflow_id), timeout=BOUND, what="recv() to suspend")
    results: list[object] = []
    waiter = in_thread(lambda: results.append(receiver.get_result(timeout=60)))
    # get_result() listens on LISTEN_DATABASE, straight to PostgreSQL; were it not woken, it
    # would re-read the result only 30 s later.
    wait_for(lambda: listening("pgjobs wait"), timeout=BOUND, what="get_result() to listen")
    send(receiver.workflow_id, "first", "go")  # each wakes the suspended workflow's job
    send(receiver.workflow_id, {"n": 2}, "go")
    waiter.join(BOUND)
    assert results == [["first", {"n": 2}]]
    assert sleeper.get_result(timeout=BOUND) == "pooled:after"


def waiting(workflow_id: str) -> bool:
    return any(s.status == "waiting" for s in list_workflow_steps(workflow_id))


def listening(application_name: str) -> bool:
    """A session of that name LISTENs, idle, straight on the server (not through the pooler)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle' AND query LIKE 'LISTEN%%'",
            [application_name],
        )
        return bool(cur.fetchone()[0])


@pytest.fixture
def scheduling() -> Iterator[Scheduler]:
    with override_settings(PGJOBS=LISTENING):
        scheduler = Scheduler(using="pooled")
        thread = threading.Thread(target=scheduler.run)
        thread.start()
        try:
            yield scheduler
        finally:
            scheduler.request_stop()
            thread.join(10)


def initialised(name: str) -> bool:
    return Schedule.objects.filter(name=name, next_run_at__isnull=False).exists()


def test_a_sleeping_scheduler_behind_the_pooler_hears_a_new_schedule(
    scheduling: Scheduler,
) -> None:
    add_schedule("pooled-yearly", "0 0 1 1 *")
    wait_for(lambda: initialised("pooled-yearly"), timeout=BOUND, what="its first pass")
    # Now asleep until a year's tick or the next poll; the insert's NOTIFY goes through the
    # pooler at commit.
    Schedule.objects.using("pooled").create(
        name="pooled-minutely", cron="* * * * *", job_name="test.record"
    )
    wait_for(lambda: initialised("pooled-minutely"), timeout=BOUND, what="the new schedule")


def test_the_scheduler_fires_due_ticks_through_the_pooler() -> None:
    add_schedule("pooled-due", "* * * * * *")
    scheduler = Scheduler(using="pooled")
    try:
        with override_settings(PGJOBS=LISTENING):
            scheduler.run_once()  # first tick set
            make_schedule_due("pooled-due", ago=timedelta(seconds=1))
            report = scheduler.run_once()
    finally:
        scheduler.close()
    # The tick a second ago, and the next one too if this ran a second later (a loaded
    # machine): each enqueued once, through the pooler.
    assert report.enqueued >= 1
    fired = Job.objects.filter(job_name="test.record", key__startswith="pgjobs.cron:")
    assert fired.count() == report.enqueued
