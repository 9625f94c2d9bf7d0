"""An application transaction holding a running job's row (SELECT ... FOR UPDATE, an admin's
edit): the worker's writes skip the row instead of waiting for it, its heartbeat lists the
attempt as unrenewed, and the rescue leaves such an attempt to its worker while the worker is
alive, however long ago its lease ran out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import Worker as WorkerRow
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = {"id": "w", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": 1,
          "instance_token": "6a1f0d4e-8d57-4d0c-9a8e-5d1c8a0b7f11"}  # fmt: skip


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    """An application's connection, in a transaction of its own."""
    conn = second_connection(autocommit=False)
    yield conn
    conn.close()


def claim(cur: Any) -> queries.ClaimedJob:
    (claimed,) = queries.claim_jobs(
        cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
    )
    return claimed


def hold(app: psycopg.Connection[Any], job: queries.ClaimedJob) -> None:
    app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [job.id])


def held_through_a_heartbeat(app: psycopg.Connection[Any]) -> queries.ClaimedJob:
    """A job claimed by registered worker "w", whose heartbeat found its row held by ``app``
    (listed as unrenewed); the application has let go since."""
    enqueue("test.record")
    with connection.cursor() as cur:
        job = claim(cur)
        queries.register_worker(cur, worker=WORKER, silent_seconds=60)
    hold(app, job)
    with connection.cursor() as cur:
        queries.heartbeat(cur, worker=WORKER, tokens=[job.token], lease_seconds=30)
    app.rollback()
    return job


def expire(job: queries.ClaimedJob) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET lease_expires_at = now() - interval '1 minute' "
            "WHERE id = %s",
            [job.id],
        )


@pytest.mark.parametrize(
    "write",
    [
        lambda cur, job: queries.complete_jobs(cur, tokens=[job.token]) == [],
        lambda cur, job: queries.fail_job(cur, token=job.token, error="e", delay=0) == "lost",
        lambda cur, job: queries.bury_job(cur, token=job.token, error="e") == "lost",
        lambda cur, job: queries.cancel_held_job(cur, token=job.token, error="e") == "lost",
        lambda cur, job: queries.snooze_job(cur, token=job.token, delay=1) == "lost",
        lambda cur, job: queries.release_jobs(cur, tokens=[job.token]) == 0,
        lambda cur, job: (
            queries.report_progress(cur, token=job.token, progress=5, message=None) == "held"
        ),
    ],
    ids=["complete", "fail", "bury", "cancel", "snooze", "release", "progress"],
)
def test_a_write_skips_a_held_row_at_once_and_the_attempt_still_holds_its_job(
    app: psycopg.Connection[Any], write: Any
) -> None:
    enqueue("test.record")
    with connection.cursor() as cur:
        job = claim(cur)
    hold(app, job)
    # lock_timeout would turn a wait into an error; there must be no wait at all.
    with second_connection() as worker_conn:
        worker_conn.execute("SET lock_timeout = '5s'")
        assert write(worker_conn.cursor(), job)
        assert queries.no_longer_held(worker_conn.cursor(), tokens=[job.token]) == []
    app.rollback()
    assert get_job(job.id).status == "running"
    with connection.cursor() as cur:
        assert queries.complete_jobs(cur, tokens=[job.token]) == [job.token]


