"""The completer against an application's locks: a failure whose burial meets a lock on its
workflow gives up after lock_waits.LOCK_TIMEOUT (nothing session-wide set) and stays buffered,
and an outcome in doubt whose row is held is kept, not dropped as lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue, get_job, queries, start_workflow
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import HELD_ROW_FIRST, LOCK_WAIT_RETRY, Completer
from django_pgjobs.worker.outcomes import Outcome, Written
from tests.helpers import second_connection, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {"worker_id": "w", "limit": 1, "lease_seconds": 60, "queues": None,
                         "job_names": None}  # fmt: skip


@pytest.fixture
def loop() -> Iterator[psycopg.Connection[Any]]:
    """The worker loop's connection: autocommit, no session settings."""
    made = second_connection()
    yield made
    made.close()


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    made = second_connection(autocommit=False)
    yield made
    made.close()


def test_a_burial_that_meets_a_lock_on_its_workflow_gives_up_and_the_loop_goes_on(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    """It stays buffered and is tried again after LOCK_WAIT_RETRY; the outcomes beside it are
    written (the loop's turn ended with the error before, nothing claimed or completed while
    the lock was held, as reviewed)."""
    handle = start_workflow(wf.greet, "x")
    Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(max_attempts=1)
    (job,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    enqueue("test.record")
    (other,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(job, AttemptResult(took=0.1, error="boom"))
    completer.finished(other, AttemptResult(took=0.1))
    # WorkflowHandle.cancel() in an application's atomic() locks the workflow's row.
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE",
        [handle.workflow_id],
    )
    # A wait for the application's transaction would end here, failing the test.
    loop.execute("SET statement_timeout = '20s'")
    completer.write(loop)
    assert [(w.job.id, w.outcome) for w in written] == [(other.id, Outcome.COMPLETED)]
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)
    assert get_job(job.id).status == "running"
    assert loop.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
    app.rollback()
    clock[0] += LOCK_WAIT_RETRY
    completer.write(loop)
    assert written[-1].outcome is Outcome.BURIED
    assert FailedJob.objects.filter(id=job.id).exists()


def test_a_last_failure_skips_a_row_a_foreign_key_shares_instead_of_waiting(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    """Its row is locked as for the delete that moves it to the dead letters: a foreign key's
    FOR KEY SHARE makes it skip the row and try again shortly, where taking a weaker lock and
    upgrading it to delete waited lock_waits.LOCK_TIMEOUT on every try (as reviewed)."""
    enqueue("test.record", max_attempts=1)
    (job,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    completer.finished(job, AttemptResult(took=0.1, error="boom"))
    app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR KEY SHARE", [job.id])
    completer.write(loop)
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(HELD_ROW_FIRST)
    assert get_job(job.id).status == "running"
    app.rollback()
    clock[0] += HELD_ROW_FIRST
    completer.write(loop)
    assert FailedJob.objects.filter(id=job.id).exists()


@pytest.mark.parametrize("succeeded", [True, False], ids=["success", "failure"])
def test_an_outcome_in_doubt_whose_row_is_held_is_kept_not_lost(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any], succeeded: bool
) -> None:
    enqueue("test.record")
    (job,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    # As after a write whose connection broke: it may or may not have committed.
    completer._doubt._tokens.add(job.token)
    result = AttemptResult(took=0.0) if succeeded else AttemptResult(took=0.0, error="boom")
    completer.finished(job, result)
    app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [job.id])
    completer.write(loop)
    assert written == [] and completer.pending()  # still ours: kept to be written again
    assert get_job(job.id).status == "running"
    app.rollback()
    for done in completer._done:  # its retry is due now, not after the backoff
        object.__setattr__(done, "retry_at", 0.0)
    completer.write(loop)
    assert [w.outcome for w in written] == [Outcome.COMPLETED if succeeded else Outcome.RETRIED]


def test_one_write_waits_for_one_lock_at_most(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    """Burials waited one after another in one write, 2 s each: three held workflows held the
    loop 6 s, long enough for another worker to take its jobs (as re-reviewed). The first
    that gives up ends the write's failures; the rest are written next time."""
    handles = [start_workflow(wf.greet, name) for name in ("a", "b")]
    for handle in handles:
        Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(max_attempts=1)
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    for job in queries.claim_jobs(loop.cursor(), **{**CLAIM, "limit": 2}):
        completer.finished(job, AttemptResult(took=0.1, error="boom"))
    for handle in handles:
        lock = "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE"
        app.execute(lock, [handle.workflow_id])
    completer.write(loop)
    assert completer.due_in(busy=0, now=clock[0]) == 0.0  # the other, not tried yet
    completer.write(loop)
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)


def test_a_spared_last_failure_skips_a_row_a_foreign_key_shares(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    """An attempt that lost its connection, on its last attempt with its spare used already, is
    buried too: its row is locked as for that delete, skipped while a foreign key shares it."""
    job_id = enqueue("test.record", max_attempts=1)
    Job.objects.filter(id=job_id).update(attempt_spared=True)
    (job,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    app.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR KEY SHARE", [job.id])
    assert not completer.fail(loop, job, "the connection was lost", delay=0, spare=True)
    app.rollback()
    assert completer.fail(loop, job, "the connection was lost", delay=0, spare=True)
    assert FailedJob.objects.filter(id=job_id).exists()
