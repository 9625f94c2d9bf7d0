"""Cancelling a workflow stops it before its next step, whatever it is doing; resuming runs it
on to the end."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import (
    cancel_job,
    cancel_workflow,
    explain_job,
    get_job,
    get_workflow,
    retry_job,
    send,
    sleep,
    start_workflow,
    step,
    workflow,
)
from django_pgjobs.exceptions import (
    JobStateError,
    WorkflowCancelled,
    WorkflowNotFound,
    WorkflowStateError,
)
from django_pgjobs.jobs import retry_dead_letter_job
from django_pgjobs.models import Job, WorkflowStep
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps, resume_workflow
from tests.helpers import bury_workflow, drain, in_thread, wait_for, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancel_a_waiting_workflow_and_resume_it(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    worker = make_worker()
    assert worker.run_once().handed_back == 1
    cancel_workflow(handle.workflow_id)
    assert handle.get_status() == "cancelled"
    assert workflow_job(handle.workflow_id).status == "cancelled"
    with pytest.raises(WorkflowCancelled):
        handle.get_result(1)
    send(handle.workflow_id, "after cancel")
    assert worker.run_once().claimed == 0
    cancel_workflow(handle.workflow_id)  # again: nothing to do
    resume_workflow(handle.workflow_id)
    assert handle.get_status() == "pending"
    send(handle.workflow_id, "second")
    drain(worker)
    assert handle.get_result(1) == ["after cancel", "second"]
    with pytest.raises(WorkflowStateError, match="already ended"):
        cancel_workflow(handle.workflow_id)
    with pytest.raises(WorkflowStateError, match="fork a failed or completed one"):
        resume_workflow(handle.workflow_id)
    with pytest.raises(WorkflowNotFound):
        cancel_workflow("missing")


def test_cancelling_a_running_workflow_takes_effect_at_its_next_step(
    make_worker: type[Worker], tmp_path: Any
) -> None:
    flag = tmp_path / "hold"
    flag.touch()
    handle = start_workflow(wf.five_steps, "cancel", str(flag))
    worker = make_worker()
    running = threading.Thread(target=worker.run_once)  # returns when the handler does
    running.start()
    wait_for(lambda: wf.runs("cancel:3"), timeout=10, what="step 3 to start")
    cancel_workflow(handle.workflow_id)
    flag.unlink()
    running.join(10)
    drain(worker)
    assert handle.get_status() == "cancelled"
    assert wf.runs("cancel:4") == 0
    # The step in flight finished and was recorded; the next one never ran.
    assert [s.index for s in list_workflow_steps(handle.workflow_id)] == [0, 1, 2, 3]
    resume_workflow(handle.workflow_id)
    drain(worker)
    assert handle.get_result(1)[-1] == "cancel:4"
    assert wf.runs("cancel:3") == 1


@workflow("test.cancel_then_charge")
def cancel_then_charge(tag: str) -> str:
    wf.note(f"{tag}:before")
    sleep(0.8)  # short: waits in the worker thread
    wf.note(f"{tag}:charge")
    return "charged"


def test_cancel_during_a_wait_stops_the_workflow_before_its_next_step(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(cancel_then_charge, "cc")
    worker = make_worker()
    thread = in_thread(worker.run_once)
    wait_for(
        lambda: WorkflowStep.objects.filter(
            workflow_id=handle.workflow_id, step_name="pgjobs.sleep"
        ).exists()
    )
    cancel_workflow(handle.workflow_id)
    thread.join(10)
    assert get_workflow(handle.workflow_id).status == "cancelled"
    # cancel_workflow returned while the workflow was waiting, before the charge step.
    assert wf.runs("cc:charge") == 0


def wait_while_exists(flag: str) -> None:
    """Block while the file ``flag`` exists: the test removes it at a milestone. Bounded (a
    minute), so a test that failed before removing it cannot hang a worker thread for ever."""
    deadline = time.monotonic() + 60
    while Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@step
def hold(label: str, flag: str) -> str:
    Run.objects.create(job_id=wf.ZERO, label=label)
    wait_while_exists(flag)
    return label


@workflow("test.cancel_resume")
def cancel_resume(tag: str, flag1: str, flag2: str) -> str:
    hold(f"{tag}:1", flag1)  # the cancel arrives while this runs; its checkpoint sees it
    wait_while_exists(flag2)  # ordinary workflow code between two steps
    wf.note(f"{tag}:2")
    return "finished"


def test_resume_is_refused_until_the_cancelled_run_stops_then_runs_to_the_end(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    """A cancelled run stops at its next step; a step is never interrupted. Resumed while the
    old run is inside a step, the new run would replay up to that step, find no checkpoint and
    run it again beside the old one: so resume waits for the cancelled run to stop."""
    flag1, flag2 = tmp_path / "one", tmp_path / "two"
    flag1.touch()
    flag2.touch()
    handle = start_workflow(cancel_resume, "cr", str(flag1), str(flag2))
    worker = make_worker()
    thread = in_thread(worker.run_once)
    wait_for(lambda: wf.runs("cr:1") == 1)
    cancel_workflow(handle.workflow_id)
    with pytest.raises(WorkflowStateError, match="wait until the cancelled run stops"):
        resume_workflow(handle.workflow_id)  # the old run is inside step 1
    flag1.unlink()
    wait_for(lambda: WorkflowStep.objects.filter(workflow_id=handle.workflow_id).exists())
    with pytest.raises(WorkflowStateError, match="still running"):
        resume_workflow(handle.workflow_id)  # between two steps: still running
    assert (handle.get_status(), workflow_job(handle.workflow_id).attempt) == ("cancelled", 1)
    flag2.unlink()
    thread.join(10)
    resume_workflow(handle.workflow_id)
    drain(worker)
    assert handle.get_result(timeout=2) == "finished"
    assert wf.runs("cr:1") == 1  # the step in flight ran once


def test_cancelling_a_workflows_job_cancels_the_workflow() -> None:
    handle = start_workflow(wf.greet, "via job")
    cancel_job(workflow_job(handle.workflow_id).id)
    assert handle.get_status() == "cancelled"
    assert workflow_job(handle.workflow_id).status == "cancelled"


def test_cancel_job_cancels_a_requeued_dead_workflows_job(make_worker: type[Worker]) -> None:
    """A requeued dead workflow's job is pending again, although its workflow still reads
    'dead' (which cancel_workflow refuses as already ended): cancel_job must cancel the job,
    or it stays pending and resurrects the workflow."""
    handle = start_workflow(wf.receiver, None, 30)
    dead = bury_workflow(handle.workflow_id)
    retry_dead_letter_job(dead.id)
    job = workflow_job(handle.workflow_id)
    try:
        cancel_job(job.id)
    finally:
        status = Job.objects.get(id=job.id).status
    assert status == "cancelled"


def sql_job(job_name: str, payload: str) -> uuid.UUID:
    """A job written by SQL, a first-class producer (a plain INSERT: pgjobs_enqueue() refuses
    the reserved names these tests use)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload) VALUES (%s, %s::jsonb) RETURNING id",
            [job_name, payload],
        )
        return cur.fetchone()[0]  # type: ignore[no-any-return]


