"""A Django task chooses its outcome by raising Snooze, Retry, Discard or Cancel, exactly as a job
handler does, and asks its context whether it was cancelled or its worker is stopping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import cancel_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.tasks.framework import TaskResultStatus, signals
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, wait_for
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished() -> Iterator[list[Any]]:
    """The status of each task_finished sent."""
    statuses: list[Any] = []

    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        statuses.append(task_result.status)

    signals.task_finished.connect(receive, dispatch_uid="test-outcomes-raised")
    yield statuses
    signals.task_finished.disconnect(dispatch_uid="test-outcomes-raised")


def due_in(result_id: str) -> float:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM scheduled_for - now()) FROM pgjobs_job_queue WHERE id = %s",
            [result_id],
        )
        return float(cur.fetchone()[0])


def test_a_snoozing_task_waits_without_using_an_attempt_or_finishing(
    make_worker: type[Worker], finished: list[Any]
) -> None:
    result = tasks.controlled.enqueue("snooze")
    assert make_worker().run_once().snoozed == 1
    result.refresh()
    assert (result.status, result.attempts, result.errors) == (TaskResultStatus.READY, 0, [])
    assert 55 < due_in(result.id) <= 60
    assert finished == []


def test_retry_overrides_the_tasks_backoff_and_counts_an_attempt(
    make_worker: type[Worker], finished: list[Any]
) -> None:
    result = tasks.controlled.enqueue("retry")
    assert make_worker().run_once().retried == 1
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 1)
    assert [e.exception_class_path for e in result.errors] == ["django_pgjobs.exceptions.Retry"]
    assert 0 < due_in(result.id) <= 5  # its backoff says an hour
    assert finished == [TaskResultStatus.READY]


def test_discard_fails_the_task_at_once(make_worker: type[Worker], finished: list[Any]) -> None:
    result = tasks.controlled.enqueue("discard")
    assert make_worker().run_once().buried == 1
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    assert [e.exception_class_path for e in result.errors] == ["django_pgjobs.exceptions.Discard"]
    assert FailedJob.objects.filter(id=result.id).exists()
    assert finished == [TaskResultStatus.FAILED]


def test_cancel_ends_the_task_failed_and_says_why(
    make_worker: type[Worker], finished: list[Any]
) -> None:
    result = tasks.controlled.enqueue("cancel")
    assert make_worker().run_once().cancelled == 1
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    [error] = result.errors
    assert error.exception_class_path == "django_pgjobs.exceptions.Cancel"
    assert "order withdrawn" in error.traceback
    assert Job.objects.get(id=result.id).status == "cancelled"
    assert finished == [TaskResultStatus.FAILED]


def test_the_context_says_when_the_task_was_cancelled(make_worker: type[Worker]) -> None:
    result = tasks.controlled.enqueue("watch")
    worker = make_worker(concurrency=1)
    thread = in_thread(lambda: worker.run(burst=True))
    try:
        wait_for(Run.objects.filter(label="watch:started").exists, what="the task to start")
        wait_for(lambda: Job.objects.get(id=result.id).progress == 5, what="progress written")
        cancel_job(result.id)
        wait_for(Run.objects.filter(label="watch:cancelled:False").exists, what="it to see")
    finally:
        thread.join(30)
    assert worker.stats.lost == 1
    assert Job.objects.get(id=result.id).progress == 5  # the report after the cancel: dropped


def test_the_context_says_when_the_worker_is_stopping(make_worker: type[Worker]) -> None:
    result = tasks.controlled.enqueue("watch")
    worker = make_worker(concurrency=1)
    thread = in_thread(lambda: worker.run(burst=True))
    try:
        wait_for(Run.objects.filter(label="watch:started").exists, what="the task to start")
        worker.request_stop()
        wait_for(Run.objects.filter(label="watch:stopping:True").exists, what="it to see")
    finally:
        thread.join(30)
    assert worker.stats.snoozed == 1
    result.refresh()
    assert (result.status, result.attempts, result.errors) == (TaskResultStatus.READY, 0, [])
