"""The completer writes the workflows its successes ended with their completions: one whose
wake-up meets an application's lock is kept for LOCK_WAIT_RETRY while the successes beside it are
written, and holds back no other ending after that; one whose workflow was cancelled meanwhile
completes its job and sends no ``workflow_finished`` (nor after a lost reply); no lock_timeout
outlives its statement; a batch's kept values are split past a byte budget."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest

from django_pgjobs import cancel_workflow, enqueue, get_job, queries, signals, start_workflow
from django_pgjobs.jobs.context import AttemptNotes, WorkflowEnding
from django_pgjobs.models import WorkflowExecution
from django_pgjobs.worker.after_write import call_after_write
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import LOCK_WAIT_RETRY, Completer
from django_pgjobs.worker.finished import BATCH_BYTES, Done, within_bytes
from django_pgjobs.worker.outcomes import Outcome, Written
from django_pgjobs.workflows import lifecycle
from tests.helpers import second_connection
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {"worker_id": "w", "limit": 1, "lease_seconds": 60, "queues": None,
                         "job_names": None}  # fmt: skip


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    made = second_connection(autocommit=False)
    yield made
    made.close()


def ended(workflow_id: str) -> AttemptResult:
    text = json.dumps({"id": workflow_id, "s": "completed", "o": "done"})
    return AttemptResult(
        took=0.1, notes=AttemptNotes(workflow_ending=WorkflowEnding(workflow_id, text))
    )


def waiting_for(conn: psycopg.Connection[Any], workflow_id: str) -> str:
    """Another workflow, its job claimed, waiting (as a step records it) for ``workflow_id``'s
    result."""
    waiter = start_workflow(wf.greet, "waiter").workflow_id
    queries.claim_jobs(conn.cursor(), **CLAIM)
    conn.execute(
        "INSERT INTO pgjobs_workflow_steps (workflow_id, step_index, step_name, status, "
        "wait_key) VALUES (%s, 0, 'pgjobs.result', 'waiting', %s)",
        [waiter, f"result:{workflow_id}"],
    )
    return waiter


def status(workflow_id: str) -> str:
    return WorkflowExecution.objects.get(workflow_id=workflow_id).status


def test_an_ending_whose_wake_up_meets_a_lock_is_kept_and_the_others_are_written(
    conn: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    waiter = waiting_for(conn, workflow_id)
    enqueue("test.record")
    (other,) = queries.claim_jobs(conn.cursor(), **{**CLAIM, "job_names": ["test.record"]})
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(job, ended(workflow_id))
    completer.finished(other, AttemptResult(took=0.1))
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE", [waiter]
    )
    conn.execute("SET statement_timeout = '20s'")  # a wait for ``app`` would end the test here
    completer.write(conn)  # the batch meets the lock; the plain job is written
    assert [(w.job.id, w.outcome) for w in written] == [(other.id, Outcome.COMPLETED)]
    assert completer.due_in(busy=0, now=clock[0]) == 0  # to be written alone, now
    completer.write(conn)  # alone, it meets the lock again: kept
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)
    assert (status(workflow_id), get_job(job.id).status) == ("pending", "running")
    assert conn.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
    app.rollback()
    clock[0] += LOCK_WAIT_RETRY
    completer.write(conn)
    assert written[-1].job.id == job.id and written[-1].outcome is Outcome.COMPLETED
    assert (status(workflow_id), get_job(job.id).status) == ("completed", "completed")


def finished_heard(workflow_id: str) -> tuple[AttemptResult, list[str]]:
    """An attempt that ended ``workflow_id``, its workflow_finished callback (the runner's, as
    workflows.lifecycle.ended sets it), and the statuses that signal was sent with."""
    heard: list[str] = []
    attempt = ended(workflow_id)
    assert attempt.notes is not None
    attempt.notes.on_written = functools.partial(
        lifecycle._send_finished, workflow_id, "test.greet", "completed", None
    )
    return attempt, heard


@pytest.fixture
def finished_signals() -> Iterator[list[str]]:
    heard: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs["status"])

    signals.workflow_finished.connect(receiver, weak=False)
    yield heard
    signals.workflow_finished.disconnect(receiver)


def test_an_ending_dropped_for_a_cancel_completes_the_job_and_sends_no_signal(
    conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture, finished_signals: list[str]
) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    cancel_workflow(workflow_id)
    assert finished_signals == ["cancelled"]
    written: list[Written] = []
    attempt, _ = finished_heard(workflow_id)
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(job, attempt)
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
        completer.write(conn)
    assert [(w.job.id, w.outcome) for w in written] == [(job.id, Outcome.COMPLETED)]
    assert (status(workflow_id), get_job(job.id).status) == ("cancelled", "completed")
    assert f"Result of workflow {workflow_id} dropped: it was no longer running" in caplog.text
    call_after_write(attempt.notes, Outcome.COMPLETED)
    assert finished_signals == ["cancelled"]  # not a second time, as completed


def test_an_ending_written_sends_its_signal(
    conn: psycopg.Connection[Any], finished_signals: list[str]
) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    attempt, _ = finished_heard(workflow_id)
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    completer.finished(job, attempt)
    completer.write(conn)
    call_after_write(attempt.notes, Outcome.COMPLETED)
    assert finished_signals == ["completed"]


def test_a_dropped_ending_found_written_after_a_lost_reply_sends_no_signal(
    conn: psycopg.Connection[Any], finished_signals: list[str]
) -> None:
    """The completion committed (the ending dropped for a cancel) but its reply was lost: the
    rewrite finds the job completed, and only the workflow's row can say what became of the
    ending (as reviewed)."""
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    cancel_workflow(workflow_id)
    attempt, _ = finished_heard(workflow_id)
    assert attempt.notes is not None and attempt.notes.workflow_ending is not None
    text = attempt.notes.workflow_ending.text
    written: list[Written] = []
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(job, attempt)
    first = queries.complete_jobs(conn.cursor(), tokens=[job.token], endings=[text])
    assert first.endings_dropped == {job.token}  # committed; its reply never came
    completer._doubt._tokens.add(job.token)
    completer.write(conn)
    assert [w.outcome for w in written] == [Outcome.COMPLETED]
    call_after_write(attempt.notes, Outcome.COMPLETED)
    assert finished_signals == ["cancelled"]


def test_an_ending_whose_waiter_is_held_holds_back_no_other_ending(
    conn: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    """After the batch met the lock, its endings are written one at a time: the one whose
    waiter is held waits LOCK_WAIT_RETRY, alone; the others, and those that come later, are
    written (as reviewed: the whole group was held, and re-formed at every retry)."""
    child = start_workflow(wf.greet, "child").workflow_id
    (child_job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    parent = waiting_for(conn, child)
    other = start_workflow(wf.greet, "unrelated").workflow_id
    (other_job,) = queries.claim_jobs(conn.cursor(), **{**CLAIM, "queues": ["default"]})
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    completer.finished(child_job, ended(child))
    completer.finished(other_job, ended(other))
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR SHARE", [parent]
    )
    conn.execute("SET statement_timeout = '20s'")
    completer.write(conn)  # the batch meets the lock: one wait a write
    completer.write(conn)  # each alone: the child's meets it again, and is kept
    completer.write(conn)  # and the other is written
    assert (status(other), get_job(other_job.id).status) == ("completed", "completed")
    assert status(child) == "pending"
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)
    late = start_workflow(wf.greet, "late").workflow_id
    (late_job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    completer.finished(late_job, ended(late))
    completer.write(conn)
    assert (status(late), get_job(late_job.id).status) == ("completed", "completed")
    app.rollback()
    clock[0] += LOCK_WAIT_RETRY
    completer.write(conn)
    assert (status(child), get_job(child_job.id).status) == ("completed", "completed")


def test_no_lock_timeout_is_left_in_a_callers_transaction_by_a_claim(
    finished_signals: list[str],
) -> None:
    """testing.drain() claims on the test's own transaction: the successes it sends behind a
    claim set no lock_timeout that would outlast their statement (as reviewed)."""
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    enqueue("test.record")
    inside = second_connection(autocommit=False)
    try:
        (job,) = queries.claim_jobs(inside.cursor(), **CLAIM)
        completer = Completer(wake=lambda: None, on_written=lambda _: None)
        completer.finished(job, ended(workflow_id))
        completer.claim(inside, **CLAIM)
        assert inside.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert inside.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
        assert inside.execute(
            "SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %s", [workflow_id]
        ).fetchone() == ("completed",)
    finally:
        inside.rollback()
        inside.close()


def test_an_ending_behind_a_claim_that_meets_a_held_waiter_is_kept_quietly(
    conn: psycopg.Connection[Any],
    app: psycopg.Connection[Any],
    clock: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sent behind a claim, the batch that met the lock hands its endings to be written alone
    (here the only one: kept LOCK_WAIT_RETRY), with no warning and traceback for an expected
    turn, and no second wait for the same lock before that (as re-reviewed)."""
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    waiter = waiting_for(conn, workflow_id)
    enqueue("test.record")
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    completer.finished(job, ended(workflow_id))
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR SHARE", [waiter]
    )
    conn.execute("SET statement_timeout = '20s'")
    with caplog.at_level(logging.INFO, logger="django_pgjobs.worker"):
        (claimed,) = completer.claim(conn, **{**CLAIM, "job_names": ["test.record"]})
    assert claimed.job_name == "test.record"
    assert "Could not write the completions" not in caplog.text
    assert completer.due_in(busy=1, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)
    app.rollback()
    clock[0] += LOCK_WAIT_RETRY
    completer.write(conn)
    assert (status(workflow_id), get_job(job.id).status) == ("completed", "completed")


