"""The results a batch of completions keeps: each attempt's own, by its place in the batch. Every
job of one claim has the claim's lease token, so results keyed by it gave every task completed in
one batch the same return value."""

from __future__ import annotations

import pytest
from django.db import connection

from django_pgjobs import enqueue_many, get_job, queries

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_attempt_keeps_its_own_result_and_those_without_one_keep_none() -> None:
    enqueue_many("test.record", [{}, {}, {}])
    with connection.cursor() as cur:
        jobs = queries.claim_jobs(
            cur, worker_id="w", limit=3, lease_seconds=30, queues=None, job_names=None
        )
        assert len({job.lease_token for job in jobs}) == 1  # one claim, one token
        done = queries.complete_jobs(
            cur, tokens=[job.token for job in jobs], results=['"a"', None, '{"n": [1]}']
        )
    assert sorted(done) == sorted(job.token for job in jobs)
    assert [get_job(job.id).result for job in jobs] == ["a", None, {"n": [1]}]
