"""Jobs claimed ahead (prefetch) hold a short lease until they start, are given back when no
thread takes them soon, and are never started once that lease may have run out."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs import enqueue, enqueue_many, get_job, queries
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker, ahead
from tests.helpers import db_now, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {"worker_id": "w", "lease_seconds": 60, "queues": None, "job_names": None}
WORKER = {"id": "w", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": 1,
          "instance_token": "6a1f0d4e-8d57-4d0c-9a8e-5d1c8a0b7f11"}  # fmt: skip


def lease_left(job_id: Any) -> timedelta:
    expires = get_job(job_id).lease_expires_at
    assert expires is not None
    return expires - db_now()


@contextlib.contextmanager
def claimed(
    make_worker: type[Worker], *, limit: int, start_now: int
) -> Iterator[tuple[Worker, psycopg.Connection[Any], list[queries.ClaimedJob]]]:
    """A worker of one thread, opened but not looping, and a claim of ``limit`` jobs for it, of
    which ``start_now`` start at once and the rest are claimed ahead."""
    worker = make_worker(concurrency=1)
    worker._open()
    try:
        conn = worker._ensure_connected()
        with connection.cursor() as cur:
            jobs = queries.claim_jobs(
                cur, **CLAIM, limit=limit, start_now=start_now, ahead_lease_seconds=5
            )
        yield worker, conn, jobs
    finally:
        worker.close()


def test_a_job_claimed_ahead_holds_the_short_lease_until_its_start_is_recorded() -> None:
    ids = enqueue_many("test.record", [{}] * 3)
    with connection.cursor() as cur:
        jobs = queries.claim_jobs(cur, **CLAIM, limit=3, start_now=1, ahead_lease_seconds=5)
    now, later = jobs[0], jobs[1:]
    assert lease_left(now.id) > timedelta(seconds=50)
    assert all(lease_left(job.id) < timedelta(seconds=6) for job in later)
    assert {job.id for job in jobs} == set(ids)
    # The heartbeat records the start of one of them: whole lease; the other keeps the short one.
    started, waiting = later
    with connection.cursor() as cur:
        queries.heartbeat(
            cur,
            worker=WORKER,
            tokens=[job.token for job in jobs],
            lease_seconds=60,
            started=[(started.token, 0.5)],
            ahead_lease_seconds=5,
        )
    assert lease_left(started.id) > timedelta(seconds=50)
    assert get_job(started.id).locked_at is not None
    assert lease_left(waiting.id) < timedelta(seconds=6)
    assert get_job(waiting.id).locked_at is None


def test_jobs_no_thread_takes_for_half_the_short_lease_are_given_back(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    release = threading.Event()

    def hold(payload: dict[str, Any]) -> None:
        release.wait(30)  # the work the other jobs wait behind: it ends when the test says

    register_handler("test.hold", hold)
    first = enqueue("test.hold")
    behind = enqueue_many("test.record", [{"label": str(n)} for n in range(3)])
    with claimed(make_worker, limit=4, start_now=1) as (worker, conn, jobs):
        try:
            assert jobs[0].id == first
            # Claimed as if the claim had gone out long ago: the three behind the first have
            # waited for a thread for more than half the short lease.
            worker._slots.dispatch(jobs, sent_at=time.monotonic())
            for entry in worker._inflight.values():
                entry.started_at -= ahead.ahead_lease()
            head = worker._inflight[jobs[0].token]
            wait_for(lambda: head.started, what="the first job's handler to start")
            assert worker._slots.give_back_waiting(conn) == 3
            assert get_job(first).status == "running"
        finally:
            release.set()
    for job_id in behind:
        job = get_job(job_id)
        assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)


def test_jobs_refused_at_their_start_go_back_at_once_and_teach_the_pace_nothing(
    make_worker: type[Worker],
) -> None:
    """Claimed more than half a short lease ago (the loop was late): no thread starts them, the
    slot is free again at once, and the loop's next give-back returns them, counted from the
    claim (not from when they reached the pool), their attempts undone."""
    ids = enqueue_many("test.record", [{"label": "late"}] * 3)
    with claimed(make_worker, limit=3, start_now=0) as (worker, conn, jobs):
        sent_at = time.monotonic() - ahead.ahead_lease() / 2 - 0.1
        worker._slots.dispatch(jobs, sent_at=sent_at)
        entries = list(worker._inflight.values())
        wait_for(lambda: all(e.refused for e in entries), what="every start to be refused")
        assert worker._slots.busy == 0
        # Claimed ahead and still held: not yet back, and never started.
        assert all(get_job(job_id).status == "running" for job_id in ids)
        assert worker._slots.give_back_waiting(conn) == 3
        assert worker._slots.busy == 0 and not worker._inflight
        assert worker._pacing.average_run is None  # a refusal is no run to size prefetch by
    assert not Run.objects.filter(label="late").exists()
    for job_id in ids:
        job = get_job(job_id)
        assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)


def test_a_give_back_that_fails_forgets_its_jobs_once(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release fails (the connection broke): the jobs are forgotten anyway, so their short
    leases run out and the rescue returns them; a later give-back neither finds them again nor
    counts their slots free a second time."""
    enqueue_many("test.record", [{"label": "late"}] * 2)
    with claimed(make_worker, limit=2, start_now=0) as (worker, conn, jobs):
        worker._slots.dispatch(jobs, sent_at=time.monotonic() - ahead.ahead_lease())
        wait_for(lambda: worker._slots.busy == 0, what="the starts to be refused")

        def broken(*args: Any, **kwargs: Any) -> int:
            raise psycopg.OperationalError("the connection broke")

        monkeypatch.setattr(queries, "release_jobs", broken)
        with pytest.raises(psycopg.OperationalError):
            worker._slots.give_back_waiting(conn)
        monkeypatch.undo()
        assert not worker._inflight
        assert worker._slots.give_back_waiting(conn) == 0
        assert worker._slots.busy == 0


def test_unit_renewal_comes_before_half_of_any_held_lease_is_gone() -> None:
    def held(until: float, granted: float, *, timed_out: bool = False, lost: bool = False) -> Any:
        attempt = SimpleNamespace(is_cancelled=lambda: lost)
        return SimpleNamespace(
            lease_until=until, lease_granted=granted, timed_out=timed_out, attempt=attempt
        )

    assert ahead.renew_by([held(100.0, 60.0), held(10.0, 5.0)]) == 7.5
    assert ahead.renew_by([]) is None
    # Nothing to renew for an attempt that timed out or no longer holds its job (cancelled,
    # taken over): its lease time, never renewed again, made every turn a heartbeat.
    gone = [held(1.0, 5.0, timed_out=True), held(2.0, 5.0, lost=True)]
    assert ahead.renew_by([held(100.0, 60.0), *gone]) == 70.0


def test_a_worker_claims_ahead_and_completes_everything(make_worker: type[Worker]) -> None:
    """The whole path, prefetch on: every job runs once and its start is recorded."""
    ids = enqueue_many("test.record", [{"label": str(n)} for n in range(200)])
    make_worker(concurrency=2).run(burst=True)
    assert Run.objects.count() == 200
    assert Job.objects.filter(id__in=ids, status="completed", attempt=1).count() == 200