class SentAgain(Exception):
    pass


def test_a_plain_batch_meeting_a_sessions_lock_timeout_is_sent_once(
    conn: psycopg.Connection[Any],
    app: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a batch that ends workflows is kept after a lock wait: a plain one that met the
    session's own lock_timeout (a role's setting, a migration's table lock) raises, for the
    loop's database-error path, instead of being sent again until the stack runs out (as
    reviewed)."""
    enqueue("test.record")
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    completer = Completer(wake=lambda: None, on_written=lambda _: None)
    completer.finished(job, AttemptResult(took=0.1))
    calls: list[Any] = []
    real = queries.complete_jobs

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["tokens"])
        if len(calls) > 3:
            raise SentAgain(f"complete_jobs sent {len(calls)} times for the same batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(queries, "complete_jobs", counted)
    conn.execute("SET lock_timeout = '1ms'")
    app.execute("LOCK TABLE pgjobs_job_queue IN EXCLUSIVE MODE")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        completer.write(conn)
    assert len(calls) == 1


def test_a_batchs_kept_values_are_split_past_its_byte_budget() -> None:
    def kept(size: int | None) -> Done:
        notes = AttemptNotes(result=None if size is None else json.dumps("x" * size))
        return Done(job=cast(Any, None), attempt=AttemptResult(took=0.0, notes=notes))

    third = [kept(BATCH_BYTES // 3) for _ in range(5)]
    assert within_bytes(third) == third[:2]  # a third would pass the budget
    assert within_bytes([kept(2 * BATCH_BYTES), kept(1)])[0].notes.result is not None
    assert len(within_bytes([kept(2 * BATCH_BYTES), kept(1)])) == 1  # alone, but it goes
    plain = [kept(None) for _ in range(3)]
    assert within_bytes(plain) == plain
