"""What a workflow's caller gets back: values as JSON gives them, errors rebuilt and raised,
timeouts, and unknown workflows."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs import get_workflow, run_workflow, start_workflow, step, workflow
from django_pgjobs.exceptions import (
    RecordedError,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowSerializationError,
    WorkflowTimeout,
)
from django_pgjobs.jobs.error_text import MAX_ERROR_LENGTH
from django_pgjobs.jobs.validation import MAX_KEPT_BYTES
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import WorkflowHandle
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_json_values_come_back_as_json_gives_them(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "x", punctuation="!")
    day = start_workflow(wf.child, 1)
    drain(make_worker())
    assert day.get_result(1) == 10 and handle.get_result(1) == "hello x!"
    # Dates and decimals go through Django's encoder on the way in.
    h = start_workflow(wf.greet, str(date(2026, 1, 2)), punctuation=str(Decimal("1.5")))
    drain(make_worker())
    assert h.get_result(1) == "hello 2026-01-021.5"


def test_a_failing_workflow_records_its_error_and_get_result_raises_it(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.fails, "card declined")
    drain(make_worker())
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "builtins.ValueError"
    assert "card declined" in info.error["traceback"]
    with pytest.raises(ValueError, match="card declined") as raised:
        handle.get_result(timeout=1)
    assert any("original traceback" in note for note in raised.value.__notes__)
    # The workflow failed; its job did its work.
    assert workflow_job(handle.workflow_id).status == "completed"


def test_recorded_errors_of_unknown_classes_are_rebuilt_as_recorded_error() -> None:
    from django_pgjobs.workflows.codec import rebuild

    exc = rebuild({"type": "nowhere.Missing", "message": "gone", "args": ["gone"]})
    assert isinstance(exc, RecordedError)
    assert exc.type_name == "nowhere.Missing"


@workflow("test.nul_error", max_recovery_attempts=1)
def nul_error() -> None:
    raise ValueError("bad byte \x00 in input")


def test_a_workflow_that_raises_an_error_with_a_nul_in_its_message_fails(
    make_worker: type[Worker],
) -> None:
    """PostgreSQL cannot store a NUL in jsonb text. Recorded unescaped (as "message", and as the
    args fallback), the error would be refused: the job would be retried as a crash (re-running
    the workflow's code) and the workflow would end 'dead' instead of 'failed' with its error."""
    handle = start_workflow(nul_error)
    drain(make_worker())
    assert handle.get_status() == "failed"


def test_get_result_timeout_outside_a_workflow() -> None:
    handle = start_workflow(wf.greet, "nobody runs me")
    began = time.monotonic()
    with pytest.raises(WorkflowTimeout):
        handle.get_result(timeout=0.3)
    assert time.monotonic() - began >= 0.3
    with pytest.raises(WorkflowNotFound):
        WorkflowHandle("missing").get_result(0)


@workflow("test.await_missing")
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


@step
def exits(code: int) -> None:
    raise SystemExit(code)  # argparse rejecting input inside a step


@step
def interrupted() -> None:
    raise KeyboardInterrupt


@workflow("test.exits")
def exits_workflow(code: int) -> None:
    exits(code)


@workflow("test.interrupted")
def interrupted_workflow() -> None:
    interrupted()


@workflow("test.awaits_an_exit")
def awaits_an_exit(child_id: str) -> str:
    try:
        WorkflowHandle(child_id).get_result()
    except Exception as exc:  # a SystemExit would fly past this
        return f"caught {type(exc).__name__}"
    return "no error"


@pytest.mark.parametrize(
    ("definition", "args", "original"),
    [
        (exits_workflow, (2,), "builtins.SystemExit: 2"),
        (interrupted_workflow, (), "builtins.KeyboardInterrupt"),
    ],
)
def test_a_workflow_that_failed_with_a_base_exception_raises_an_ordinary_one(
    make_worker: type[Worker], definition: Any, args: tuple[Any, ...], original: str
) -> None:
    handle = start_workflow(definition, *args, workflow_id=f"exit-{definition.name}")
    drain(make_worker())
    assert handle.get_status() == "failed"
    with pytest.raises(WorkflowFailed) as raised:
        handle.get_result(1)
    assert isinstance(raised.value, Exception)
    assert str(raised.value).startswith(f"The workflow failed with {original}")
    assert raised.value.type_name == original.split(":")[0]
    assert raised.value.traceback is not None and "raise" in raised.value.traceback
    # run_workflow() waits through the same path (this id exists: it only waits).
    with pytest.raises(WorkflowFailed):
        run_workflow(definition, *args, workflow_id=f"exit-{definition.name}")


def test_a_parent_awaiting_a_child_that_exited_can_catch_it(make_worker: type[Worker]) -> None:
    child = start_workflow(exits_workflow, 3)
    parent = start_workflow(awaits_an_exit, child.workflow_id)
    drain(make_worker())
    assert parent.get_result(1) == "caught WorkflowFailed"


@workflow("test.echo")
def echo(value: Any) -> Any:
    return value


@override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": None})
def test_a_huge_error_is_kept_shortened_and_a_huge_return_value_fails_the_workflow(
    make_worker: type[Worker],
) -> None:
    """Both are written with their jobs' completions, beside a batch's others, where one value
    past what jsonb holds would fail them all (as reviewed): the error's parts are cut to
    MAX_ERROR_LENGTH, and a return value is held to MAX_KEPT_BYTES even with no
    MAX_PAYLOAD_BYTES."""
    failing = start_workflow(wf.fails, "x" * 3_000_000)
    huge = start_workflow(echo, "y" * MAX_KEPT_BYTES)
    plain = start_workflow(echo, "z")
    drain(make_worker())
    with pytest.raises(ValueError, match=r"^xxx") as raised:
        failing.get_result(1)
    assert len(str(raised.value)) <= MAX_ERROR_LENGTH + 5
    assert str(raised.value).startswith("xxx") and "\n...\n" in str(raised.value)
    with pytest.raises(WorkflowSerializationError, match="at most 16,777,216 bytes"):
        huge.get_result(1)
    assert plain.get_result(1) == "z"
