"""A workflow whose stored JSON (input, a step's checkpoint) was rewritten by SQL into something
Python cannot decode fails clearly, once; the worker runs on. Its results can still be read."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_pgjobs import get_event, get_workflow, start_workflow
from django_pgjobs.exceptions import (
    InvalidJobError,
    PayloadNotDecodable,
    RecordedError,
    WorkflowDead,
    WorkflowNotFound,
)
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import (
    WorkflowHandle,
    cancel_workflow,
    fork_workflow,
    list_workflow_steps,
    resume_workflow,
)
from tests.helpers import bury_workflow, drain, make_workflow_due, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = "1e5000"  # jsonb keeps all 5,001 digits; Python's int stops at 4,300


def sql(statement: str, *params: str) -> None:
    with connection.cursor() as cur:
        cur.execute(statement, params)


def test_a_workflow_whose_input_cannot_be_decoded_fails_saying_so(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.greet, "x")
    sql(
        f"""UPDATE pgjobs_workflow_executions SET input = '{{"args": [{NUMBER}]}}'::jsonb
        WHERE workflow_id = %s""",
        handle.workflow_id,
    )
    worker = make_worker()
    drain(worker)
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "django_pgjobs.exceptions.PayloadNotDecodable"
    assert info.error["message"].startswith(
        "the workflow's input cannot be decoded: ValueError: a number has more digits"
    )
    with pytest.raises(PayloadNotDecodable, match="input cannot be decoded"):
        handle.get_result(timeout=1)
    # Failed once: its job completed, nothing was retried.
    job = workflow_job(handle.workflow_id)
    assert (job.status, job.attempt) == ("completed", 1)
    # The worker runs on.
    other = start_workflow(wf.greet, "y")
    drain(worker)
    assert other.get_result(timeout=1) == "hello y!"


def test_a_workflow_whose_step_checkpoint_cannot_be_decoded_fails_naming_the_step(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.sleeper, "poison", 3600)
    worker = make_worker()
    drain(worker)  # the first step ran; the workflow sleeps
    sql(
        "UPDATE pgjobs_workflow_steps SET output = (repeat('[', 3000) || repeat(']', 3000))::jsonb "
        "WHERE workflow_id = %s AND step_index = 0",
        handle.workflow_id,
    )
    make_workflow_due(handle.workflow_id)
    drain(worker)
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed", info
    assert info.error is not None
    assert info.error["message"].startswith(
        "the recorded output of step 0 ('tests.testapp.workflows.note') cannot be decoded: "
        "RecursionError"
    ), info.error["message"]


def test_a_result_or_error_stored_by_sql_that_cannot_be_decoded_raises_saying_so(
    make_worker: type[Worker],
) -> None:
    done = start_workflow(wf.greet, "x")
    failed = start_workflow(wf.fails, "no")
    drain(make_worker())
    sql(
        f"UPDATE pgjobs_workflow_executions SET output = '{NUMBER}'::jsonb WHERE workflow_id = %s",
        done.workflow_id,
    )
    sql(
        f"UPDATE pgjobs_workflow_executions SET error = '[{NUMBER}]'::jsonb WHERE workflow_id = %s",
        failed.workflow_id,
    )
    # The caller never gets the stand-in as if it were the value: get_result() raises, as a
    # workflow waiting on that result does. get_workflow(), a snapshot for inspection, shows it.
    with pytest.raises(PayloadNotDecodable, match=r"result of workflow .* cannot be decoded: Val"):
        done.get_result(timeout=1)
    assert isinstance(get_workflow(done.workflow_id).output, UndecodableJSON)
    with pytest.raises(RecordedError, match="cannot be decoded"):
        failed.get_result(timeout=1)


def test_a_dead_workflows_error_stored_by_sql_as_no_object_is_said_as_stored() -> None:
    handle = start_workflow(wf.greet, "x")
    bury_workflow(handle.workflow_id)
    sql(
        """UPDATE pgjobs_workflow_executions SET error = '"boom"'::jsonb WHERE workflow_id = %s""",
        handle.workflow_id,
    )
    with pytest.raises(WorkflowDead, match=r"is dead: boom$"):
        handle.get_result(timeout=1)


def test_a_message_sql_sent_that_cannot_be_decoded_fails_the_receiving_workflow(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.receiver, None, 3600)
    worker = make_worker()
    drain(worker)  # waiting in recv()
    sql(
        f"""INSERT INTO pgjobs_workflow_messages (workflow_id, topic, message)
        VALUES (%s, '', '[{NUMBER}]'::jsonb)""",
        handle.workflow_id,
    )
    make_workflow_due(handle.workflow_id)
    drain(worker)
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed", info
    assert info.error is not None
    assert info.error["message"].startswith(
        "what recv received cannot be decoded: ValueError: a number has more digits"
    ), info.error["message"]


def test_an_event_stored_by_sql_that_cannot_be_decoded_raises_saying_so() -> None:
    handle = start_workflow(wf.greet, "x")
    sql(
        f"""INSERT INTO pgjobs_workflow_events (workflow_id, key, value)
        VALUES (%s, 'progress', '{{"a": {NUMBER}}}'::jsonb)""",
        handle.workflow_id,
    )
    with pytest.raises(PayloadNotDecodable, match=r"event 'progress' of workflow .* cannot be"):
        get_event(handle.workflow_id, "progress", timeout=0)


@pytest.mark.parametrize(
    ("workflow_id", "said"),
    [("ord\x001", "NUL"), (42, "must be a str"), ("ord\udcff1", "Unicode")],
    ids=["nul", "int", "surrogate"],
)
def test_a_workflow_id_no_workflow_can_have_is_refused_before_any_query(
    workflow_id: Any, said: str
) -> None:
    """They reached the driver: a DataError, a ProgrammingError (varchar = smallint), a
    UnicodeEncodeError; the command printed a traceback."""
    calls: list[Callable[[], object]] = [
        lambda: get_workflow(workflow_id),
        lambda: list_workflow_steps(workflow_id),
        lambda: cancel_workflow(workflow_id),
        lambda: resume_workflow(workflow_id),
        lambda: fork_workflow(workflow_id),
        lambda: WorkflowHandle(workflow_id).get_result(timeout=0),
    ]
    for call in calls:
        with pytest.raises(InvalidJobError, match=said):
            call()
    if isinstance(workflow_id, str):
        for action in ("show", "cancel", "resume", "fork"):
            with pytest.raises(CommandError, match=said):
                call_command("pgjobs_workflows", action, workflow_id, stdout=StringIO())


def test_a_blank_or_overlong_workflow_id_is_looked_up_as_any_other() -> None:
    """SQL may write a blank id (no CHECK refuses it): its workflow is read and cancelled by it;
    one past 200 characters is simply not found."""
    sql(
        "INSERT INTO pgjobs_workflow_executions (workflow_id, name, app_version) "
        "VALUES ('   ', 'test.greet', 'v1')"
    )
    assert get_workflow("   ").status == "pending"
    call_command("pgjobs_workflows", "show", "   ", stdout=StringIO())
    cancel_workflow("   ")
    assert get_workflow("   ").status == "cancelled"
    with pytest.raises(WorkflowNotFound):
        get_workflow("x" * 201)
