"""Rows holding JSON Python cannot decode (stored by SQL): every admin page shows them, saying
so, and the actions act on them."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs import get_job, start_workflow
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from tests.admin.changelists import act, changelist
from tests.helpers import add_schedule, drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

NUMBER = """'{"amount": 1e5000}'::jsonb"""
NESTING = "(repeat('[', 3000) || repeat(']', 3000))::jsonb"


def insert(table: str, payload_sql: str, *, extra: str = "", values: str = "") -> uuid.UUID:
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (job_name, payload{extra}) "
            f"VALUES ('test.record', {payload_sql}{values}) RETURNING id"
        )
        return uuid.UUID(str(cur.fetchone()[0]))


@pytest.mark.parametrize("payload_sql", [NUMBER, NESTING])
def test_job_list_and_page_show_a_payload_that_cannot_be_decoded(
    admin_client_: Client, payload_sql: str
) -> None:
    job_id = insert("pgjobs_job_queue", payload_sql)
    listing = admin_client_.get(changelist("job"))
    assert listing.status_code == 200 and short_id(job_id) in listing.content.decode()
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[job_id]))
    assert page.status_code == 200
    assert "(cannot be decoded: " in page.content.decode()


def test_cancel_and_retry_act_on_a_poison_job(admin_client_: Client) -> None:
    job_id = insert("pgjobs_job_queue", NUMBER)
    assert act(admin_client_, "job", "cancel", [job_id]).status_code == 200
    assert get_job(job_id).status == "cancelled"
    assert act(admin_client_, "job", "retry_now", [job_id]).status_code == 200
    assert get_job(job_id).status == "pending"


def test_dead_letter_list_page_and_requeue_of_a_poison_dead_letter(admin_client_: Client) -> None:
    dead_id = insert("pgjobs_failed_jobs", NESTING, extra=", error", values=", 'ValueError: x'")
    listing = admin_client_.get(changelist("failedjob"))
    assert listing.status_code == 200 and short_id(dead_id) in listing.content.decode()
    page = admin_client_.get(reverse("admin:pgjobs_failedjob_change", args=[dead_id]))
    assert page.status_code == 200
    assert "(cannot be decoded: RecursionError" in page.content.decode()
    assert act(admin_client_, "failedjob", "requeue", [dead_id]).status_code == 200
    assert not FailedJob.objects.exists() and Job.objects.count() == 1


def test_workflow_pages_show_inputs_and_outputs_that_cannot_be_decoded(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    handle = start_workflow(wf.sleeper, "poison", 3600)
    drain(make_worker())
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE pgjobs_workflow_executions SET input = {NESTING}, output = {NUMBER} "
            "WHERE workflow_id = %s",
            [handle.workflow_id],
        )
        cur.execute(
            f"UPDATE pgjobs_workflow_steps SET output = {NUMBER} WHERE workflow_id = %s",
            [handle.workflow_id],
        )
    assert admin_client_.get(changelist("workflowexecution")).status_code == 200
    page = admin_client_.get(
        reverse("admin:pgjobs_workflowexecution_change", args=[handle.workflow_id])
    )
    assert page.status_code == 200
    assert "cannot be decoded" in page.content.decode()


def test_schedule_list_and_page_show_a_payload_that_cannot_be_decoded(
    admin_client_: Client,
) -> None:
    schedule = add_schedule("poison", "0 * * * *")
    with connection.cursor() as cur:
        cur.execute(f"UPDATE pgjobs_schedules SET payload = {NUMBER} WHERE id = %s", [schedule.pk])
    assert admin_client_.get(changelist("schedule")).status_code == 200
    page = admin_client_.get(reverse("admin:pgjobs_schedule_change", args=[schedule.pk]))
    assert page.status_code == 200
    assert "cannot be decoded: ValueError" in page.content.decode()
    # Shown, not put in the form: saving the page (to disable the schedule) keeps the payload.
    assert 'name="payload"' not in page.content.decode()
    form = {
        "name": "poison", "cron": "0 * * * *", "job_name": "test.record", "timezone": "UTC",
        "catch_up": "skip", "catch_up_limit": "10",
    }  # fmt: skip
    url = reverse("admin:pgjobs_schedule_change", args=[schedule.pk])
    assert admin_client_.post(url, form).status_code == 302
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT enabled, payload = {NUMBER} FROM pgjobs_schedules WHERE id = %s",
            [schedule.pk],
        )
        assert cur.fetchone() == (False, True)
