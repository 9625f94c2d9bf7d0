"""The dashboard: counts, lag and charts for jobs and workflows, in a fixed number of bounded
queries, shown to those with view permission."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, start_workflow
from django_pgjobs.admin.charts import bar_chart, line_chart
from django_pgjobs.models import Job
from django_pgjobs.observability import dashboard
from django_pgjobs.observability.status import queue_status, unhandled_due_jobs
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
    (mail,) = queue_rows(page)
    assert mail[0] == "mail" and (mail[1], mail[3], mail[4]) == ("1", "1", "0")
    assert mail[2].startswith("0:00:")  # due since it was enqueued, a moment ago
    assert page.count("<svg") >= 3 and "Completed per minute" in page and "Queue depth" in page
    assert "<title>" in page and ": 3</title>" in page  # three completions in the current minute
    partial = staff.get(URL, {"partial": "1"}).content.decode()
    assert "<html" not in partial and "Dead-lettered per minute" in partial


def test_dashboard_needs_the_view_job_permission() -> None:
    user = User.objects.create_user("nobody", "n@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403


def queue_rows(page: str) -> list[list[str]]:
    """The queue table's rows, as the text of their cells."""
    table = page.split('id="pgjobs-queues"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        ]
        for row in rows
    ]


def test_dead_letters_are_counted_up_to_the_cap(
    staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "COUNT_CAP", 5)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_failed_jobs (job_name) "
            "SELECT 'test.fail' FROM generate_series(1, 8)"
        )
    enqueue_many("test.record", [{}] * 8)
    page = staff.get(URL).content.decode()
    assert "5+</a>" in page  # dead letters: a capped count
    assert 'id="pgjobs-due">8<' in page  # due jobs: exact, from the one GROUP BY


def test_many_queues_cost_a_fixed_number_of_statements_and_no_work_per_queue(
    staff: Client,
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(URL).status_code == 200
        return len(captured)

    empty = queries()
    # 2,000 queues, one job due in each and 2 scheduled later; queue q0007 is the busiest.
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, scheduled_for) "
            "SELECT 'test.record', 'q' || lpad(n::text, 4, '0'), "
            "       now() + CASE WHEN k = 0 THEN interval '0' ELSE interval '1 hour' END "
            "FROM generate_series(0, 1999) AS n, generate_series(0, 2) AS k"
        )
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) "
            "SELECT 'test.record', 'q0007' FROM generate_series(1, 4)"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    assert queries() == empty
    page = staff.get(URL).content.decode()
    rows = queue_rows(page)
    assert len(rows) == dashboard.QUEUES_SHOWN
    assert rows[0][0] == "q0007" and rows[0][1] == "5" and rows[1][:2] == ["q0000", "1"]
    assert "and 1,975 more queues" in page
    assert 'id="pgjobs-due">2,004<' in page  # the tiles count every queue, shown or not

    # No plan node runs once per queue (the old page ran three sub-queries per queue: 5.2 s at
    # 20,000 queues). A parallel node runs once per process, hence a few loops at most.
    with connection.cursor() as cur:
        for statement, params in (
            (dashboard._QUEUE_TABLE, {"shown": dashboard.QUEUES_SHOWN}),
            (dashboard._PER_MINUTE, {"window": dashboard.WINDOW_MINUTES}),
        ):
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
            (plan,) = cur.fetchone()[0]
            assert max(_loops(plan["Plan"])) < 10, json.dumps(plan, indent=1)


def _loops(node: dict[str, Any]) -> Iterator[int]:
    yield int(node["Actual Loops"])
    for child in node.get("Plans", []):
        yield from _loops(child)


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
    # A probe per queue of a partial index of pending jobs led by the queue (either of the two).
    walk = plan.split("Recursive Union")[1].split("WorkTable Scan")[0]
    assert "pgjobs_job_queue_claim" in walk or "pgjobs_job_partition_claim" in walk, plan


def test_due_scheduled_lag_and_a_depth_curve_that_ignores_jobs_not_due_yet(staff: Client) -> None:
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
    assert mail.oldest_due_age == board.oldest_due_age
    assert board.depth[-1] == 2 and board.depth[-10] == 2 and board.depth[0] == 0
    assert "0:30:" in staff.get(URL).content.decode()


def test_inside_a_callers_transaction_the_figures_load_at_its_isolation_level() -> None:
    enqueue("test.record")
    with transaction.atomic():  # as under ATOMIC_REQUESTS: a query already ran
        Job.objects.count()
        assert dashboard.load_dashboard().total_due == 1
    board = dashboard.load_dashboard()  # on its own: one REPEATABLE READ, read-only snapshot
    assert board.total_due == 1 and board.depth[-1] == 1


