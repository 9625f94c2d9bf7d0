"""Pruning deletes finished workflows with their history, but never one a job or a parent still
needs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import get_workflow, queries, send, sleep, start_workflow, workflow
from django_pgjobs.jobs import retry_dead_letter_job
from django_pgjobs.models import Job, WorkflowExecution, WorkflowStep
from django_pgjobs.worker import Worker
from tests.helpers import bury_workflow, drain, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def prune_workflows() -> int:
    with connection.cursor() as cur:
        return queries.prune_finished_workflows(cur, older_than_seconds=7 * 86400)


def test_finished_workflows_are_pruned_with_their_history(make_worker: type[Worker]) -> None:
    old = start_workflow(wf.receiver, None, 0)
    young = start_workflow(wf.greet, "young")
    send(old.workflow_id, "kept until pruned")
    drain(make_worker())
    WorkflowExecution.objects.filter(workflow_id=old.workflow_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_events (workflow_id, key, value) VALUES (%s, 'k', '1')",
            [old.workflow_id],
        )
        assert queries.prune_finished_workflows(cur, older_than_seconds=7 * 86400) == 1
    assert not WorkflowExecution.objects.filter(workflow_id=old.workflow_id).exists()
    assert not WorkflowStep.objects.filter(workflow_id=old.workflow_id).exists()
    assert get_workflow(young.workflow_id).status == "completed"


def test_pruning_keeps_a_dead_workflow_whose_job_was_requeued(make_worker: type[Worker]) -> None:
    """Requeueing gives the job its key back so it runs the workflow again, but the workflow
    stays 'dead' with its old completed_at until the job is claimed. The worker prunes at the
    start of its loop, before it claims: pruning must not delete the workflow (steps, messages,
    events) under the job queued to run it."""
    handle = start_workflow(wf.receiver, None, 30)
    dead = bury_workflow(handle.workflow_id)
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    retry_dead_letter_job(dead.id)
    assert workflow_job(handle.workflow_id).status == "pending"
    prune_workflows()
    assert WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).exists()


@workflow("test.late_collector")
def late_collector() -> Any:
    child = start_workflow(wf.child, 3)
    sleep(30)  # days, in real life; longer than WORKFLOW_RETENTION after the child ended
    return child.get_result()


def test_pruning_keeps_a_finished_child_whose_parent_is_still_running(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(late_collector)
    worker = make_worker()
    drain(worker)  # the child completes; the parent sleeps
    child_id = f"{handle.workflow_id}-0"
    assert get_workflow(child_id).status == "completed"
    assert handle.get_status() == "pending"
    WorkflowExecution.objects.filter(workflow_id=child_id).update(
        completed_at=timezone.now() - timedelta(days=8)
    )
    prune_workflows()
    past = timezone.now() - timedelta(seconds=1)
    waiting = WorkflowStep.objects.filter(workflow_id=handle.workflow_id, status="waiting")
    waiting.update(wake_at=past)
    Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(scheduled_for=past)
    drain(worker)
    # Had the child been pruned, the parent would fail with WorkflowNotFound for a child it
    # started itself.
    assert handle.get_result(1) == 30
