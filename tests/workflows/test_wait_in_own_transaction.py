"""Waiting for a workflow from inside the transaction that started, resumed or forked it, or sent
it a message: no worker sees that before the transaction commits, which it cannot while its
thread waits. The wait says so at once instead of lasting its whole timeout (run_workflow() has
none: for ever), with no statement or connection of its own. Once that transaction has ended,
waits are as they always were."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_pgjobs import cancel_workflow, get_event, send, start_workflow
from django_pgjobs.exceptions import WorkflowNotFound, WorkflowStateError, WorkflowTimeout
from django_pgjobs.workflows import resume_workflow
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_result_in_the_transaction_that_started_the_workflow_is_refused_at_once() -> None:
    # run_workflow() is this (start, then get_result() with no timeout): without the refusal it
    # waits for ever, so it is not run here; the message names it.
    with transaction.atomic():
        handle = start_workflow(wf.greet, "x")
        with pytest.raises(WorkflowStateError, match="started in the transaction this wait"):
            handle.get_result(timeout=5)


def test_a_savepoint_inside_it_counts_too() -> None:
    with transaction.atomic():
        with transaction.atomic():
            handle = start_workflow(wf.greet, "x")
        with pytest.raises(WorkflowStateError, match="has not committed"):
            handle.get_result(timeout=5)


def test_get_event_of_a_workflow_started_in_the_same_transaction_is_refused() -> None:
    with transaction.atomic():
        handle = start_workflow(wf.greet, "x")
        with pytest.raises(WorkflowStateError):
            get_event(handle.workflow_id, "never", timeout=5)


def test_a_workflow_committed_before_is_waited_for_inside_a_transaction() -> None:
    handle = start_workflow(wf.greet, "x")  # committed: autocommit
    with transaction.atomic(), pytest.raises(WorkflowTimeout):
        handle.get_result(timeout=0.2)  # no worker here: it times out, as it always did


def test_a_workflow_resumed_in_the_transaction_is_refused_too() -> None:
    handle = start_workflow(wf.greet, "x")
    cancel_workflow(handle.workflow_id)
    with transaction.atomic():
        resume_workflow(handle.workflow_id)
        with pytest.raises(WorkflowStateError, match="was resumed in the transaction"):
            handle.get_result(timeout=5)


def test_a_message_sent_in_the_transaction_is_refused_too() -> None:
    handle = start_workflow(wf.receiver, None, 60)
    with transaction.atomic():
        send(handle.workflow_id, "hello")
        with pytest.raises(WorkflowStateError, match="was sent a message in the transaction"):
            handle.get_result(timeout=5)


def test_once_that_transaction_committed_a_later_one_waits_as_ever() -> None:
    with transaction.atomic():
        handle = start_workflow(wf.greet, "x")
    with transaction.atomic(), pytest.raises(WorkflowTimeout):
        handle.get_result(timeout=0.2)


def test_a_start_in_a_savepoint_rolled_back_leaves_nothing_to_refuse() -> None:
    with transaction.atomic():
        try:
            with transaction.atomic():
                handle = start_workflow(wf.greet, "x")
                raise RuntimeError("undo")
        except RuntimeError:
            pass
        with pytest.raises(WorkflowNotFound):
            handle.get_result(timeout=5)


def test_a_message_rolled_back_in_a_savepoint_leaves_the_start_before_it_refused() -> None:
    """The later note replaced the earlier one, and went with its savepoint: the wait ran its
    whole timeout, with timeout=None for ever (an attacker's review)."""
    with transaction.atomic():
        handle = start_workflow(wf.receiver, None, 60)
        try:
            with transaction.atomic():
                send(handle.workflow_id, "hi")
                raise RuntimeError("undo")
        except RuntimeError:
            pass
        with pytest.raises(WorkflowStateError, match="was started in the transaction"):
            handle.get_result(timeout=3)


def test_what_a_rolled_back_transaction_noted_is_not_kept_on_the_connection() -> None:
    from django.db import connections

    for _ in range(3):
        try:
            with transaction.atomic():
                start_workflow(wf.greet, "x")
                raise RuntimeError("undo")
        except RuntimeError:
            pass
    with transaction.atomic():
        handle = start_workflow(wf.greet, "y")
        kept = connections["default"].__dict__["_pgjobs_uncommitted_workflows"]
        assert list(kept) == [handle.workflow_id]
