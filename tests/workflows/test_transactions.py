"""Workflows and transactions: a start joins the caller's, an atomic step commits with its
checkpoint, and neither a step nor a wait may run inside the workflow's own atomic block."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_pgjobs import sleep, start_workflow, step, workflow
from django_pgjobs.exceptions import WorkflowError
from django_pgjobs.models import Job, WorkflowExecution, WorkflowStep
from django_pgjobs.worker import Worker
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        start_workflow(wf.greet, "rolled back", workflow_id="rb")
        raise RuntimeError("abort")
    assert not WorkflowExecution.objects.filter(workflow_id="rb").exists()
    assert not Job.objects.filter(key="pgjobs.workflow:rb").exists()


def test_an_atomic_steps_writes_commit_with_its_checkpoint(make_worker: type[Worker]) -> None:
    calls: list[str] = []

    @step(atomic=True)
    def write_then_lose_the_lease(label: str) -> str:
        Run.objects.create(job_id=wf.ZERO, label=label)
        calls.append(label)
        # Another worker takes the job over before the checkpoint is written.
        Job.objects.filter(key__startswith="pgjobs.workflow:atomic-").update(lease_token=None)
        return label

    @workflow("test.atomic_lost")
    def atomic_lost() -> str:
        return str(write_then_lose_the_lease("atomic-lost"))

    handle = start_workflow(atomic_lost, workflow_id="atomic-1")
    drain(make_worker())
    assert calls == ["atomic-lost"]
    # The step's row was rolled back with the checkpoint that could not be written.
    assert wf.runs("atomic-lost") == 0
    assert not WorkflowStep.objects.filter(workflow_id=handle.workflow_id).exists()


def test_a_step_inside_atomic_in_a_workflow_body_is_refused(make_worker: type[Worker]) -> None:
    @workflow("test.atomic_body")
    def atomic_body() -> str:
        with transaction.atomic():
            return str(wf.note("inside atomic"))

    handle = start_workflow(atomic_body)
    drain(make_worker())
    with pytest.raises(WorkflowError, match="inside transaction"):
        handle.get_result(1)


@workflow("test.atomic_sleep")
def atomic_sleep() -> str:
    with transaction.atomic():
        sleep(30)
    return "woke"


def test_a_wait_inside_atomic_is_refused_like_a_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(atomic_sleep)
    make_worker().run_once()
    job = workflow_job(handle.workflow_id)
    # Written inside the workflow's atomic block, the suspension would be rolled back with it,
    # leaving the job "running" under a lease nobody renews (burning a recovery attempt).
    assert job.status != "running"
    with pytest.raises(WorkflowError, match="atomic"):
        handle.get_result(1)
