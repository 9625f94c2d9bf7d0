"""The dashboard: counts, lag and charts for jobs and workflows, in a fixed number of bounded
queries, shown to those with view permission."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_pgjobs import enqueue, enqueue_many, start_workflow
from django_pgjobs.observability import dashboard
from django_pgjobs.worker import Worker
from tests.helpers import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/admin/pgjobs/dashboard/"


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_job"))
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_is_linked_from_the_admin_index(staff: Client) -> None:
    assert URL in staff.get(reverse("admin:index")).content.decode()


def test_dashboard_shows_counts_lag_and_charts(staff: Client, make_worker: type[Worker]) -> None:
    enqueue_many("test.record", [{}] * 3)
    enqueue("test.fail", max_attempts=1, queue="payments")
    make_worker(concurrency=4).run_once()  # three completed, one dead-lettered
    enqueue("test.record", queue="mail")
    enqueue("test.record", queue="mail", scheduled_for=timedelta(hours=1))
    page = staff.get(URL).content.decode()
    assert 'id="pgjobs-due">1<' in page
    assert "<td>mail</td>" not in page and ">mail</a>" in page
    assert "<td>1</td><td>1</td><td>0</td>" in page.replace("\n", "").replace("        ", "")
    assert page.count("<svg") >= 3 and "Completed per minute" in page and "Queue depth" in page
    assert "<title>" in page and ": 3</title>" in page  # three completions in the current minute
    partial = staff.get(URL, {"partial": "1"}).content.decode()
    assert "<html" not in partial and "Dead-lettered per minute" in partial


def test_dashboard_needs_the_view_job_permission() -> None:
    user = User.objects.create_user("nobody", "n@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403


def test_counts_stop_at_the_cap(staff: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "COUNT_CAP", 5)
    enqueue_many("test.record", [{}] * 8)
    assert 'id="pgjobs-due">5+<' in staff.get(URL).content.decode()


def test_dashboard_query_count_does_not_grow_with_rows_or_queues(staff: Client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(URL).status_code == 200
        return len(captured)

    empty = queries()
    for queue in ("a", "b", "c", "d"):
        enqueue_many("test.record", [{}] * 50, queue=queue)
    assert queries() == empty


def test_listing_queues_skips_through_the_index() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) "
            "SELECT 'test.record', 'q' || (n % 3) FROM generate_series(1, 20000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute("EXPLAIN " + dashboard._QUEUES)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert (
        "Seq Scan on pgjobs_job_queue"
        not in plan.split("Recursive Union")[1].split("->  Unique")[0]
    ), plan
    assert "pgjobs_job_queue_claim" in plan, plan


def test_due_scheduled_lag_and_a_depth_curve_that_ignores_jobs_not_due_yet(staff: Client) -> None:
    from django.utils import timezone

    from django_pgjobs.models import Job

    due = enqueue_many("test.record", [{}] * 2, queue="mail")
    # They arrived half an hour ago and have waited since: lag ~30 minutes, depth 2 since then.
    half_an_hour_ago = timezone.now() - timedelta(minutes=30)
    Job.objects.filter(id__in=due).update(
        created_at=half_an_hour_ago, scheduled_for=half_an_hour_ago
    )
    enqueue_many("test.record", [{}] * 5, queue="mail", scheduled_for=timedelta(hours=1))
    board = dashboard.load_dashboard()
    (mail,) = board.queues
    assert (mail.due, mail.scheduled, mail.running) == (2, 5, 0)
    assert board.oldest_due_age is not None and 29 * 60 < board.oldest_due_age < 31 * 60
    assert board.depth[-1] == 2 and board.depth[-10] == 2 and board.depth[0] == 0
    assert "0:30:" in staff.get(URL).content.decode()


def test_dashboard_counts_workflows_by_status_for_those_who_may_see_them(
    viewer_client: Client, make_worker: type[Worker]
) -> None:
    assert 'id="pgjobs-workflows"' not in viewer_client.get(URL).content.decode()
    start_workflow(wf.greet, "a")
    start_workflow(wf.fails, "b")
    drain(make_worker())
    start_workflow(wf.greet, "c")

    def tiles() -> tuple[str, int]:
        with CaptureQueriesContext(connection) as queries:
            page = viewer_client.get(URL, {"partial": "1"}).content.decode()
        return page.split('id="pgjobs-workflows"')[1].split("</div>\n</div>")[0], len(queries)

    shown, before = tiles()
    for state, count in (("pending", 1), ("completed", 1), ("failed", 1), ("dead", 0)):
        assert f'?status__exact={state}">{count}</a>' in shown
    for n in range(5):
        start_workflow(wf.greet, f"more {n}")
    assert tiles()[1] == before

    jobs_only = User.objects.create_user("jobs", "j@example.com", "pw", is_staff=True)
    jobs_only.user_permissions.set(Permission.objects.filter(codename="view_job"))
    client = Client()
    client.force_login(jobs_only)
    assert 'id="pgjobs-workflows"' not in client.get(URL).content.decode()


def test_workflow_counts_stop_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "COUNT_CAP", 3)
    for n in range(5):
        start_workflow(wf.greet, str(n))
    counts: dict[str, Any] = dashboard.workflow_counts()
    assert counts["pending"] == 3 and counts["running"] == 0
    assert list(counts) == ["pending", "running", "completed", "failed", "cancelled", "dead"]
