"""PgJobsBackend as Django's Tasks framework specifies a backend: its flags, validation, results
by id, and system checks; all without a worker."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_pgjobs.backend import PgJobsBackend
from django_pgjobs.models import Job
from django_pgjobs.tasks import framework
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import InvalidTask, TaskResultDoesNotExist, TaskResultStatus
from tests.testapp import tasks

# @task is typed as the framework's Task; ours adds options to using().
add: PgJobsTask = tasks.add  # type: ignore[assignment]


def test_the_backend_supports_everything_the_framework_asks_about() -> None:
    backend = framework.task_backends["default"]
    assert isinstance(backend, PgJobsBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority
    assert backend.supports_metadata


@pytest.mark.django_db
def test_enqueue_writes_an_ordinary_job_named_after_the_task() -> None:
    result = tasks.record_task.enqueue("hello", attempt_seen=3)
    job = Job.objects.get(id=result.id)
    assert job.job_name == "tests.testapp.tasks.record_task"
    assert job.payload == {"args": ["hello"], "kwargs": {"attempt_seen": 3}, "backend": "default"}
    assert (job.queue, job.priority, job.status) == ("emails", 5, "pending")
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == (["hello"], {"attempt_seen": 3})
    assert result.task is tasks.record_task and result.backend == "default"


@pytest.mark.django_db
def test_get_result_reads_the_job_back_and_refresh_follows_it() -> None:
    result = tasks.add.using(priority=7).enqueue(2, 3)
    found = framework.task_backends["default"].get_result(result.id)
    assert (found.id, found.status, found.args) == (result.id, TaskResultStatus.READY, [2, 3])
    assert found.task.priority == 7 and found.task.func is tasks.add.func
    assert found.enqueued_at is not None and found.started_at is None
    assert tasks.add.get_result(result.id).id == result.id
    Job.objects.filter(id=result.id).update(status="cancelled", completed_at=timezone.now())
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.finished_at is not None


@pytest.mark.django_db
def test_the_result_enqueue_returns_is_the_one_get_result_reads() -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(2, 3)
        # Django's contract (its tests/tasks/): every field, the enqueue time included, which is
        # the transaction's start as stored, not the clock when enqueue() returned.
        assert tasks.add.get_result(result.id) == result
    assert result.enqueued_at == Job.objects.get(id=result.id).created_at


@pytest.mark.django_db
@pytest.mark.parametrize("result_id", ["123", "", "not-a-uuid", str(uuid.uuid4())])
def test_an_unknown_or_malformed_id_is_task_result_does_not_exist(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        framework.task_backends["default"].get_result(result_id)


@pytest.mark.django_db
def test_a_plain_job_is_not_a_task_result() -> None:
    from django_pgjobs import enqueue

    job_id = enqueue("test.record")
    with pytest.raises(TaskResultDoesNotExist, match="not a task"):
        framework.task_backends["default"].get_result(str(job_id))


@pytest.mark.django_db
def test_a_rolled_back_enqueue_leaves_nothing() -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        assert Job.objects.filter(id=result.id).exists()
        transaction.set_rollback(True)
    assert not Job.objects.filter(id=result.id).exists()


@pytest.mark.django_db
def test_run_after_takes_an_aware_datetime_or_a_delay() -> None:
    at = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(run_after=at).enqueue(1, 2)
    assert Job.objects.get(id=result.id).scheduled_for == at
    delayed = add.using(run_after=timedelta(minutes=5)).enqueue(1, 2)
    when = Job.objects.get(id=delayed.id).scheduled_for
    assert timezone.now() + timedelta(minutes=4) < when < timezone.now() + timedelta(minutes=6)


def test_invalid_tasks_are_refused_with_the_frameworks_error() -> None:
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidTask, match="not valid"):
        tasks.add.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="max_attempts"):
        add.using(max_attempts=0)
    with pytest.raises(InvalidTask, match="run_after"):
        add.using(run_after=timedelta(days=365 * 8000))
    with pytest.raises(InvalidTask, match="metadata"):
        add.using(metadata=["not", "a", "dict"])  # type: ignore[arg-type]

    def local() -> None: ...

    with pytest.raises(InvalidTask, match="module level"):
        framework.task(local)


def test_a_payload_that_is_not_json_is_refused_before_anything_is_written() -> None:
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)  # type: ignore[arg-type]


@override_settings(
    TASKS={
        "default": {
            "BACKEND": "django_pgjobs.backend.PgJobsBackend",
            "QUEUES": ["", "ok"],
            "OPTIONS": {
                "MAX_ATTEMPTS": 0,
                "BACKOFF": "no.such.function",
                "DATABASE": "nowhere",
                "RETRIES": 3,
                "TIMEOUT": 0,
            },
        }
    }
)
def test_check_reports_every_bad_option_without_touching_the_database() -> None:
    ids = {m.id for m in run_checks() if m.id and m.id.startswith("pgjobs.E03")}
    assert ids == {
        "pgjobs.E030", "pgjobs.E031", "pgjobs.E032", "pgjobs.E033", "pgjobs.E035", "pgjobs.E036"
    }  # fmt: skip


@pytest.mark.parametrize("alias", [["x"], {"a": 1}])
def test_check_reports_a_database_option_that_is_no_str(alias: Any) -> None:
    """An unhashable one raised TypeError from the check, so from every command."""
    backend = {"BACKEND": "django_pgjobs.backend.PgJobsBackend", "OPTIONS": {"DATABASE": alias}}
    with override_settings(TASKS={"default": backend}):
        ids = {m.id for m in run_checks() if m.id and m.id.startswith("pgjobs.E03")}
    assert ids == {"pgjobs.E033"}


@pytest.mark.parametrize(
    "options",
    [{"TIMEOUT": 0}, {"TIMEOUT": "abc"}, {"MAX_ATTEMPTS": 0}, {"BACKOFF": "nope"}],
    ids=["timeout 0", "timeout text", "max_attempts 0", "backoff path"],
)
def test_a_bad_option_leaves_tasks_declarable_for_the_check_to_report(
    options: dict[str, Any],
) -> None:
    """Declaring (importing) a task asks the backend's options: a malformed one must not raise
    there, or every manage.py command would fail before the check could say what is wrong."""
    from django_pgjobs.backend import PgJobsBackend

    backend = PgJobsBackend("bad", {"OPTIONS": options})
    backend.validate_task(tasks.add)  # what importing a module of tasks does
    assert (backend.max_attempts, backend.timeout, backend.backoff) == (None, None, None)


def test_check_passes_for_the_suites_settings() -> None:
    assert [m for m in run_checks() if m.id and m.id.startswith("pgjobs.E03")] == []


@pytest.mark.parametrize(
    ("backend", "imports_tasks_modules"),
    [
        ("django_pgjobs.backend.PgJobsBackend", True),
        ("tests.contract.backends.RunNowBackend", True),  # a subclass of it, elsewhere
        (f"{framework.NAME}.backends.immediate.ImmediateBackend", False),
        ("no.such.Backend", False),
    ],
)
def test_apps_tasks_modules_are_imported_when_tasks_names_the_backend_or_a_subclass(
    backend: str, imports_tasks_modules: bool
) -> None:
    from django_pgjobs.apps import _uses_pgjobs_backend

    with override_settings(TASKS={"default": {"BACKEND": backend}}):
        assert _uses_pgjobs_backend() is imports_tasks_modules
