"""A dead letter keeps its job's partition key and timeout (migration 0026): requeued, the job
runs in its partition again, never beside that key's running job, and with its own timeout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection

from django_pgjobs import enqueue, queries
from django_pgjobs.jobs import requeue_dead_letter_jobs, retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits

pytestmark = pytest.mark.django_db(transaction=True)


def claim(cur: Any) -> list[ClaimedJob]:
    return claim_jobs(cur, worker_id="w", limit=10, lease_seconds=60, queues=None, job_names=None)


def labels(jobs: list[ClaimedJob]) -> list[str]:
    return [job.payload["label"] for job in jobs]


@pytest.mark.parametrize("how", ["failed", "discarded"])
@pytest.mark.parametrize("requeue", ["one", "bulk"])
def test_a_requeued_dead_letter_runs_in_its_partition_with_its_timeout(
    how: str, requeue: str
) -> None:
    set_queue_limits("q", partition_concurrency=1)
    dead_id = enqueue(
        "test.record", {"label": "dead"}, queue="q", partition_key="account:Q",
        timeout=7, max_attempts=1,
    )  # fmt: skip
    with connection.cursor() as cur:
        [job] = claim(cur)
        if how == "failed":
            assert queries.fail_job(cur, token=job.token, error="boom", delay=0) == "buried"
        else:
            assert queries.bury_job(cur, token=job.token, error="Discard: no use") == "buried"
    letter = FailedJob.objects.get(id=dead_id)
    assert (letter.partition_key, letter.timeout) == ("account:Q", timedelta(seconds=7))

    enqueue("test.record", {"label": "live"}, queue="q", partition_key="account:Q")
    with connection.cursor() as cur:
        assert labels(claim(cur)) == ["live"]  # it runs; the key is held
        if requeue == "one":
            retry_dead_letter_job(dead_id)
        else:
            assert requeue_dead_letter_jobs(queue="q").count == 1
        back = Job.objects.get(id=dead_id)
        assert (back.partition_key, back.timeout) == ("account:Q", timedelta(seconds=7))
        # Behind the key's running job, not beside it: nothing is claimed until it ends.
        assert claim(cur) == []


def test_a_dead_letter_written_by_sql_with_a_timeout_no_job_may_have_is_refused() -> None:
    with connection.cursor() as cur, pytest.raises(IntegrityError):
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name, timeout) VALUES ('test.record', '-1 s')"
        )


def test_a_dead_letter_without_them_comes_back_without_them() -> None:
    """Dead letters written before migration 0026 (or by SQL without the columns)."""
    letter = FailedJob.objects.create(job_name="test.record", queue="q")
    retry_dead_letter_job(letter.id)
    back = Job.objects.get(id=letter.id)
    assert (back.partition_key, back.timeout) == (None, None)
