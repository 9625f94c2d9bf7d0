"""A task's timeout: its own (``@task(timeout=...)``, ``using(timeout=...)``), else the backend's
``OPTIONS["TIMEOUT"]``; a task past it fails with JobTimeout and is retried as its task says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings

from django_pgjobs.models import Job
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import InvalidTask, TaskResultStatus
from django_pgjobs.worker import Worker
from tests.helpers import db_now, wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

wait_for_file: PgJobsTask = tasks.wait_for_file

WITH_TIMEOUT = {
    "default": {
        "BACKEND": "django_pgjobs.backend.PgJobsBackend",
        "QUEUES": [],
        "OPTIONS": {"TIMEOUT": 90},
    }
}


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """The file wait_for_file waits for, created at teardown: no abandoned handler outlives its
    test (and writes its rows into the next one's)."""
    path = tmp_path / "release"
    yield path
    path.touch()


def test_a_task_past_its_timeout_fails_with_job_timeout_and_is_retried(
    make_worker: type[Worker], release: Path
) -> None:
    result = wait_for_file.using(timeout=0.5).enqueue(str(release), "slow")
    worker = make_worker(concurrency=1)
    first = worker.run_once()
    assert first.retried == 1
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [e.exception_class_path for e in result.errors] == [
        "django_pgjobs.exceptions.JobTimeout"
    ]
    # Due again at once: the task's backoff (0) applies, though no task code decided it.
    assert Job.objects.get(id=result.id).scheduled_for <= db_now()
    assert worker.run_once().buried == 1  # max_attempts=2
    assert wait_for_file.get_result(result.id).status == TaskResultStatus.FAILED
    release.touch()
    wait_for(lambda: worker.abandoned_threads == 0, what="the abandoned handlers to return")


def test_the_backend_s_timeout_is_the_default_of_tasks_that_set_none(release: Path) -> None:
    with override_settings(TASKS=WITH_TIMEOUT):
        plain = wait_for_file.enqueue(str(release), "plain")
        own = wait_for_file.using(timeout=timedelta(minutes=5)).enqueue(str(release), "own")
    assert Job.objects.get(id=plain.id).timeout == timedelta(seconds=90)
    assert Job.objects.get(id=own.id).timeout == timedelta(minutes=5)
    assert Job.objects.get(id=wait_for_file.enqueue(str(release), "x").id).timeout is None


def test_a_bad_timeout_is_refused_at_enqueue() -> None:
    with pytest.raises(InvalidTask, match="timeout"):
        wait_for_file.using(timeout=0)
