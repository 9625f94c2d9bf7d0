"""Outcomes a handler chooses by raising: Snooze (again later, no attempt used), Retry (a failure
on its own schedule), Discard (to the dead letters at once) and Cancel (ended, never retried),
each run by a real worker; and fencing, which drops them all once the attempt lost its job."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.test import override_settings

from django_pgjobs import (
    Cancel,
    Discard,
    Retry,
    Snooze,
    enqueue,
    get_job,
    queries,
    retry_job,
)
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.models import FailedJob
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, make_due_now, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

Register = Callable[..., Any]


def raising(*outcomes: BaseException | None) -> Callable[[Any], None]:
    """A handler that raises the given outcomes in turn, one per call (None: returns)."""
    left = list(outcomes)

    def handler(payload: Any) -> None:
        outcome = left.pop(0)
        if outcome is not None:
            raise outcome

    return handler


def due_in(job_id: uuid.UUID) -> float:
    """Seconds from the database's now until the job is due."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM scheduled_for - now()) FROM pgjobs_job_queue WHERE id = %s",
            [job_id],
        )
        return float(cur.fetchone()[0])


def test_snooze_runs_the_job_again_later_without_using_an_attempt(
    make_worker: type[Worker], register_handler: Register, caplog: pytest.LogCaptureFixture
) -> None:
    register_handler("test.snooze", raising(Snooze(timedelta(seconds=30)), None))
    job_id = enqueue("test.snooze", max_attempts=1)
    worker = make_worker()
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        stats = worker.run_once()
    assert f"test.snooze {job_id} snoozed; due again in 30.0s (attempt 1 not counted)" in (
        caplog.messages
    )
    assert (stats.claimed, stats.snoozed, stats.retried, stats.lost) == (1, 1, 0, 0)
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error, job.error_history) == ("pending", 0, None, [])
    assert (job.locked_by, job.locked_at, job.lease_token) == (None, None, None)
    assert 25 < due_in(job_id) <= 30
    assert worker.run_once().claimed == 0  # not due yet
    make_due_now(job_id)
    # Its only attempt is still there to use.
    assert worker.run_once().completed == 1
    assert (get_job(job_id).status, get_job(job_id).attempt) == ("completed", 1)


