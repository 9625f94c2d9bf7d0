"""A workflow's ending written with its job's completion (queries.completions.ENDED_CTE): both or
neither, its waiters woken in the same statement; a workflow row another transaction holds
leaves its attempt for a later write (as a held job row does); a cancelled workflow keeps its
cancel while its job completes; the wake-ups' lock waits end at ``lock_timeout``, set for that
statement's transaction only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs import cancel_workflow, enqueue, get_job, queries, start_workflow
from django_pgjobs.models import WorkflowExecution
from tests.helpers import second_connection
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CLAIM: dict[str, Any] = {"worker_id": "w", "limit": 10, "lease_seconds": 60, "queues": None,
                         "job_names": None}  # fmt: skip


@pytest.fixture
def loop(other_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """As the worker's loop has it: autocommit, not Django's."""
    return other_connection


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    """An application's transaction."""
    made = second_connection(autocommit=False)
    yield made
    made.close()


def ending(workflow_id: str, **values: Any) -> str:
    return json.dumps({"id": workflow_id, "s": "completed", **values})


def started(loop: psycopg.Connection[Any]) -> tuple[str, queries.ClaimedJob]:
    handle = start_workflow(wf.greet, "x")
    (job,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    return handle.workflow_id, job


def row(workflow_id: str) -> WorkflowExecution:
    return WorkflowExecution.objects.get(workflow_id=workflow_id)


def test_the_ending_is_written_with_the_completion_beside_plain_jobs_and_results(
    loop: psycopg.Connection[Any],
) -> None:
    workflow_id, workflow = started(loop)
    enqueue("test.record")
    enqueue("test.record")
    plain, kept = queries.claim_jobs(loop.cursor(), **CLAIM)
    listener = second_connection()
    listener.execute("LISTEN pgjobs_workflow")
    tokens = [plain.token, workflow.token, kept.token]
    done = queries.complete_jobs(
        loop.cursor(),
        tokens=tokens,
        results=[None, None, '"kept"'],
        endings=[None, ending(workflow_id, o={"n": [1, "two"]}), None],
    )
    assert sorted(done) == sorted(tokens) and not done.endings_dropped
    found = row(workflow_id)
    assert (found.status, found.output, found.error) == ("completed", {"n": [1, "two"]}, None)
    assert found.completed_at is not None
    assert get_job(workflow.id).status == "completed"
    assert get_job(kept.id).result == "kept"
    # Its outside waiters hear of it (pgjobs_workflow_wake, in the same statement).
    heard = [n.payload for n in listener.notifies(timeout=1, stop_after=1)]
    listener.close()
    assert heard == [f"result:{workflow_id}"]


def test_a_failure_keeps_its_error_and_no_output(loop: psycopg.Connection[Any]) -> None:
    workflow_id, job = started(loop)
    error = {"type": "builtins.ValueError", "message": "no"}
    failed = json.dumps({"id": workflow_id, "s": "failed", "e": error})
    assert queries.complete_jobs(loop.cursor(), tokens=[job.token], endings=[failed])
    found = row(workflow_id)
    assert (found.status, found.output, found.error) == ("failed", None, error)


def test_a_workflow_row_another_transaction_holds_leaves_its_attempt_for_later(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any]
) -> None:
    """Not waited for: the attempt is not completed (its job neither) and the worker writes it
    again, as it does when a job's row is held."""
    workflow_id, job = started(loop)
    enqueue("test.record")
    (plain,) = queries.claim_jobs(loop.cursor(), **CLAIM)
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE", [workflow_id]
    )
    loop.execute("SET statement_timeout = '20s'")  # a wait for ``app`` would end the test here
    args: dict[str, Any] = {
        "tokens": [job.token, plain.token],
        "endings": [ending(workflow_id), None],
    }
    assert queries.complete_jobs(loop.cursor(), **args) == [plain.token]
    assert (row(workflow_id).status, get_job(job.id).status) == ("pending", "running")
    assert queries.no_longer_held(loop.cursor(), tokens=[job.token]) == []  # still its own
    app.rollback()
    assert queries.complete_jobs(loop.cursor(), **args) == [job.token]
    assert (row(workflow_id).status, get_job(job.id).status) == ("completed", "completed")


