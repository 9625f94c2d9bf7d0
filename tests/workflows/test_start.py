"""Starting a workflow: it runs as a job and checkpoints each step; an id (a child's included)
starts it once; bad input and bad options are refused at the call.

Crash recovery with real processes and SIGKILL is in tests/reliability/test_workflow_processes.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_pgjobs import get_workflow, send, start_workflow, step, workflow
from django_pgjobs.exceptions import InvalidJobError, WorkflowConflict, WorkflowSerializationError
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps
from django_pgjobs.workflows.definitions import app_version, runner_job_name
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_workflow_runs_as_a_job_and_records_each_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "ada", punctuation="?")
    info = get_workflow(handle.workflow_id)
    assert (info.status, info.args, info.kwargs) == ("pending", ["ada"], {"punctuation": "?"})
    assert info.app_version == app_version()
    assert workflow_job(handle.workflow_id).job_name == runner_job_name()
    drain(make_worker())
    assert handle.get_status() == "completed"
    assert handle.get_result(timeout=5) == "hello ada?"
    steps = list_workflow_steps(handle.workflow_id)
    assert [(s.index, s.name, s.status, s.output) for s in steps] == [
        (0, "tests.testapp.workflows.note", "completed", "hello ada")
    ]
    info = get_workflow(handle.workflow_id)
    assert info.started_at is not None and info.completed_at is not None
    assert workflow_job(handle.workflow_id).status == "completed"


def test_starting_an_existing_id_returns_it_and_runs_nothing_twice(
    make_worker: type[Worker],
) -> None:
    first = start_workflow(wf.greet, "bob", workflow_id="order-1")
    again = start_workflow(wf.greet, "someone else", workflow_id="order-1")
    assert again == first
    assert Job.objects.filter(key="pgjobs.workflow:order-1").count() == 1
    drain(make_worker())
    assert start_workflow(wf.greet, "bob", workflow_id="order-1").get_result(1) == "hello bob!"
    assert wf.runs("hello bob") == 1
    with pytest.raises(WorkflowConflict, match=r"already used by workflow 'test\.greet'"):
        start_workflow(wf.fails, "x", workflow_id="order-1")


def test_child_workflows_have_deterministic_ids_and_start_once(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.parent, 3, workflow_id="parent-1")
    drain(make_worker(concurrency=2))
    assert handle.get_result(5) == [0, 10, 20]
    children = WorkflowExecution.objects.filter(parent_workflow_id="parent-1")
    assert sorted(c.workflow_id for c in children) == ["parent-1-0", "parent-1-1", "parent-1-2"]
    steps = [s.name for s in list_workflow_steps("parent-1")]
    assert steps == ["pgjobs.start_workflow"] * 3 + ["pgjobs.get_result"] * 3
    for n in range(3):
        assert wf.runs(f"child {n}") == 1


def test_bad_input_is_refused_at_the_call_and_writes_nothing() -> None:
    with pytest.raises(WorkflowSerializationError, match=r"arguments of workflow 'test.greet'"):
        start_workflow(wf.greet, object())
    with pytest.raises(InvalidJobError, match="No workflow named"):
        start_workflow("no.such.workflow")
    with pytest.raises(InvalidJobError, match="workflow id"):
        start_workflow(wf.greet, "x", workflow_id="")
    with pytest.raises(InvalidJobError, match="priority"):
        start_workflow(wf.greet, "x", priority=1000)
    assert not WorkflowExecution.objects.exists()
    assert not Job.objects.exists()


def test_decorator_options_are_validated() -> None:
    with pytest.raises(InvalidJobError, match="max_recovery_attempts"):
        workflow(max_recovery_attempts=-1)
    # Its job gets one attempt more, in an integer column: refused here, not by a DataError that
    # would abort the transaction of whoever starts it.
    with pytest.raises(InvalidJobError, match="from 0 to 2147483646"):
        workflow(max_recovery_attempts=2**31 - 1)
    with pytest.raises(InvalidJobError, match="max_attempts"):
        step(max_attempts=0)
    # A step's retry wait holds a handler thread: it must be a finite number of seconds.
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(InvalidJobError, match="interval_seconds must be a finite number"):
            step(retries_allowed=True, interval_seconds=bad)
        with pytest.raises(InvalidJobError, match="backoff_rate must be a finite number"):
            step(retries_allowed=True, backoff_rate=bad)
    with pytest.raises(InvalidJobError, match="async"):

        @workflow("test.async_wf")
        async def nope() -> None: ...


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: start_workflow(wf.greet, "x", workflow_id="caf\udce9"), InvalidJobError),
        (lambda: start_workflow(wf.greet, "x", queue="q\ud800"), InvalidJobError),
        (lambda: start_workflow(wf.greet, "x", priority=2**15), InvalidJobError),
        (lambda: start_workflow(wf.greet, "caf\udce9"), WorkflowSerializationError),
        (lambda: start_workflow(wf.greet, nested(5000)), WorkflowSerializationError),
    ],
    ids=["id-surrogate", "queue-surrogate", "priority", "arg-surrogate", "arg-nesting"],
)
def test_bad_input_to_start_workflow_keeps_the_callers_transaction_usable(
    call: Any, error: type[Exception]
) -> None:
    with transaction.atomic():
        with pytest.raises(error):
            call()
        Order.objects.create(reference="still usable")
    assert not WorkflowExecution.objects.exists() and not Job.objects.exists()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": 1000})
def test_workflow_arguments_and_messages_are_held_to_max_payload_bytes() -> None:
    """Read whole by every replay, like a job's payload by every claim: the same limit, the same
    clear error, before anything is written (the caller's transaction stays usable)."""
    with transaction.atomic():
        with pytest.raises(WorkflowSerializationError, match=r"arguments of workflow 'test.gr"):
            start_workflow(wf.greet, "x" * 1000)
        assert not WorkflowExecution.objects.exists()
        handle = start_workflow(wf.greet, "x" * 900)
        with pytest.raises(WorkflowSerializationError, match=r"The message is 1,\d{3} bytes"):
            send(handle.workflow_id, "y" * 1000)
        send(handle.workflow_id, "y" * 900)
    assert WorkflowExecution.objects.count() == 1
