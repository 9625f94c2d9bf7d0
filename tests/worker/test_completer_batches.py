"""When handler threads wake the loop about outcomes: once per batch, not once per job."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue_many, get_job, queries
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import Completer

pytestmark = pytest.mark.django_db(transaction=True)


def test_only_the_first_outcome_of_a_batch_asks_for_the_loop(
    conn: psycopg.Connection[Any],
) -> None:
    """The first outcome starts the batch's clock, which the loop then waits on; those after it
    add to the batch without waking the loop (a wait and a wake-up per job of a busy worker).
    Writing the batch starts a new one."""
    enqueue_many("test.record", [{}] * 4)
    jobs = queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=4, lease_seconds=60, queues=None, job_names=None
    )
    completer = Completer(wake=lambda: None, on_written=lambda written: None)
    assert completer.finished(jobs[0], AttemptResult(took=0.0)) is True
    # The loop looks (its wait asks when the batch is due) and goes back to sleep on it.
    assert completer.due_in(busy=3, now=0.0) is not None
    assert completer.finished(jobs[1], AttemptResult(took=0.0)) is False
    assert completer.finished(jobs[2], AttemptResult(took=0.0)) is False
    completer.write(conn)
    assert [get_job(job.id).status for job in jobs[:3]] == ["completed"] * 3
    # Written: the next outcome is the first of a new batch.
    assert completer.finished(jobs[3], AttemptResult(took=0.0)) is True
    # A claim that carries the waiting outcomes starts a new batch too.
    completer.claim(conn, worker_id="w", limit=1, lease_seconds=60, queues=None, job_names=None)
    assert get_job(jobs[3].id).status == "completed"
    enqueue_many("test.record", [{}])
    [more] = queries.claim_jobs(
        conn.cursor(), worker_id="w", limit=1, lease_seconds=60, queues=None, job_names=None
    )
    assert completer.finished(more, AttemptResult(took=0.0)) is True
