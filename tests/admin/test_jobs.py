"""The jobs and dead letters admin: what an operator sees, actions that call the library, and
who may use them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_pgjobs import enqueue, get_job
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import FailedJob, Job, Schedule
from django_pgjobs.worker import Worker
from tests.admin.changelists import act, changelist

pytestmark = pytest.mark.django_db(transaction=True)


def bury(make_worker: type[Worker], message: str) -> Any:
    job_id = enqueue("test.fail", {"message": message}, max_attempts=1)
    make_worker().run_once()
    return job_id


def test_job_changelist_and_detail_show_what_an_operator_needs(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    failing = enqueue(
        "test.fail", {"message": "smtp down", "to": "jane@example.com"}, max_attempts=3
    )
    progressing = enqueue("test.progress", {"steps": [[40, "importing rows"]]})
    make_worker(concurrency=2).run_once()
    page = admin_client_.get(changelist("job")).content.decode()
    assert "awaiting retry" in page and "ValueError: smtp down" in page
    assert "width: 40%" in page and "importing rows" in page  # the progress bar and message
    assert short_id(failing) in page and short_id(progressing) in page
    detail = admin_client_.get(reverse("admin:pgjobs_job_change", args=[failing])).content.decode()
    assert "Traceback (most recent call last)" in detail
    assert "&quot;to&quot;: &quot;jane@example.com&quot;" in detail  # pretty-printed payload


def test_job_search_by_id_and_payload_text(admin_client_: Client) -> None:
    wanted = enqueue("test.record", {"customer": "ACME-42"})
    other = enqueue("test.record", {"customer": "Globex"})
    by_payload = admin_client_.get(changelist("job"), {"q": "payload:acme-42"}).content.decode()
    assert short_id(wanted) in by_payload and short_id(other) not in by_payload
    by_id = admin_client_.get(changelist("job"), {"q": str(other)}).content.decode()
    assert short_id(other) in by_id and short_id(wanted) not in by_id
    # The short id the list shows is the id's end; its start is the time it was made, shared
    # by the jobs of one minute: both are searched, and a start that tells them apart finds one.
    by_end = admin_client_.get(changelist("job"), {"q": short_id(other)}).content.decode()
    assert short_id(other) in by_end and short_id(wanted) not in by_end
    minute = admin_client_.get(changelist("job"), {"q": str(other)[:8]}).content.decode()
    assert short_id(other) in minute and short_id(wanted) in minute
    by_start = admin_client_.get(changelist("job"), {"q": str(other)[:18]}).content.decode()
    assert short_id(other) in by_start and short_id(wanted) not in by_start


def test_job_actions_call_the_library(admin_client_: Client, make_worker: type[Worker]) -> None:
    assert 'value="retry_now"' in admin_client_.get(changelist("job")).content.decode()
    waiting = enqueue("test.fail", max_attempts=3)
    make_worker().run_once()  # now pending with an error, due in a second
    later = enqueue("test.record", scheduled_for=timedelta(hours=1))
    doomed = enqueue("test.record")
    act(admin_client_, "job", "retry_now", [waiting])
    act(admin_client_, "job", "run_now", [later])
    response = act(admin_client_, "job", "cancel", [doomed])
    assert "1 job cancelled." in response.content.decode()
    now = timezone.now()
    assert get_job(waiting).scheduled_for <= now
    assert get_job(later).scheduled_for <= now
    assert get_job(doomed).status == "cancelled"
    refused = act(admin_client_, "job", "cancel", [doomed]).content.decode()
    assert "only a pending or running job can be cancelled" in refused


def test_run_now_says_what_it_skipped(admin_client_: Client) -> None:
    later = enqueue("test.record", scheduled_for=timedelta(hours=1))
    cancelled = enqueue("test.record")
    Job.objects.filter(id=cancelled).update(status="cancelled")
    page = act(admin_client_, "job", "run_now", [later, cancelled]).content.decode()
    assert "1 job skipped: only pending jobs can run now." in page
    assert "1 job due now." in page


def test_actions_cap_the_selection_and_group_refusals(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_pgjobs.admin import common as pgjobs_admin

    done = [enqueue("test.record") for _ in range(3)]
    Job.objects.filter(id__in=done).update(status="completed")
    grouped = act(admin_client_, "job", "cancel", done).content.decode()
    assert grouped.count("only a pending or running job can be cancelled") == 1
    assert "3 jobs refused (" in grouped and "), for example: Job " in grouped
    assert all(str(job_id) in grouped for job_id in done)
    monkeypatch.setattr(pgjobs_admin, "ACTION_LIMIT", 2)
    pending = [enqueue("test.record") for _ in range(3)]
    refused = act(admin_client_, "job", "cancel", pending).content.decode()
    assert "actions handle at most 2 at a time" in refused
    assert Job.objects.filter(id__in=pending, status="pending").count() == 3


def test_dead_letters_grouped_by_job_and_error_and_requeued(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    ids = [bury(make_worker, f"gateway timeout #{n}") for n in range(3)]
    page = admin_client_.get(changelist("failedjob")).content.decode()
    assert "Dead letters by job and error" in page
    assert "<code>ValueError</code>" in page and ">3<" in page.replace(" ", "")
    page = act(admin_client_, "failedjob", "requeue", ids[:2]).content.decode()
    assert FailedJob.objects.count() == 1
    requeued = Job.objects.filter(job_name="test.fail", status="pending")
    assert requeued.count() == 2
    # The message names the new jobs.
    assert "2 dead letters requeued as jobs " in page
    assert all(str(job.id) in page for job in requeued)


def test_a_view_only_user_sees_everything_and_changes_nothing(
    viewer_client: Client, make_worker: type[Worker]
) -> None:
    dead_id = bury(make_worker, "boom")
    job_id = enqueue("test.record")
    schedule = Schedule.objects.create(name="s", cron="* * * * *", job_name="test.record")
    for model, pk in (("job", job_id), ("failedjob", dead_id), ("schedule", schedule.pk)):
        assert viewer_client.get(changelist(model)).status_code == 200
        assert (
            viewer_client.get(reverse(f"admin:pgjobs_{model}_change", args=[pk])).status_code == 200
        )
    assert viewer_client.get(changelist("worker")).status_code == 200
    page = viewer_client.get(changelist("job")).content.decode()
    assert 'value="retry_now"' not in page and 'value="cancel"' not in page  # no actions offered
    act(viewer_client, "job", "cancel", [job_id])
    act(viewer_client, "failedjob", "requeue", [dead_id])
    act(viewer_client, "schedule", "disable", [schedule.pk])
    assert get_job(job_id).status == "pending"
    assert FailedJob.objects.filter(id=dead_id).exists()
    assert Schedule.objects.get().enabled
    edit = viewer_client.post(
        reverse("admin:pgjobs_schedule_change", args=[schedule.pk]), {"enabled": ""}
    )
    assert edit.status_code == 403
    assert Schedule.objects.get().enabled


def test_detail_pages_are_view_only_even_for_a_superuser(admin_client_: Client) -> None:
    """Saving a form would write the row back as it was read: a claim or requeue undone."""
    job_id = enqueue("test.record")
    url = reverse("admin:pgjobs_job_change", args=[job_id])
    page = admin_client_.get(url).content.decode()
    assert 'name="_save"' not in page
    assert admin_client_.post(url, {}).status_code == 403
    assert 'value="delete_selected"' not in admin_client_.get(changelist("job")).content.decode()


def test_filters_are_select_boxes_from_the_dropdown_package(admin_client_: Client) -> None:
    """django-admin-list-filter-dropdown renders a filter with more than four choices as a
    select box whose options carry the filter's query string."""
    wanted = enqueue("test.record", queue="mail")
    other = enqueue("test.fail", queue="mail")
    page = admin_client_.get(changelist("job")).content.decode()
    assert page.count('onchange="go_from_select(') >= 1
    job_names = page.split("By job name")[1].split("</ul>")[0]
    assert "<select" in job_names and 'value="?job_name=test.record"' in job_names
    filtered = admin_client_.get(changelist("job"), {"job_name": "test.record"}).content.decode()
    assert short_id(wanted) in filtered and short_id(other) not in filtered


def test_a_jobs_partition_key_is_shown_beside_its_queue_when_it_has_one(
    admin_client_: Client,
) -> None:
    keyed = enqueue("test.record", queue="ledger", partition_key="account:<42>")
    plain = enqueue("test.record")
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[keyed])).content.decode()
    assert "Partition key" in page and "account:&lt;42&gt;" in page  # escaped, as stored
    assert page.index("field-queue") < page.index("field-partition_key")
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[plain])).content.decode()
    assert "field-partition_key" not in page
