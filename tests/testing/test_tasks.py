"""The testing helpers with Django tasks: drain() runs them in the test's own transaction (the
framework's signals included), assert_enqueued() matches them by task and arguments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from django_pgjobs.tasks.framework import TaskResultStatus, signals
from django_pgjobs.testing import advance, assert_enqueued, assert_not_enqueued, drain
from tests.testapp import tasks
from tests.testing.kinds import BOTH_KINDS


@BOTH_KINDS
def test_drain_runs_a_task_and_its_result_is_read_back(kind: str) -> None:
    finished: list[Any] = []

    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        finished.append(task_result.status)

    signals.task_finished.connect(receive, dispatch_uid="testing-tasks")
    try:
        result = tasks.add.enqueue(20, 22)
        assert drain().completed == 1
    finally:
        signals.task_finished.disconnect(dispatch_uid="testing-tasks")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    assert finished == [TaskResultStatus.SUCCESSFUL]


@BOTH_KINDS
def test_a_failing_task_is_retried_when_the_clock_moves(kind: str) -> None:
    result = tasks.fail_plain.enqueue("down")  # the default backoff, 3 attempts
    assert drain().retried == 1
    assert drain().claimed == 0  # its retry is not due yet
    advance(timedelta(hours=1))
    assert drain().retried == 1
    advance(timedelta(hours=1))
    assert drain().buried == 1
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert [e.exception_class for e in result.errors] == [ValueError] * 3


@BOTH_KINDS
def test_a_retry_due_at_once_runs_in_the_same_drain(kind: str) -> None:
    result = tasks.flaky_context.enqueue(succeed_on=2)  # backoff=0
    outcome = drain()
    assert (outcome.retried, outcome.completed) == (1, 1)
    result.refresh()
    assert result.return_value == {"attempt": 2, "id": result.id}


@pytest.mark.django_db
def test_assert_enqueued_matches_a_task_by_its_arguments() -> None:
    tasks.record_task.enqueue("hello", attempt_seen=1)
    assert_enqueued(tasks.record_task, args=["hello"], kwargs={"attempt_seen": 1}, queue="emails")
    assert_not_enqueued(tasks.record_task, args=["bye"])
    assert_not_enqueued(tasks.add)
