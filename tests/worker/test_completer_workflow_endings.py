"""The completer writes the workflows its successes ended with their completions: one whose
wake-up meets an application's lock is kept for LOCK_WAIT_RETRY while the successes beside it are
written; one whose workflow was cancelled meanwhile completes its job, and its callback
(``workflow_finished``) is not called."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs import cancel_workflow, enqueue, get_job, queries, start_workflow
from django_pgjobs.jobs.context import AttemptNotes, WorkflowEnding
from django_pgjobs.models import WorkflowExecution
from django_pgjobs.worker.after_write import call_after_write
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import LOCK_WAIT_RETRY, Completer
from django_pgjobs.worker.outcomes import Outcome, Written
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


def ended(workflow_id: str, heard: list[str] | None = None) -> AttemptResult:
    text = json.dumps({"id": workflow_id, "s": "completed", "o": "done"})
    notes = AttemptNotes(workflow_ending=WorkflowEnding(workflow_id, text))
    if heard is not None:
        notes.on_written = heard.append
    return AttemptResult(took=0.1, notes=notes)


def status(workflow_id: str) -> str:
    return WorkflowExecution.objects.get(workflow_id=workflow_id).status


def test_an_ending_whose_wake_up_meets_a_lock_is_kept_and_the_others_are_written(
    conn: psycopg.Connection[Any], app: psycopg.Connection[Any], clock: list[float]
) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    waiter = start_workflow(wf.greet, "waiter").workflow_id
    conn.execute(
        "INSERT INTO pgjobs_workflow_steps (workflow_id, step_index, step_name, status, "
        "wait_key) VALUES (%s, 0, 'pgjobs.result', 'waiting', %s)",
        [waiter, f"result:{workflow_id}"],
    )
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
    completer.write(conn)
    assert [(w.job.id, w.outcome) for w in written] == [(other.id, Outcome.COMPLETED)]
    assert completer.due_in(busy=0, now=clock[0]) == pytest.approx(LOCK_WAIT_RETRY)
    assert (status(workflow_id), get_job(job.id).status) == ("pending", "running")
    assert conn.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
    app.rollback()
    clock[0] += LOCK_WAIT_RETRY
    completer.write(conn)
    assert written[-1].job.id == job.id and written[-1].outcome is Outcome.COMPLETED
    assert (status(workflow_id), get_job(job.id).status) == ("completed", "completed")


def test_an_ending_dropped_for_a_cancel_completes_the_job_and_calls_no_callback(
    conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    (job,) = queries.claim_jobs(conn.cursor(), **CLAIM)
    cancel_workflow(workflow_id)
    written: list[Written] = []
    heard: list[str] = []
    attempt = ended(workflow_id, heard)
    completer = Completer(wake=lambda: None, on_written=written.append)
    completer.finished(job, attempt)
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
        completer.write(conn)
    assert [(w.job.id, w.outcome) for w in written] == [(job.id, Outcome.COMPLETED)]
    assert (status(workflow_id), get_job(job.id).status) == ("cancelled", "completed")
    assert attempt.notes is not None and attempt.notes.workflow_ending is not None
    assert attempt.notes.workflow_ending.dropped
    assert f"Result of workflow {workflow_id} dropped: it was cancelled" in caplog.text
    call_after_write(attempt.notes, Outcome.COMPLETED)
    assert heard == []  # its workflow_finished went with the cancel
