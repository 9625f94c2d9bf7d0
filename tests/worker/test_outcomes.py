"""What a worker records when a handler returns, raises or is interrupted: completion, retries
with backoff, dead letters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue, enqueue_many, get_job
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from tests.helpers import make_due_now
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_once_runs_due_jobs_and_marks_them_completed(make_worker: type[Worker]) -> None:
    ids = [enqueue("test.record", {"label": f"job {n}"}) for n in range(3)]
    worker = make_worker(concurrency=4)
    stats = worker.run_once()
    assert (stats.claimed, stats.completed) == (3, 3)
    assert Run.objects.count() == 3
    for job_id in ids:
        job = get_job(job_id)
        assert job.status == "completed"
        assert job.completed_at is not None and job.attempt == 1
        assert job.lease_expires_at is None and job.lease_token is None
        # Who ran the attempt and when it started stay on the row (a task's worker_ids).
        assert job.locked_by == worker.worker_id
        assert job.started_at == job.locked_at and job.started_at is not None
        assert job.result is None and job.error_history == []


def test_jobs_failing_together_come_back_spread_by_the_default_jitter(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """RETRY_JITTER defaults to 0.1: twenty jobs failing in one outage wait 0.9 to 1.1 s each,
    not all exactly 1 s (every delay was exact: a new user's trial)."""
    for _ in range(20):
        enqueue("test.fail", {"message": "dependency down"}, max_attempts=2)
    worker = make_worker(concurrency=4)
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        retried = 0
        while retried < 20:
            retried += worker.run_once().retried
    delays = [r.__dict__["delay"] for r in caplog.records if "delay" in r.__dict__]
    assert len(delays) == 20
    assert all(0.9 <= delay <= 1.1 for delay in delays), delays
    assert max(delays) - min(delays) > 0.05, delays  # 20 draws this close: about 1 in 10^10


@override_settings(PGJOBS={"RETRY_JITTER": 0})  # exact delays, to compare with the formula
def test_failure_records_error_and_backs_off_exponentially(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail", {"message": "smtp down"}, max_attempts=4)
    worker = make_worker()
    for attempt, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert worker.run_once().retried == 1
        job = get_job(job_id)
        assert (job.status, job.attempt) == ("pending", attempt)
        assert job.error is not None
        assert job.error.startswith("ValueError: smtp down")
        assert "Traceback" in job.error and "tests/testapp/jobs.py" in job.error
        assert job.locked_at is not None
        waited = (job.scheduled_for - job.locked_at).total_seconds()
        assert delay <= waited < delay + 0.5, (attempt, waited)
        # Not due yet: a run now claims nothing.
        assert worker.run_once().claimed == 0
        make_due_now(job_id)


@override_settings(PGJOBS={"RETRY_DELAY": 0.5, "RETRY_DELAY_MAX": 0.75, "RETRY_JITTER": 0})
def test_retry_delay_setting_and_cap(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    register_handler("test.divide-by-zero", lambda payload: 1 / 0)
    job_id = enqueue("test.divide-by-zero", max_attempts=5)
    worker = make_worker()
    waits = []
    for _ in range(3):
        worker.run_once()
        job = get_job(job_id)
        assert job.locked_at is not None
        waits.append((job.scheduled_for - job.locked_at).total_seconds())
        make_due_now(job_id)
    # 0.5 s, then 1 s and 2 s capped to 0.75 s (plus the moment the handler itself took).
    for wait, expected in zip(waits, (0.5, 0.75, 0.75), strict=True):
        assert expected <= wait < expected + 0.2, waits


def test_last_failed_attempt_moves_the_job_to_dead_letters(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail", {"message": "card declined"}, queue="payments", priority=7)
    worker = make_worker()
    worker.run_once()
    make_due_now(job_id)
    assert worker.run_once().buried == 1
    assert not Job.objects.filter(id=job_id).exists()
    dead = FailedJob.objects.get(id=job_id)
    assert (dead.job_name, dead.payload, dead.queue, dead.priority) == (
        "test.fail",
        {"message": "card declined"},
        "payments",
        7,
    )
    assert (dead.attempt, dead.max_attempts) == (2, 2)
    assert dead.error is not None and dead.error.startswith("ValueError: card declined")
    assert dead.original_created_at < dead.failed_at


def test_flaky_job_succeeds_on_a_later_attempt(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.flaky", {"label": "flaky", "succeed_on": 3})
    worker = make_worker()
    for _ in range(3):
        worker.run_once()  # retry_delay=0: due again at once
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 3)
    assert job.error is not None and "flaky failure 2" in job.error  # the last error is kept


def test_async_handlers_run(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.async", {"label": "async"})
    assert make_worker().run_once().completed == 1
    assert get_job(job_id).status == "completed"
    assert Run.objects.filter(label="async").exists()


@pytest.mark.parametrize(
    ("name", "error"),
    [("test.system_exit", "SystemExit: 3"), ("test.keyboard_interrupt", "KeyboardInterrupt")],
)
def test_system_exit_and_keyboard_interrupt_fail_the_job_not_the_worker(
    make_worker: type[Worker], name: str, error: str
) -> None:
    job_id = enqueue(name)
    worker = make_worker()
    assert worker.run_once().retried == 1
    assert (get_job(job_id).error or "").startswith(error)
    # The worker is still usable.
    enqueue("test.record", {"label": "after"})
    assert worker.run_once().completed == 1


def test_completed_rows_serve_the_throughput_query(make_worker: type[Worker]) -> None:
    enqueue_many("test.record", [{}] * 5)
    make_worker(concurrency=5).run_once()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT date_trunc('minute', completed_at), count(*) FROM pgjobs_job_queue "
            "WHERE status = 'completed' AND completed_at > now() - interval '1 hour' GROUP BY 1"
        )
        assert sum(r[1] for r in cur.fetchall()) == 5


def test_a_failure_inside_the_worker_still_records_an_outcome(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the code that runs an attempt (not the handler) raises. The job must not
    stay leased to this worker for ever: the attempt is recorded as failed."""
    from django_pgjobs.worker import runners

    def broken(*args: Any) -> Any:
        raise RuntimeError("injected")

    job_id = enqueue("test.record", {"label": "x"})
    worker = make_worker()
    monkeypatch.setattr(runners, "run_attempt", broken)
    assert worker.run_once().retried == 1
    job = get_job(job_id)
    assert (job.status, job.error) == ("pending", "WorkerError: the attempt could not be run.")
    monkeypatch.undo()
    make_due_now(job_id)
    assert worker.run_once().completed == 1
