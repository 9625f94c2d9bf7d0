"""Regressions from a second review: handler threads keeping their connections between jobs,
workflow pruning, cancelling a workflow's job, and errors PostgreSQL cannot store."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import drain, second_connection, wait_for, workflow_job

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def backend_gone(pid: int) -> bool:
    with second_connection() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return row.fetchone() == (0,)


# -- Worker: a kept connection the server dropped between jobs fails the next job ------------


def test_a_connection_the_server_dropped_between_jobs_does_not_fail_the_next_job(
    make_worker: type[Worker], register_handler: Any
) -> None:
    """Before handler threads kept connections (CONN_MAX_AGE = 0), every job got a fresh one,
    so a server restart / idle_session_timeout / pg_terminate_backend between jobs cost
    nothing. Now the next job on that thread runs on a dead connection and fails an attempt
    (with max_attempts=1: it is dead-lettered) although nothing is wrong with it."""
    pids: list[int] = []
    register_handler("review2.pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    enqueue("review2.pid")
    assert worker.run_once().completed == 1
    with second_connection() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    wait_for(lambda: backend_gone(pids[0]), what="the backend to go")
    job_id = enqueue("review2.pid", max_attempts=1)
    stats = worker.run_once()
    assert (stats.completed, stats.buried) == (1, 0)
    assert Job.objects.get(id=job_id).status == "completed"


def _count_health_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per Django health check ("SELECT 1") on any connection."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    checks: list[int] = []
    original = DatabaseWrapper.is_usable

    def spy(self: Any) -> bool:
        checks.append(1)
        return bool(original(self))

    monkeypatch.setattr(DatabaseWrapper, "is_usable", spy)
    return checks


def test_a_kept_connection_is_not_pinged_before_every_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking for the server's goodbye is a poll() of the socket; a connection nothing arrived
    on costs no "SELECT 1" round trip before the next job."""
    pids: list[int] = []
    register_handler("review2.pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    checks = _count_health_checks(monkeypatch)
    for _ in range(4):
        enqueue("review2.pid")
        assert worker.run_once().completed == 1
    assert len(set(pids)) == 1
    assert checks == []


def test_conn_health_checks_still_checks_before_every_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alias that asks for CONN_HEALTH_CHECKS gets Django's check at each job's first query,
    as a web process gets it at each request's."""
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    register_handler("review2.pid", lambda payload: backend_pid())
    worker = make_worker(concurrency=1)
    enqueue("review2.pid")
    worker.run_once()
    checks = _count_health_checks(monkeypatch)
    for _ in range(3):
        enqueue("review2.pid")
        worker.run_once()
    assert len(checks) == 3


def test_a_connection_past_its_max_age_is_closed_before_the_next_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A positive CONN_MAX_AGE counts while the thread waits for work, too."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 1)
    pids: list[int] = []
    register_handler("review2.pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    enqueue("review2.pid")
    worker.run_once()
    enqueue("review2.pid")
    worker.run_once()
    assert len(set(pids)) == 1  # young enough: kept
    wait_for(lambda: backend_gone(pids[0]) or _aged(pids[0]), what="a second to pass")
    enqueue("review2.pid")
    worker.run_once()
    assert pids[-1] != pids[0]


def _aged(pid: int) -> bool:
    with second_connection() as conn:
        row = conn.execute(
            "SELECT now() - backend_start > interval '1.1 seconds' FROM pg_stat_activity "
            "WHERE pid = %s",
            [pid],
        ).fetchone()
    return bool(row and row[0])


# -- Worker: a handler that leaves a transaction open poisons the next job --------------------


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("alias", ["default", "other"])
def test_a_transaction_a_handler_left_open_is_not_carried_into_the_next_job(
    make_worker: type[Worker], register_handler: Any, alias: str
) -> None:
    """A handler that began a transaction with raw SQL and returned (or raised) without ending
    it: with per-job connections it was rolled back when the connection closed. Kept, the next
    job on that thread runs inside it: its writes never commit and its row locks are held.
    Connections are tracked as the thread makes them, whatever the alias."""
    from django.db import connections

    def leaves_open(payload: Any) -> None:
        with connections[alias].cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")

    def writes(payload: Any) -> None:
        with connections[alias].cursor() as cur:
            cur.execute("SELECT txid_current_if_assigned() IS NULL, now() = statement_timestamp()")
            seen.append(cur.fetchone())

    seen: list[Any] = []
    register_handler("review2.leaves_open", leaves_open)
    register_handler("review2.writes", writes)
    worker = make_worker(concurrency=1)
    enqueue("review2.leaves_open")
    worker.run_once()
    enqueue("review2.writes")
    worker.run_once()
    # now() is the transaction's start: equal to the statement's only in a fresh transaction.
    assert seen == [(True, True)]


# -- Workflows: helpers ------------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

from django.utils import timezone  # noqa: E402

from django_pgjobs import cancel_job, get_workflow, queries, sleep, start_workflow, workflow  # noqa: E402
from django_pgjobs.jobs import retry_dead_letter_job  # noqa: E402
from django_pgjobs.models import FailedJob, WorkflowExecution, WorkflowStep  # noqa: E402
from tests.testapp import workflows as wf  # noqa: E402


def make_dead(workflow_id: str) -> FailedJob:
    """Bury the workflow's job as if it kept crashing its worker: the workflow is dead."""
    job = workflow_job(workflow_id)
    Job.objects.filter(id=job.id).update(
        max_attempts=1, status="running", attempt=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip
    with connection.cursor() as cur:
        queries.rescue_expired_leases(cur)
    assert get_workflow(workflow_id).status == "dead"
    [dead] = FailedJob.objects.filter(payload__workflow_id=workflow_id)
    return dead


def prune_workflows() -> int:
    with connection.cursor() as cur:
        return queries.prune_finished_workflows(cur, older_than_seconds=7 * 86400)


# -- Pruning deletes a dead workflow whose dead letter an operator just requeued ---------------


def test_pruning_keeps_a_dead_workflow_whose_job_was_requeued(make_worker: type[Worker]) -> None:
    """requeue gives the job its key back so it runs the workflow again, but the workflow stays
    'dead' with its old completed_at until the job is claimed. The worker prunes at the start of
    its loop, before it claims: the workflow (steps, messages, events) is deleted under the job
    that was queued to run it, which then finds nothing to run; the dead letter is gone too."""
    handle = start_workflow(wf.receiver, None, 30)
    dead = make_dead(handle.workflow_id)
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    retry_dead_letter_job(dead.id)
    assert workflow_job(handle.workflow_id).status == "pending"
    prune_workflows()
    assert WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).exists()


# -- cancel_job on a requeued dead workflow's job refuses, and the job runs anyway --------------


def test_cancel_job_cancels_a_requeued_dead_workflows_job(make_worker: type[Worker]) -> None:
    """cancel_job now delegates to cancel_workflow, which refuses a workflow that 'already
    ended (dead)'. The operator's requeued job stays pending and resurrects the workflow."""
    handle = start_workflow(wf.receiver, None, 30)
    dead = make_dead(handle.workflow_id)
    retry_dead_letter_job(dead.id)
    job = workflow_job(handle.workflow_id)
    try:
        cancel_job(job.id)
    finally:
        status = Job.objects.get(id=job.id).status
    assert status == "cancelled"


# -- Pruning deletes a finished child its still-running parent has yet to collect --------------


@workflow("review2.late_collector")
def late_collector() -> Any:
    child = start_workflow(wf.child, 3)
    sleep(30)  # days, in real life; longer than WORKFLOW_RETENTION after the child ended
    return child.get_result()


def test_pruning_keeps_a_finished_child_whose_parent_is_still_running(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(late_collector)
    worker = make_worker()
    drain(worker)  # the child completes; the parent sleeps
    child_id = f"{handle.workflow_id}-0"
    assert get_workflow(child_id).status == "completed"
    assert handle.get_status() == "pending"
    WorkflowExecution.objects.filter(workflow_id=child_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    prune_workflows()
    past = timezone.now() - timedelta(seconds=1)
    waiting = WorkflowStep.objects.filter(workflow_id=handle.workflow_id, status="waiting")
    waiting.update(wake_at=past)
    Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(scheduled_for=past)
    drain(worker)
    # The parent fails with WorkflowNotFound for a child it started itself.
    assert handle.get_result(1) == 30


# -- A workflow error whose message holds a NUL is unrecordable: the workflow never fails -------


@workflow("review2.nul_error", max_recovery_attempts=1)
def nul_error() -> None:
    raise ValueError("bad byte \x00 in input")


def test_a_workflow_that_raises_an_error_with_a_nul_in_its_message_fails(
    make_worker: type[Worker],
) -> None:
    """codec.describe keeps str(exc) as "message" (and as the args fallback) unescaped, so
    codec.encode refuses the error: run_workflow_job raises from its except clause, the job is
    retried as a crash (re-running the workflow's code), and the workflow ends 'dead' instead
    of 'failed' with its error."""
    handle = start_workflow(nul_error)
    drain(make_worker())
    assert handle.get_status() == "failed"
