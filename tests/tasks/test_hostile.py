"""What an attacker's review found, each kept fixed: rows written by SQL never make a process
import a module, a second backend's tasks run and read back through it, metadata is the task's
own, a slow task_finished receiver cannot stall the worker, odd option types are refused."""

from __future__ import annotations

import sys
import threading
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs.exceptions import PayloadNotDecodable
from django_pgjobs.models import Job
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import (
    InvalidTask,
    TaskResultDoesNotExist,
    signals,
    task_backends,
)
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, wait_for
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

add: PgJobsTask = tasks.add  # type: ignore[assignment]


def insert(job_name: str, **columns: Any) -> str:
    job_id = str(uuid.uuid4())
    names = ["id", "job_name", "payload", *columns]
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO pgjobs_job_queue ({', '.join(names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))})",
            [job_id, job_name, "{}", *columns.values()],
        )
    return job_id


@pytest.mark.parametrize("job_name", ["tests.testapp.never_imported.task", ".relative.name"])
def test_get_result_never_imports_what_a_row_names(job_name: str) -> None:
    sys.modules.pop("tests.testapp.never_imported", None)
    job_id = insert(job_name)
    with pytest.raises(TaskResultDoesNotExist) as missing:
        task_backends["default"].get_result(job_id)
    assert "tests.testapp.never_imported" not in sys.modules
    assert job_name not in str(missing.value)  # the row's name is not echoed back


def test_an_undecodable_stored_result_raises_instead_of_being_returned() -> None:
    job_id = insert("tests.testapp.tasks.add")
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET status = 'completed', attempt = 1, "
            "completed_at = now(), result = %s::jsonb WHERE id = %s",
            ["[" * 5000 + "]" * 5000, job_id],
        )
    result = task_backends["default"].get_result(job_id)
    with pytest.raises(PayloadNotDecodable):
        result.return_value  # noqa: B018


def test_a_task_enqueued_through_another_backend_runs_and_reads_back_through_it(
    make_worker: type[Worker],
) -> None:
    two = {
        "default": {"BACKEND": "django_pgjobs.backend.PgJobsBackend"},
        "other": {"BACKEND": "django_pgjobs.backend.PgJobsBackend", "OPTIONS": {"BACKOFF": 0}},
    }
    with override_settings(TASKS=two):
        result = tasks.fail_plain.using(backend="other").enqueue("down")
        assert task_backends["other"].get_result(result.id).task.backend == "other"
        # The other backend's BACKOFF (0) decided the retry: due again at once.
        worker = make_worker()
        assert worker.run_once().retried == 1
        assert worker.run_once().retried == 1


def test_the_context_saves_the_tasks_metadata_not_the_progress_shown_beside_it(
    make_worker: type[Worker],
) -> None:
    result = tasks.progress_then_note.enqueue()
    worker = make_worker()
    assert worker.run_once().retried == 1
    assert worker.run_once().completed == 1
    assert Job.objects.get(id=result.id).metadata == {"note": "attempt 2"}


def test_a_result_does_not_share_nested_metadata_with_its_task() -> None:
    annotated = add.using(metadata={"tags": {"a": 1}})
    first = annotated.enqueue(1, 2)
    first.metadata["tags"]["b"] = 2  # type: ignore[attr-defined]
    second = annotated.enqueue(3, 4)
    assert Job.objects.get(id=second.id).metadata == {"tags": {"a": 1}}
    assert annotated.metadata == {"tags": {"a": 1}}


def test_a_blocked_task_finished_receiver_does_not_keep_the_worker_from_stopping(
    make_worker: type[Worker], settings: Any
) -> None:
    settings.PGJOBS = {"SHUTDOWN_GRACE": 0.5}
    release = threading.Event()

    def blocked(sender: Any, task_result: Any, **kwargs: Any) -> None:
        release.wait(60)

    signals.task_finished.connect(blocked, dispatch_uid="test-blocked")
    try:
        result = tasks.add.enqueue(1, 1)
        worker = make_worker(concurrency=1)
        runner = in_thread(lambda: worker.run(burst=True))
        # The burst drains the task and stops while the receiver is still blocked.
        wait_for(lambda: not runner.is_alive(), what="the worker to stop")
        assert not release.is_set()
        assert Job.objects.get(id=result.id).status == "completed"
    finally:
        release.set()
        signals.task_finished.disconnect(dispatch_uid="test-blocked")


@pytest.mark.parametrize("priority", [True, "5", 1.5, []])
def test_a_priority_of_another_type_is_refused_as_an_invalid_task(priority: Any) -> None:
    with pytest.raises(InvalidTask, match="whole number"):
        add.using(priority=priority)
