"""Statements on a held lease: the heartbeat renews it, a release undoes the attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_heartbeat_renews_leases_and_the_worker_row(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="w1", limit=1, lease_seconds=1, queues=None, job_names=None
        )
        before = get_job(job_id).lease_expires_at
        unknown = (uuid.uuid4(), uuid.uuid4())
        lost = queries.heartbeat(
            cur,
            worker={
                "id": "w1",
                "hostname": "h",
                "pid": 1,
                "queues": "[]",
                "concurrency": 1,
                "instance_token": None,
            },
            tokens=[claimed.token, unknown],
            lease_seconds=60,
        )
    assert lost == [unknown]  # the attempt not held is reported, by its token; ours renewed
    after = get_job(job_id).lease_expires_at
    assert before is not None and after is not None and after - before > timedelta(seconds=50)
    assert WorkerRow.objects.filter(id="w1").exists()


def test_release_puts_unstarted_jobs_back_without_counting_an_attempt() -> None:
    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
        )
        assert queries.release_jobs(cur, tokens=[claimed.token]) == 1
    job = get_job(job_id)
    assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)


def test_the_heartbeat_tells_a_stale_attempt_from_a_new_one_of_the_same_job() -> None:
    """A worker can hold a stale attempt of a job (its lease expired and the job came back to
    it) beside the new one: only the stale one is reported, so only its handler is told."""
    job_id = enqueue("test.record", max_attempts=3)
    worker = {"id": "w", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": 2,
              "instance_token": None}  # fmt: skip
    claim: dict[str, Any] = {
        "worker_id": "w", "limit": 1, "lease_seconds": 30, "queues": None, "job_names": None
    }  # fmt: skip
    with connection.cursor() as cur:
        (stale,) = queries.claim_jobs(cur, **claim)
        cur.execute(
            "UPDATE pgjobs_job_queue SET lease_expires_at = now() - interval '1 second' "
            "WHERE id = %s",
            [job_id],
        )
        assert queries.rescue_expired_leases(cur).retried == 1
        (new,) = queries.claim_jobs(cur, **claim)
        assert new.id == stale.id == job_id
        lost = queries.heartbeat(
            cur, worker=worker, tokens=[stale.token, new.token], lease_seconds=30
        )
    assert lost == [stale.token]
