"""The job page's panel with rows as they come: a worker id '' written by SQL, a job since
dead-lettered, messages quoting commands, times in one format."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs import enqueue
from django_pgjobs.models import Job
from django_pgjobs.observability.display import local_time
from tests.admin.test_explain_panel import page

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_running_job_whose_worker_id_is_empty_opens(admin_client_: Client) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, locked_by, locked_at, "
            "lease_expires_at, attempt) VALUES ('test.record', 'q', 'running', '', now(), "
            "now() + interval '1 minute', 1) RETURNING id"
        )
        job_id = cur.fetchone()[0]
    html = page(admin_client_, job_id)
    assert 'data-blocker="running"' in html
    assert "Worker: <a" not in html
    assert "Held by no recorded worker (attempt 1 of 3, started " in html


def dead_letter(job_id: uuid.UUID | None = None) -> uuid.UUID:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (id, job_name, queue, attempt, max_attempts, error) "
            "VALUES (coalesce(%s, gen_random_uuid()), 'test.record', 'mail', 3, 3, "
            "E'ValueError: boom\\ntraceback') RETURNING id",
            [job_id],
        )
        return uuid.UUID(str(cur.fetchone()[0]))


def test_a_job_since_dead_lettered_opens_its_dead_letter(admin_client_: Client) -> None:
    dead_id = dead_letter()
    response = admin_client_.get(reverse("admin:pgjobs_job_change", args=[dead_id]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:pgjobs_failedjob_change", args=[dead_id])
    html = admin_client_.get(response["Location"]).content.decode()
    assert f"Job {dead_id} was dead-lettered: this is its dead letter." in html
    assert 'id="pgjobs-explain" data-blocker="finished"' in html
    assert "Dead-lettered at " in html and "attempt 3 of 3 failed (ValueError: boom)" in html
    # On the dead letters' own page, not sent to "the admin's dead letters list" as elsewhere.
    assert "or Requeue (the action of the dead letters list this page belongs to, with this " in (
        html
    )
    assert "the admin&#x27;s dead letters list" not in html
    # An id that is neither still says so.
    missing = admin_client_.get(reverse("admin:pgjobs_job_change", args=[uuid.uuid4()]))
    assert missing.status_code == 302
    assert missing["Location"] == reverse("admin:index")


def test_commands_are_code_and_times_have_one_format(admin_client_: Client) -> None:
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    html = page(admin_client_, job_id)
    assert "`" not in html.split('id="pgjobs-explain"')[1].split("</fieldset>")[0]
    assert f"<code>manage.py pgjobs retry {job_id}</code>" in html
    due = Job.objects.get(id=job_id).scheduled_for
    assert f"Until {local_time(due)}." in html
    # The label is not said twice.
    assert "Scheduled for later.</strong> Due at " in html
