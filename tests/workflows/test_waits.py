"""Durable sleep: a long wait suspends the workflow and survives a restart, a short one waits in
the worker, and a suspended workflow runs nothing on its way out."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from django_pgjobs import get_workflow, sleep, start_workflow, workflow
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import drain, end_workflow_wait, make_workflow_due, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_durable_sleep_survives_a_restart_without_restarting_the_wait(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.sleeper, "nap", 3)
    stats = make_worker().run_once()
    assert stats.handed_back == 1
    [_, waiting] = list_workflow_steps(handle.workflow_id)
    assert (waiting.name, waiting.status) == ("pgjobs.sleep", "waiting")
    assert waiting.wake_at is not None
    assert get_workflow(handle.workflow_id).status == "pending"
    job = workflow_job(handle.workflow_id)
    assert job.status == "pending" and job.attempt == 0  # waiting is not a crash
    assert abs((job.scheduled_for - waiting.wake_at).total_seconds()) < 0.01
    # "Restart": a new worker, made to look now; it suspends again until the same wake time.
    make_workflow_due(handle.workflow_id)
    assert make_worker().run_once().handed_back == 1
    assert (
        abs((workflow_job(handle.workflow_id).scheduled_for - waiting.wake_at).total_seconds())
        < 0.01
    )
    # Once the wake time recorded before the restart has come (within its 3 s), it runs on.
    assert end_workflow_wait(handle.workflow_id) <= timedelta(seconds=3)
    drain(make_worker())
    assert handle.get_result(1) == "nap:after"
    assert wf.runs("nap:before") == 1
    steps = list_workflow_steps(handle.workflow_id)
    assert [(s.name, s.status) for s in steps][1] == ("pgjobs.sleep", "completed")


def test_a_short_sleep_waits_in_the_worker(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.sleeper, "short", 0.3)
    began = time.monotonic()
    stats = make_worker().run_once()
    drain(make_worker())
    assert stats.handed_back == 0
    assert handle.get_result(1) == "short:after"
    assert time.monotonic() - began >= 0.3


@workflow("test.cleanup_in_finally")
def with_finally(tag: str) -> str:
    try:
        sleep(30)
    finally:
        wf.note(f"{tag}:cleanup")
    return "done"


def test_a_suspended_workflow_runs_no_step_on_its_way_out(make_worker: type[Worker]) -> None:
    handle = start_workflow(with_finally, "fin")
    make_worker().run_once()
    assert get_workflow(handle.workflow_id).status == "pending"
    assert workflow_job(handle.workflow_id).status == "pending"  # suspended for 30 s
    # Suspension is not the workflow ending: its cleanup must not run now. (It would run without
    # holding the lease, the job being already back in the queue; its fenced checkpoint would
    # then raise _LeaseLost over _Suspended, and the worker count the attempt as "lost".)
    assert wf.runs("fin:cleanup") == 0


def test_a_wait_that_would_end_after_the_storable_times_fails_at_the_call(
    make_worker: type[Worker],
) -> None:
    """1e12 s is year 33,000: PostgreSQL stores it, Python could never read it back; the
    wait's deadline CHECK (migration 0014) would refuse it mid-bookkeeping."""
    handle = start_workflow(wf.sleeper, "forever", 1e12)
    drain(make_worker())
    run = get_workflow(handle.workflow_id)
    assert run.status == "failed"
    assert "would end after 9000-01-01" in str(run.error)
    # Nothing of the wait was written: only the step before it.
    assert [s.status for s in list_workflow_steps(handle.workflow_id)] == ["completed"]
