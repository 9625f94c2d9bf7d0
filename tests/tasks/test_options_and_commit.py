"""The backend's OPTIONS as defaults, enqueue_on_commit, the async API, and the framework's log
lines from a worker run through call_command."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from django_pgjobs.models import Job
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import TaskResultDoesNotExist, TaskResultStatus, signals
from django_pgjobs.worker import Worker
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

add: PgJobsTask = tasks.add  # type: ignore[assignment]

WITH_OPTIONS = {
    "default": {
        "BACKEND": "django_pgjobs.backend.PgJobsBackend",
        "QUEUES": [],
        "OPTIONS": {"MAX_ATTEMPTS": 7, "BACKOFF": "tests.tasks.test_options_and_commit.never"},
    }
}


def never(exception: BaseException, task_result: Any) -> None:
    """A BACKOFF callable named by its dotted path: no retries at all."""
    return None


def test_options_are_the_defaults_of_tasks_that_set_none(make_worker: type[Worker]) -> None:
    with override_settings(TASKS=WITH_OPTIONS):
        plain = tasks.fail_plain.enqueue("down")
        own = tasks.fail_with.enqueue("value")
        assert Job.objects.get(id=plain.id).max_attempts == 7  # OPTIONS["MAX_ATTEMPTS"]
        assert Job.objects.get(id=own.id).max_attempts == 5  # the task's own wins
        stats = make_worker(concurrency=2).run_once()
        # OPTIONS["BACKOFF"] (a dotted path) said no retry, though attempts were left; the
        # task's own backoff retried the other.
        assert (stats.buried, stats.retried) == (1, 1)
        assert tasks.fail_plain.get_result(plain.id).status == TaskResultStatus.FAILED


def test_enqueue_on_commit_inserts_at_the_commit_and_not_on_rollback() -> None:
    heard: list[str] = []

    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        heard.append(task_result.id)

    signals.task_enqueued.connect(receive, dispatch_uid="on-commit-test")
    try:
        with transaction.atomic():
            kept = add.enqueue_on_commit(1, 2)
            assert not Job.objects.filter(id=kept.id).exists() and heard == []
        assert Job.objects.filter(id=kept.id).exists() and heard == [kept.id]
        with transaction.atomic():
            dropped = add.enqueue_on_commit(3, 4)
            transaction.set_rollback(True)
        assert not Job.objects.filter(id=dropped.id).exists() and heard == [kept.id]
        with pytest.raises(TaskResultDoesNotExist):
            dropped.refresh()
    finally:
        signals.task_enqueued.disconnect(dispatch_uid="on-commit-test")


def test_the_async_api_enqueues_and_reads_results(make_worker: type[Worker]) -> None:
    result = async_to_sync(tasks.add.aenqueue)(5, 6)
    make_worker().run_once()
    found = async_to_sync(tasks.add.aget_result)(result.id)
    assert found.return_value == 11
    async_to_sync(result.arefresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_a_worker_run_through_call_command_logs_the_frameworks_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = tasks.add.enqueue(1, 1)
    with caplog.at_level(logging.INFO, logger=signals.logger.name):
        call_command("pgjobs_worker", "--burst", "--no-scheduler")
    lines = [r.getMessage() for r in caplog.records if r.name == signals.logger.name]
    assert f"Task id={result.id} path=tests.testapp.tasks.add state=RUNNING" in lines
    assert f"Task id={result.id} path=tests.testapp.tasks.add state=SUCCESSFUL" in lines
