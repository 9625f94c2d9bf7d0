"""enqueued(), assert_enqueued() and assert_not_enqueued(): what waits in the queue, matched by
job name, handler or task, payload, a task's args and kwargs, and queue, with failure messages
that show what was enqueued instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest

from django_pgjobs import enqueue
from django_pgjobs.testing import assert_enqueued, assert_not_enqueued, drain, enqueued
from tests.testapp import jobs as handlers

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class TaskLike:
    """Stands in for a Django Task: what matching reads is its ``module_path``."""

    module_path: str


SEND_EMAIL = TaskLike("myapp.tasks.send_email")


def enqueue_task(*args: object, queue: str = "default", **kwargs: object) -> None:
    """A task's row, as the Tasks backend writes it: its name is the task's module path and its
    payload holds the call's arguments."""
    enqueue(SEND_EMAIL.module_path, {"args": list(args), "kwargs": kwargs}, queue=queue)


def test_jobs_are_matched_by_name_handler_and_payload() -> None:
    enqueue("test.record", {"label": "a"})
    enqueue("test.record", {"label": "b"}, queue="other")
    enqueue("test.fail")
    assert len(enqueued()) == 3
    assert len(enqueued("test.record")) == 2
    assert len(enqueued(handlers.record)) == 2  # the JobHandler @job returned
    [job] = enqueued(handlers.record, payload={"label": "b"})
    assert job.queue == "other"
    assert enqueued("test.record", queue="other") == [job]
    assert enqueued("test.fail", payload=None) == enqueued("test.fail", payload={})


def test_tasks_are_matched_by_module_path_args_and_kwargs() -> None:
    enqueue_task("ada@example.com", subject="Hi")
    enqueue_task("bob@example.com", subject="Hi", queue="mail")
    assert len(enqueued(SEND_EMAIL)) == 2
    assert len(enqueued(SEND_EMAIL, kwargs={"subject": "Hi"})) == 2
    [job] = enqueued(SEND_EMAIL, args=("ada@example.com",))  # a tuple matches the stored list
    assert job.payload == {"args": ["ada@example.com"], "kwargs": {"subject": "Hi"}}
    assert enqueued(SEND_EMAIL, args=["bob@example.com"], queue="mail")
    assert not enqueued(SEND_EMAIL, args=["ada@example.com"], kwargs={})


def test_scheduled_jobs_count_as_enqueued_and_jobs_that_ran_do_not() -> None:
    enqueue("test.record", {"label": "later"}, scheduled_for=timedelta(hours=1))
    enqueue("test.record", {"label": "now"})
    drain()
    [job] = assert_enqueued("test.record")
    assert job.payload == {"label": "later"}


def test_assert_enqueued_returns_the_matches_and_can_count_them() -> None:
    enqueue("test.record", {"label": "x"})
    enqueue("test.record", {"label": "x"})
    assert len(assert_enqueued("test.record", payload={"label": "x"}, count=2)) == 2
    assert_not_enqueued("test.fail")


def test_a_failed_assert_enqueued_lists_what_was_enqueued() -> None:
    enqueue("test.record", {"label": "what we got"})
    enqueue_task("ada@example.com", queue="mail")
    expected = (
        "Expected at least one pending job matching job_name='test.record', "
        "payload={'label': 'what we wanted'}; found 0.\n"
        "Pending jobs (2):\n"
        "  test.record queue='default' payload={'label': 'what we got'}\n"
        "  myapp.tasks.send_email queue='mail' payload="
        "{'args': ['ada@example.com'], 'kwargs': {}}"
    )
    with pytest.raises(AssertionError) as raised:
        assert_enqueued("test.record", payload={"label": "what we wanted"})
    assert str(raised.value) == expected


def test_a_failed_count_says_how_many_were_found() -> None:
    enqueue("test.record")
    with pytest.raises(AssertionError, match=r"^Expected 2 pending job\(s\) matching "):
        assert_enqueued(handlers.record, count=2)


def test_an_empty_queue_is_said_to_be_empty() -> None:
    with pytest.raises(AssertionError, match=r"Pending jobs: none\.$"):
        assert_enqueued(SEND_EMAIL, kwargs={"to": "ada"})


def test_a_failed_assert_not_enqueued_lists_the_matches() -> None:
    enqueue("test.record", {"label": "unwanted"})
    enqueue("test.fail")
    expected = (
        "Expected no pending job matching job_name='test.record'; found 1.\n"
        "Matching jobs (1):\n"
        "  test.record queue='default' payload={'label': 'unwanted'}"
    )
    with pytest.raises(AssertionError, match=re.escape(expected)):
        assert_not_enqueued("test.record")


def test_a_long_payload_is_cut_in_the_message() -> None:
    enqueue("test.record", {"label": "x" * 500})
    with pytest.raises(AssertionError) as raised:
        assert_not_enqueued()
    assert len(str(raised.value).splitlines()[-1]) < 260
    assert str(raised.value).endswith("...")


def test_something_that_names_no_job_is_refused() -> None:
    with pytest.raises(TypeError, match="Expected a job name, a @job handler or a task, not int"):
        enqueued(42)
