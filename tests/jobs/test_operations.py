"""The operator functions on jobs: get, list, retry, cancel, dead letters and pruning."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import PgJobsError, cancel_job, enqueue, get_job, retry_job
from django_pgjobs.exceptions import JobNotFound, JobStateError
from django_pgjobs.jobs import list_dead_letter_jobs, list_jobs, retry_dead_letter_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def bury(make_worker: type[Worker], message: str = "boom") -> uuid.UUID:
    job_id = enqueue("test.fail", {"message": message}, max_attempts=1)
    assert make_worker().run_once().buried == 1
    return job_id


def test_unknown_ids_raise_job_not_found() -> None:
    missing = uuid.uuid4()
    for call in (get_job, retry_job, cancel_job, retry_dead_letter_job):
        with pytest.raises(JobNotFound):
            call(missing)
    with pytest.raises(JobNotFound, match="not a job id"):
        get_job("not-a-uuid")
    assert issubclass(JobNotFound, PgJobsError)


def test_get_job_says_when_a_job_was_dead_lettered(make_worker: type[Worker]) -> None:
    job_id = bury(make_worker)
    with pytest.raises(
        JobNotFound, match="used up its attempts and is in the dead letters"
    ) as raised:
        get_job(job_id)
    assert raised.value.dead_lettered


def test_get_job_does_not_say_a_discarded_job_used_up_its_attempts() -> None:
    """Trial15b: a job its handler discarded on attempt 1 of 3 was said to have used them up."""
    from django_pgjobs.models import FailedJob

    letter = FailedJob.objects.create(job_name="x", attempt=1, max_attempts=3)
    with pytest.raises(JobNotFound) as raised:
        get_job(letter.id)
    assert "went to the dead letters after attempt 1 of 3, its other attempts unused" in str(
        raised.value
    )
    assert "its backoff gave no retry for its error" in str(raised.value)
    assert "used up" not in str(raised.value) and raised.value.dead_lettered


def test_list_jobs_filters_and_orders_newest_first() -> None:
    first = enqueue("a", queue="q1")
    second = enqueue("b", queue="q2")
    third = enqueue("a", queue="q1")
    Job.objects.filter(id=third).update(status="cancelled")
    assert [j.id for j in list_jobs()] == [third, second, first]
    assert [j.id for j in list_jobs(status="pending")] == [second, first]
    assert [j.id for j in list_jobs(queue="q1", job_name="a", limit=1)] == [third]
    with pytest.raises(ValueError, match="Unknown status"):
        list_jobs(status="failed")


def test_dead_letters_newest_first(make_worker: type[Worker]) -> None:
    older = bury(make_worker, "first")
    newer = bury(make_worker, "second")
    FailedJob.objects.filter(id=older).update(failed_at=timezone.now() - timedelta(minutes=1))
    assert [d.id for d in list_dead_letter_jobs()] == [newer, older]
    assert [d.id for d in list_dead_letter_jobs(limit=1)] == [newer]


def test_retry_dead_letter_job_moves_it_back_under_its_own_id(make_worker: type[Worker]) -> None:
    dead_id = bury(make_worker, "card declined")
    assert retry_dead_letter_job(dead_id) == dead_id
    assert not FailedJob.objects.filter(id=dead_id).exists()
    job = get_job(dead_id)
    assert (job.job_name, job.payload, job.max_attempts) == (
        "test.fail",
        {"message": "card declined"},
        1,
    )
    assert (job.status, job.attempt, job.error) == ("pending", 0, None)
    # What happened before stays with it: the failed attempt and when the first one started.
    assert [e["attempt"] for e in job.error_history] == [1] and job.started_at is not None
    with pytest.raises(JobNotFound):
        retry_dead_letter_job(dead_id)


def test_retry_dead_letter_job_is_all_or_nothing(make_worker: type[Worker]) -> None:
    dead_id = bury(make_worker)
    with pytest.raises(RuntimeError), transaction.atomic():
        retry_dead_letter_job(dead_id)
        raise RuntimeError
    assert FailedJob.objects.filter(id=dead_id).exists()
    assert not Job.objects.exists()


def test_retry_job_runs_a_job_awaiting_retry_now(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail", max_attempts=3)
    make_worker().run_once()
    assert get_job(job_id).scheduled_for > timezone.now()
    retry_job(job_id)
    job = get_job(job_id)
    assert job.scheduled_for <= timezone.now() and job.attempt == 1  # keeps its count
    assert make_worker().run_once().claimed == 1


def test_cancel_then_retry_gives_a_fresh_attempt_budget() -> None:
    job_id = enqueue("test.record")
    Job.objects.filter(id=job_id).update(attempt=2)
    cancel_job(job_id)
    job = get_job(job_id)
    assert job.status == "cancelled" and job.completed_at is not None
    retry_job(job_id)
    job = get_job(job_id)
    assert (job.status, job.attempt, job.completed_at) == ("pending", 0, None)


def test_cancelled_jobs_are_not_claimed(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.record")
    cancel_job(job_id)
    assert make_worker().run_once().claimed == 0


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_cancel_refuses_finished_jobs(status: str) -> None:
    job_id = enqueue("test.record")
    Job.objects.filter(id=job_id).update(status=status)
    with pytest.raises(JobStateError, match=f"is {status}"):
        cancel_job(job_id)


@pytest.mark.parametrize("status", ["completed", "running"])
def test_retry_refuses_running_and_completed_jobs(status: str) -> None:
    job_id = enqueue("test.record")
    Job.objects.filter(id=job_id).update(status=status)
    with pytest.raises(JobStateError, match=f"is {status}"):
        retry_job(job_id)


def test_retrying_a_cancelled_job_whose_key_was_taken_is_refused() -> None:
    old = enqueue("test.record", key="nightly")
    cancel_job(old)
    enqueue("test.record", key="nightly")
    with transaction.atomic():
        with pytest.raises(JobStateError, match="holds its key"):
            retry_job(old)
        assert Job.objects.count() == 2  # the transaction is still usable


@override_settings(PGJOBS={"RETENTION": timedelta(hours=1)})
def test_prune_deletes_only_old_finished_jobs() -> None:
    from django_pgjobs.jobs import prune_jobs

    old_done, old_cancelled, recent, pending = (enqueue("test.record") for _ in range(4))
    an_hour_ago = timezone.now() - timedelta(hours=1, seconds=1)
    Job.objects.filter(id=old_done).update(status="completed", completed_at=an_hour_ago)
    Job.objects.filter(id=old_cancelled).update(status="cancelled", completed_at=an_hour_ago)
    Job.objects.filter(id=recent).update(status="completed", completed_at=timezone.now())
    assert prune_jobs() == 2
    assert set(Job.objects.values_list("id", flat=True)) == {recent, pending}


def test_prune_accepts_a_timedelta_and_refuses_nonsense() -> None:
    from django_pgjobs.jobs import prune_jobs

    job_id = enqueue("test.record")
    Job.objects.filter(id=job_id).update(
        status="completed", completed_at=timezone.now() - timedelta(hours=2)
    )
    assert prune_jobs(retention=timedelta(hours=1)) == 1
    with pytest.raises(ValueError, match="retention"):
        prune_jobs(retention=float("nan"))
    with pytest.raises(ValueError, match="100 years"):
        prune_jobs(retention=1e300)  # was a DataError: now() less it is out of range
