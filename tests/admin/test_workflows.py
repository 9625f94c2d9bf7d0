"""The workflow admin: list, detail with steps, actions, permissions."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_pgjobs import cancel_workflow, get_workflow, start_workflow
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import app_version
from django_pgjobs.workflows.definitions import runner_job_name
from tests.helpers import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/admin/pgjobs/workflowexecution/"


def detail(workflow_id: str) -> str:
    return reverse("admin:pgjobs_workflowexecution_change", args=[quote(workflow_id)])


def act(client: Client, action: str, ids: list[str]) -> str:
    response = client.post(LIST, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return str(response.content.decode())


def status(workflow_id: str) -> str:
    return get_workflow(workflow_id).status


def test_list_shows_status_steps_and_filters_by_status_and_name(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    start_workflow(wf.greet, "ada", workflow_id="order-1001")
    start_workflow(wf.fails, "card declined", workflow_id="order-2002")
    drain(make_worker())
    start_workflow(wf.greet, "bob", workflow_id="invoice-7")  # still pending
    page = admin_client_.get(LIST).content.decode()
    assert page.index(">invoice-7<") < page.index(">order-2002<") < page.index(">order-1001<")
    for label in ("completed", "failed", "pending"):
        assert f">{label}</span>" in page
    assert '<td class="field-steps_done">1</td>' in page  # greet's one step
    assert app_version() in page
    # Name choices come from the registry: a workflow that never ran is offered too.
    assert "test.five_steps" in page
    failed = admin_client_.get(LIST, {"status__exact": "failed"}).content.decode()
    assert ">order-2002<" in failed and ">order-1001<" not in failed
    greet = admin_client_.get(LIST, {"name": "test.greet"}).content.decode()
    assert ">order-1001<" in greet and ">invoice-7<" in greet and ">order-2002<" not in greet


def test_search_by_exact_id_id_prefix_and_name(admin_client_: Client) -> None:
    for workflow_id in ("order-1001", "order-10", "invoice-7"):
        start_workflow(wf.greet, "x", workflow_id=workflow_id)
    start_workflow(wf.fails, "y", workflow_id="refund-1")

    def found(term: str) -> set[str]:
        page = admin_client_.get(LIST, {"q": term}).content.decode()
        return {i for i in ("order-1001", "order-10", "invoice-7", "refund-1") if f">{i}<" in page}

    assert found("order-1001") == {"order-1001"}
    assert found("order-") == {"order-1001", "order-10"}
    assert found("FAILS") == {"refund-1"}
    assert found("100%") == set()  # LIKE wildcards are taken literally


def test_detail_shows_inputs_output_steps_and_jobs(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    handle = start_workflow(wf.greet, "ada", punctuation="?", workflow_id="greet/ada")
    other = start_workflow(wf.greet, "bob", workflow_id="greet/bob")
    drain(make_worker())
    page = admin_client_.get(detail(handle.workflow_id)).content.decode()
    assert "&quot;ada&quot;" in page and "&quot;punctuation&quot;: &quot;?&quot;" in page
    assert "&quot;hello ada?&quot;" in page  # the output
    assert 'name="_save"' not in page  # view-only
    steps = page.split('id="pgjobs-workflow-steps"')[1]
    assert "<code>tests.testapp.workflows.note</code>" in steps
    assert ">completed</span>" in steps and "<td>&quot;hello ada&quot;</td>" in steps
    job = Job.objects.get(key="pgjobs.workflow:greet/ada")
    assert reverse("admin:pgjobs_job_change", args=[job.id]) in page
    jobs_link = page.split("all its jobs in the jobs admin")[0].rsplit('href="', 1)[1]
    jobs_page = admin_client_.get(jobs_link.split('"')[0].replace("&amp;", "&"))
    assert jobs_page.status_code == 200 and short_id(job.id) in jobs_page.content.decode()
    other_job = Job.objects.get(key=f"pgjobs.workflow:{other.workflow_id}")
    assert short_id(other_job.id) not in jobs_page.content.decode()


def test_detail_of_a_failed_workflow_shows_the_traceback_and_the_failed_step(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    handle = start_workflow(wf.flaky, "never", 99)
    drain(make_worker())
    assert status(handle.workflow_id) == "failed"
    page = admin_client_.get(detail(handle.workflow_id)).content.decode()
    assert "Traceback (most recent call last)" in page and "attempt 3 failed" in page
    steps = page.split('id="pgjobs-workflow-steps"')[1]
    assert ">failed</span>" in steps
    assert "<summary>ConnectionError: attempt 3 failed</summary>" in steps  # the traceback folded
    assert "<td>3</td>" in steps  # attempts


def test_detail_shows_waits_parents_children_and_forks(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    waiting = start_workflow(wf.receiver, "news", 300)
    parent = start_workflow(wf.parent, 2, workflow_id="family")
    drain(make_worker())
    page = admin_client_.get(detail(waiting.workflow_id)).content.decode()
    steps = page.split('id="pgjobs-workflow-steps"')[1]
    assert ">waiting</span>" in steps and f"waiting for message:{waiting.workflow_id}" in steps
    family = admin_client_.get(detail(parent.workflow_id)).content.decode()
    children = WorkflowExecution.objects.filter(parent_workflow_id="family")
    assert children.count() == 2
    for child in children:
        assert detail(child.workflow_id) in family
        child_page = admin_client_.get(detail(child.workflow_id)).content.decode()
        assert "child of" in child_page and detail("family") in child_page
    act(admin_client_, "fork_from_start", ["family"])
    fork = WorkflowExecution.objects.get(forked_from="family")
    forked_page = admin_client_.get(detail(fork.workflow_id)).content.decode()
    assert "forked from" in forked_page and detail("family") in forked_page


def test_cancel_and_resume_report_successes_and_refusals(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    worker = make_worker()
    waiting = start_workflow(wf.receiver, None, 300, workflow_id="a").workflow_id
    done = start_workflow(wf.greet, "x", workflow_id="done-1").workflow_id
    drain(worker)
    page = act(admin_client_, "cancel", [waiting, done])
    assert "1 workflow cancelled." in page
    # One refusal is said as it was; the short id 'a' of the other leaves its text intact.
    assert "Workflow &#x27;done-1&#x27; already ended (completed)." in page
    assert status(waiting) == "cancelled"
    page = act(admin_client_, "resume", [waiting, done])
    assert "1 workflow queued to resume." in page
    assert "fork a failed or completed one instead" in page
    assert status(waiting) == "pending"


def test_resume_on_the_deployed_code_version(admin_client_: Client) -> None:
    handle = start_workflow(wf.greet, "old code")
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(app_version="v0")
    Job.objects.filter(key=f"pgjobs.workflow:{handle.workflow_id}").update(
        job_name=runner_job_name("v0")
    )
    listing = admin_client_.get(LIST).content.decode()
    assert f"(deployed: {app_version()})" in listing  # a pending workflow no worker will claim
    page = act(admin_client_, "resume_on_deployed_version", [handle.workflow_id])
    assert f"1 workflow queued to resume on version {app_version()}." in page
    assert get_workflow(handle.workflow_id).app_version == app_version()
    assert (
        Job.objects.get(key=f"pgjobs.workflow:{handle.workflow_id}").job_name == runner_job_name()
    )


def test_fork_from_the_start_links_the_new_workflow(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    source = start_workflow(wf.greet, "again", workflow_id="source").workflow_id
    drain(make_worker())
    page = act(admin_client_, "fork_from_start", [source])
    fork = WorkflowExecution.objects.get(forked_from=source)
    assert "1 workflow forked." in page and detail(fork.workflow_id) in page
    assert fork.app_version == app_version()
    drain(make_worker())
    assert get_workflow(fork.workflow_id).output == "hello again!"
    assert wf.runs("hello again") == 2  # from the start: no checkpoint reused


def test_actions_cap_the_selection(admin_client_: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_pgjobs.admin import common as pgjobs_admin

    monkeypatch.setattr(pgjobs_admin, "ACTION_LIMIT", 1)
    ids = [start_workflow(wf.greet, str(n)).workflow_id for n in range(2)]
    page = act(admin_client_, "cancel", ids)
    assert "actions handle at most 1 at a time" in page
    assert {status(i) for i in ids} == {"pending"}


def test_a_view_only_user_sees_workflows_and_cannot_act_on_them(
    viewer_client: Client, make_worker: type[Worker]
) -> None:
    pending = start_workflow(wf.greet, "x").workflow_id
    cancelled = start_workflow(wf.greet, "y").workflow_id
    cancel_workflow(cancelled)
    page = viewer_client.get(LIST).content.decode()
    assert pending in page
    for action in ("cancel", "resume", "resume_on_deployed_version", "fork_from_start"):
        assert f'value="{action}"' not in page
    assert viewer_client.get(detail(pending)).status_code == 200
    assert viewer_client.post(detail(pending), {}).status_code == 403
    act(viewer_client, "cancel", [pending])
    act(viewer_client, "resume", [cancelled])
    act(viewer_client, "resume_on_deployed_version", [cancelled])
    act(viewer_client, "fork_from_start", [pending])
    assert (status(pending), status(cancelled)) == ("pending", "cancelled")
    assert WorkflowExecution.objects.count() == 2


def test_superusers_cannot_add_edit_or_delete_workflows(admin_client_: Client) -> None:
    workflow_id = start_workflow(wf.greet, "x").workflow_id
    assert admin_client_.post(detail(workflow_id), {}).status_code == 403
    assert admin_client_.get(reverse("admin:pgjobs_workflowexecution_add")).status_code == 403
    assert 'value="delete_selected"' not in admin_client_.get(LIST).content.decode()


def test_the_list_runs_a_fixed_number_of_queries(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    def render(workflows: int) -> int:
        for n in range(workflows):
            start_workflow(wf.greet, f"n{n}")
        drain(make_worker())
        with CaptureQueriesContext(connection) as queries:
            page = admin_client_.get(LIST).content.decode()
        assert (
            page.count('<td class="field-steps_done">1</td>') == WorkflowExecution.objects.count()
        )
        return len(queries)

    assert render(1) == render(6)
