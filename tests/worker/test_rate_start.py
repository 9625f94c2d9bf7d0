"""A rate-limited queue's starts are counted in the ledger no earlier than its handlers begin: the
claim stamps them a margin after its stamp, the claiming worker's measured lag or a floor
(queries.rate_starts, worker.start_lag); and they are never claimed ahead of a free thread."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.models import QueueStart
from django_pgjobs.queries.base import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.worker.start_lag import FIRST_MARGIN, HEADROOM, MAX_MARGIN, StartLag
from tests.helpers import wait_for
from tests.reliability.test_flow_processes import ledger  # noqa: F401 (the handlers' ledger)

pytestmark = pytest.mark.django_db(transaction=True)


def database_clock() -> Any:
    with connection.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]


def claim(limit: int = 10, **kw: Any) -> Any:
    with connection.cursor() as cur:
        return claim_jobs(
            cur, worker_id="w", limit=limit, lease_seconds=60, queues=None, job_names=None, **kw
        )


@pytest.mark.parametrize(("period", "floor"), [(1.0, 0.02), (60.0, 0.05)])
def test_without_a_measured_lag_the_ledger_counts_starts_the_floor_after_the_stamp(
    period: float, floor: float
) -> None:
    """2% of the period, at most 50 ms."""
    set_queue_limits("rated", rate_limit=5, rate_period=period)
    enqueue_many("test.record", [{}] * 3, queue="rated")
    before = database_clock()
    assert len(claim()) == 3
    after = database_clock()
    [start] = QueueStart.objects.filter(queue="rated")
    assert start.jobs == 3
    shift = timedelta(seconds=floor)
    assert before + shift <= start.started_at <= after + shift


def test_a_worker_s_lag_longer_than_the_floor_is_the_margin() -> None:
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue("test.record", queue="rated")
    before = database_clock()
    assert len(claim(start_margin=0.3)) == 1
    after = database_clock()
    [start] = QueueStart.objects.filter(queue="rated")
    shift = timedelta(seconds=0.3)
    assert before + shift <= start.started_at <= after + shift


def test_only_rate_limited_jobs_say_when_their_claim_counted_them() -> None:
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    set_queue_limits("slots", concurrency=5)
    enqueue("test.record", queue="rated")
    enqueue("test.record", queue="slots")
    enqueue("test.record", queue="open")
    sent = time.monotonic()
    jobs = {job.queue: job for job in claim()}
    took = time.monotonic() - sent
    assert jobs["slots"].stamp_after is None
    assert jobs["open"].stamp_after is None
    stamp_after = jobs["rated"].stamp_after
    assert stamp_after is not None
    assert 0 <= stamp_after <= took


def test_a_plain_claim_has_no_stamp() -> None:
    enqueue("test.record")
    [job] = claim()
    assert job.stamp_after is None


def test_a_rate_limited_job_is_never_claimed_ahead_behind_other_jobs() -> None:
    """One free thread: the two better jobs of another queue come first in the claim, and the
    rate-limited one, which would have waited behind them, is left for a later claim (its
    start is never counted before a thread can begin it)."""
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue_many("test.record", [{}] * 2, queue="open", priority=10)
    rated = enqueue("test.record", queue="rated")
    assert {job.queue for job in claim(limit=3, start_now=1)} == {"open"}
    assert not QueueStart.objects.exists()
    assert [job.id for job in claim(limit=3, start_now=1)] == [rated]


def test_rate_limited_queues_share_the_free_threads() -> None:
    set_queue_limits("a", rate_limit=5, rate_period=1.0)
    set_queue_limits("b", rate_limit=5, rate_period=1.0)
    enqueue_many("test.record", [{}] * 3, queue="a")
    enqueue_many("test.record", [{}] * 3, queue="b")
    assert len(claim(limit=6, start_now=2)) == 2
    assert sum(s.jobs for s in QueueStart.objects.all()) == 2


def claimed(*, sent: float | None, stamp_after: float | None) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(), job_name="test.record", payload={}, queue="rated", priority=0,
        attempt=1, max_attempts=3, scheduled_for=timezone.now(), lease_token=uuid.uuid4(),
        stamp_after=stamp_after, claim_sent=sent,
    )  # fmt: skip


def test_the_lag_is_the_largest_recent_one_with_headroom() -> None:
    lag = StartLag()
    assert lag.margin() == FIRST_MARGIN  # nothing measured yet (nor the round trip)
    lag.began(claimed(sent=10.0, stamp_after=0.004), began=10.010)
    lag.began(claimed(sent=20.0, stamp_after=0.001), began=20.030)
    lag.began(claimed(sent=30.0, stamp_after=0.002), began=30.004)
    lag.began(claimed(sent=40.0, stamp_after=None), began=41.0)  # not rate-limited: not a lag
    assert lag.margin() == pytest.approx(0.029 * HEADROOM)


def test_one_claim_s_lag_past_the_cap_is_not_the_margin_and_two_claims_are() -> None:
    """One stall (however many jobs of its claim it held up) costs the next claims no more than
    MAX_MARGIN; another claim's says the worker's starts lag that much, and the margin covers
    them (else each would be given back for ever)."""
    lag = StartLag()
    lag.began(claimed(sent=10.0, stamp_after=0.0), began=10.010)
    stalled = claimed(sent=20.0, stamp_after=0.0)
    lag.began(stalled, began=21.5)
    lag.began(stalled, began=21.6)  # its claim's other job, held up by the same stall
    assert lag.margin() == MAX_MARGIN
    lag.began(claimed(sent=30.0, stamp_after=0.0), began=31.2)
    assert lag.margin() == pytest.approx(1.2 * HEADROOM)  # the other claim's: 1.6 was one stall


def test_the_worker_measures_its_lag_and_counts_starts_no_earlier_than_they_begin(
    make_worker: type[Worker],
    ledger: None,  # noqa: F811
) -> None:
    """The handlers write when they began by their own clock (test.span; this machine's, the
    server's too); each claim's ledger row is at or after the starts it counts."""
    set_queue_limits("rated", rate_limit=3, rate_period=60.0)
    enqueue_many("test.span", [{"label": str(n)} for n in range(3)], queue="rated")
    worker = make_worker(concurrency=3, queues=["rated"])
    assert worker.run_once().completed == 3
    [start] = QueueStart.objects.filter(queue="rated")
    with connection.cursor() as cur:
        cur.execute("SELECT max(started_at) FROM flow_ledger")
        (last_began,) = cur.fetchone()
    assert last_began <= start.started_at
    # The worker measured its starts: the next claim passes that, not the first guess.
    lag = worker._claims.start_lag
    assert lag._round_trip is not None  # timed before the first claim
    assert lag.margin() != FIRST_MARGIN + 2 * lag._round_trip
    assert 0 < lag.margin() < 1


def test_a_rate_limited_queue_is_served_while_another_queue_has_a_backlog(
    make_worker: type[Worker],
    ledger: None,  # noqa: F811
) -> None:
    """A worker claims again while half the jobs it claimed ahead still wait for a thread; such
    a claim has no free thread to start a rate-limited job on, so under flow control it waits
    for one, as before: claiming while every thread was busy took only the other queue's
    backlog, and the rate-limited jobs (of a higher priority, even) waited for all of it."""
    set_queue_limits("rated", rate_limit=1000, rate_period=1.0)
    enqueue_many("test.span", [{"label": f"plain {n:04d}"} for n in range(3000)], queue="plain")
    worker = make_worker(concurrency=2, queues=["plain", "rated"])
    runner = threading.Thread(target=worker.run, kwargs={"burst": True})
    runner.start()
    try:
        wait_for(lambda: ledger_count() >= 100, what="the backlog under way")
        jobs = [{"label": f"rated {n}"} for n in range(3)]
        enqueue_many("test.span", jobs, queue="rated", priority=10)
    finally:
        runner.join(120)
    assert not runner.is_alive()
    with connection.cursor() as cur:
        cur.execute("SELECT label FROM flow_ledger ORDER BY started_at")
        labels = [row[0] for row in cur.fetchall()]
    assert len(labels) == 3003
    # Started behind what was claimed ahead (at most PREFETCH) of the backlog, not after it.
    assert max(labels.index(f"rated {n}") for n in range(3)) < 1500, labels.index("rated 0")


def ledger_count() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM flow_ledger")
        return int(cur.fetchone()[0])
