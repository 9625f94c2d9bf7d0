"""Which due jobs a worker claims, and in which order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.utils import timezone

from django_pgjobs import enqueue, get_job
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import make_due_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_jobs_without_a_handler_here_are_left_for_workers_that_have_one(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("deployed.tomorrow")
    assert make_worker().run_once().claimed == 0
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error) == ("pending", 0, None)


def test_claim_order_is_priority_then_scheduled_for(make_worker: type[Worker]) -> None:
    now = timezone.now()
    low = enqueue("test.record", {"label": "low"}, priority=-10)
    old = enqueue("test.record", {"label": "old"}, scheduled_for=now - timedelta(minutes=5))
    new = enqueue("test.record", {"label": "new"}, scheduled_for=now - timedelta(minutes=1))
    high = enqueue("test.record", {"label": "high"}, priority=50)
    order = []
    worker = make_worker(concurrency=1)
    for _ in range(4):
        worker.run_once()
        order.append(Job.objects.filter(status="completed").order_by("-completed_at").first())
    assert [j.id for j in order if j] == [high, old, new, low]


def test_future_jobs_wait_for_their_time(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    assert make_worker().run_once().claimed == 0
    make_due_now(job_id)
    assert make_worker().run_once().completed == 1


def test_queues_option_limits_what_a_worker_claims(make_worker: type[Worker]) -> None:
    mail = enqueue("test.record", queue="mail")
    other = enqueue("test.record", queue="reports")
    make_worker(queues=["mail"]).run_once()
    assert get_job(mail).status == "completed"
    assert get_job(other).status == "pending"


def test_claim_skips_rows_locked_by_another_transaction(
    make_worker: type[Worker], other_connection: psycopg.Connection[Any]
) -> None:
    locked = enqueue("test.record", {"label": "locked"})
    free = enqueue("test.record", {"label": "free"})
    other_connection.autocommit = False
    other_connection.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [locked])
    stats = make_worker().run_once()  # would block forever without SKIP LOCKED
    other_connection.rollback()
    assert stats.claimed == 1
    assert get_job(free).status == "completed"
    assert get_job(locked).status == "pending"
