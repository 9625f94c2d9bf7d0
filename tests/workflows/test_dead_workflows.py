"""A workflow whose job keeps failing its runner ends dead, with a dead letter; resuming or
requeueing brings it back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import get_workflow, queries, send, start_workflow, workflow
from django_pgjobs.exceptions import WorkflowDead
from django_pgjobs.jobs import retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import resume_workflow
from tests.helpers import drain, make_workflow_due, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_workflow_that_keeps_failing_its_runner_ends_dead_and_can_be_resumed(
    make_worker: type[Worker],
) -> None:
    @workflow("test.unregistered_later", max_recovery_attempts=1)
    def doomed() -> str:
        return "ran"

    handle = start_workflow(doomed)
    from django_pgjobs.workflows.registry import workflows

    workflows._workflows.pop("test.unregistered_later")
    try:
        worker = make_worker()
        for _ in range(2):
            worker.run_once()
            make_workflow_due(handle.workflow_id)
        info = get_workflow(handle.workflow_id)
        assert info.status == "dead"
        assert info.error is not None and "dead letters" in info.error["message"]
        [dead] = FailedJob.objects.filter(payload__workflow_id=handle.workflow_id)
        assert "No workflow named" in (dead.error or "")
    finally:
        workflows.add(doomed)
    with pytest.raises(WorkflowDead):
        handle.get_result(0)
    resume_workflow(handle.workflow_id)
    assert not FailedJob.objects.filter(payload__workflow_id=handle.workflow_id).exists()
    drain(make_worker())
    assert handle.get_result(1) == "ran"


def test_a_requeued_dead_workflow_job_gets_its_key_back(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    job = workflow_job(handle.workflow_id)
    Job.objects.filter(id=job.id).update(max_attempts=1)
    Job.objects.filter(id=job.id).update(
        status="running",
        attempt=1,
        locked_at=timezone.now(),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    with connection.cursor() as cur:
        queries.rescue_expired_leases(cur)
    assert handle.get_status() == "dead"
    [dead] = FailedJob.objects.filter(payload__workflow_id=handle.workflow_id)
    retry_dead_letter_job(dead.id)
    assert workflow_job(handle.workflow_id).status == "pending"
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # waits for a message again
    # The wake-ups find the requeued job by its key; without it they would miss it.
    send(handle.workflow_id, "found by its key")
    drain(worker)
    send(handle.workflow_id, "second")
    drain(worker)
    assert handle.get_result(1) == ["found by its key", "second"]
