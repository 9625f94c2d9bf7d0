"""Workflow edge cases an independent review found broken, each pinned by a regression test:
replay equal to the first run, nothing running after a suspend, cancel before the next step,
resume racing a cancel, waits inside atomic(), handled errors on replay, bad versions, unknown
children."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction

from django_pgjobs import cancel_workflow, get_workflow, sleep, start_workflow, step, workflow
from django_pgjobs.exceptions import InvalidJobError, WorkflowError, WorkflowNotFound
from django_pgjobs.models import WorkflowStep
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import (
    WorkflowHandle,
    fork_workflow,
    list_workflow_steps,
    resume_workflow,
)
from tests.helpers import drain, wait_for, workflow_job
from tests.testapp import workflows as wf
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(target: Any) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- 1. A step's value on the first run differs from the value replays read back ---------------


@step
def produce_mapping() -> dict[str, Any]:
    return {"zz_long_key": 1, "a": 2, "big": 1e16}


@step
def echo(value: Any) -> Any:
    return value


@workflow("review.key_order")
def key_order() -> list[Any]:
    mapping = produce_mapping()
    first_key = next(iter(mapping))
    big_type = type(mapping["big"]).__name__
    recorded = echo([first_key, big_type])
    sleep(1.2)  # suspends: the return below runs in a replay
    return [[first_key, big_type], recorded]


def test_a_step_value_is_the_same_on_the_first_run_and_on_replay(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(key_order)
    worker = make_worker()
    assert worker.run_once().handed_back == 1
    time.sleep(1.3)
    drain(worker)
    now, first_run = handle.get_result(1)
    # The codec promises "a value is returned to the workflow as JSON gives it back, the first
    # time as on every replay". jsonb reorders object keys and prints 1e16 as an integer.
    assert now == first_run


# -- 2. Code in ``finally`` / ``with`` runs steps after the workflow suspended ------------------


@workflow("review.finally")
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
    # Suspension is not the workflow ending: its cleanup must not run now. (It ran without
    # holding the lease, since the job was already back in the queue; its fenced checkpoint then
    # raised _LeaseLost over _Suspended, so the worker even counts the attempt as "lost".)
    assert wf.runs("fin:cleanup") == 0


# -- 3. Cancel between steps lets the next step run ----------------------------------------------


@workflow("review.cancel_then_charge")
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


# -- 4. Resume races the cancelled runner's exit: the workflow is left pending with no job ------


@step
def hold(label: str, flag: str) -> str:
    Run.objects.create(job_id=wf.ZERO, label=label)
    while Path(flag).exists():
        time.sleep(0.02)
    return label


@workflow("review.cancel_resume")
def cancel_resume(tag: str, flag1: str, flag2: str) -> str:
    hold(f"{tag}:1", flag1)  # the cancel arrives while this runs; its checkpoint sees it
    while Path(flag2).exists():  # ordinary workflow code between two steps
        time.sleep(0.02)
    wf.note(f"{tag}:2")
    return "finished"


def test_resume_right_after_cancel_runs_the_workflow_to_the_end(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    flag1, flag2 = tmp_path / "one", tmp_path / "two"
    flag1.touch()
    flag2.touch()
    handle = start_workflow(cancel_resume, "cr", str(flag1), str(flag2))
    worker = make_worker()
    thread = in_thread(worker.run_once)
    wait_for(lambda: wf.runs("cr:1") == 1)
    cancel_workflow(handle.workflow_id)
    flag1.unlink()
    wait_for(lambda: WorkflowStep.objects.filter(workflow_id=handle.workflow_id).exists())
    resume_workflow(handle.workflow_id)  # the old runner is still running its job
    flag2.unlink()
    thread.join(10)
    drain(worker)
    # Resumed: it must run to the end, not sit "pending" with no job left to run it (the resume
    # saw the old runner's job still running and queued none; that runner then stopped).
    assert handle.get_result(timeout=2) == "finished"


# -- 5. A durable wait inside transaction.atomic() rolls its suspension back --------------------


@workflow("review.atomic_sleep")
def atomic_sleep() -> str:
    with transaction.atomic():
        sleep(30)
    return "woke"


def test_a_wait_inside_atomic_is_refused_like_a_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(atomic_sleep)
    make_worker().run_once()
    job = workflow_job(handle.workflow_id)
    # The suspension was written inside the workflow's atomic block and rolled back with it:
    # the job is left "running" under a lease nobody renews (it will burn a recovery attempt).
    assert job.status != "running"
    with pytest.raises(WorkflowError, match="atomic"):
        handle.get_result(1)


# -- 6. A recorded step error is rebuilt as another type on replay ------------------------------


class Declined(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@step
def charge_card() -> None:
    raise Declined(51, "insufficient funds")


@workflow("review.declined")
def declined_workflow() -> str:
    try:
        charge_card()
        outcome = "charged"
    except Declined:
        outcome = "declined"
    sleep(1.2)  # suspends: the rest runs in a replay
    return outcome


def test_a_handled_step_error_is_handled_the_same_way_on_replay(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(declined_workflow)
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # the first run caught Declined
    time.sleep(1.3)
    drain(worker)
    # On replay the recorded error is rebuilt as Declined, so `except Declined` catches it.
    assert handle.get_result(1) == "declined"


# -- 7. app_version longer than the column: a database error instead of InvalidJobError --------


def test_an_over_long_app_version_is_refused_at_the_call(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "v")
    cancel_workflow(handle.workflow_id)
    with pytest.raises(InvalidJobError, match="app_version is 65 characters"):
        resume_workflow(handle.workflow_id, app_version="v" * 65)
    with pytest.raises(InvalidJobError, match="app_version is 65 characters"):
        fork_workflow(handle.workflow_id, app_version="v" * 65)
    assert get_workflow(handle.workflow_id).status == "cancelled"


# -- 8. get_result inside a workflow on an unknown id waits forever ----------------------------


@workflow("review.await_missing")
def await_missing() -> Any:
    return WorkflowHandle("no-such-workflow").get_result()


def test_get_result_of_an_unknown_workflow_inside_a_workflow_raises(
    make_worker: type[Worker],
) -> None:
    # Outside a workflow the same call raises WorkflowNotFound at once.
    with pytest.raises(WorkflowNotFound):
        WorkflowHandle("no-such-workflow").get_result()
    handle = start_workflow(await_missing)
    drain(make_worker())
    assert get_workflow(handle.workflow_id).status == "failed"
    with pytest.raises(WorkflowNotFound):
        handle.get_result(0)


# -- control: the wake-up protocol (no lost wake-up when a send commits during registration) ----


def test_control_a_send_committing_during_registration_is_not_lost(
    make_worker: type[Worker], other_connection: Any
) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    other_connection.autocommit = False
    with other_connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_messages (workflow_id, topic, message) "
            "VALUES (%s, '', '\"held\"'::jsonb)",
            [handle.workflow_id],
        )
        cur.execute("SELECT pgjobs_workflow_wake(%s)", [f"message:{handle.workflow_id}:"])
    worker = make_worker()
    thread = in_thread(worker.run_once)
    time.sleep(0.5)
    other_connection.commit()
    thread.join(10)
    steps = list_workflow_steps(handle.workflow_id)
    assert (steps[0].status, steps[0].output) == ("completed", "held")
