"""The read-only reports run in a transaction the caller began by turning autocommit off, and
leave its settings as they were: they set an isolation level, or settings that end with the
transaction, only in a transaction of their own (a review found SET TRANSACTION refused there,
and database_health()'s statement_timeout left behind)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import enqueue, explain_job
from django_pgjobs.metrics.readings import read_figures
from django_pgjobs.observability import dashboard
from django_pgjobs.observability.health import database_health

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = (
    "SELECT current_setting('statement_timeout'), current_setting('transaction_isolation'), "
    "current_setting('enable_seqscan'), current_setting('jit')"
)

REPORTS: dict[str, Callable[[Any], Any]] = {
    "explain_job": explain_job,
    "read_figures": lambda _: read_figures(),
    "database_health": lambda _: database_health(),
    "load_dashboard": lambda _: dashboard.load_dashboard(),
}


@pytest.mark.parametrize("report", list(REPORTS))
def test_a_report_reads_inside_a_transaction_begun_by_turning_autocommit_off(report: str) -> None:
    job_id = enqueue("test.record")
    transaction.set_autocommit(False)
    try:
        with connection.cursor() as cur:
            cur.execute(SETTINGS)  # the caller's transaction has begun
            before = cur.fetchone()
            assert REPORTS[report](job_id) is not None
            cur.execute(SETTINGS)
            assert cur.fetchone() == before
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
