"""The order a key's jobs start in, exactly as docs/howto/queues.md#order-within-a-key says it:
priority, then due time, then enqueue order; a retry goes behind the key's due jobs whatever its
backoff; a job handed back without an attempt keeps its place."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_pgjobs import enqueue, queries
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits

pytestmark = pytest.mark.django_db(transaction=True)


def claim(cur: Any, limit: int = 100) -> list[ClaimedJob]:
    return claim_jobs(
        cur, worker_id="w", limit=limit, lease_seconds=60, queues=None, job_names=None
    )


def labels(jobs: list[ClaimedJob]) -> list[str]:
    return [job.payload["label"] for job in jobs]


def one_key(*jobs: tuple[str, dict[str, Any]]) -> None:
    with transaction.atomic():  # one transaction: equal created_at, ordered by seq alone
        for label, options in jobs:
            enqueue("test.record", {"label": label}, queue="q", partition_key="k", **options)


def test_a_keys_jobs_start_by_priority_then_due_time_then_enqueue_order() -> None:
    set_queue_limits("q", partition_concurrency=1)
    earlier = timezone.now() - timedelta(minutes=5)
    one_key(
        ("first", {}),
        ("second", {}),
        ("due earlier", {"scheduled_for": earlier}),
        ("urgent", {"priority": 5}),
        ("later", {"scheduled_for": timedelta(hours=1)}),  # not due: not started at all
    )
    started = []
    with connection.cursor() as cur:
        while jobs := claim(cur):
            [job] = jobs  # one at a time
            started += labels(jobs)
            queries.complete_jobs(cur, tokens=[job.token])
    assert started == ["urgent", "due earlier", "first", "second"]


def test_a_retry_goes_behind_the_keys_due_jobs_even_with_no_backoff() -> None:
    set_queue_limits("q", partition_concurrency=1)
    one_key(("a", {}), ("b", {}))
    with connection.cursor() as cur:
        [a] = claim(cur)
        assert labels([a]) == ["a"]
        assert claim(cur) == []  # the key is held while a runs
        assert queries.fail_job(cur, token=a.token, error="boom", delay=0) == "retried"
        assert labels(claim(cur)) == ["b"]  # a failed: its key is free, and b is due first


def test_a_job_handed_back_without_an_attempt_keeps_its_place() -> None:
    set_queue_limits("q", partition_concurrency=1)
    one_key(("a", {}), ("b", {}))
    with connection.cursor() as cur:
        [a] = claim(cur)
        assert queries.release_jobs(cur, tokens=[a.token]) == 1  # e.g. a graceful shutdown
        assert labels(claim(cur)) == ["a"]
