"""A rate-limited job's handler begins by the time the ledger counted its start, or not at all
(worker.start_lag.begins_too_late): a start later than that could put one start too many in a
window. Such a job goes back to the queue, its attempt undone, and the lag it would have had
raises the worker's margin. Real claims, real workers, real child processes; the lag is made
the way it comes in production (a thread that runs late, a child importing a slow module)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, get_job, queries
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import QueueStart
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker, attempt, children
from django_pgjobs.worker.inflight import InFlight
from django_pgjobs.worker.slots import Slots
from django_pgjobs.worker.start_lag import HEADROOM
from tests.reliability.test_flow_processes import ledger, spans  # noqa: F401 (the ledger)

pytestmark = pytest.mark.django_db(transaction=True)

LATE = 0.3  # seconds a handler thread is held back before it looks at its job


class _Ahead:
    """The ``time`` module with ``monotonic()`` ``by`` seconds ahead: a thread that ran late."""

    def __init__(self, by: float) -> None:
        self.by = by

    def monotonic(self) -> float:
        return time.monotonic() + self.by

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def claim(**kw: Any) -> list[ClaimedJob]:
    with connection.cursor() as cur:
        return claim_jobs(
            cur, worker_id="w", limit=10, lease_seconds=60, queues=None, job_names=None, **kw
        )


@pytest.mark.parametrize(("margin", "counted"), [(0.3, 0.3), (None, 0.02)])
def test_a_rate_limited_job_says_by_when_its_handler_must_begin(
    margin: float | None, counted: float
) -> None:
    """Its claim's stamp plus the margin the ledger counted it with (the worker's, or the floor:
    2% of the period), on the worker's clock from when the claim was sent."""
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    enqueue("test.record", queue="rated")
    enqueue("test.record", queue="open")
    jobs = {job.queue: job for job in claim(start_margin=margin)}
    rated = jobs["rated"]
    assert rated.begin_by is not None and rated.claim_sent is not None
    assert rated.stamp_after is not None
    assert rated.begin_by - rated.claim_sent == pytest.approx(rated.stamp_after + counted)
    assert jobs["open"].begin_by is None


def test_a_handler_thread_that_would_begin_too_late_does_not_and_its_job_runs_later(
    make_worker: type[Worker],
    ledger: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_queue_limits("rated", rate_limit=5, rate_period=1.0)
    job_id = enqueue("test.span", {"label": "late"}, queue="rated")
    execute, held_back = Slots._execute, list[uuid.UUID]()

    def late_thread(self: Slots, entry: InFlight) -> None:
        if held_back:
            execute(self, entry)
            return
        # The first attempt's thread runs late (descheduled, say): its clock reads LATE ahead
        # when it looks at its job, with no real wait.
        held_back.append(entry.job.id)
        with monkeypatch.context() as clock:
            clock.setattr(attempt, "time", _Ahead(LATE))
            execute(self, entry)

    monkeypatch.setattr(Slots, "_execute", late_thread)
    worker = make_worker(concurrency=1, queues=["rated"])
    first = worker.run_once()
    assert (first.completed, first.released, spans()) == (0, 1, [])  # it did not begin
    assert "it would have begun" in caplog.text
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("pending", 0)  # back, its attempt undone
    # ... and its start out of the ledger: it never happened.
    assert not QueueStart.objects.exists()
    # Its lag is measured all the same: the next claims' margin covers it.
    assert worker._claims.start_lag.margin() >= LATE * HEADROOM
    second = worker.run_once()  # claims it again, and it begins in time
    assert (second.released, second.completed) == (0, 1)
    assert [row[0] for row in spans()] == ["late"]
    [counted] = QueueStart.objects.all()  # one start, counted once
    assert counted.jobs == 1
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 1)  # the refused attempt not counted


