"""Dead letters by job name, queue and exception class: listed, and requeued in bulk by one
statement."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from django_pgjobs import queries, start_workflow
from django_pgjobs.exceptions import JobStateError
from django_pgjobs.jobs import list_dead_letter_jobs, requeue_dead_letter_jobs
from django_pgjobs.models import FailedJob, Job
from tests.helpers import bury_workflow, in_thread, second_connection, wait_for, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def dead(
    job_name: str = "test.fail", queue: str = "default", error: str = "ValueError: x"
) -> uuid.UUID:
    """A dead letter as the worker writes one: the exception line first, then the traceback."""
    row = FailedJob.objects.create(
        job_name=job_name, queue=queue, error=f"{error}\n\nTraceback (most recent call last): ..."
    )
    return row.id


@pytest.fixture
def letters() -> dict[str, uuid.UUID]:
    return {
        "value": dead(),
        "value_mail": dead(queue="mail"),
        "payment": dead(error="shop.errors.PaymentError: card declined: 402"),
        "other_job": dead(job_name="test.record", error="KeyError: 'id'"),
        "bare": dead(error="RuntimeError"),
        "timeout": dead(error="JobTimeout: the attempt ran longer than its timeout of 1s"),
    }


def test_dead_letters_are_listed_by_job_name_queue_and_exception(
    letters: dict[str, uuid.UUID],
) -> None:
    def ids(**filters: str) -> set[uuid.UUID]:
        return {row.id for row in list_dead_letter_jobs(**filters)}  # type: ignore[arg-type]

    assert ids(job_name="test.record") == {letters["other_job"]}
    assert ids(queue="mail") == {letters["value_mail"]}
    assert ids(exception="ValueError") == {letters["value"], letters["value_mail"]}
    assert ids(exception="ValueError", queue="default") == {letters["value"]}
    # A class outside the builtins is stored qualified: its bare name or the full one match.
    assert ids(exception="PaymentError") == {letters["payment"]}
    assert ids(exception="shop.errors.PaymentError") == {letters["payment"]}
    assert ids(exception="errors.PaymentError") == {letters["payment"]}
    assert ids(exception="Error") == set()  # a class name, not a substring
    assert ids(exception="RuntimeError") == {letters["bare"]}
    # A builtin is stored bare; signals, spans and the error history name it builtins.KeyError.
    assert ids(exception="builtins.KeyError") == {letters["other_job"]}
    assert ids(exception="builtins.PaymentError") == set()  # no builtin: as written
    assert ids(exception="builtins.") == set()
    assert ids(exception="builtins.JobTimeout") == set()
    assert ids(exception="django_pgjobs.exceptions.JobTimeout") == {letters["timeout"]}
    assert ids(exception="JobTimeout") == {letters["timeout"]}


def test_bulk_requeue_moves_exactly_the_matching_dead_letters_in_one_go(
    letters: dict[str, uuid.UUID],
) -> None:
    assert requeue_dead_letter_jobs(exception="ValueError", dry_run=True).count == 2
    assert FailedJob.objects.count() == 6  # a dry run moves nothing
    done = requeue_dead_letter_jobs(job_name="test.fail", exception="ValueError")
    assert done.count == 2
    assert set(done.job_ids) == set(Job.objects.values_list("id", flat=True))
    moved = Job.objects.order_by("queue")
    assert [(j.job_name, j.queue, j.status, j.attempt) for j in moved] == [
        ("test.fail", "default", "pending", 0),
        ("test.fail", "mail", "pending", 0),
    ]
    assert not FailedJob.objects.filter(id__in=[letters["value"], letters["value_mail"]]).exists()
    assert FailedJob.objects.count() == 4
    assert requeue_dead_letter_jobs(exception="ValueError").count == 0


def test_bulk_requeue_reports_the_count_and_the_first_ids_of_many() -> None:
    for _ in range(12):
        dead(job_name="test.record")
    done = requeue_dead_letter_jobs(job_name="test.record")
    assert done.count == 12 and len(done.job_ids) == 5
    assert Job.objects.filter(id__in=done.job_ids).count() == 5
    assert not FailedJob.objects.exists()


def test_two_operators_requeueing_the_same_dead_letters_at_once_requeue_each_once(
    other_connection: psycopg.Connection[Any],
) -> None:
    for _ in range(3):
        dead(error="TimeoutError: crm")
    selected = "SELECT id FROM pgjobs_failed_jobs"
    with other_connection.transaction():
        first = queries.requeue_dead_letters(
            other_connection.cursor(), selected=selected, params=[]
        )
        assert first.count == 3
        # The second operator's statement waits on the rows the first one deleted...
        second: list[queries.Requeued] = []
        thread = in_thread(
            lambda: second.append(requeue_dead_letter_jobs(exception="TimeoutError"))
        )
        wait_for(_a_requeue_waits_on_a_lock, what="the second requeue to wait")
    # ...and, once the first commits, finds them gone.
    thread.join(10)
    assert second[0].count == 0
    assert Job.objects.count() == 3 and not FailedJob.objects.exists()


def _a_requeue_waits_on_a_lock() -> bool:
    # A connection of its own: pg_stat_activity is a snapshot for the rest of a transaction.
    with second_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%DELETE FROM pgjobs_failed_jobs%'"
        ).fetchone()
    return bool(row and row[0])


def test_a_bulk_requeue_that_would_give_a_workflow_two_active_jobs_moves_nothing() -> None:
    handle = start_workflow(wf.greet, "twice")
    key = workflow_job(handle.workflow_id).key
    bury_workflow(handle.workflow_id)
    Job.objects.create(job_name="test.record", key=key)  # the workflow's key is active again
    other = dead()
    with pytest.raises(JobStateError, match="Nothing was requeued"):
        requeue_dead_letter_jobs()
    assert FailedJob.objects.count() == 2 and FailedJob.objects.filter(id=other).exists()
    assert requeue_dead_letter_jobs(job_name="test.fail").count == 1
