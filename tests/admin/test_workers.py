"""The workers admin: live workers and the jobs each runs, in a fixed number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_pgjobs import enqueue
from django_pgjobs.models import Job
from django_pgjobs.models import Worker as WorkerRow
from tests.admin.changelists import changelist

pytestmark = pytest.mark.django_db(transaction=True)


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
