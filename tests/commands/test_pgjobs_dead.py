"""``pgjobs list --status dead`` filters and ``pgjobs requeue-dead``: dead letters by job name,
queue and exception class, requeued in one go."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_pgjobs.models import FailedJob, Job
from tests.jobs.test_dead_letters import dead

pytestmark = pytest.mark.django_db(transaction=True)


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


def test_list_dead_honours_job_name_queue_and_exception() -> None:
    wanted = dead(queue="mail", error="shop.errors.PaymentError: declined")
    others = [
        dead(queue="mail", job_name="test.record", error="shop.errors.PaymentError: declined"),
        dead(queue="default", error="shop.errors.PaymentError: declined"),
        dead(queue="mail", error="KeyError: 'id'"),
    ]
    out = pgjobs(
        "list", "--status", "dead", "--job-name", "test.fail", "--queue", "mail",
        "--exception", "PaymentError",
    )  # fmt: skip
    assert str(wanted) in out and not any(str(other) in out for other in others)
    assert len(out.splitlines()) == 2
    with pytest.raises(CommandError, match="--status dead"):
        pgjobs("list", "--exception", "KeyError")


def test_requeue_dead_counts_first_then_moves_only_what_matches() -> None:
    matching = [dead(error="TimeoutError: crm") for _ in range(3)]
    kept = dead(error="KeyError: 'id'")
    assert "3 dead letters would be requeued" in pgjobs(
        "requeue-dead", "--exception", "TimeoutError", "--dry-run"
    )
    assert FailedJob.objects.count() == 4
    out = pgjobs("requeue-dead", "--job-name", "test.fail", "--exception", "TimeoutError")
    assert "Requeued 3 dead letters as jobs" in out
    for job_id in Job.objects.values_list("id", flat=True):
        assert str(job_id) in out
    assert list(FailedJob.objects.values_list("id", flat=True)) == [kept]
    assert not FailedJob.objects.filter(id__in=matching).exists()


def test_requeue_dead_without_a_filter_needs_all() -> None:
    dead()
    with pytest.raises(CommandError, match="--all"):
        pgjobs("requeue-dead")
    assert FailedJob.objects.count() == 1
    assert "Requeued 1 dead letter" in pgjobs("requeue-dead", "--all")
    assert not FailedJob.objects.exists() and Job.objects.count() == 1
