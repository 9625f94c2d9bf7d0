"""Steps: retried with backoff, outputs that must be JSON, plain calls outside a workflow, and
one statement of overhead each."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_pgjobs import queries, start_workflow
from django_pgjobs.exceptions import WorkflowSerializationError
from django_pgjobs.jobs.context import AttemptNotes, ProgressReporter
from django_pgjobs.jobs.registry import registry
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import call_handler
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_step_retries_with_backoff(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.flaky, "flaky-ok", 3)
    began = time.monotonic()
    drain(make_worker())
    assert handle.get_result(1) == 3
    # Two waits: 0.2 s then 0.4 s.
    assert time.monotonic() - began >= 0.6
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("completed", 3)

    failing = start_workflow(wf.flaky, "flaky-never", 10)
    drain(make_worker())
    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        failing.get_result(1)
    [checkpoint] = list_workflow_steps(failing.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("failed", 3)
    assert wf.runs("flaky-never") == 3


@override_settings(PGJOBS={"RETRY_DELAY_MAX": 0.01})
def test_a_step_s_retry_wait_is_capped_at_retry_delay_max(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """The wait holds a handler thread: however large interval_seconds and the attempt number
    grow, it is capped like a job's retry delay (0.2 s and 0.4 s here, uncapped)."""
    handle = start_workflow(wf.flaky, "flaky-capped", 3)
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
        drain(make_worker())
    assert handle.get_result(1) == 3
    waits = [r.args[-1] for r in caplog.records if "retrying in" in r.msg]  # type: ignore[index]
    assert waits == [0.01, 0.01]


def test_a_non_json_step_output_is_a_clear_error_recorded_as_the_steps_failure(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(wf.returns_not_json)
    drain(make_worker())
    with pytest.raises(WorkflowSerializationError, match="return value of step"):
        handle.get_result(1)
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert checkpoint.status == "failed"


def test_steps_outside_a_workflow_are_plain_calls() -> None:
    assert wf.note("plain") == "plain"
    assert wf.greet("direct") == "hello direct!"
    assert wf.runs("plain") == 1


def test_step_overhead_is_one_statement_per_step(other_connection: Any) -> None:
    """Run the workflow's job in this thread so every statement it makes is captured; its
    ending goes with its job's completion, as a worker writes it."""
    handle = start_workflow(wf.five_steps, "count", "/nonexistent")
    [job] = queries.claim_jobs(
        other_connection.cursor(),
        worker_id="test",
        limit=1,
        lease_seconds=60,
        queues=None,
        job_names=None,
    )
    handler = registry.get(job.job_name)
    assert handler is not None
    notes = AttemptNotes()
    with CaptureQueriesContext(connection) as captured:
        call_handler(handler, job, ProgressReporter(job, lambda *args: None), notes)
    ours = [q["sql"] for q in captured.captured_queries if "pgjobs_workflow" in q["sql"]]
    # One statement to load, one checkpoint per step; the ending waits for the completion.
    assert len(ours) == 6, ours
    assert sum("INSERT INTO pgjobs_workflow_steps" in sql for sql in ours) == 5
    assert handle.get_status() == "running"
    assert notes.workflow_ending is not None
    completed = queries.complete_jobs(
        other_connection.cursor(), tokens=[job.token], endings=[notes.workflow_ending.text]
    )
    assert completed == [job.token] and not completed.endings_dropped
    assert handle.get_result(1)[0] == "count:0"
