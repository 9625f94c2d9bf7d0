"""Signals sent inside the caller's transaction (an enqueue, a cancel): a receiver whose
statement fails is rolled back to a savepoint of its own, and the caller's transaction, with the
job just written, goes on (it was left aborted, the job lost at the caller's next statement)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs import cancel_job, enqueue, get_job
from django_pgjobs import signals as pgjobs_signals
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def audit(sender: Any, job_id: Any, **kwargs: Any) -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO no_such_audit_table VALUES (%s)", [str(job_id)])


@pytest.fixture
def failing_receivers() -> Iterator[None]:
    for signal in (pgjobs_signals.job_enqueued, pgjobs_signals.job_cancelled):
        signal.connect(audit, weak=False)
    yield
    for signal in (pgjobs_signals.job_enqueued, pgjobs_signals.job_cancelled):
        signal.disconnect(audit)


@pytest.mark.usefixtures("failing_receivers")
def test_a_receiver_whose_statement_fails_leaves_the_callers_transaction_going() -> None:
    with transaction.atomic():
        job_id = enqueue("test.record", {})
        assert Job.objects.filter(id=job_id).count() == 1  # the caller goes on
        other = enqueue("test.record", {})
        cancel_job(other)
        assert get_job(other).status == "cancelled"
    assert get_job(job_id).status == "pending"
    assert get_job(other).status == "cancelled"
