"""A rate-limited job begins as its claim assumed: among the claim's first ``start_now`` jobs in
the worker's order too, and a worker's first claim is counted with a margin wide enough for a
worker far from the database (review of the measured-lag margin)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from tests.reliability.test_flow_processes import ledger  # noqa: F401 (the handlers' ledger)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_worker_runs_a_claim_in_the_order_it_was_taken() -> None:
    """A fair queue's picks take the merge's places in walk order, not by their own priority
    and due time: the claim says each job's place, and the first ``start_now`` in it (those
    free threads start, and the only ones of a rate-limited queue) are those marked started."""
    set_queue_limits("rfair", rate_limit=10, rate_period=1.0, fair=True)
    enqueue("test.record", {"n": "b"}, queue="rfair", partition_key="b")  # the oldest
    enqueue_many("test.record", [{"n": "o1"}, {"n": "o2"}], queue="other")
    enqueue("test.record", {"n": "a"}, queue="rfair", partition_key="a")  # the newest
    with connection.cursor() as cur:
        jobs = claim_jobs(
            cur, worker_id="w", limit=3, lease_seconds=60, queues=None, job_names=None,
            start_now=2,
        )  # fmt: skip
        cur.execute("SELECT id FROM pgjobs_job_queue WHERE locked_at IS NOT NULL")
        started = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT sum(jobs) FROM pgjobs_queue_starts WHERE queue = 'rfair'")
        (counted,) = cur.fetchone()
    assert counted == 1
    [rated] = [job for job in jobs if job.queue == "rfair"]
    assert rated in jobs[:2]  # on a free thread, as counted
    assert {job.id for job in jobs[:2]} == started


def began(prefix: str) -> list[Any]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT started_at FROM flow_ledger WHERE label LIKE %s ORDER BY started_at",
            [prefix + "%"],
        )
        return [row[0] for row in cur.fetchall()]


def test_a_fresh_worker_far_from_the_database_keeps_the_limit_from_its_first_claim(
    make_worker: type[Worker],
    ledger: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every reply it gets takes 150 ms longer (another zone, a proxy): its claims' too, so
    their handlers begin 150 ms after the stamp. It has measured no start yet when its first
    claim is counted, and a near worker claims beside it."""
    from django_pgjobs.queries import claim as claim_module
    from django_pgjobs.worker import start_lag

    read_claim, time_round_trip = claim_module._claimed_jobs, start_lag.round_trip
    further = 0.15

    def far() -> float:
        is_far = threading.current_thread().name == "far"
        if is_far:
            time.sleep(further)
        return further if is_far else 0.0

    def read_far_claim(*args: Any) -> Any:
        far()  # the claim's reply arrives later
        return read_claim(*args)

    def far_round_trip(conn: Any) -> float:
        return time_round_trip(conn) + far()  # and so does any other

    monkeypatch.setattr(claim_module, "_claimed_jobs", read_far_claim)
    monkeypatch.setattr(start_lag, "round_trip", far_round_trip)
    set_queue_limits("rated", rate_limit=2, rate_period=1.0)
    enqueue_many("test.span", [{"label": f"r{i}"} for i in range(6)], queue="rated")
    made = [make_worker(concurrency=2, queues=["rated"]) for _ in range(2)]
    threads = [
        threading.Thread(target=w.run, kwargs={"burst": True}, name=name)
        for w, name in zip(made, ("far", "near"), strict=True)
    ]
    for thread in threads:  # whichever claims first, the other's claims share its windows
        thread.start()
    for thread in threads:
        thread.join(60)
    starts = began("r")
    assert len(starts) == 6
    window = timedelta(seconds=1.0)
    assert max(sum(first <= s < first + window for s in starts) for first in starts) <= 2


def test_a_child_process_s_start_is_measured_where_the_handler_begins(
    make_worker: type[Worker],
) -> None:
    """--pool process: the handler begins in the child, after the pipe (and a new child's
    start, or an import); the lag is measured there, once, by the time the child says it
    began (the slot's thread takes the job earlier: its time would understate the lag)."""
    set_queue_limits("rated", rate_limit=5, rate_period=60.0)
    enqueue("test.record", {"label": "x"}, queue="rated")
    worker = make_worker(concurrency=1, queues=["rated"], pool="process")
    # The child has its own connection, to the settings' database rather than the test's:
    # whatever the handler's outcome, its start is what is measured here.
    ran = worker.run_once()
    assert ran.completed + ran.retried == 1
    [(lag, _)] = worker._claims.start_lag._lags
    assert 0 < lag < 1


def test_a_child_that_died_is_replaced_before_its_slot_takes_another_job(
    make_worker: type[Worker],
) -> None:
    """--pool process: the next job of the slot would otherwise wait for a new child to start,
    and a rate-limited one would begin later than its claim's margin."""
    enqueue("test.exit_process", {"code": 3})
    worker = make_worker(concurrency=1, pool="process")
    ran = worker.run_once()
    assert ran.buried == 1  # its one attempt failed with its child
    children = worker._slots._runner._children  # type: ignore[attr-defined]
    assert len(children) == 1
    assert all(child.alive for child in children)  # a new one, started at once


def test_each_claimed_job_knows_when_its_claim_statement_was_sent() -> None:
    """The measure of a start's lag counts from the statement that claimed it, not from
    before the worker's other statements (its first claim's round trip, a plain claim that
    found flow control and gave way to the flow-controlled one)."""
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue("test.record", queue="rated")
    before = time.monotonic()
    with connection.cursor() as cur:
        [job] = claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=60, queues=None, job_names=None
        )  # a plain statement first (no hint), then the flow-controlled one
    assert job.claim_sent is not None and job.stamp_after is not None
    assert before < job.claim_sent <= time.monotonic()
