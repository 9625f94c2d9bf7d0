"""drain(): everything due runs in the test's own process and transaction, with the worker's
statements and attempt runner, in a TestCase and a TransactionTestCase alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from django_pgjobs import Cancel, Snooze, current_attempt, enqueue, enqueue_on_commit
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.testing import advance, drain, run_on_commit_callbacks
from tests.testapp.models import Run
from tests.testing.kinds import BOTH_KINDS

Register = Callable[..., JobHandler]


@BOTH_KINDS
def test_a_job_runs_in_process_and_its_outcome_is_written(kind: str) -> None:
    job_id = enqueue("test.record", {"label": "drained"})
    result = drain()
    assert (result.claimed, result.completed, result.errors) == (1, 1, [])
    assert Run.objects.filter(label="drained").count() == 1
    assert Job.objects.get(id=job_id).status == "completed"
    assert drain().claimed == 0


@pytest.mark.django_db
def test_in_a_testcase_the_rows_are_never_committed(
    other_connection: psycopg.Connection[Any],
) -> None:
    job_id = enqueue("test.record", {"label": "uncommitted"})
    assert drain().completed == 1
    # A worker on its own connection could not have seen the job, nor can it see the result.
    found = other_connection.execute(
        "SELECT count(*) FROM pgjobs_job_queue WHERE id = %s", [job_id]
    )
    assert found.fetchone() == (0,)


@BOTH_KINDS
def test_jobs_that_jobs_enqueue_run_too(kind: str, register_handler: Register) -> None:
    register_handler("testing.fan_out", lambda p: [enqueue("test.record", {"label": "child"})] * 2)
    enqueue("testing.fan_out")
    result = drain()
    assert (result.claimed, result.completed) == (2, 2)
    assert Run.objects.filter(label="child").count() == 1


@BOTH_KINDS
def test_a_job_enqueued_on_commit_by_a_job_runs_too(kind: str, register_handler: Register) -> None:
    # Under a worker the handler runs in autocommit: its on_commit callbacks run at once.
    register_handler(
        "testing.on_commit_child", lambda p: enqueue_on_commit("test.record", {"label": "later"})
    )
    enqueue("testing.on_commit_child")
    assert drain().completed == 2
    assert Run.objects.filter(label="later").count() == 1


@BOTH_KINDS
def test_a_failed_attempt_waits_for_its_retry_delay_until_the_clock_moves(kind: str) -> None:
    job_id = enqueue("test.fail", {"message": "no luck"})  # max_attempts=2, RETRY_DELAY 1 s
    first = drain()
    assert (first.claimed, first.retried) == (1, 1)
    assert first.errors == [f"test.fail {job_id} attempt 1: ValueError: no luck"]
    assert drain().claimed == 0  # not due again yet
    advance(60)
    second = drain()
    assert (second.claimed, second.buried) == (1, 1)
    assert FailedJob.objects.get(id=job_id).attempt == 2


@pytest.mark.django_db
def test_a_retry_due_at_once_runs_in_the_same_drain() -> None:
    enqueue("test.flaky", {"label": "flaky", "succeed_on": 2})  # retry_delay=0
    result = drain()
    assert (result.claimed, result.retried, result.completed) == (2, 1, 1)


@pytest.mark.django_db
def test_a_database_error_in_a_handler_undoes_its_attempt_and_keeps_the_test_usable(
    register_handler: Register,
) -> None:
    def broken(payload: Any) -> None:
        Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label="half done")
        with connection.cursor() as cur:
            cur.execute("SELECT 1 / 0")

    register_handler("testing.broken", broken, max_attempts=1)
    enqueue("testing.broken")
    result = drain()
    assert result.buried == 1
    assert result.errors[0].endswith("DataError: division by zero")
    assert not Run.objects.filter(label="half done").exists()  # rolled back with the savepoint
    assert FailedJob.objects.count() == 1  # and the transaction still works


@BOTH_KINDS
def test_a_failed_attempt_keeps_its_writes_as_under_a_worker(
    kind: str, register_handler: Register
) -> None:
    def fails_late(payload: Any) -> None:
        Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label="written")
        raise RuntimeError("after the write")

    register_handler("testing.fails_late", fails_late, max_attempts=1)
    enqueue("testing.fails_late")
    assert drain().buried == 1
    # A worker's handler runs in autocommit: what it wrote before raising stays.
    assert Run.objects.filter(label="written").count() == 1


@pytest.mark.django_db
def test_a_durable_atomic_block_in_a_handler_works_inside_a_testcase(
    register_handler: Register,
) -> None:
    def durable(payload: Any) -> None:
        with transaction.atomic(durable=True):
            Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label="durable")

    register_handler("testing.durable", durable)
    enqueue("testing.durable")
    assert drain().completed == 1
    assert Run.objects.filter(label="durable").exists()


@pytest.mark.django_db
def test_progress_reports_are_written() -> None:
    job_id = enqueue("test.progress", {"steps": [[40, "reading"], [90, "writing"]]})
    assert drain().completed == 1
    job = Job.objects.get(id=job_id)
    assert (job.progress, job.progress_message) == (90, "writing")


@pytest.mark.django_db
def test_an_async_handler_runs() -> None:
    enqueue("test.async", {"label": "async"})
    assert drain().completed == 1
    assert Run.objects.filter(label="async").exists()


@BOTH_KINDS
def test_queues_limit_what_runs(kind: str) -> None:
    enqueue("test.record", {"label": "mail"}, queue="mail")
    enqueue("test.record", {"label": "reports"}, queue="reports")
    assert drain(queues=["mail"]).completed == 1
    assert list(Run.objects.values_list("label", flat=True)) == ["mail"]
    assert drain().completed == 1


@pytest.mark.django_db
def test_a_job_that_keeps_enqueueing_itself_stops_at_the_limit(register_handler: Register) -> None:
    register_handler("testing.forever", lambda p: enqueue("testing.forever"))
    enqueue("testing.forever")
    with pytest.raises(AssertionError, match=r"drain\(\) ran 5 attempts and jobs are still due"):
        drain(limit=5)
    # The five attempts that ran were written; the sixth job waits, unclaimed.
    assert Job.objects.filter(job_name="testing.forever", status="completed").count() == 5
    assert Job.objects.filter(job_name="testing.forever", status="pending").count() == 1


@pytest.mark.django_db
def test_a_job_without_a_handler_here_is_left_alone_as_a_worker_leaves_it() -> None:
    enqueue("testing.nobody_handles_this")
    assert drain().claimed == 0


@pytest.mark.django_db
def test_enqueue_on_commit_in_a_testcase_needs_the_callbacks_run() -> None:
    enqueue_on_commit("test.record", {"label": "on commit"})
    assert drain().claimed == 0  # nothing committed, so nothing was inserted
    assert drain(on_commit=True).completed == 1
    assert Run.objects.filter(label="on commit").count() == 1
    # The callbacks ran once and were forgotten, as a commit forgets them.
    assert run_on_commit_callbacks() == 0
    assert drain(on_commit=True).claimed == 0


@pytest.mark.django_db(databases=["default", "other"])
def test_drain_on_commit_runs_the_callbacks_of_the_database_a_job_waits_for() -> None:
    """``commit_of=`` names the project's database when the queue has one of its own: the
    callback waits on that database's commit, not the queue's (a new user's trial)."""
    with transaction.atomic(using="other"):
        enqueue_on_commit("test.record", {"label": "after other"}, commit_of="other")
    assert drain(on_commit=True).completed == 1
    assert Run.objects.filter(label="after other").count() == 1


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_in_a_transaction_test_needs_nothing() -> None:
    enqueue_on_commit("test.record", {"label": "committed"})
    assert drain().completed == 1


@BOTH_KINDS
def test_outcomes_a_handler_raises_are_written_and_counted(
    kind: str, register_handler: Register
) -> None:
    seen: list[Any] = []

    def snooze_once(payload: Any) -> None:
        attempt = current_attempt()
        seen.append(None if attempt is None else (attempt.attempt, attempt.is_cancelled()))
        if len(seen) == 1:
            raise Snooze(0)

    register_handler("testing.snooze_once", snooze_once)
    register_handler("testing.cancel", lambda p: (_ for _ in ()).throw(Cancel("enough")))
    snoozed, cancelled = enqueue("testing.snooze_once"), enqueue("testing.cancel")
    result = drain()
    # Snoozed for no time: due again at once, run again, its attempt not used by the snooze.
    assert (result.claimed, result.snoozed, result.completed, result.cancelled) == (3, 1, 1, 1)
    assert seen == [(1, False), (1, False)]
    assert Job.objects.get(id=snoozed).attempt == 1
    assert Job.objects.get(id=cancelled).status == "cancelled"
    cancel = "django_pgjobs.exceptions.Cancel: enough"
    assert result.errors == [f"testing.cancel {cancelled} attempt 1: {cancel}"]


@BOTH_KINDS
def test_a_flow_controlled_drain_leaves_the_connection_settings_alone(kind: str) -> None:
    """drain() claims on Django's connection, with the worker's statements: the flow-controlled
    claim's generic plan (prepared.run_generic) is for the worker's own connection only, and
    must leave an application's session (its pool, its test transaction) as it found it."""
    from django_pgjobs.queues import set_queue_limits

    set_queue_limits("limited", concurrency=5)
    settings = "SELECT current_setting('plan_cache_mode'), current_setting('jit')"
    with connection.cursor() as cur:
        cur.execute(settings)
        before = cur.fetchone()
    for n in range(8):  # past the sixth run of a statement, where anything would be prepared
        enqueue("test.record", {"label": f"limited {n}"}, queue="limited")
        assert drain().completed == 1
    with connection.cursor() as cur:
        cur.execute(settings)
        assert cur.fetchone() == before
