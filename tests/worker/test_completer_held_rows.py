"""The completer and a job row another transaction holds: a success whose write skipped the row
is written again later, and never taken for a failure."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue, enqueue_many, get_job, queries
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import HELD_ROW_FIRST, Completer
from django_pgjobs.worker.outcomes import Outcome, Written
from django_pgjobs.worker.progress_reports import HELD_RETRY
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_held_success_that_comes_due_during_a_write_waits_for_the_next_one(
    clock: list[float], conn: psycopg.Connection[Any], other_connection: psycopg.Connection[Any]
) -> None:
    """A success held back (its row was locked) whose retry time passed while the write of other
    successes ran was handed to the writer of failures, whose ``assert error is not None``
    ended the worker (seen with three workers on one queue, tests/hosts)."""
    enqueue_many("test.record", [{}, {}])
    first, second = queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=2, lease_seconds=60, queues=None, job_names=None
    )
    written: list[Written] = []

    def on_written(outcome: Written) -> None:
        written.append(outcome)
        clock[0] += HELD_ROW_FIRST * 2  # the write took long: the held success is due again now

    completer = Completer(wake=lambda: None, on_written=on_written)
    with other_connection.transaction():
        lock = "SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE"
        other_connection.execute(lock, [second.id])
        completer.finished(second, AttemptResult(took=0.0))
        completer.write(conn)  # skipped: held back, due again after HELD_ROW_FIRST
    assert get_job(second.id).status == "running"

    clock[0] += HELD_ROW_FIRST / 2  # not yet due
    completer.finished(first, AttemptResult(took=0.0))
    completer.write(conn)
    assert [(w.job.id, w.outcome) for w in written] == [(first.id, Outcome.COMPLETED)]
    completer.write(conn)
    assert written[-1].job.id == second.id and written[-1].outcome is Outcome.COMPLETED
    assert get_job(second.id).status == "completed"


def test_a_progress_report_on_a_held_row_is_kept_without_waiting_for_it(
    clock: list[float], conn: psycopg.Connection[Any], other_connection: psycopg.Connection[Any]
) -> None:
    """The loop writes progress on its own connection: waiting there for an application's lock
    stopped its heartbeats (and a job of the worker ran twice, as reviewed). The report is
    kept and written once the row is free; a newer one replaces it meanwhile."""
    enqueue_many("test.record", [{}])
    (job,) = queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=1, lease_seconds=60, queues=None, job_names=None
    )
    conn.execute("SET lock_timeout = '5s'")  # a wait would end in an error, and be seen
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    with other_connection.transaction():
        lock = "SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE"
        other_connection.execute(lock, [job.id])
        completer.progressed(job, 40, "first")
        completer.progressed(job, 50, "latest")
        assert completer.due_in(busy=1, now=clock[0]) == 0.0
        completer.write(conn)
        assert completer.due_in(busy=1, now=clock[0]) == pytest.approx(HELD_RETRY)
    assert get_job(job.id).progress is None
    clock[0] += HELD_RETRY
    assert completer.due_in(busy=1, now=clock[0]) == 0.0
    completer.write(conn)
    reported = get_job(job.id)
    assert (reported.progress, reported.progress_message) == (50, "latest")
    assert not completer.pending()


def test_a_claim_whose_check_of_unmatched_successes_fails_still_hands_out_its_jobs(
    clock: list[float],
    conn: psycopg.Connection[Any],
    other_connection: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim that carried the completions committed: its jobs are handed out and the
    written success is handed on once, though the read about the unmatched one failed (the
    claimed jobs were dropped, and the written success was written again and said lost)."""
    enqueue_many("test.record", [{}, {}, {}])
    done, held = queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=2, lease_seconds=60, queues=None, job_names=None
    )
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(done, AttemptResult(took=0.0))
    completer.finished(held, AttemptResult(took=0.0))

    def broken(*args: Any, **kwargs: Any) -> list[Any]:
        raise psycopg.errors.QueryCanceled("canceling statement due to user request")

    with other_connection.transaction():
        lock = "SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE"
        other_connection.execute(lock, [held.id])
        monkeypatch.setattr(queries, "no_longer_held", broken)
        jobs = completer.claim(
            conn, worker_id="w", limit=5, lease_seconds=60, queues=None, job_names=None
        )
        monkeypatch.undo()
    assert len(jobs) == 1
    assert [(w.job.id, w.outcome) for w in written] == [(done.id, Outcome.COMPLETED)]
    completer.write(conn)  # the held one, its row free now
    assert [(w.job.id, w.outcome) for w in written][1:] == [(held.id, Outcome.COMPLETED)]


CLAIM: dict[str, Any] = {"worker_id": "w", "limit": 1, "lease_seconds": 60, "queues": None,
                         "job_names": None}  # fmt: skip


def test_an_unmatched_success_in_doubt_stays_buffered_when_its_read_fails(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its earlier write lost its reply and did not commit (an application held the row): if
    the read that would tell fails, it stays buffered and in doubt; it was forgotten, the job's
    lease renewed for ever (as re-reviewed)."""
    enqueue("test.record")
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    enqueue("test.record")  # what the next claim takes
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer._doubt._tokens.add(job.token)  # its first write lost its reply (and did not commit)
    completer.finished(job, AttemptResult(took=0.0))
    app = second_connection(autocommit=False)
    try:
        app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [job.id])

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        # The read after the claim fails (the connection broke between the two statements).
        monkeypatch.setattr(queries, "no_longer_held", broken)
        claimed = completer.claim(conn, **CLAIM)
        assert len(claimed) == 1  # the claim's jobs are kept
        monkeypatch.undo()
        assert get_job(job.id).status == "running"  # nothing was written
        assert completer.pending(), "the success was forgotten: neither written nor buffered"
    finally:
        app.rollback()
        app.close()
