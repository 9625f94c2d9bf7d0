"""A job under a workflow runner's name that is not the workflow's own job (a row written by SQL
or by an older version: only a plain INSERT can still make one) never runs the workflow: it fails
at once, before any step, and its dead letter leaves the workflow alone."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection

from django_pgjobs import get_workflow, send, start_workflow
from django_pgjobs.models import FailedJob, WorkflowStep
from django_pgjobs.worker import Worker
from django_pgjobs.workflows.definitions import runner_job_name
from tests.helpers import bury_workflow, drain, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def stray_job(payload: object, key: str | None = None) -> uuid.UUID:
    """A plain INSERT of a job named like this process's workflow runner."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload, max_attempts, key) "
            "VALUES (%s, %s::jsonb, 5, %s) RETURNING id",
            [runner_job_name(), json.dumps(payload), key],
        )
        return cur.fetchone()[0]  # type: ignore[no-any-return]


def assert_refused(job_id: uuid.UUID) -> FailedJob:
    dead = FailedJob.objects.get(id=job_id)
    assert dead.attempt == 1  # buried at once: retrying could never make it the workflow's job
    assert "is not the job of workflow" in (dead.error or "")
    assert "refused without running a step" in (dead.error or "")
    return dead


def test_a_stray_job_does_not_bring_a_dead_workflow_back(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "ada")
    bury_workflow(handle.workflow_id)
    stray = stray_job({"workflow_id": handle.workflow_id})
    drain(make_worker())
    assert_refused(stray)
    assert get_workflow(handle.workflow_id).status == "dead"
    assert not WorkflowStep.objects.filter(workflow_id=handle.workflow_id).exists()
    assert wf.runs("hello ada") == 0


def test_a_stray_job_neither_runs_nor_kills_a_live_workflow(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # suspended, waiting for a message
    status_before = get_workflow(handle.workflow_id).status
    steps_before = list(WorkflowStep.objects.filter(workflow_id=handle.workflow_id).values())
    stray = stray_job({"workflow_id": handle.workflow_id}, key="someone-elses-key")
    drain(worker)
    assert_refused(stray)
    # Its dead letter did not declare the workflow dead: the workflow's own job is still there.
    assert get_workflow(handle.workflow_id).status == status_before != "dead"
    assert workflow_job(handle.workflow_id).status == "pending"
    assert list(WorkflowStep.objects.filter(workflow_id=handle.workflow_id).values()) == (
        steps_before
    )
    send(handle.workflow_id, "one")
    send(handle.workflow_id, "two")
    drain(worker)
    assert handle.get_result(1) == ["one", "two"]


@pytest.mark.parametrize("payload", [{}, {"workflow_id": 5}, [1], "w"])
def test_a_stray_job_without_a_workflow_id_is_refused_too(
    make_worker: type[Worker], payload: object
) -> None:
    stray = stray_job(payload)
    drain(make_worker())
    assert_refused(stray)
