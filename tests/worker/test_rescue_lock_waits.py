"""The rescue sweep against an application's lock on a workflow: burying a dead worker's
workflow job fires a trigger that waits for the workflow's row. The sweep gives up after
lock_waits.LOCK_TIMEOUT, rescues every other expired lease without that job, and the loop's turn
goes on; the job is buried at a later sweep, once the row is free."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.utils import timezone

from django_pgjobs import enqueue, get_job, start_workflow
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker, housekeeping
from django_pgjobs.workflows import WorkflowHandle
from tests.helpers import second_connection, workflow_job
from tests.testapp import workflows as wf

# Their workers' sweeps rescue expired leases: the server must have been up for the hold.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rescuable")]


def died_holding(job_id: uuid.UUID, *, max_attempts: int) -> None:
    """As if a worker died during the job's attempt: its lease ran out a second ago."""
    Job.objects.filter(id=job_id).update(
        max_attempts=max_attempts, status="running", attempt=1, locked_at=timezone.now(),
        locked_by="dead-worker", lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip


@dataclass
class Dying:
    """A workflow whose worker died during its job's last attempt (the rescue buries it, which
    marks the workflow dead), and an application's transaction holding the workflow's row, as
    WorkflowHandle.cancel() inside atomic() does (``app``, rolled back at the end)."""

    handle: WorkflowHandle
    job_id: uuid.UUID
    app: psycopg.Connection[Any]


@pytest.fixture
def dying() -> Iterator[Dying]:
    handle = start_workflow(wf.greet, "its worker died")
    job_id = workflow_job(handle.workflow_id).id
    died_holding(job_id, max_attempts=1)
    app = second_connection(autocommit=False)
    app.execute(
        "SELECT 1 FROM pgjobs_workflow_executions WHERE workflow_id = %s FOR UPDATE",
        [handle.workflow_id],
    )
    yield Dying(handle, job_id, app)
    app.rollback()
    app.close()


def test_a_rescue_that_meets_a_lock_on_a_workflow_rescues_the_rest_and_goes_on(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch, dying: Dying
) -> None:
    monkeypatch.setattr(housekeeping, "DYING_HELD_RETRY", 0.0)  # the full sweep at once again
    other = enqueue("test.record")
    died_holding(other, max_attempts=3)
    worker = make_worker()
    worker._open()
    worker._housekeep(force=True)  # the turn goes on: no error
    assert get_job(other).status == "pending"  # rescued, to be retried
    assert get_job(dying.job_id).status == "running"  # left for a later sweep
    dying.app.rollback()
    worker._housekeep(force=True)
    assert FailedJob.objects.filter(id=dying.job_id).exists()
    assert dying.handle.get_status() == "dead"


def test_sweeps_leave_a_held_dying_workflow_for_a_while_instead_of_waiting_each_time(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture, dying: Dying
) -> None:
    """Each try waits lock_waits.LOCK_TIMEOUT on the loop: tried at every heartbeat, the
    loop spent most of its time waiting (as re-reviewed). The next sweeps leave such jobs for
    DYING_HELD_RETRY and rescue the rest without a wait."""
    worker = make_worker()
    worker._open()
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.worker"):
        worker._housekeep(force=True)
        later = enqueue("test.record")
        died_holding(later, max_attempts=3)
        worker._housekeep(force=True)
    waits = [r for r in caplog.records if "The rescue waited" in r.getMessage()]
    assert len(waits) == 1, caplog.text  # the second sweep did not try
    assert get_job(later).status == "pending"  # rescued all the same
    assert get_job(dying.job_id).status == "running"
