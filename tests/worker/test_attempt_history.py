"""Every failed attempt leaves an entry in the job's ``error_history`` (bounded), and a job keeps
who ran its last attempt and when its first one started: a Django task's ``errors``,
``worker_ids``, ``started_at`` and ``last_attempted_at`` come from these."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.queries.base import ERROR_HISTORY_LIMIT, HISTORY_ERROR_LENGTH
from django_pgjobs.worker import Worker
from tests.helpers import make_due_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_failed_attempt_is_recorded_with_its_worker_and_exception_until_the_dead_letter(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("test.fail", {"message": "smtp down"}, max_attempts=2)
    first, second = make_worker(worker_id="first"), make_worker(worker_id="second")
    assert first.run_once().retried == 1
    job = get_job(job_id)
    [entry] = job.error_history
    assert (entry["attempt"], entry["worker"], entry["exception"]) == (
        1,
        "first",
        "builtins.ValueError",
    )
    assert entry["error"].startswith("ValueError: smtp down") and "Traceback" in entry["error"]
    assert job.started_at == job.locked_at == datetime.fromisoformat(entry["started_at"])
    assert job.started_at is not None
    assert datetime.fromisoformat(entry["failed_at"]) >= job.started_at
    make_due_now(job_id)
    assert second.run_once().buried == 1
    dead = FailedJob.objects.get(id=job_id)
    assert [(e["attempt"], e["worker"]) for e in dead.error_history] == [
        (1, "first"),
        (2, "second"),
    ]
    # The first attempt's start, not the last one's.
    assert dead.started_at == job.started_at
    assert dead.error_history[1]["error"] == dead.error


def test_a_rescued_attempt_is_recorded_as_lease_expired() -> None:
    job_id = enqueue("test.record", max_attempts=2)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="gone", limit=1, lease_seconds=30, queues=None, job_names=None
        )
    Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with connection.cursor() as cur:
        assert queries.rescue_expired_leases(cur).retried == 1
    [entry] = get_job(job_id).error_history
    assert (entry["exception"], entry["worker"]) == (
        "django_pgjobs.exceptions.LeaseExpired",
        "gone",
    )
    assert entry["error"].startswith("Lease expired: worker gone")


def test_the_history_keeps_the_newest_attempts_and_cuts_long_errors() -> None:
    job_id = enqueue("test.record", max_attempts=ERROR_HISTORY_LIMIT + 5)
    for attempt in range(1, ERROR_HISTORY_LIMIT + 3):
        with connection.cursor() as cur:
            [claimed] = queries.claim_jobs(
                cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
            )
            error = f"E{attempt}: " + "x" * (HISTORY_ERROR_LENGTH * 2)
            assert queries.fail_job(cur, token=claimed.token, error=error, delay=0) == "retried"
    job = get_job(job_id)
    assert len(job.error_history) == ERROR_HISTORY_LIMIT
    assert job.error_history[0]["attempt"] == 3 and job.error_history[-1]["attempt"] == 22
    assert len(job.error_history[-1]["error"]) < HISTORY_ERROR_LENGTH + 10
    assert len(job.error or "") > HISTORY_ERROR_LENGTH * 2  # the latest error stays whole


def test_a_history_written_by_sql_that_is_not_a_list_restarts_instead_of_failing_the_write(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("test.fail", max_attempts=3)
    with connection.cursor() as cur:
        cur.execute(
            'UPDATE pgjobs_job_queue SET error_history = \'{"not": "a list"}\' WHERE id = %s',
            [job_id],
        )
    assert make_worker().run_once().retried == 1
    assert [e["attempt"] for e in get_job(job_id).error_history] == [1]


def test_a_claim_undone_leaves_no_worker_behind() -> None:
    """A claim that never started is not an attempt: no worker is named for it."""
    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        [claimed] = queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
        )
        assert queries.release_jobs(cur, tokens=[claimed.token]) == 1
    job = get_job(job_id)
    assert (job.locked_by, job.locked_at, job.attempt, job.error_history) == (None, None, 0, [])


def test_a_longer_history_written_by_sql_is_cut_to_the_limit_at_the_next_failure(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("test.fail", max_attempts=3)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET error_history = "
            "(SELECT jsonb_agg(jsonb_build_object('attempt', -n)) FROM generate_series(1, 500) n) "
            "WHERE id = %s",
            [job_id],
        )
    assert make_worker().run_once().retried == 1
    history = get_job(job_id).error_history
    assert len(history) == ERROR_HISTORY_LIMIT and history[-1]["attempt"] == 1
    assert history[0]["attempt"] == -(500 - ERROR_HISTORY_LIMIT + 2)
