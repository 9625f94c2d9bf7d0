"""A claim that committed but whose jobs never reached a thread (its rows could not be read: a
loader's error, memory; or handing them out failed) has jobs running with no handler: the worker
gives them back at its next housekeeping, after the heartbeat, or when it stops, instead of
leaving them to their lease. An error the server answered committed nothing: there is nothing to
give back."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue_many, get_job, prepared, queries
from django_pgjobs.worker import Worker
from django_pgjobs.worker.inflight import InFlight

pytestmark = pytest.mark.django_db(transaction=True)


def rows_unreadable(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The next claim commits, then reading its rows raises ``error`` (once)."""
    real = prepared._PreparingCursor.fetchall

    def fetchall(self: Any) -> Any:
        monkeypatch.setattr(prepared._PreparingCursor, "fetchall", real)
        raise error

    monkeypatch.setattr(prepared._PreparingCursor, "fetchall", fetchall)


def states(ids: list[Any]) -> list[tuple[str, int]]:
    return [(job.status, job.attempt) for job in map(get_job, ids)]


def unread_claim(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch, jobs: int
) -> tuple[Worker, list[Any]]:
    """A worker whose claim of ``jobs`` jobs committed, then reading its rows raised (a
    loader's error: no sqlstate); and the jobs' ids."""
    ids = enqueue_many("test.record", [{}] * jobs)
    worker = make_worker(concurrency=4)
    worker._ensure_connected()
    rows_unreadable(monkeypatch, psycopg.DataError("cannot load a column"))
    with pytest.raises(psycopg.DataError):
        worker._fill_slots()
    return worker, ids


def test_the_jobs_of_a_claim_read_with_an_error_are_given_back_before_the_next_claim(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, ids = unread_claim(make_worker, monkeypatch, 3)
    assert states(ids) == [("running", 1)] * 3  # committed, and no thread has them
    assert len(worker._link.lost_claims) == 1
    worker._housekeep()  # what each turn of the loop does, after connecting
    assert states(ids) == [("pending", 0)] * 3  # no attempt burnt
    assert worker.stats.released == 3 and worker._link.lost_claims == []
    worker.run(burst=True)
    assert states(ids) == [("completed", 1)] * 3


def test_a_worker_stopped_by_an_error_on_its_side_gives_the_claim_back_as_it_closes(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = enqueue_many("test.record", [{}] * 2)
    worker = make_worker(concurrency=4)
    rows_unreadable(monkeypatch, MemoryError())
    with pytest.raises(MemoryError):  # the loop stops on anything but a database error
        worker.run(burst=True)
    assert states(ids) == [("pending", 0)] * 2


def test_an_error_the_server_answered_leaves_nothing_to_give_back(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_many("test.record", [{}] * 2)
    worker = make_worker(concurrency=4)
    conn = worker._ensure_connected()
    real = prepared._PreparingCursor.execute

    def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(prepared._PreparingCursor, "execute", real)
        conn.execute("SELECT 1 / 0")  # a real refusal, before the claim runs

    monkeypatch.setattr(prepared._PreparingCursor, "execute", refused)
    with pytest.raises(psycopg.errors.DivisionByZero):
        worker._fill_slots()
    assert worker._link.lost_claims == []


def test_an_error_after_the_jobs_reached_their_threads_gives_nothing_back(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once handed out, the jobs are the worker's: giving them back would run them twice."""
    ids = enqueue_many("test.record", [{}] * 2)
    worker = make_worker(concurrency=4)
    worker._open()  # the handler threads
    real = worker._slots.dispatch

    def dispatch(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("after the dispatch")

    monkeypatch.setattr(worker._slots, "dispatch", dispatch)
    with pytest.raises(RuntimeError):
        worker._fill_slots()
    assert worker._link.lost_claims == []
    worker._slots.wait_idle()
    worker._flush(force=True)
    assert states(ids) == [("completed", 1)] * 2


def test_a_give_back_that_fails_does_not_hold_up_the_heartbeat(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leases of the jobs in the worker's threads are renewed first: a give-back that kept
    failing before the heartbeat would let them expire, and another worker run them again."""
    worker, ids = unread_claim(make_worker, monkeypatch, 2)
    heartbeats: list[object] = []
    real_heartbeat = queries.heartbeat

    def heartbeat(*args: Any, **kwargs: Any) -> Any:
        heartbeats.append(None)
        return real_heartbeat(*args, **kwargs)

    def refused(cur: Any, *, lease_tokens: Any) -> int:
        cur.execute("SELECT 1 / 0")  # a real refusal, each time
        return 0

    monkeypatch.setattr(queries, "heartbeat", heartbeat)
    monkeypatch.setattr(queries, "release_lost_claims", refused)
    with pytest.raises(psycopg.errors.DivisionByZero):
        worker._housekeep(force=True)
    assert len(heartbeats) == 1 and len(worker._link.lost_claims) == 1  # kept for the next try
    monkeypatch.undo()
    worker._housekeep()
    assert states(ids) == [("pending", 0)] * 2


def test_a_dispatch_that_raises_part_way_gives_the_whole_claim_back(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No job of the claim reached a thread: none stays held by the worker, all go back."""
    ids = enqueue_many("test.record", [{}] * 3)
    worker = make_worker(concurrency=4)
    worker._open()
    real = InFlight.of
    made: list[object] = []

    def of(*args: Any, **kwargs: Any) -> Any:
        if made:
            raise RuntimeError("part-way through the dispatch")
        made.append(None)
        return real(*args, **kwargs)

    monkeypatch.setattr(InFlight, "of", of)
    with pytest.raises(RuntimeError):
        worker._fill_slots()
    assert worker._inflight == {} and len(worker._link.lost_claims) == 1
    worker.close()
    assert states(ids) == [("pending", 0)] * 3
