"""A delay or a wait's timeout is added to now on this clock (Python's check) and again on the
database's, at float precision (the INSERT's ``now() + make_interval(secs => ...)``). One that
ends just before ``LATEST_TIME`` here could end past it there: the CHECK of migration 0014 then
raised IntegrityError and aborted the caller's transaction. Python refuses any that ends within
``DELAY_MARGIN`` of the bound, so the database never refuses what Python accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from django_pgjobs import enqueue
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs.validation import DELAY_MARGIN, LATEST_TIME
from django_pgjobs.models import Job
from django_pgjobs.workflows.waits import check_deadline

pytestmark = pytest.mark.django_db(transaction=True)


def until_the_bound() -> timedelta:
    return LATEST_TIME - datetime.now(UTC)


def test_a_delay_ending_just_before_the_bound_is_refused_and_keeps_the_transaction() -> None:
    with transaction.atomic():
        for _ in range(20):  # 2 in 20 used to reach the CHECK, aborting this transaction
            with pytest.raises(InvalidJobError, match="within 1 day of its end"):
                enqueue(
                    "test.record", scheduled_for=until_the_bound() - timedelta(microseconds=300)
                )
        kept = enqueue("test.record")
    assert list(Job.objects.values_list("id", flat=True)) == [kept]


def test_a_delay_ending_outside_the_margin_is_stored() -> None:
    job_id = enqueue("test.record", scheduled_for=until_the_bound() - 2 * DELAY_MARGIN)
    job = Job.objects.get(id=job_id)
    assert LATEST_TIME - 3 * DELAY_MARGIN < job.scheduled_for < LATEST_TIME - DELAY_MARGIN


def test_a_wait_ending_just_before_the_bound_is_refused() -> None:
    seconds = (until_the_bound() - timedelta(microseconds=300)).total_seconds()
    with pytest.raises(ValueError, match="within 1 day of it"):
        check_deadline(seconds, "A sleep")
    check_deadline((until_the_bound() - 2 * DELAY_MARGIN).total_seconds(), "A sleep")