def test_cancel_job_on_a_workflow_named_job_without_workflow_id_cancels_that_job() -> None:
    bystander = start_workflow(wf.greet, "x", workflow_id="None")
    job_id = sql_job("pgjobs.workflow:x", "{}")
    cancel_job(job_id)
    assert get_workflow(bystander.workflow_id).status == "pending"
    assert get_job(job_id).status == "cancelled"  # now: still pending


@pytest.mark.parametrize("payload", ["[1]", '"w"', "5"])
def test_cancel_job_on_a_workflow_named_job_with_a_non_object_payload(payload: str) -> None:
    job_id = sql_job("pgjobs.workflow:x", payload)
    cancel_job(job_id)  # now: AttributeError: 'list'/'str'/'int' object has no attribute 'get'
    assert get_job(job_id).status == "cancelled"


def test_cancel_job_on_the_running_job_of_a_cancelled_workflow_is_unchanged() -> None:
    """Before the refactor, cancel_job() of a workflow's job whose workflow was already
    cancelled returned without touching the job (the attempt stops at its next step). Now it
    cancels the job as well. Not in the commit messages; decide and document either way."""
    handle = start_workflow(wf.greet, "x")
    job = workflow_job(handle.workflow_id)
    Job.objects.filter(id=job.id).update(
        status="running", attempt=1, lease_token=uuid.uuid4(), locked_by="w",
        locked_at=timezone.now(), lease_expires_at=timezone.now() + timedelta(minutes=1),
    )  # fmt: skip
    cancel_workflow(handle.workflow_id)  # a running job is left to notice at its next step
    cancel_job(job.id)
    assert Job.objects.get(id=job.id).status == "running"  # before: running; now: cancelled


def test_resume_refuses_what_is_not_stopped(make_worker: type[Worker]) -> None:
    """A pending workflow (queued, or waiting) has nothing to resume: only a move to another
    code version is done for it; a completed one is forked, not resumed."""
    waiting = start_workflow(wf.receiver, None, 300)
    drain(make_worker())
    job = workflow_job(waiting.workflow_id)
    with pytest.raises(WorkflowStateError, match=r"is pending .*nothing to resume"):
        resume_workflow(waiting.workflow_id)
    assert workflow_job(waiting.workflow_id).scheduled_for == job.scheduled_for  # not moved
    resume_workflow(waiting.workflow_id, app_version="v2")
    assert get_workflow(waiting.workflow_id).app_version == "v2"
    done = start_workflow(wf.greet, "x")
    drain(make_worker())
    with pytest.raises(WorkflowStateError, match=r"is completed: it ended.*fork a failed"):
        resume_workflow(done.workflow_id)


def test_the_job_of_a_cancelled_workflow_is_not_retried_alone() -> None:
    """Retried, it would find its workflow cancelled and run nothing (on an old code version,
    wait for ever); explain and the refusal name the resume that runs it again."""
    handle = start_workflow(wf.greet, "x", workflow_id="stays-cancelled")
    job = workflow_job(handle.workflow_id)
    cancel_workflow(handle.workflow_id)
    with pytest.raises(JobStateError, match="which is cancelled: retrying the job alone"):
        retry_job(job.id)
    assert Job.objects.get(id=job.id).status == "cancelled"
    said = explain_job(job.id).message
    assert "with its workflow (stays-cancelled), which stays cancelled until it is resumed" in said
    assert "pgjobs_workflows resume stays-cancelled" in said and "pgjobs retry" not in said
    resume_workflow(handle.workflow_id)
    assert get_workflow(handle.workflow_id).status == "pending"


def test_the_refused_retry_quotes_the_workflow_id_in_the_resume_it_names() -> None:
    """The id is the application's: pasted, the command resumes it and runs nothing else."""
    handle = start_workflow(wf.greet, "x", workflow_id="a b;$(id)")
    cancel_workflow(handle.workflow_id)
    with pytest.raises(JobStateError) as refused:
        retry_job(workflow_job(handle.workflow_id).id)
    assert "`manage.py pgjobs_workflows resume 'a b;$(id)'` (resume_workflow())" in str(
        refused.value
    )