def test_a_child_process_that_would_begin_too_late_does_not() -> None:
    """--pool process: the child itself looks, as it is about to begin the handler (the time
    is the machine's monotonic clock, the same in every process). Said before anything runs:
    the worker is told when it would have begun, and no progress (nor start) comes."""
    said: queue.Queue[uuid.UUID] = queue.Queue()
    runner = children.ChildRunner(
        name="pgjobs-test", progressed=lambda job, value, text: said.put(job.id)
    )

    def attempt(begin_by: float) -> InFlight:
        job = ClaimedJob(
            id=uuid.uuid4(), job_name="test.progress", payload={"steps": [[1, "ran"]]},
            queue="rated", priority=0, attempt=1, max_attempts=1, scheduled_for=timezone.now(),
            lease_token=uuid.uuid4(), begin_by=begin_by,
        )  # fmt: skip
        return InFlight.of(job, registry.get(job.job_name), stopping=threading.Event())

    began: list[tuple[InFlight, float]] = []

    def tell(entry: InFlight, at: float) -> None:
        began.append((entry, at))

    with ThreadPoolExecutor(1) as slot:
        try:
            runner.open(1)  # a child, set up before any job is sent
            late = attempt(time.monotonic())  # past by the time the child reads it
            result = slot.submit(runner, late, tell).result(timeout=30)
            assert result.too_late is not None
            assert late.job.begin_by is not None and result.too_late > late.job.begin_by
            assert (began, said.empty()) == ([], True)
            sent = time.monotonic()
            on_time = attempt(sent + 60)
            result = slot.submit(runner, on_time, tell).result(timeout=30)
            assert (result.error, result.too_late) == (None, None)
            assert said.get_nowait() == on_time.job.id
            [(entry, at)] = began  # the child's own time, after the slot thread sent the job
            assert entry is on_time
            assert sent < at < time.monotonic()
        finally:
            slot.submit(runner.thread_exit).result(timeout=30)
            runner.close()


def test_a_child_slow_to_import_its_handler_does_not_begin_it_late(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """The child imports the module the worker names for a handler none of its apps' modules
    registered; that import is the lag. The job goes back, and its next claim allows for it."""
    from tests.testapp import slow_import  # registered here, in the worker's process

    set_queue_limits("rated", rate_limit=5, rate_period=60.0)
    job_id = enqueue("test.slow_import", queue="rated")
    worker = make_worker(concurrency=1, queues=["rated"], pool="process")
    first = worker.run_once()
    assert (first.completed, first.released) == (0, 1)
    assert "it would have begun" in caplog.text
    assert not QueueStart.objects.exists()
    assert worker._claims.start_lag.margin() >= slow_import.IMPORT_SECONDS * HEADROOM
    second = worker.run_once()  # the child has the module now
    assert (second.released, second.completed) == (0, 1)
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 1)


@pytest.mark.parametrize("per_key", [False, True])
def test_a_job_given_back_unstarted_takes_its_start_out_of_the_ledger(per_key: bool) -> None:
    """Its claim's row loses that job (and goes when it had no other): the start never
    happened. A job not given back (another attempt holds it) keeps its start counted."""
    if per_key:
        set_queue_limits("rated", partition_rate_limit=5, rate_period=60.0)
    else:
        set_queue_limits("rated", rate_limit=5, rate_period=60.0)
    enqueue_many("test.record", [{}] * 3, queue="rated", partition_key="k")
    enqueue("test.record", queue="rated", partition_key="alone")
    jobs = claim()
    assert len(jobs) == 4
    keyed = [job for job in jobs if job.partition_key == "k"]
    [alone] = [job for job in jobs if job.partition_key == "alone"]

    def starts() -> list[tuple[str | None, int]]:
        rows = QueueStart.objects.order_by("partition_key")
        return [(row.partition_key, row.jobs) for row in rows]

    assert starts() == ([("alone", 1), ("k", 3)] if per_key else [(None, 4)])
    stale = (keyed[2].id, uuid.uuid4())  # not this attempt's: nothing given back, nor uncounted
    given = [keyed[0], keyed[1], alone]
    with connection.cursor() as cur:
        assert (
            queries.release_jobs(
                cur,
                tokens=[job.token for job in given] + [stale],
                counted=[job.counted_at for job in given] + [keyed[2].counted_at],
            )
            == 3
        )
    assert starts() == ([("k", 1)] if per_key else [(None, 1)])
