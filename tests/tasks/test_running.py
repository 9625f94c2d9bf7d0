"""Tasks run by the worker: return values, retries and backoff, per-attempt errors and workers,
times, context and metadata, and Django's signals and log lines at the right moments."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.db import connection

from django_pgjobs import cancel_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTask, PgJobsTaskResult
from django_pgjobs.tasks.framework import TaskResultStatus, signals
from django_pgjobs.worker import Worker
from tests.helpers import make_due_now
from tests.testapp import tasks

# @task is typed as the framework's Task; ours adds options to using().
unstorable: PgJobsTask = tasks.unstorable  # type: ignore[assignment]
flaky_context: PgJobsTask = tasks.flaky_context

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard() -> Iterator[list[tuple[str, Any, str]]]:
    """(signal, status, status as stored when the signal was sent) for each framework signal."""
    events: list[tuple[str, Any, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            with connection.cursor() as cur:
                cur.execute("SELECT status FROM pgjobs_job_queue WHERE id = %s", [task_result.id])
                row = cur.fetchone()
            events.append((name, task_result.status, row[0] if row else "dead"))

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    for name, receive in receivers.items():
        getattr(signals, f"task_{name}").connect(receive, dispatch_uid=f"test-{name}")
    yield events
    for name in receivers:
        getattr(signals, f"task_{name}").disconnect(dispatch_uid=f"test-{name}")


def test_a_task_runs_and_its_return_value_is_stored(make_worker: type[Worker]) -> None:
    result = tasks.add.enqueue(2, 40)
    worker = make_worker()
    assert worker.run_once().completed == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 42
    assert result.worker_ids == [worker.worker_id] and result.attempts == 1
    assert result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at  # type: ignore[operator]
    assert result.last_attempted_at == result.started_at


def test_tasks_claimed_and_completed_together_keep_their_own_return_values(
    make_worker: type[Worker],
) -> None:
    """One claim's jobs share its lease token: results keyed by it gave every task of a batch
    the same return value."""
    results = [tasks.add.enqueue(i, 100) for i in range(4)]
    assert make_worker(concurrency=4).run_once().completed == 4  # one claim, one batch
    for result in results:
        result.refresh()
    assert [r.return_value for r in results] == [100, 101, 102, 103]


def test_an_async_task_runs(make_worker: type[Worker]) -> None:
    result = tasks.add_async.enqueue(1, 2)
    make_worker().run_once()
    assert tasks.add_async.get_result(result.id).return_value == 3  # type: ignore[comparison-overlap]


def test_signals_are_sent_when_it_is_enqueued_started_and_finished_after_the_commit(
    make_worker: type[Worker], heard: list[tuple[str, Any, str]]
) -> None:
    tasks.add.enqueue(1, 1)
    make_worker().run_once()
    assert heard == [
        ("enqueued", TaskResultStatus.READY, "pending"),
        ("started", TaskResultStatus.RUNNING, "running"),
        # Sent once the outcome is committed: a receiver reading the job sees it.
        ("finished", TaskResultStatus.SUCCESSFUL, "completed"),
    ]


def test_each_failed_attempt_has_its_error_and_worker_until_the_task_fails(
    make_worker: type[Worker], heard: list[tuple[str, Any, str]], caplog: pytest.LogCaptureFixture
) -> None:
    result = tasks.fail_task.enqueue("smtp down")
    first, second = make_worker(worker_id="first"), make_worker(worker_id="second")
    with caplog.at_level(logging.INFO, logger=framework.signals.logger.name):
        assert first.run_once().retried == 1
        result.refresh()
        assert result.status == TaskResultStatus.READY and result.attempts == 1
        make_due_now(uuid_of(result))
        assert second.run_once().buried == 1
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == ["first", "second"] and result.attempts == 2
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]
    assert all(e.traceback.startswith("Traceback") for e in result.errors)
    # As Python formats it, last line and newline included (Django's contract tests check).
    assert result.errors[-1].traceback.endswith("ValueError: smtp down\n")
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018
    assert FailedJob.objects.filter(id=result.id).exists()
    finished = [(status, stored) for name, status, stored in heard if name == "finished"]
    assert finished == [(TaskResultStatus.READY, "pending"), (TaskResultStatus.FAILED, "dead")]
    # The framework's own log lines, the failure with its traceback.
    failed = [r for r in caplog.records if r.getMessage().endswith("state=FAILED")]
    assert len(failed) == 1 and failed[0].exc_info and failed[0].exc_info[0] is ValueError


def test_a_backoff_callable_decides_the_retry_and_none_stops_it(make_worker: type[Worker]) -> None:
    retried = tasks.fail_with.enqueue("value")
    stopped = tasks.fail_with.enqueue("lookup")
    stats = make_worker(concurrency=2).run_once()
    assert (stats.retried, stats.buried) == (1, 1)
    assert Job.objects.get(id=retried.id).attempt == 1  # due again at once: backoff 0
    dead = tasks.fail_with.get_result(stopped.id)
    assert dead.status == TaskResultStatus.FAILED and dead.attempts == 1
    assert dead.errors[0].exception_class is LookupError


def test_the_context_has_the_attempt_and_metadata_saved_while_running(
    make_worker: type[Worker],
) -> None:
    result = cast(
        PgJobsTaskResult, flaky_context.using(metadata={"tenant": "acme"}).enqueue(succeed_on=2)
    )
    worker = make_worker()
    assert worker.run_once().retried == 1
    result.refresh()
    assert result.metadata["tenant"] == "acme" and result.metadata["seen"] == [1]
    assert worker.run_once().completed == 1
    result.refresh()
    assert result.return_value == {"attempt": 2, "id": result.id}
    assert result.metadata["seen"] == [1, 2]
    assert result.metadata["progress"] == 50 and result.metadata["progress_message"] == "half way"
    assert len(result.errors) == 1 and "attempt 1 fails" in result.errors[0].traceback


def test_a_return_value_json_cannot_hold_fails_the_task_saying_why(
    make_worker: type[Worker],
) -> None:
    result = unstorable.using(max_attempts=3).enqueue()
    assert make_worker().run_once().buried == 1  # no retry: the same code returns the same
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "django_pgjobs.exceptions.ResultNotStorable"
    assert "cannot be stored as JSON" in error.traceback and "Unsupported type" in error.traceback


def test_a_task_is_cancelled_like_any_job(make_worker: type[Worker]) -> None:
    result = tasks.add.enqueue(1, 1)
    cancel_job(result.id)
    assert make_worker().run_once().claimed == 0
    result.refresh()
    assert result.status == TaskResultStatus.FAILED


def test_tasks_run_in_priority_order(make_worker: type[Worker]) -> None:
    low = tasks.record_task.using(priority=-10).enqueue("low")
    high = tasks.record_task.using(priority=50).enqueue("high")
    mid = tasks.record_task.enqueue("mid")
    worker = make_worker(concurrency=1)
    order = []
    for _ in range(3):
        worker.run_once()
        order += [r.id for r in (low, high, mid) if Job.objects.get(id=r.id).status == "completed"]
    assert list(dict.fromkeys(order)) == [high.id, mid.id, low.id]


def test_a_payload_written_by_sql_in_another_shape_fails_without_retries(
    make_worker: type[Worker],
) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('tests.testapp.tasks.add', '[1, 2]'::jsonb)")
        (job_id,) = cur.fetchone()
    assert make_worker().run_once().buried == 1
    result = framework.task_backends["default"].get_result(str(job_id))
    assert result.status == TaskResultStatus.FAILED and result.args == []
    assert "must be" in result.errors[0].traceback


def uuid_of(result: Any) -> Any:
    import uuid

    return uuid.UUID(result.id)


def test_a_requeued_dead_task_keeps_its_result_id(make_worker: type[Worker]) -> None:
    from django_pgjobs.jobs import retry_dead_letter_job

    result = tasks.fail_plain.using(max_attempts=1).enqueue("down")  # type: ignore[call-arg]
    assert make_worker().run_once().buried == 1
    retry_dead_letter_job(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.attempts == 0
    assert len(result.errors) == 1  # the dead letter's failure is still there


def test_an_async_task_saves_its_metadata(make_worker: type[Worker]) -> None:
    result = tasks.note_async.enqueue("from a coroutine")
    assert make_worker().run_once().completed == 1
    result.refresh()
    saved: Any = result.return_value
    assert saved is True
    assert cast(PgJobsTaskResult, result).metadata == {"note": "from a coroutine"}
