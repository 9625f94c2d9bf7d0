"""Replay: a re-executed workflow reads its checkpoints back instead of running steps, and sees
the same values and errors as on its first run."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from django_pgjobs import sleep, start_workflow, step, workflow
from django_pgjobs.exceptions import WorkflowNonDeterminism
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from tests.helpers import drain, end_workflow_wait, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_re_execution_replays_checkpoints_instead_of_running_steps(
    make_worker: type[Worker], tmp_path: Any
) -> None:
    handle = start_workflow(wf.five_steps, "replay", str(tmp_path / "absent"))
    drain(make_worker())
    assert handle.get_result(timeout=5) == ["replay:0", 1, "replay:2", "passed", "replay:4"]
    # Run it again from the start, as a recovery would: every step has a checkpoint.
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(status="running")
    job = workflow_job(handle.workflow_id)
    Job.objects.filter(id=job.id).update(status="pending", scheduled_for=timezone.now())
    drain(make_worker())
    assert handle.get_result(timeout=5) == ["replay:0", 1, "replay:2", "passed", "replay:4"]
    for label in ("replay:0", "replay:1", "replay:2", "replay:3", "replay:4"):
        assert wf.runs(label) == 1, label


def test_a_recorded_step_error_is_raised_again_on_replay(make_worker: type[Worker]) -> None:
    failing = start_workflow(wf.flaky, "flaky-replay", 10)
    drain(make_worker())
    WorkflowExecution.objects.filter(workflow_id=failing.workflow_id).update(status="running")
    Job.objects.filter(id=workflow_job(failing.workflow_id).id).update(status="pending")
    drain(make_worker())
    with pytest.raises(ConnectionError):
        failing.get_result(1)
    assert wf.runs("flaky-replay") == 3  # not run again


def test_non_determinism_is_detected_and_fails_the_workflow(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.branches, "nd")
    drain(make_worker())
    assert handle.get_result(1) == "1"
    # The workflow's code now takes another branch at step 0; replay it.
    Run.objects.create(job_id=wf.ZERO, label="nd:flag")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(status="running")
    Job.objects.filter(id=workflow_job(handle.workflow_id).id).update(status="pending")
    drain(make_worker())
    with pytest.raises(
        WorkflowNonDeterminism, match=r"called 'tests.testapp.workflows.note' as step 0"
    ):
        handle.get_result(1)
    assert wf.runs("nd:b") == 0


@step
def produce_mapping() -> dict[str, Any]:
    return {"zz_long_key": 1, "a": 2, "big": 1e16}


@step
def echo(value: Any) -> Any:
    return value


@workflow("test.key_order")
def key_order() -> list[Any]:
    mapping = produce_mapping()
    first_key = next(iter(mapping))
    big_type = type(mapping["big"]).__name__
    recorded = echo([first_key, big_type])
    sleep(30)  # suspends: the return below runs in a replay
    return [[first_key, big_type], recorded]


def test_a_step_value_is_the_same_on_the_first_run_and_on_replay(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(key_order)
    worker = make_worker()
    assert worker.run_once().handed_back == 1
    end_workflow_wait(handle.workflow_id)
    drain(worker)
    now, first_run = handle.get_result(1)
    # The codec promises "a value is returned to the workflow as JSON gives it back, the first
    # time as on every replay". jsonb reorders object keys and prints 1e16 as an integer.
    assert now == first_run


class Declined(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@step
def charge_card() -> None:
    raise Declined(51, "insufficient funds")


@workflow("test.declined")
def declined_workflow() -> str:
    try:
        charge_card()
        outcome = "charged"
    except Declined:
        outcome = "declined"
    sleep(30)  # suspends: the rest runs in a replay
    return outcome


def test_a_handled_step_error_is_handled_the_same_way_on_replay(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(declined_workflow)
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # the first run caught Declined
    end_workflow_wait(handle.workflow_id)
    drain(worker)
    # On replay the recorded error is rebuilt as Declined, so `except Declined` catches it.
    assert handle.get_result(1) == "declined"
