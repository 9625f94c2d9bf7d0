"""The admin on a queue database that goes through PgBouncer in transaction mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from django_pgjobs import enqueue, get_job
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.worker import Worker
from tests.admin.changelists import act, changelist

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "pooled"]),
    pytest.mark.usefixtures("pgbouncer"),
]


@pytest.fixture
def operator() -> Iterator[Client]:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    with override_settings(PGJOBS={"DATABASE": "pooled", "LISTEN_DATABASE": "default"}):
        yield client


def test_the_admin_lists_acts_and_summarises_through_the_pooler(
    operator: Client, make_worker: type[Worker]
) -> None:
    failed = enqueue("test.fail", {"message": "smtp down"}, max_attempts=3)
    waiting = enqueue("test.record", {"label": "later"}, scheduled_for=timedelta(hours=1))
    make_worker(using="pooled").run_once()
    page = operator.get(changelist("job")).content.decode()
    assert "ValueError: smtp down" in page
    assert short_id(failed) in page and short_id(waiting) in page
    detail = operator.get(reverse("admin:pgjobs_job_change", args=[failed]))
    assert detail.status_code == 200
    act(operator, "job", "cancel", [waiting])
    assert get_job(waiting).status == "cancelled"
    assert operator.get("/admin/pgjobs/dashboard/").status_code == 200
