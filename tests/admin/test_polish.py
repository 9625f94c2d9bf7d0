"""What an operator notices: the job detail page (progress bar, status badge, durations in
words, Retry/Cancel buttons), times to the second, one name for dead letters, list titles,
filters (every queue with jobs, runner jobs hidden, jobs no handler claims), stale workers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_pgjobs import enqueue, get_job, start_workflow
from django_pgjobs.admin.columns import humanise
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.queries.base import WORKFLOW_KEY_PREFIX
from django_pgjobs.worker import Worker
from django_pgjobs.workflows.definitions import runner_job_name
from tests.admin.changelists import act, changelist
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)
TO_THE_SECOND = re.compile(r"\d{4}-\d\d-\d\d</span> <span>\d\d:\d\d:\d\d")


def detail(job_id: object) -> str:
    return reverse("admin:pgjobs_job_change", args=[job_id])


def test_humanise_durations() -> None:
    assert humanise(timedelta(milliseconds=350)) == "350 ms"
    assert humanise(timedelta(seconds=2.5)) == "2.5 s"
    assert humanise(timedelta(minutes=4, seconds=12)) == "4 min 12 s"
    assert humanise(timedelta(hours=1, minutes=30)) == "1 h 30 min"
    assert humanise(timedelta(days=3, hours=4)) == "3 d 4 h"


def test_the_job_detail_page_shows_a_bar_a_badge_durations_and_seconds(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    job_id = enqueue("test.fail", {"message": "smtp down"}, max_attempts=3)
    make_worker().run_once()  # failed once: pending with an error
    start = timezone.now() - timedelta(hours=2)
    Job.objects.filter(id=job_id).update(
        progress=4,
        progress_message="warming up",
        scheduled_for=start,
        locked_at=start + timedelta(seconds=2.5),
        completed_at=start + timedelta(seconds=2.5, hours=1, minutes=30),
    )
    page = admin_client_.get(detail(job_id)).content.decode()
    assert '<div class="pgjobs-progress" title="warming up">' in page and "width: 4%" in page
    assert ">awaiting retry</span>" in page  # the badge, not the bare status
    assert "waited 2.5 s to start; the last attempt ran 1 h 30 min" in page
    created = f"{timezone.localtime(get_job(job_id).created_at):%Y-%m-%d %H:%M:%S}"
    assert created.replace(" ", "</span> <span>") in page
    listing = admin_client_.get(changelist("job")).content.decode()
    day, time = created.split()
    assert f'<span class="pgjobs-time"><span>{day}</span> <span>{time}</span></span>' in listing


def test_retry_and_cancel_buttons_post_with_csrf_and_call_the_library(
    admin_client_: Client, viewer_client: Client
) -> None:
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    page = admin_client_.get(detail(job_id)).content.decode()
    retry = reverse("admin:pgjobs_job_retry", args=[job_id])
    cancel = reverse("admin:pgjobs_job_cancel", args=[job_id])
    assert f'action="{retry}"' in page and f'action="{cancel}"' in page
    assert "csrfmiddlewaretoken" in page.split(f'action="{retry}"')[1].split("</form>")[0]
    assert f'action="{retry}"' not in viewer_client.get(detail(job_id)).content.decode()

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="root"))
    assert strict.post(cancel).status_code == 403  # no CSRF token
    assert viewer_client.post(cancel).status_code == 403  # no change permission
    assert admin_client_.get(cancel).status_code == 405  # POST only
    assert get_job(job_id).status == "pending"

    done = admin_client_.post(retry, follow=True).content.decode()
    assert f"Job {job_id} will run again now." in done
    assert get_job(job_id).scheduled_for <= timezone.now()
    admin_client_.post(cancel)
    assert get_job(job_id).status == "cancelled"
    refused = admin_client_.post(cancel, follow=True).content.decode()
    assert "only a pending or running job can be cancelled" in refused
    after = admin_client_.get(detail(job_id)).content.decode()
    assert f'action="{cancel}"' not in after and f'action="{retry}"' in after


def test_one_name_for_dead_letters_and_list_titles_that_do_not_say_change(
    admin_client_: Client,
) -> None:
    index = admin_client_.get(reverse("admin:app_list", args=["pgjobs"])).content.decode()
    assert "Dead letters" in index and "Failed job" not in index
    assert FailedJob._meta.verbose_name_plural == "dead letters"
    for model, title in (("job", "Jobs"), ("failedjob", "Dead letters"), ("worker", "Workers")):
        page = admin_client_.get(changelist(model)).content.decode()
        assert f"<h1>{title}</h1>" in page and "to change" not in page


def test_the_queue_filter_lists_every_queue_with_jobs(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    enqueue("test.record", queue="finished-only")
    make_worker(queues=["finished-only"]).run_once()
    enqueue("test.fail", {"message": "x"}, queue="dead-only", max_attempts=1)
    make_worker(queues=["dead-only"]).run_once()
    assert FailedJob.objects.filter(queue="dead-only").exists()
    enqueue("test.record", queue="pending-only")
    for model in ("job", "failedjob"):
        page = admin_client_.get(changelist(model)).content.decode()
        queues = page.split("By queue")[1].split("</ul>")[0]
        for queue in ("finished-only", "dead-only", "pending-only"):
            assert f"queue={queue}" in queues


def test_workflow_runner_jobs_are_hidden_and_link_to_their_workflow(admin_client_: Client) -> None:
    handle = start_workflow(wf.greet, "ada", workflow_id="order-77")
    mine = enqueue("test.record")
    runner = Job.objects.get(key=f"{WORKFLOW_KEY_PREFIX}order-77")
    page = admin_client_.get(changelist("job")).content.decode()
    assert short_id(mine) in page and short_id(runner.id) not in page
    assert runner_job_name() not in page.split("By job name")[1].split("</ul>")[0]
    shown = admin_client_.get(changelist("job"), {"runner": "shown"}).content.decode()
    link = reverse("admin:pgjobs_workflowexecution_change", args=[handle.workflow_id])
    assert short_id(runner.id) in shown and f'<a href="{link}"' in shown
    assert ">workflow order-77</a>" in shown
    only = admin_client_.get(changelist("job"), {"runner": "only"}).content.decode()
    assert short_id(runner.id) in only and short_id(mine) not in only


def test_jobs_no_handler_claims_are_marked_and_filtered(admin_client_: Client) -> None:
    orphan = enqueue("billing.gone", {})
    known = enqueue("test.record")
    page = admin_client_.get(changelist("job")).content.decode()
    row = page.split(f">{short_id(orphan)}</a>")[1].split("</tr>")[0]
    assert "billing.gone" in row and "no handler</span>" in row
    assert "no handler</span>" not in page.split(f">{short_id(known)}</a>")[1].split("</tr>")[0]
    none = admin_client_.get(changelist("job"), {"handler": "none"}).content.decode()
    assert short_id(orphan) in none and short_id(known) not in none


def test_live_workers_cannot_be_deleted_stale_ones_can(admin_client_: Client) -> None:
    WorkerRow.objects.create(id="live-1", hostname="h", pid=1)
    WorkerRow.objects.create(id="stale-1", hostname="h", pid=2)
    WorkerRow.objects.filter(id="stale-1").update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    page = admin_client_.get(changelist("worker")).content.decode()
    assert 'value="delete_selected"' not in page and 'value="delete_stale"' in page
    live = admin_client_.get(reverse("admin:pgjobs_worker_change", args=["live-1"]))
    assert reverse("admin:pgjobs_worker_delete", args=["live-1"]) not in live.content.decode()
    assert (
        admin_client_.get(reverse("admin:pgjobs_worker_delete", args=["live-1"])).status_code == 403
    )
    stale = admin_client_.get(reverse("admin:pgjobs_worker_change", args=["stale-1"]))
    assert reverse("admin:pgjobs_worker_delete", args=["stale-1"]) in stale.content.decode()
    done = act(admin_client_, "worker", "delete_stale", ["live-1", "stale-1"]).content.decode()
    assert "1 stale worker deleted." in done and "1 live worker kept" in done
    assert list(WorkerRow.objects.values_list("id", flat=True)) == ["live-1"]
    assert TO_THE_SECOND.search(admin_client_.get(changelist("worker")).content.decode())
