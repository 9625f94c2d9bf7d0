"""When an idle worker's next job is due: the earliest pending job it could run, over every
priority, passing over paused queues' jobs and jobs of queues or handlers it does not serve."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.db import connection

from django_pgjobs import enqueue, queries
from django_pgjobs.queues import pause_queue

pytestmark = pytest.mark.django_db(transaction=True)


def next_due(
    queues: Sequence[str] | None = None, job_names: Sequence[str] | None = ("test.record",)
) -> float | None:
    with connection.cursor() as cur:
        return queries.seconds_until_next_due(cur, queues=queues, job_names=job_names)


def test_nothing_pending_is_none() -> None:
    assert next_due() is None


def test_the_earliest_job_of_any_priority_is_next() -> None:
    enqueue("test.record", scheduled_for=timedelta(seconds=300), priority=10)
    enqueue("test.record", scheduled_for=timedelta(seconds=100), priority=-5)
    enqueue("test.record", scheduled_for=timedelta(seconds=200), priority=0)
    assert 95 < (next_due() or 0) <= 100
    enqueue("test.record", scheduled_for=timedelta(seconds=0), priority=3)
    assert next_due() == 0.0


def test_jobs_of_paused_queues_and_of_others_are_passed_over() -> None:
    enqueue("test.record", queue="held", scheduled_for=timedelta(seconds=0))
    enqueue("test.record", queue="other", scheduled_for=timedelta(seconds=10))
    enqueue(
        "test.fail", queue="mine", scheduled_for=timedelta(seconds=20)
    )  # a handler this worker does not have
    enqueue("test.record", queue="mine", scheduled_for=timedelta(seconds=30))
    pause_queue("held")
    assert 5 < (next_due() or 0) <= 10
    assert 25 < (next_due(queues=["mine"]) or 0) <= 30
    assert 25 < (next_due(queues=["mine", "held"]) or 0) <= 30
    assert next_due(queues=["held"]) is None
    assert 15 < (next_due(queues=["mine"], job_names=None) or 0) <= 20
