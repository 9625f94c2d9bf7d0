"""The dashboard's "why due jobs wait" column: explain_job's categories counted per queue by the
same classification, over a bounded number of each queue's next due jobs."""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.test import Client

from django_pgjobs import enqueue, enqueue_many, explain_job
from django_pgjobs.models import Job
from django_pgjobs.observability import dashboard
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import pause_queue, set_queue_limits

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/admin/pgjobs/dashboard/"


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_job"))
    client = Client()
    client.force_login(user)
    return client


def mixed_queues() -> None:
    """A live worker with test.record; a paused queue, a key in order, a rate used up, a job
    no worker has the handler of, a queue nobody serves."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workers (id, queues, handlers) VALUES "
            '(\'w1\', \'["held", "keyed", "rated", "mixed"]\', \'["test.record"]\')'
        )
    pause_queue("held")
    enqueue_many("test.record", [{}] * 3, queue="held")
    set_queue_limits("keyed", partition_concurrency=1)
    with transaction.atomic():
        for n in range(4):
            enqueue("test.record", queue="keyed", partition_key="a" if n < 3 else "b")
    set_queue_limits("rated", rate_limit=1, rate_period=60)
    enqueue_many("test.record", [{}] * 3, queue="rated")
    with connection.cursor() as cur:
        claim_jobs(
            cur, worker_id="w1", limit=10, lease_seconds=60, queues=["rated"], job_names=None
        )
    enqueue_many("test.record", [{}] * 2, queue="mixed")
    enqueue("elsewhere.only", queue="mixed")
    enqueue("test.record", queue="nobody")


def test_each_queue_counts_its_due_jobs_by_what_holds_them_back() -> None:
    mixed_queues()
    blocked = {q.queue: q.blocked for q in dashboard.load_dashboard().queues}
    assert blocked == {
        "held": {"paused": 3},
        "keyed": {"claimable": 2, "key_order": 2},
        "rated": {"rate_limited": 2},
        "mixed": {"claimable": 2, "no_handler": 1},
        "nobody": {"no_worker": 1},
    }


def test_the_counts_are_explain_job_s_answers() -> None:
    mixed_queues()
    for row in dashboard.load_dashboard().queues:
        due = Job.objects.due().filter(queue=row.queue).values_list("id", flat=True)
        assert Counter(explain_job(pk).blocker.value for pk in due) == row.blocked, row.queue


def test_the_page_shows_them_in_explain_job_s_order(staff: Client) -> None:
    mixed_queues()
    page = staff.get(URL).content.decode()
    keyed = page.split(">keyed</a>")[1].split("</tr>")[0]
    assert (
        '<span data-blocker="key_order">waits for earlier jobs of its key: 2</span> · '
        '<span data-blocker="claimable">claimable now: 2</span>'
    ) in keyed
    assert '<span data-blocker="paused">queue paused: 3</span>' in page


def test_the_jobs_judged_are_shared_out_between_the_queues_and_said_to_be(
    staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "BLOCKED_CAP", 4)
    enqueue_many("test.record", [{}] * 5, queue="one")
    enqueue_many("test.record", [{}] * 1, queue="two")
    board = dashboard.load_dashboard()
    assert board.blocked_cap == 2
    assert {q.queue: sum(q.blocked.values()) for q in board.queues} == {"one": 2, "two": 1}
    page = staff.get(URL).content.decode()
    assert page.split(">one</a>")[1].split("</tr>")[0].count("(of the next 2)") == 1
    assert "(of the next 2)" not in page.split(">two</a>")[1].split("</tr>")[0]
