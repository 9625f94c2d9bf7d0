"""A task's partition key: ``@task(partition_key=...)`` (a str, or a callable given the task's
arguments), ``task.using(partition_key="...")`` for one enqueue, checked before anything is
written."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from django_pgjobs import enqueue
from django_pgjobs.models import Job
from django_pgjobs.tasks.definitions import PgJobsTask
from django_pgjobs.tasks.framework import InvalidTask, TaskResultStatus, task
from django_pgjobs.worker import Worker
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

post_entry: PgJobsTask = tasks.post_entry
build_report: PgJobsTask = tasks.build_report


def key_of(result: Any) -> str | None:
    return Job.objects.get(id=result.id).partition_key


def test_a_tasks_key_is_its_str_or_its_callables_answer(make_worker: type[Worker]) -> None:
    assert key_of(build_report.enqueue("q3")) == "reports"
    assert key_of(post_entry.enqueue(42, amount=5)) == "account:42"
    assert key_of(post_entry.enqueue(account=7)) == "account:7"  # by keyword too
    assert key_of(post_entry.enqueue(0)) is None  # None: no partition
    make_worker(concurrency=4).run_once()
    done = post_entry.enqueue(1, 10)
    make_worker().run_once()
    assert post_entry.get_result(done.id).status == TaskResultStatus.SUCCESSFUL


def test_using_gives_one_enqueue_its_own_key() -> None:
    assert key_of(post_entry.using(partition_key="manual").enqueue(42)) == "manual"
    assert key_of(build_report.using(partition_key="q").enqueue()) == "q"
    with pytest.raises(InvalidTask, match="takes one enqueue's key, a str"):
        post_entry.using(partition_key=lambda *a: "x")  # type: ignore[arg-type]


def test_the_task_key_reaches_a_job_enqueued_by_the_tasks_name() -> None:
    """A schedule's tick or ``enqueue(module_path, ...)`` goes through the job handler the
    backend registered: its callable reads the task's arguments from the payload."""
    job_id = enqueue(post_entry.module_path, {"args": [9], "kwargs": {"amount": 1}})
    assert Job.objects.get(id=job_id).partition_key == "account:9"


@task(partition_key=lambda n: n)  # type: ignore[call-overload, untyped-decorator]
def numbered(n: Any) -> None:
    """Its partition key is its argument, whatever that is."""


def unchecked() -> None:
    """Declared as a task with a bad key by a test."""


def test_a_callable_that_raises_names_the_task_and_writes_nothing() -> None:
    with pytest.raises(InvalidTask, match=r"tasks\.post_entry: its partition_key callable raised"):
        post_entry.enqueue()  # no account: the callable's TypeError
    assert not Job.objects.exists()


def test_a_callable_answering_no_str_is_refused_even_on_commit() -> None:
    with pytest.raises(InvalidTask, match=r"numbered: partition_key must be a non-empty str"):
        numbered.enqueue(5)
    with pytest.raises(InvalidTask, match="partition_key"), transaction.atomic():
        numbered.enqueue_on_commit(6)  # asked now, not at the commit
    assert not Job.objects.exists()
    numbered.enqueue("five")
    assert list(Job.objects.values_list("partition_key", flat=True)) == ["five"]


def test_a_bad_str_is_refused_when_the_task_is_declared() -> None:
    with pytest.raises(InvalidTask, match="partition_key must be a non-empty str without NUL"):
        task(partition_key="nul\x00")(unchecked)  # type: ignore[call-overload]
