"""The database gauges (``manage.py pgjobs metrics``), parsed with prometheus_client's parser and
checked against rows each test makes: jobs by queue and state, the oldest due job's age, dead
letters, live workers and busy slots, queue limits, schedules, workflows; capped counts; rows
written by plain SQL with values the Python API would refuse."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import cancel_job, enqueue, queries
from django_pgjobs.models import Schedule
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.observability.dashboard import COUNT_CAP
from django_pgjobs.queues import pause_queue, set_queue_limits
from django_pgjobs.worker import Worker
from tests.metrics.scrapes import scrape_command

pytestmark = pytest.mark.django_db(transaction=True)


def sql(statement: str, params: Any = None) -> None:
    with connection.cursor() as cur:
        cur.execute(statement, params)


def claim(worker_id: str, queue: str) -> None:
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id=worker_id, limit=1, lease_seconds=300, queues=[queue], job_names=None
        )


def test_jobs_by_queue_and_state_with_the_oldest_due_jobs_age() -> None:
    for _ in range(3):
        enqueue("test.record", queue="mail")
    oldest = enqueue("test.record", queue="mail", priority=5)
    for _ in range(2):
        enqueue("test.record", queue="mail", scheduled_for=timedelta(hours=1))
    enqueue("test.record", queue="reports")
    enqueue("test.record", queue="reports")
    enqueue("test.record", queue="later", scheduled_for=timedelta(days=1))
    sql(
        "UPDATE pgjobs_job_queue SET scheduled_for = now() - interval '90 seconds' WHERE id = %s",
        [oldest],
    )
    claim("w-live", "reports")

    scrape = scrape_command()

    assert scrape.by("pgjobs_jobs", "state", queue="mail") == {
        "due": 4, "scheduled": 2, "running": 0,
    }  # fmt: skip
    assert scrape.by("pgjobs_jobs", "state", queue="reports") == {
        "due": 1, "scheduled": 0, "running": 1,
    }  # fmt: skip
    assert scrape.by("pgjobs_jobs", "state", queue="later") == {
        "due": 0, "scheduled": 1, "running": 0,
    }  # fmt: skip
    ages = scrape.by("pgjobs_oldest_due_job_age_seconds", "queue")
    assert 90 <= ages["mail"] < 3600
    assert 0 < ages["reports"] < 90
    assert ages["later"] == 0  # nothing due: no lag


def test_counts_stop_at_the_cap_whatever_the_queue_holds() -> None:
    sql(
        "INSERT INTO pgjobs_job_queue (job_name, queue, priority) "
        "SELECT 'test.record', 'big', (i %% 3)::smallint FROM generate_series(1, %s) AS i",
        [COUNT_CAP + 50],
    )
    sql(
        "INSERT INTO pgjobs_failed_jobs (job_name, queue) "
        "SELECT 'test.record', 'big' FROM generate_series(1, %s)",
        [COUNT_CAP + 5],
    )
    scrape = scrape_command()
    assert scrape("pgjobs_jobs", queue="big", state="due") == COUNT_CAP
    assert scrape("pgjobs_dead_letters", queue="big") == COUNT_CAP


def test_dead_letters_by_queue_include_queues_without_jobs() -> None:
    sql(
        "INSERT INTO pgjobs_failed_jobs (job_name, queue) VALUES "
        "('test.fail', 'mail'), ('test.fail', 'mail'), ('test.fail', 'gone')"
    )
    enqueue("test.record", queue="mail")
    scrape = scrape_command()
    assert scrape.by("pgjobs_dead_letters", "queue") == {"mail": 2, "gone": 1}
    # A queue known only from its dead letters still shows its jobs, as zeros.
    assert scrape.by("pgjobs_jobs", "state", queue="gone") == {
        "due": 0, "scheduled": 0, "running": 0,
    }  # fmt: skip


def test_a_queue_whose_jobs_all_finished_keeps_its_series_as_zeros(
    make_worker: type[Worker],
) -> None:
    """Before: once a queue's only job completed its series vanished (an absent() alert fired
    on a drained queue) while ``pgjobs status`` still listed it (a new user's trial)."""
    enqueue("test.record", {"label": "only"}, queue="zq")
    cancelled = enqueue("test.record", queue="gone-quiet")
    cancel_job(cancelled)
    assert make_worker(queues=["zq"]).run_once().completed == 1
    scrape = scrape_command()
    for queue in ("zq", "gone-quiet"):
        assert scrape.by("pgjobs_jobs", "state", queue=queue) == {
            "due": 0, "scheduled": 0, "running": 0,
        }, queue  # fmt: skip
        assert scrape("pgjobs_oldest_due_job_age_seconds", queue=queue) == 0
        assert scrape("pgjobs_dead_letters", queue=queue) == 0


def test_live_workers_their_slots_and_the_busy_ones() -> None:
    WorkerRow.objects.create(id="w-live", concurrency=3)
    WorkerRow.objects.create(id="w-also", concurrency=4)
    WorkerRow.objects.create(
        id="w-silent", concurrency=8, last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    enqueue("test.record", queue="a")
    enqueue("test.record", queue="b")
    claim("w-live", "a")
    claim("w-silent", "b")  # running, but its worker is gone: waiting for the rescue

    scrape = scrape_command()
    assert scrape("pgjobs_live_workers") == 2
    assert scrape("pgjobs_live_worker_slots") == 7
    assert scrape("pgjobs_live_worker_busy_slots") == 1
    assert scrape.by("pgjobs_jobs", "queue", state="running") == {"a": 1, "b": 1}


def test_queue_limits_in_force_and_paused_queues() -> None:
    set_queue_limits(
        "mail",
        concurrency=5,
        worker_concurrency=2,
        rate_limit=100,
        rate_period=60,
        partition_concurrency=1,
        partition_rate_limit=3,
        timeout=30,
    )
    set_queue_limits("api", rate_limit=10)
    set_queue_limits("turns", fair=True, partition_concurrency=2)
    pause_queue("reports")
    enqueue("test.record", queue="free")

    scrape = scrape_command()
    assert scrape.by("pgjobs_queue_paused", "queue") == {
        "mail": 0, "api": 0, "turns": 0, "reports": 1, "free": 0,
    }  # fmt: skip
    assert scrape.by("pgjobs_queue_fair", "queue") == {
        "mail": 0, "api": 0, "turns": 1, "reports": 0, "free": 0,
    }  # fmt: skip
    assert scrape("pgjobs_queue_concurrency_limit", queue="mail") == 5
    assert scrape("pgjobs_queue_worker_concurrency_limit", queue="mail") == 2
    assert scrape("pgjobs_queue_rate_limit", queue="mail") == 100
    assert scrape("pgjobs_queue_rate_period_seconds", queue="mail") == 60
    assert scrape("pgjobs_queue_partition_concurrency_limit", queue="mail") == 1
    assert scrape("pgjobs_queue_partition_rate_limit", queue="mail") == 3
    assert scrape("pgjobs_queue_timeout_seconds", queue="mail") == 30
    # A limit not set is absent, not 0 (0 would read as "nothing may run").
    assert scrape.by("pgjobs_queue_concurrency_limit", "queue") == {"mail": 5}
    assert scrape.by("pgjobs_queue_rate_limit", "queue") == {"mail": 100, "api": 10}
    assert scrape.by("pgjobs_queue_rate_period_seconds", "queue") == {
        "mail": 60, "api": 1, "turns": 1, "reports": 1,
    }  # fmt: skip


def test_schedules_last_and_next_fire() -> None:
    last = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    upcoming = timezone.now() + timedelta(hours=3)
    Schedule.objects.create(
        name="nightly", cron="0 2 * * *", job_name="test.record", last_run_at=last
    )
    Schedule.objects.filter(name="nightly").update(next_run_at=upcoming)
    # An edit cleared next_run_at and no scheduler has recomputed it: computed here.
    Schedule.objects.create(name="new-year", cron="0 0 1 1 *", job_name="test.record")
    Schedule.objects.create(name="off", cron="* * * * *", job_name="test.record", enabled=False)
    Schedule.objects.create(name="removed", cron="* * * * *", job_name="test.record")
    Schedule.objects.filter(name="removed").update(orphaned=True, next_run_at=upcoming)
    # Its window closed before the tick a scheduler stored: that tick never fires.
    Schedule.objects.create(
        name="ended", cron="0 * * * *", job_name="test.record", end_at=upcoming - timedelta(hours=1)
    )
    Schedule.objects.filter(name="ended").update(next_run_at=upcoming)
    # Added an hour ago and never seen by a scheduler: its first tick is overdue, which is
    # what says that no scheduler runs.
    sql(
        "INSERT INTO pgjobs_schedules (name, cron, job_name, timezone, enabled, catch_up, "
        "catch_up_limit, source, orphaned, payload, updated_at) VALUES ('unseen', "
        "'0 * * * *', 'test.record', 'UTC', true, 'skip', 1, 'database', false, '{}', "
        "now() - interval '61 minutes')"
    )

    scrape = scrape_command()
    assert scrape.by("pgjobs_schedule_enabled", "schedule") == {
        "nightly": 1, "new-year": 1, "off": 0, "removed": 0, "ended": 1, "unseen": 1,
    }  # fmt: skip
    assert scrape.by("pgjobs_schedule_last_fire_timestamp_seconds", "schedule") == {
        "nightly": last.timestamp()
    }
    next_fire = scrape.by("pgjobs_schedule_next_fire_timestamp_seconds", "schedule")
    assert next_fire.keys() == {"nightly", "new-year", "unseen"}  # the others will not fire
    assert next_fire["unseen"] < timezone.now().timestamp()
    assert next_fire["nightly"] == pytest.approx(upcoming.timestamp(), abs=1e-3)
    new_year = datetime.fromtimestamp(next_fire["new-year"], UTC)
    assert (new_year.month, new_year.day, new_year.hour, new_year.minute) == (1, 1, 0, 0)
    assert new_year > timezone.now()


def test_workflows_by_status() -> None:
    sql(
        "INSERT INTO pgjobs_workflow_executions (workflow_id, name, status, app_version) VALUES "
        "('a', 'order', 'running', 'v1'), ('b', 'order', 'completed', 'v1'), "
        "('c', 'order', 'completed', 'v1'), ('d', 'order', 'dead', 'v1')"
    )
    scrape = scrape_command()
    assert scrape.by("pgjobs_workflows", "status") == {
        "pending": 0, "running": 1, "completed": 2, "failed": 0, "cancelled": 0, "dead": 1,
    }  # fmt: skip


def test_rows_written_by_sql_with_odd_values_never_break_a_scrape() -> None:
    odd = 'odd "queue"\\ with\nnewline and ünïcode'
    sql(
        "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for, partition_key, "
        "timeout, key, error, seq) VALUES "
        "('nobody.handles.this', %s, -100, now() - interval '1 day', NULL, NULL, NULL, NULL, "
        "NULL), ('x', 'plain', 100, '8999-12-31', '', NULL, NULL, 'boom', NULL)",
        [odd],
    )
    sql("INSERT INTO pgjobs_queues (name) VALUES (%s)", [odd])
    sql("INSERT INTO pgjobs_failed_jobs (job_name, queue, error) VALUES ('x', 'unknown', NULL)")
    sql(
        "INSERT INTO pgjobs_schedules (name, cron, job_name, timezone, enabled, catch_up, "
        "catch_up_limit, source, orphaned, payload) VALUES "
        "('broken', 'not a cron', 'x', 'Mars/Olympus_Mons', true, 'skip', 1, 'database', "
        "false, '{}'), ('bad-zone', '* * * * *', 'x', 'Nowhere/City', true, 'skip', 1, "
        "'database', false, '{}')"
    )
    sql("INSERT INTO pgjobs_workers (id, concurrency) VALUES ('sql-worker', -1)")

    scrape = scrape_command()
    assert scrape.by("pgjobs_jobs", "state", queue=odd) == {"due": 1, "scheduled": 0, "running": 0}
    assert scrape("pgjobs_oldest_due_job_age_seconds", queue=odd) >= 86400  # type: ignore[operator]
    assert scrape("pgjobs_queue_paused", queue=odd) == 0
    assert scrape("pgjobs_jobs", queue="plain", state="scheduled") == 1
    assert scrape("pgjobs_dead_letters", queue="unknown") == 1
    # Schedules no scheduler can read: shown enabled, with no next fire time.
    assert scrape.by("pgjobs_schedule_enabled", "schedule") == {"bad-zone": 1, "broken": 1}
    assert scrape.by("pgjobs_schedule_next_fire_timestamp_seconds", "schedule") == {}
    assert scrape("pgjobs_live_workers") == 1
    assert scrape("pgjobs_live_worker_slots") == 0


def test_an_empty_database_still_describes_every_gauge() -> None:
    started = time.monotonic()
    scrape = scrape_command()
    took = time.monotonic() - started
    assert {
        "pgjobs_jobs",
        "pgjobs_oldest_due_job_age_seconds",
        "pgjobs_dead_letters",
        "pgjobs_live_workers",
        "pgjobs_queue_paused",
        "pgjobs_schedule_next_fire_timestamp_seconds",
        "pgjobs_workflows",
    } <= scrape.names()
    assert scrape("pgjobs_live_workers") == 0
    assert scrape.by("pgjobs_jobs", "queue") == {}
    read_at = scrape("pgjobs_metrics_read_timestamp_seconds")
    assert read_at is not None and abs(read_at - timezone.now().timestamp()) < 60
    # The read's own time: part of the command's, never nothing.
    read_for = scrape("pgjobs_metrics_read_duration_seconds")
    assert read_for is not None and 0 < read_for < took
