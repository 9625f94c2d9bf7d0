"""Snooze, Retry, Discard and Cancel inside a workflow: a step's Retry chooses its in-place
retry's wait and Discard ends its retries; in the body they are errors like any other, which fail
the workflow and leave its job completed (a workflow waits with sleep() and is cancelled with
cancel_workflow())."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from django_pgjobs import Cancel, Discard, Snooze, get_workflow, start_workflow
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


# Were the step's own interval used, a retry would wait this long: long enough to notice.
@override_settings(PGJOBS={"RETRY_DELAY_MAX": 20})
def test_a_steps_retry_waits_as_long_as_it_says(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    handle = start_workflow(wf.controlled, "retry-step", "retry")
    with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
        drain(make_worker())
    assert handle.get_result(1) == 3
    waits = [r.args[-1] for r in caplog.records if "retrying in" in r.msg]  # type: ignore[index]
    assert waits == [0.0, 0.0]
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("completed", 3)


def test_a_step_that_discards_is_not_retried(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.controlled, "discard-step", "discard")
    drain(make_worker())
    with pytest.raises(Discard, match="no use"):
        handle.get_result(1)
    [checkpoint] = list_workflow_steps(handle.workflow_id)
    assert (checkpoint.status, checkpoint.attempts) == ("failed", 1)
    assert wf.runs("discard-step") == 1


@pytest.mark.parametrize("outcome", ["snooze", "cancel"])
def test_in_the_body_they_fail_the_workflow_and_its_job_completes(
    make_worker: type[Worker], outcome: str
) -> None:
    handle = start_workflow(wf.controlled, "in-body", outcome)
    stats = make_worker().run_once()
    assert (stats.completed, stats.snoozed, stats.cancelled) == (1, 0, 0)
    assert get_workflow(handle.workflow_id).status == "failed"
    with pytest.raises(Snooze if outcome == "snooze" else Cancel):
        handle.get_result(1)
    assert workflow_job(handle.workflow_id).status == "completed"
    assert not Job.objects.filter(status__in=["pending", "running"]).exists()
