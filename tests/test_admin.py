from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_pgjobs import enqueue, get_job
from django_pgjobs.models import FailedJob, Job, Schedule
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def changelist(model: str) -> str:
    return reverse(f"admin:pgjobs_{model}_changelist")


def act(client: Client, model: str, action: str, ids: list[Any]) -> Any:
    return client.post(
        changelist(model),
        {"action": action, "_selected_action": [str(i) for i in ids]},
        follow=True,
    )


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
    assert str(failing)[:8] in page and str(progressing)[:8] in page
    detail = admin_client_.get(reverse("admin:pgjobs_job_change", args=[failing])).content.decode()
    assert "Traceback (most recent call last)" in detail
    assert "&quot;to&quot;: &quot;jane@example.com&quot;" in detail  # pretty-printed payload


def test_job_search_by_id_and_payload_text(admin_client_: Client) -> None:
    wanted = enqueue("test.record", {"customer": "ACME-42"})
    other = enqueue("test.record", {"customer": "Globex"})
    by_payload = admin_client_.get(changelist("job"), {"q": "payload:acme-42"}).content.decode()
    assert str(wanted)[:8] in by_payload and str(other)[:8] not in by_payload
    by_id = admin_client_.get(changelist("job"), {"q": str(other)}).content.decode()
    assert str(other)[:8] in by_id and str(wanted)[:8] not in by_id
    by_prefix = admin_client_.get(changelist("job"), {"q": str(other)[:8]}).content.decode()
    assert str(other)[:8] in by_prefix and str(wanted)[:8] not in by_prefix


def test_job_actions_call_the_library(admin_client_: Client, make_worker: type[Worker]) -> None:
    assert 'value="retry_now"' in admin_client_.get(changelist("job")).content.decode()
    waiting = enqueue("test.fail", max_attempts=3)
    make_worker().run_once()  # now pending with an error, due in a second
    later = enqueue("test.record", scheduled_for=timedelta(hours=1))
    doomed = enqueue("test.record")
    act(admin_client_, "job", "retry_now", [waiting])
    act(admin_client_, "job", "run_now", [later])
    response = act(admin_client_, "job", "cancel", [doomed])
    assert "1 job(s) cancelled." in response.content.decode()
    now = timezone.now()
    assert get_job(waiting).scheduled_for <= now
    assert get_job(later).scheduled_for <= now
    assert get_job(doomed).status == "cancelled"
    refused = act(admin_client_, "job", "cancel", [doomed]).content.decode()
    assert "only a pending or running job can be cancelled" in refused


def test_dead_letters_grouped_by_job_and_error_and_requeued(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    ids = [bury(make_worker, f"gateway timeout #{n}") for n in range(3)]
    page = admin_client_.get(changelist("failedjob")).content.decode()
    assert "Dead letters by job and error" in page
    assert "<code>ValueError</code>" in page and ">3<" in page.replace(" ", "")
    act(admin_client_, "failedjob", "requeue", ids[:2])
    assert FailedJob.objects.count() == 1
    assert Job.objects.filter(job_name="test.fail", status="pending").count() == 2


def test_schedule_admin_validates_and_acts(admin_client_: Client) -> None:
    add_url = reverse("admin:pgjobs_schedule_add")
    bad = admin_client_.post(
        add_url,
        {"name": "bad", "cron": "0 0 30 2 *", "job_name": "test.record", "payload": "{}",
         "timezone": "UTC", "enabled": "on", "catch_up": "skip", "catch_up_limit": "10"},
    )  # fmt: skip
    assert bad.status_code == 200 and "Invalid cron expression" in bad.content.decode()
    assert not Schedule.objects.exists()
    admin_client_.post(
        add_url,
        {"name": "ok", "cron": "*/5 * * * *", "job_name": "test.record", "payload": "{}",
         "timezone": "Europe/Paris", "enabled": "on", "catch_up": "skip", "catch_up_limit": "10"},
    )  # fmt: skip
    row = Schedule.objects.get(name="ok")
    assert "Europe/Paris" in admin_client_.get(changelist("schedule")).content.decode()
    act(admin_client_, "schedule", "disable", [row.pk])
    assert not Schedule.objects.get().enabled
    act(admin_client_, "schedule", "run_now", [row.pk])
    assert Job.objects.get().payload["manual"] is True


def test_declared_schedules_only_let_operators_pause_them(admin_client_: Client) -> None:
    row = Schedule.objects.create(
        name="from-code", cron="0 * * * *", job_name="test.record", source="code"
    )
    page = admin_client_.get(
        reverse("admin:pgjobs_schedule_change", args=[row.pk])
    ).content.decode()
    assert 'name="enabled"' in page
    assert 'name="cron"' not in page  # shown read-only: a deploy's sync would undo an edit


def test_worker_changelist_counts_running_jobs_without_n_plus_one(admin_client_: Client) -> None:
    def render(workers: int) -> int:
        WorkerRow.objects.all().delete()
        for n in range(workers):
            WorkerRow.objects.create(id=f"w{n}", hostname="h", pid=n, queues=["mail"])
            for _ in range(n + 1):  # worker n runs n + 1 jobs
                job_id = enqueue("test.record")
                Job.objects.filter(id=job_id).update(status="running", locked_by=f"w{n}")
        with CaptureQueriesContext(connection) as queries:
            page = admin_client_.get(changelist("worker")).content.decode()
        assert page.count(">live<") == workers
        assert f'<td class="field-running_jobs">{workers}</td>' in page
        return len(queries)

    assert render(1) == render(6)


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


def test_pausing_a_declared_schedule_through_its_form(admin_client_: Client) -> None:
    row = Schedule.objects.create(
        name="declared", cron="0 * * * *", job_name="handler.gone", source="code", orphaned=True
    )
    response = admin_client_.post(
        reverse("admin:pgjobs_schedule_change", args=[row.pk]), {"enabled": ""}
    )
    assert response.status_code == 302
    assert not Schedule.objects.get().enabled


def test_actions_cap_the_selection_and_group_refusals(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_pgjobs.admin import common as pgjobs_admin

    done = [enqueue("test.record") for _ in range(3)]
    Job.objects.filter(id__in=done).update(status="completed")
    grouped = act(admin_client_, "job", "cancel", done).content.decode()
    assert grouped.count("only a pending or running job can be cancelled") == 1
    assert "3 job(s): Job {id} is completed" in grouped
    monkeypatch.setattr(pgjobs_admin, "ACTION_LIMIT", 2)
    pending = [enqueue("test.record") for _ in range(3)]
    refused = act(admin_client_, "job", "cancel", pending).content.decode()
    assert "actions handle at most 2 at a time" in refused
    assert Job.objects.filter(id__in=pending, status="pending").count() == 3


def test_run_now_says_what_it_skipped(admin_client_: Client) -> None:
    later = enqueue("test.record", scheduled_for=timedelta(hours=1))
    cancelled = enqueue("test.record")
    Job.objects.filter(id=cancelled).update(status="cancelled")
    page = act(admin_client_, "job", "run_now", [later, cancelled]).content.decode()
    assert "1 job(s) skipped: only pending jobs can run now." in page
    assert "1 job(s) due now." in page
