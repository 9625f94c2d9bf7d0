"""Code versions: a worker claims only workflows of its own version; an operator moves one to
another."""

from __future__ import annotations

import pytest

from django_pgjobs import cancel_workflow, get_workflow, start_workflow
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import fork_workflow, resume_workflow
from django_pgjobs.workflows.definitions import app_version, runner_job_name
from tests.helpers import drain, workflow_job
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_workflow_version_other_than_ours_is_not_claimed(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "old code")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
    Job.objects.filter(key=f"pgjobs.workflow:{handle.workflow_id}").update(
        job_name=runner_job_name("v0")
    )
    drain(make_worker())
    assert handle.get_status() == "pending"
    # The operator moves it to the deployed code.
    resume_workflow(handle.workflow_id, app_version=app_version())
    assert workflow_job(handle.workflow_id).job_name == runner_job_name()
    drain(make_worker())
    assert handle.get_result(1) == "hello old code!"


def test_an_over_long_app_version_is_refused_at_the_call(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "v")
    cancel_workflow(handle.workflow_id)
    with pytest.raises(InvalidJobError, match="app_version is 65 characters"):
        resume_workflow(handle.workflow_id, app_version="v" * 65)
    with pytest.raises(InvalidJobError, match="app_version is 65 characters"):
        fork_workflow(handle.workflow_id, app_version="v" * 65)
    assert get_workflow(handle.workflow_id).status == "cancelled"
