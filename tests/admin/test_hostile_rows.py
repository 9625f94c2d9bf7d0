"""Rows only SQL can create (a worker whose queues are not names, a workflow job whose payload
is not an object, a schedule whose payload is a list) never 500 an admin page or action."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs import get_job, start_workflow
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import Job, Schedule
from django_pgjobs.queries.base import WORKFLOW_KEY_PREFIX
from django_pgjobs.workflows.definitions import runner_job_name
from tests.admin.changelists import act, changelist
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("queues", "shown"),
    [
        ('[1, {"a": 2}]', "1, {&quot;a&quot;: 2}"),
        ('"mail"', "mail"),
        ('{"mail": true}', "{&quot;mail&quot;: true}"),
        ("null", "all"),
        ("[]", "all"),
    ],
)
def test_a_worker_row_whose_queues_are_not_names_is_listed(
    admin_client_: Client, queues: str, shown: str
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workers (id, queues) VALUES ('sql-worker', %s::jsonb)", [queues]
        )
    response = admin_client_.get(changelist("worker"))
    assert response.status_code == 200
    assert f'<td class="field-queue_list">{shown}</td>' in response.content.decode()
    detail = admin_client_.get(reverse("admin:pgjobs_worker_change", args=["sql-worker"]))
    assert detail.status_code == 200


def test_cancel_on_a_workflow_job_whose_payload_is_not_an_object(admin_client_: Client) -> None:
    handle = start_workflow(wf.greet, "ada", workflow_id="w-list-payload")
    job = Job.objects.get(key=f"{WORKFLOW_KEY_PREFIX}{handle.workflow_id}")
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload) VALUES (%s, '[1, 2]'::jsonb),"
            " (%s, '\"text\"'::jsonb) RETURNING id",
            [runner_job_name(), runner_job_name()],
        )
        odd = [row[0] for row in cur.fetchall()]
    # Runner jobs are hidden by default: the list shows them with runner=shown, and an action
    # posted from that list keeps the filter.
    shown = changelist("job") + "?runner=shown"
    page = admin_client_.get(shown)
    assert page.status_code == 200 and short_id(odd[0]) in page.content.decode()
    response = admin_client_.post(
        shown, {"action": "cancel", "_selected_action": [str(pk) for pk in odd]}, follow=True
    )
    assert response.status_code == 200
    assert "2 jobs cancelled." in response.content.decode()
    assert [get_job(pk).status for pk in odd] == ["cancelled", "cancelled"]
    assert get_job(job.id).status == "pending"  # the real workflow's job is untouched
    for pk in odd:
        assert admin_client_.get(reverse("admin:pgjobs_job_change", args=[pk])).status_code == 200


def test_run_now_on_a_schedule_whose_payload_is_a_list_is_refused_clearly(
    admin_client_: Client,
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, payload)"
            " VALUES ('listy', '* * * * *', 'test.record', '[1, 2]'::jsonb)"
        )
    row = Schedule.objects.get(name="listy")
    assert admin_client_.get(changelist("schedule")).status_code == 200
    response = act(admin_client_, "schedule", "run_now", [row.pk])
    assert response.status_code == 200
    assert "its payload is not a JSON object" in response.content.decode()
    assert not Job.objects.exists()


def test_a_refusal_message_names_schedules_and_keeps_numbers_that_merely_contain_the_id() -> None:
    from django_pgjobs.admin.common import _reason
    from django_pgjobs.exceptions import PgJobsError

    refusal = PgJobsError("Job 5 cannot run: 15 of 500 slots; job 5.")
    assert _reason(refusal, 5) == "Job {id} cannot run: 15 of 500 slots; job {id}."
    named = PgJobsError("Schedule 'e' cannot run: its payload is not a JSON object.")
    assert _reason(named, "e") == "Schedule '{id}' cannot run: its payload is not a JSON object."
