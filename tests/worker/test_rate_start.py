"""A rate-limited queue's handlers begin where the claim counted them: at the claim's stamp plus
RATE_START_DELAY, with the ledger counting each start a small margin later
(queries.rate_starts), so a window measured where handlers begin holds no more than the limit."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import QueueStart
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queries.rate_starts import RATE_START_DELAY
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.worker import attempt as attempt_module

pytestmark = pytest.mark.django_db(transaction=True)


def database_clock() -> Any:
    with connection.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]


def claim(limit: int = 10) -> Any:
    with connection.cursor() as cur:
        return claim_jobs(
            cur, worker_id="w", limit=limit, lease_seconds=60, queues=None, job_names=None
        )


@pytest.mark.parametrize(("period", "margin"), [(1.0, 0.02), (60.0, 0.05)])
def test_the_ledger_counts_a_claim_s_starts_a_margin_after_its_stamp(
    period: float, margin: float
) -> None:
    """2% of the period, at most 50 ms: a start that begins up to that late is still in the
    windows the next claims count it in."""
    set_queue_limits("rated", rate_limit=5, rate_period=period)
    enqueue_many("test.record", [{}] * 3, queue="rated")
    before = database_clock()
    assert len(claim()) == 3
    after = database_clock()
    [start] = QueueStart.objects.filter(queue="rated")
    assert start.jobs == 3
    shift = timedelta(seconds=margin)
    assert before + shift <= start.started_at <= after + shift


def test_only_rate_limited_jobs_wait_for_their_start() -> None:
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    set_queue_limits("slots", concurrency=5)
    enqueue("test.record", queue="rated")
    enqueue("test.record", queue="slots")
    enqueue("test.record", queue="open")
    before = time.monotonic()
    jobs = {job.queue: job for job in claim()}
    after = time.monotonic()
    assert jobs["slots"].start_at is None
    assert jobs["open"].start_at is None
    # The claim's stamp plus the delay, read on the worker's clock: within the claim's span.
    start_at = jobs["rated"].start_at
    assert start_at is not None
    assert before < start_at <= after + RATE_START_DELAY


def test_a_plain_claim_starts_its_jobs_at_once() -> None:
    enqueue("test.record")
    [job] = claim()
    assert job.start_at is None


@pytest.fixture
def ledger() -> Iterator[None]:
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE flow_ledger (label text, pid int, started_at timestamptz, "
            "ended_at timestamptz)"
        )
    yield
    with connection.cursor() as cur:
        cur.execute("DROP TABLE flow_ledger")


def test_the_handler_begins_the_delay_after_the_claim_counted_it(
    make_worker: type[Worker], ledger: None
) -> None:
    """The handler writes when it began by its own clock (test.span); the ledger's row is the
    claim's stamp plus the margin (20 ms at a period of 1 s)."""
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue_many("test.span", [{"label": str(n)} for n in range(3)], queue="rated")
    worker = make_worker(concurrency=3, queues=["rated"])
    assert worker.run_once().completed == 3
    [start] = QueueStart.objects.filter(queue="rated")
    stamp = start.started_at - timedelta(seconds=0.02)
    with connection.cursor() as cur:
        cur.execute("SELECT started_at FROM flow_ledger")
        began = [row[0] for row in cur.fetchall()]
    assert len(began) == 3
    assert all(at >= stamp + timedelta(seconds=RATE_START_DELAY) for at in began), (stamp, began)


def test_the_wait_is_never_longer_than_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start time far ahead (a clock that jumped, a claim read long after) costs at most the
    delay: the handler never waits on a wrong reading."""
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue("test.record", {"label": "x"}, queue="rated")
    [claimed] = claim()
    assert claimed.start_at is not None
    job = dataclasses.replace(claimed, start_at=claimed.start_at + 3600)
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    result = attempt_module.run_attempt(registry.get("test.record"), job, lambda *a: None)
    assert result.error is None
    assert waits == [RATE_START_DELAY]
