"""QueueDatabaseRouter on real connections: an instance of the queue's models read from one
queue database is saved back there, never into ``PGJOBS["DATABASE"]`` (``other`` is a second
connection to the test database, standing in for a Tasks backend's own database)."""

from __future__ import annotations

import pytest
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_pgjobs import enqueue
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@override_settings(DATABASE_ROUTERS=["django_pgjobs.routers.QueueDatabaseRouter"])
def test_a_job_read_from_another_queue_database_is_saved_back_there() -> None:
    # It was written into PGJOBS["DATABASE"] (an UPDATE of nothing, then an INSERT: the job
    # twice, run twice).
    job = Job.objects.using("other").get(pk=enqueue("test.record"))
    with (
        CaptureQueriesContext(connections["default"]) as on_default,
        CaptureQueriesContext(connections["other"]) as on_other,
    ):
        job.save()
    assert [query["sql"].split()[0] for query in on_other.captured_queries] == ["UPDATE"]
    assert on_default.captured_queries == []