@pytest.mark.parametrize(
    ("write", "status"),
    [
        (lambda cur, job: queries.complete_jobs(cur, tokens=[job.token]) == [job.token],
         "completed"),
        (lambda cur, job: queries.fail_job(cur, token=job.token, error="e", delay=60) == "retried",
         "pending"),
        (lambda cur, job: queries.cancel_held_job(cur, token=job.token, error="e") == "cancelled",
         "cancelled"),
        (lambda cur, job: queries.snooze_job(cur, token=job.token, delay=60) == "snoozed",
         "pending"),
        (lambda cur, job: queries.release_jobs(cur, tokens=[job.token]) == 1, "pending"),
    ],
    ids=["complete", "fail", "cancel", "snooze", "release"],
)  # fmt: skip
def test_a_foreign_keys_share_lock_does_not_hold_the_writes_that_keep_the_row(
    app: psycopg.Connection[Any], write: Any, status: str
) -> None:
    """An application inserting a row that references the job (a foreign key's check takes FOR
    KEY SHARE on it) does not make the attempt's end skip the job: those writes take FOR NO KEY
    UPDATE, which does not conflict (only bury, which deletes the row, must wait its turn)."""
    enqueue("test.record")
    with connection.cursor() as cur:
        job = claim(cur)
    app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR KEY SHARE", [job.id])
    with second_connection() as worker_conn:
        worker_conn.execute("SET lock_timeout = '5s'")
        assert queries.bury_job(worker_conn.cursor(), token=job.token, error="e") == "lost"
        assert write(worker_conn.cursor(), job)
    app.rollback()
    assert get_job(job.id).status == status


def test_the_heartbeat_lists_a_held_row_as_unrenewed_until_it_is_free(
    app: psycopg.Connection[Any],
) -> None:
    enqueue("test.record")
    with connection.cursor() as cur:
        job = claim(cur)
    hold(app, job)
    with connection.cursor() as cur:
        assert queries.heartbeat(cur, worker=WORKER, tokens=[job.token], lease_seconds=30) == []
    assert WorkerRow.objects.get(id="w").unrenewed == [str(job.lease_token)]
    app.rollback()
    with connection.cursor() as cur:
        queries.heartbeat(cur, worker=WORKER, tokens=[job.token], lease_seconds=30)
    assert WorkerRow.objects.get(id="w").unrenewed == []


def test_the_rescue_leaves_a_live_workers_unrenewed_attempt_and_takes_a_silent_ones(
    app: psycopg.Connection[Any],
) -> None:
    job = held_through_a_heartbeat(app)
    expire(job)  # the application let go; the lease had run out meanwhile
    with connection.cursor() as cur:
        assert queries.rescue_expired_leases(cur, silent_seconds=60).total == 0
    assert get_job(job.id).lease_token == job.lease_token
    # The worker goes silent: its job is rescued as any other.
    WorkerRow.objects.filter(id="w").update(last_heartbeat_at="2000-01-01T00:00:00Z")
    with connection.cursor() as cur:
        assert queries.rescue_expired_leases(cur, silent_seconds=60).total == 1


def test_an_expired_lease_the_worker_did_not_list_is_rescued_though_the_worker_is_alive() -> None:
    """The guard is the listed token, not the worker's liveness: an attempt a live worker
    holds and renews no more (it lost track of it) still comes back."""
    enqueue("test.record")
    with connection.cursor() as cur:
        job = claim(cur)
        queries.register_worker(cur, worker=WORKER, silent_seconds=60)
        queries.heartbeat(cur, worker=WORKER, tokens=[], lease_seconds=30)
    expire(job)
    with connection.cursor() as cur:
        assert queries.rescue_expired_leases(cur, silent_seconds=60).total == 1


def test_a_worker_that_takes_over_a_silent_id_starts_with_no_unrenewed_attempts(
    app: psycopg.Connection[Any],
) -> None:
    job = held_through_a_heartbeat(app)
    WorkerRow.objects.filter(id="w").update(last_heartbeat_at="2000-01-01T00:00:00Z")
    successor = {**WORKER, "instance_token": "0b7e4a1c-3f1d-4f3e-8a51-2f6c9b1d7e22"}
    with connection.cursor() as cur:
        assert queries.register_worker(cur, worker=successor, silent_seconds=60)
    assert WorkerRow.objects.get(id="w").unrenewed == []
    expire(job)
    with connection.cursor() as cur:
        # The old process's attempt: its successor under the same id does not hold it.
        assert queries.rescue_expired_leases(cur, silent_seconds=60).total == 1