def test_a_snooze_leaves_the_last_failure_and_its_history_alone(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("test.fail-then-snooze", raising(ValueError("first"), Snooze(60)))
    job_id = enqueue("test.fail-then-snooze", max_attempts=3)
    worker = make_worker()
    assert worker.run_once().retried == 1
    make_due_now(job_id)
    assert worker.run_once().snoozed == 1
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("pending", 1)
    assert job.error is not None and job.error.startswith("ValueError: first")
    assert [entry["attempt"] for entry in job.error_history] == [1]


def test_snooze_zero_is_due_at_once_and_wakes_idle_workers(
    make_worker: type[Worker],
    register_handler: Register,
    other_connection: psycopg.Connection[Any],
) -> None:
    register_handler("test.snooze-now", raising(Snooze(0)), queue="hand-back")
    job_id = enqueue("test.snooze-now")
    other_connection.execute(f"LISTEN {queries.NOTIFY_CHANNEL}")
    list(other_connection.notifies(timeout=0))  # the enqueue's own wake-up
    assert make_worker().run_once().snoozed == 1
    assert due_in(job_id) <= 0
    woken = [n.payload for n in other_connection.notifies(timeout=5, stop_after=1)]
    assert woken == ["hand-back"]


def test_an_async_handler_can_snooze(make_worker: type[Worker], register_handler: Register) -> None:
    async def snooze(payload: Any) -> None:
        raise Snooze(5)

    register_handler("test.async-snooze", snooze)
    job_id = enqueue("test.async-snooze")
    assert make_worker().run_once().snoozed == 1
    assert (get_job(job_id).status, get_job(job_id).attempt) == ("pending", 0)


def test_retry_with_a_delay_counts_the_attempt_and_records_the_error(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("test.retry", raising(Retry("upstream 503", delay=120)))
    job_id = enqueue("test.retry", max_attempts=3)
    assert make_worker().run_once().retried == 1
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("pending", 1)
    assert job.error is not None
    assert job.error.startswith("django_pgjobs.exceptions.Retry: upstream 503")
    assert job.error_history[0]["exception"] == "django_pgjobs.exceptions.Retry"
    assert 115 < due_in(job_id) <= 120  # the policy's delay would have been 1 s


def test_retry_raised_from_an_error_records_that_error_too(
    make_worker: type[Worker], register_handler: Register
) -> None:
    def handler(payload: Any) -> None:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as exc:
            raise Retry(delay=timedelta(minutes=5)) from exc

    register_handler("test.retry-from", handler)
    job_id = enqueue("test.retry-from")
    make_worker().run_once()
    error = get_job(job_id).error
    assert error is not None and "ConnectionResetError: peer reset" in error
    assert 295 < due_in(job_id) <= 300


@override_settings(PGJOBS={"RETRY_JITTER": 0})  # the exact delay, unspread
def test_retry_without_a_delay_uses_the_jobs_own_backoff(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("test.retry-backoff", raising(Retry("again")), retry_delay=200)
    job_id = enqueue("test.retry-backoff")
    assert make_worker().run_once().retried == 1
    assert 195 < due_in(job_id) <= 200


def test_retry_on_the_last_attempt_moves_the_job_to_the_dead_letters(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("test.retry-last", raising(Retry("no luck", delay=0)))
    job_id = enqueue("test.retry-last", max_attempts=1)
    assert make_worker().run_once().buried == 1
    dead = FailedJob.objects.get(id=job_id)
    assert dead.attempt == 1
    assert (dead.error or "").startswith("django_pgjobs.exceptions.Retry: no luck")


def test_discard_moves_the_job_to_the_dead_letters_with_attempts_left(
    make_worker: type[Worker], register_handler: Register
) -> None:
    register_handler("test.discard", raising(Discard("customer deleted")))
    job_id = enqueue("test.discard", max_attempts=5)
    assert make_worker().run_once().buried == 1
    dead = FailedJob.objects.get(id=job_id)
    assert (dead.attempt, dead.max_attempts) == (1, 5)
    assert (dead.error or "").startswith("django_pgjobs.exceptions.Discard: customer deleted")
    assert [e["exception"] for e in dead.error_history] == ["django_pgjobs.exceptions.Discard"]


def test_cancel_ends_the_job_cancelled_and_it_is_never_retried(
    make_worker: type[Worker], register_handler: Register, caplog: pytest.LogCaptureFixture
) -> None:
    register_handler("test.cancel", raising(Cancel("order withdrawn"), None))
    job_id = enqueue("test.cancel", max_attempts=5)
    worker = make_worker()
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        assert worker.run_once().cancelled == 1
    assert (
        f"Job test.cancel {job_id} cancelled by its handler (attempt 1/5): "
        "django_pgjobs.exceptions.Cancel: order withdrawn"
    ) in caplog.messages
    job = get_job(job_id)
    assert (job.status, job.attempt, job.lease_token) == ("cancelled", 1, None)
    assert job.completed_at is not None and job.started_at is not None
    assert job.error is not None
    assert job.error.startswith("django_pgjobs.exceptions.Cancel: order withdrawn")
    assert [e["exception"] for e in job.error_history] == ["django_pgjobs.exceptions.Cancel"]
    make_due_now(job_id)
    assert worker.run_once().claimed == 0
    assert not FailedJob.objects.filter(id=job_id).exists()
    # An operator can still run it afresh.
    retry_job(job_id)
    assert worker.run_once().completed == 1


def test_a_bad_snooze_fails_the_attempt_with_a_clear_error(
    make_worker: type[Worker], register_handler: Register
) -> None:
    def handler(payload: Any) -> None:
        raise Snooze(-1)

    register_handler("test.bad-snooze", handler)
    job_id = enqueue("test.bad-snooze", max_attempts=3)
    assert make_worker().run_once().retried == 1
    error = get_job(job_id).error
    assert error is not None and error.startswith("django_pgjobs.exceptions.InvalidJobError:")
    assert "Snooze(seconds) must be a number of seconds or a timedelta" in error


def test_the_outcomes_check_their_arguments() -> None:
    for bad in (-1, float("nan"), float("inf"), "10", True, timedelta(days=400)):
        with pytest.raises(InvalidJobError, match="from 0 to"):
            Snooze(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidJobError, match=r"Retry\(delay=...\)"):
            Retry(delay=bad)  # type: ignore[arg-type]
    assert Snooze(timedelta(minutes=2)).seconds == 120.0
    assert Retry().delay is None and Retry(delay=0).delay == 0.0
    assert str(Snooze(1.5)) == "snoozed for 1.5s" and str(Cancel("why")) == "why"


def take_over(job_id: uuid.UUID) -> queries.ClaimedJob:
    """What another worker does to a job whose worker seemed dead: its lease expires, a rescue
    hands it back, and another worker claims it (a new attempt, with a lease token of its own)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET lease_expires_at = now() - interval '1 second' "
            "WHERE id = %s",
            [job_id],
        )
        # A heartbeat of its worker that met this transaction's lock on the row listed the
        # attempt as unrenewed, which the rescue leaves to a live worker (a rare flake):
        # as if that heartbeat had not run.
        cur.execute("UPDATE pgjobs_workers SET unrenewed = '[]'::jsonb")
        assert queries.rescue_expired_leases(cur).retried == 1
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="other", limit=1, lease_seconds=60, queues=None, job_names=None
        )
    assert claimed.id == job_id
    return claimed


@pytest.mark.parametrize(
    "outcome",
    [Snooze(0), Retry(delay=0), Discard("late"), Cancel("late")],
    ids=lambda outcome: type(outcome).__name__,
)
def test_an_attempt_that_lost_its_job_changes_nothing_whatever_it_raises(
    make_worker: type[Worker], register_handler: Register, outcome: Exception
) -> None:
    started, release = threading.Event(), threading.Event()

    def handler(payload: Any) -> None:
        started.set()
        release.wait(10)
        raise outcome

    register_handler("test.taken-over", handler)
    job_id = enqueue("test.taken-over", max_attempts=5)
    worker = make_worker(max_jobs=1)
    thread = in_thread(lambda: worker.run(burst=True))
    try:
        wait_for(started.is_set, what="the handler to start")
        theirs = take_over(job_id)
    finally:
        release.set()
        thread.join(30)
    assert not thread.is_alive()
    assert (worker.stats.lost, worker.stats.snoozed, worker.stats.retried) == (1, 0, 0)
    assert (worker.stats.buried, worker.stats.cancelled) == (0, 0)
    job = get_job(job_id)
    assert (job.status, job.attempt, job.locked_by) == ("running", 2, "other")
    assert job.lease_token == theirs.lease_token
    assert not FailedJob.objects.filter(id=job_id).exists()


def test_a_snooze_undoes_the_progress_its_attempt_reported(
    make_worker: type[Worker], register_handler: Register
) -> None:
    """Trial15b: a job that reported progress and then snoozed (at a SIGTERM) still showed that
    progress, though jobs.md says the attempt is undone, as if it never started."""
    from django_pgjobs.jobs import ProgressReporter

    def handler(payload: Any, report_progress: ProgressReporter) -> None:
        assert report_progress(21, "step 221")
        raise Snooze(0)

    register_handler("test.progress-snooze", handler)
    job_id = enqueue("test.progress-snooze")
    assert make_worker().run_once().snoozed == 1
    job = get_job(job_id)
    assert (job.status, job.attempt, job.progress, job.progress_message) == (
        "pending", 0, None, None,
    )  # fmt: skip
