"""Cancelling a running job tells its worker at commit: a NOTIFY naming the attempt it took the
job from, so the handler's ``is_cancelled()`` says so within milliseconds."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from django_pgjobs import cancel_job, enqueue, get_job, queries
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener(other_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    other_connection.execute(f"LISTEN {queries.CANCEL_CHANNEL}")
    return other_connection


def heard(listener: psycopg.Connection[Any]) -> list[str]:
    # Notifications are delivered at the notifier's commit; a round trip brings in any queued.
    listener.execute("SELECT 1")
    return [n.payload for n in listener.notifies(timeout=0)]


def claim() -> queries.ClaimedJob:
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=60, queues=None, job_names=None
        )
    return claimed


def test_cancelling_a_running_job_names_the_attempt_it_took_the_job_from(
    listener: psycopg.Connection[Any],
) -> None:
    job_id = enqueue("test.record")
    claimed = claim()
    cancel_job(job_id)
    assert heard(listener) == [f"{job_id}:{claimed.lease_token}"]
    job = get_job(job_id)
    assert (job.status, job.lease_token) == ("cancelled", None)


def test_cancelling_a_pending_job_tells_no_worker(listener: psycopg.Connection[Any]) -> None:
    cancel_job(enqueue("test.record"))
    assert heard(listener) == []


def test_a_cancel_rolled_back_tells_no_worker(listener: psycopg.Connection[Any]) -> None:
    job_id = enqueue("test.record")
    claim()
    with transaction.atomic():
        cancel_job(job_id)
        transaction.set_rollback(True)
    assert heard(listener) == []
    assert get_job(job_id).status == "running"


def test_a_malformed_cancel_notification_is_ignored(make_worker: type[Worker]) -> None:
    """Anyone may NOTIFY the channel: a payload that names no attempt must not stop a worker."""
    worker = make_worker()
    thread = in_thread(worker.run)
    try:
        # Registered after its connection's LISTEN: from now on it hears the channel.
        wait_for(WorkerRow.objects.exists, what="the worker to listen")
        with connection.cursor() as cur:
            for payload in ("nonsense", "", ":", f"{uuid.uuid4()}:not-a-token"):
                cur.execute("SELECT pg_notify(%s, %s)", [queries.CANCEL_CHANNEL, payload])
        job_id = enqueue("test.record")
        wait_for(lambda: get_job(job_id).status == "completed", what="the job to run")
    finally:
        worker.request_stop()
        thread.join(30)
    assert not thread.is_alive() and worker.stats.db_errors == 0