def test_the_depth_curve_is_right_minute_by_minute_with_dead_letters_and_cancellations() -> None:
    """Each job is in the curve from the minute it became due until the minute it left; one that
    left without ever being due is in no minute. (Dead letters and early cancellations used to
    add a phantom job to every minute before they left.)"""
    with connection.cursor() as cur:
        cur.execute("SELECT date_trunc('minute', now())")
        base: datetime = cur.fetchone()[0]

    def at(minutes_ago: int) -> datetime:  # half past the second, minutes_ago minutes back
        return base - timedelta(minutes=minutes_ago) + timedelta(seconds=30)

    never = datetime.max.replace(tzinfo=UTC)
    expected: list[tuple[datetime, datetime]] = []  # (due at, left at) of every job

    def queued(created: int, due: int, status: str, finished: int | None) -> None:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, status, created_at, scheduled_for, "
                "completed_at) VALUES ('test.record', %s, %s, %s, %s)",
                [status, at(created), at(due), None if finished is None else at(finished)],
            )
        left = never if finished is None else at(finished)
        if at(due) < left:
            expected.append((max(at(created), at(due)), left))

    def dead_letter(created: int, failed: int) -> None:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO pgjobs_failed_jobs (job_name, original_created_at, failed_at) "
                "VALUES ('test.fail', %s, %s)",
                [at(created), at(failed)],
            )
        expected.append((at(created), at(failed)))

    dead_letter(created=30, failed=20)
    dead_letter(created=80, failed=35)  # arrived before the window
    queued(created=40, due=-60, status="cancelled", finished=10)  # cancelled before it was due
    queued(created=50, due=50, status="cancelled", finished=5)  # cancelled while due
    queued(created=90, due=45, status="completed", finished=15)  # created before the window
    queued(created=12, due=12, status="completed", finished=12)  # in and out in one minute
    queued(created=25, due=25, status="pending", finished=None)
    queued(created=3, due=-30, status="pending", finished=None)  # not due yet
    # Due before the window but created in it (pgjobs_job_pending_created): from its creation.
    queued(created=20, due=90, status="pending", finished=None)

    board = dashboard.load_dashboard()
    # The curve is the depth at the end of each minute: the jobs due by then and not yet gone.
    # (Expressed in absolute minutes, so a minute that turns during the test changes nothing.)
    for minute, depth in zip(board.minutes, board.depth, strict=True):
        end = minute + timedelta(minutes=1)
        wanted = sum(1 for due, left in expected if due < end and left >= end)
        assert depth == wanted, (minute, board.depth)
    assert sum(board.depth) > 0 and board.depth[-1] == 2
    by_minute = dict(zip(board.minutes, board.dead, strict=True))
    assert by_minute[base - timedelta(minutes=20)] == 1
    assert by_minute[base - timedelta(minutes=35)] == 1 and sum(board.dead) == 2


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


def test_due_jobs_no_handler_claims_are_named_with_their_count_and_age(staff: Client) -> None:
    enqueue("test.record")  # handled: never in the panel
    assert 'id="pgjobs-unhandled"' not in staff.get(URL).content.decode()
    with connection.cursor() as cur:
        # From SQL, as another service would: a typo'd name, and a workflow pinned to code
        # that is no longer deployed. One more of each is not due yet: not counted.
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, created_at, scheduled_for) "
            "SELECT name, now() - make_interval(mins => m), now() - make_interval(mins => m) "
            "FROM (VALUES ('billing.send_invoce', 12), ('billing.send_invoce', 3), "
            "             ('billing.send_invoce', 1), ('pgjobs.workflow:0ld', 7), "
            "             ('billing.send_invoce', -5), ('pgjobs.workflow:0ld', -5)) AS v(name, m)"
        )
    page = staff.get(URL).content.decode()
    panel = page.split('id="pgjobs-unhandled"')[1].split("</ul>\n</li></ul>")[0]
    assert "<code>billing.send_invoce</code></a>: 3 due jobs, oldest due 0:12:" in panel
    assert "?job_name=billing.send_invoce" in panel
    assert "1 workflow job</a> pinned to code version <code>0ld</code>" in panel
    assert "oldest due 0:07:" in panel and "test.record" not in panel
    # The same figures `pgjobs status` prints, from the same function.
    with connection.cursor() as cur:
        found = {u.job_name: u.count for u in unhandled_due_jobs(cur)}
    assert found == {"billing.send_invoce": 3, "pgjobs.workflow:0ld": 1}
    assert queue_status().unhandled == found


def test_chart_bars_of_small_values_stay_visible_and_labels_are_html() -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    minutes = [now - timedelta(minutes=n) for n in (2, 1, 0)]
    chart = bar_chart("Completed per minute", [5000, 1, 0], minutes, tone="completed")
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', chart)]
    assert heights[0] == 120 and 2 <= heights[1] < 5 and heights[2] == 0
    # Peak and zero are HTML beside the SVG (the admin's font, colour and size); the SVG is
    # coloured by the tone's CSS variable, which the template sets for light and dark themes.
    assert '<span class="pgjobs-peak">5,000</span><span>0</span>' in chart
    assert 'class="pgjobs-chart pgjobs-chart-completed"' in chart and "<text" not in chart
    empty = line_chart("Queue depth", [0, 0, 0], minutes, tone="depth")
    assert '<span class="pgjobs-peak">0</span>' in empty and "nan" not in empty


@pytest.mark.parametrize("in_callers_transaction", [False, True])
def test_the_per_minute_statements_planner_setting_ends_with_it(
    in_callers_transaction: bool,
) -> None:
    """The setting it runs with (dashboard.PER_MINUTE_SETTINGS) is rolled back with its
    savepoint: neither the caller's transaction nor the connection keeps it."""
    enqueue("test.record")
    with connection.cursor() as cur:
        if in_callers_transaction:
            with transaction.atomic():
                board = dashboard.load_dashboard()
                cur.execute("SHOW enable_seqscan")
                assert cur.fetchone() == ("on",)
        else:
            board = dashboard.load_dashboard()
        cur.execute("SHOW enable_seqscan")
        assert cur.fetchone() == ("on",)
    assert sum(board.depth) > 0