def test_a_workflow_cancelled_meanwhile_keeps_its_cancel_and_its_job_completes(
    loop: psycopg.Connection[Any],
) -> None:
    workflow_id, job = started(loop)
    cancel_workflow(workflow_id)
    done = queries.complete_jobs(
        loop.cursor(), tokens=[job.token], endings=[ending(workflow_id, o="late")]
    )
    assert done == [job.token] and done.endings_dropped == {job.token}
    found = row(workflow_id)
    assert (found.status, found.output) == ("cancelled", None)
    assert get_job(job.id).status == "completed"


def test_a_workflow_row_deleted_meanwhile_lets_its_job_complete(
    loop: psycopg.Connection[Any],
) -> None:
    """An operator deleted it: nothing is left to end, and the job is not held for ever."""
    workflow_id, job = started(loop)
    WorkflowExecution.objects.filter(workflow_id=workflow_id).delete()
    assert queries.complete_jobs(
        loop.cursor(), tokens=[job.token], endings=[ending(workflow_id)]
    ) == [job.token]
    assert get_job(job.id).status == "completed"


def test_an_attempt_no_longer_holding_its_job_ends_nothing(loop: psycopg.Connection[Any]) -> None:
    workflow_id, job = started(loop)
    stale = (job.id, job.lease_token.__class__(int=job.lease_token.int ^ 1))
    assert queries.complete_jobs(loop.cursor(), tokens=[stale], endings=[ending(workflow_id)]) == []
    assert row(workflow_id).status == "pending"


def waiting_for(workflow_id: str) -> str:
    """Another workflow, waiting (as a step records it) for ``workflow_id``'s result."""
    waiter = start_workflow(wf.greet, "waiter").workflow_id
    with second_connection() as conn:
        conn.execute(
            "INSERT INTO pgjobs_workflow_steps (workflow_id, step_index, step_name, status, "
            "wait_key) VALUES (%s, 0, 'pgjobs.result', 'waiting', %s)",
            [waiter, f"result:{workflow_id}"],
        )
    return waiter


def test_the_ending_wakes_a_workflow_waiting_for_it(loop: psycopg.Connection[Any]) -> None:
    workflow_id, job = started(loop)
    waiter = waiting_for(workflow_id)
    before = row(waiter).wake_seq
    assert queries.complete_jobs(loop.cursor(), tokens=[job.token], endings=[ending(workflow_id)])
    assert row(waiter).wake_seq == before + 1


def test_a_wake_up_waits_for_a_held_waiter_no_longer_than_the_lock_timeout(
    loop: psycopg.Connection[Any], app: psycopg.Connection[Any]
) -> None:
    """The waiter's row held by an application's transaction: the whole statement gives up (the
    caller keeps the outcomes), and the bound does not outlive its transaction."""
    workflow_id, job = started(loop)
    waiter = waiting_for(workflow_id)
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE", [waiter]
    )
    loop.execute("SET statement_timeout = '20s'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        queries.complete_jobs(
            loop.cursor(), tokens=[job.token], endings=[ending(workflow_id)], lock_timeout="50ms"
        )
    assert (row(workflow_id).status, get_job(job.id).status) == ("pending", "running")
    assert loop.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
    app.rollback()
    assert queries.complete_jobs(
        loop.cursor(), tokens=[job.token], endings=[ending(workflow_id)], lock_timeout="50ms"
    ) == [job.token]


def test_without_a_lock_timeout_nothing_is_set_in_the_callers_transaction(
    loop: psycopg.Connection[Any],
) -> None:
    workflow_id, job = started(loop)
    with loop.transaction():
        queries.complete_jobs(loop.cursor(), tokens=[job.token], endings=[ending(workflow_id)])
        assert loop.execute("SELECT current_setting('lock_timeout')").fetchone() == ("0",)
    assert row(workflow_id).status == "completed"


def test_sent_completions_and_claims_behind_them_write_endings_too(
    loop: psycopg.Connection[Any],
) -> None:
    first, job = started(loop)
    sent = queries.send_completion(loop, tokens=[job.token], endings=[ending(first, o=1)])
    assert sent.reply() == [job.token]
    second, job = started(loop)
    cancel_workflow(second)
    behind = queries.ClaimBehind(
        loop,
        tokens=[job.token],
        endings=[ending(second, o=2)],
        claim={**CLAIM, "lease_token": job.lease_token.__class__(int=7)},
    )
    done = behind.reply()
    assert done == [job.token] and done.endings_dropped == {job.token}
    assert behind.claimed() == []
    assert (row(first).status, row(first).output) == ("completed", 1)
    assert row(second).status == "cancelled"
