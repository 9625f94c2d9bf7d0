"""``pgjobs cancel`` and ``pgjobs retry`` take the short id the admin shows (a unique prefix of
at least 4 hex digits), as ``pgjobs explain`` does, through the same look-up
(jobs.short_ids): they refused it (found by the new-user trial)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_pgjobs import enqueue, get_job
from django_pgjobs.jobs.short_ids import short_id
from django_pgjobs.models import FailedJob, Job
from tests.observability.test_explain_lookup import job_with_id

pytestmark = pytest.mark.django_db(transaction=True)


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


def test_cancel_takes_the_admins_short_id() -> None:
    job_id = enqueue("test.record")
    assert pgjobs("cancel", short_id(job_id)) == f"Job {job_id} cancelled.\n"
    assert get_job(job_id).status == "cancelled"


def test_retry_takes_a_short_id_of_a_job_or_a_dead_letter() -> None:
    waiting = enqueue("test.record", scheduled_for=timedelta(hours=1))
    assert pgjobs("retry", short_id(waiting).upper()) == f"Job {waiting} will run again now.\n"
    assert get_job(waiting).scheduled_for <= timezone.now()
    dead = job_with_id("abcdef01-0000-4000-8000-000000000001", "pgjobs_failed_jobs")
    assert pgjobs("retry", "abcdef01").startswith(f"Dead letter {dead} re-queued as job ")
    assert not FailedJob.objects.exists()


def test_an_ambiguous_or_malformed_short_id_changes_nothing() -> None:
    first = job_with_id("12345678-0000-4000-8000-000000000001")
    second = job_with_id("12345678-1000-4000-8000-000000000002")
    with pytest.raises(CommandError, match="More than one job or dead letter has an id"):
        pgjobs("cancel", "12345678")
    with pytest.raises(CommandError, match="at least 4 of its first or last hex digits"):
        pgjobs("retry", "123")
    assert set(Job.objects.values_list("id", "status")) == {(first, "pending"), (second, "pending")}
    assert "cancelled" in pgjobs("cancel", "12345678-1")
