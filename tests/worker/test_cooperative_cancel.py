"""A running handler asks whether its job was cancelled (or taken over) and whether its worker is
stopping, and stops early: a cancel reaches it through a NOTIFY, not a heartbeat; a cancelled job
is never retried whatever its handler does next; on SIGTERM it hands its job back unspent."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_pgjobs import (
    Cancel,
    Discard,
    Retry,
    Snooze,
    cancel_job,
    current_attempt,
    enqueue,
    get_job,
)
from django_pgjobs.jobs import ProgressReporter, RunningAttempt
from django_pgjobs.models import FailedJob
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.worker import Worker
from django_pgjobs.worker.attempt import run_attempt
from tests.helpers import in_thread, start_worker, stop, wait_for
from tests.testapp.models import Run
from tests.worker.test_outcomes_raised import take_over

pytestmark = pytest.mark.django_db(transaction=True)

Register = Callable[..., Any]
# No heartbeat after the first for an hour: what a handler learns meanwhile came another way.
NO_HEARTBEAT = {"HEARTBEAT_SECONDS": 3600, "LEASE_SECONDS": 7200}
FAST_HEARTBEAT = {"HEARTBEAT_SECONDS": 0.05}


class Seen:
    """What a handler saw, told to the test as it happens."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.progress: list[bool] = []
        self.done = threading.Event()


def until_cancelled(seen: Seen) -> Callable[[Any, ProgressReporter], None]:
    """A handler that reports progress, works until its attempt is cancelled, then reports
    again (what report_progress answers is recorded)."""

    def handler(payload: Any, report_progress: ProgressReporter) -> None:
        attempt = current_attempt()
        assert attempt is not None and attempt is report_progress.attempt
        seen.progress.append(report_progress(10, "working"))
        seen.started.set()
        deadline = time.monotonic() + 30
        while not report_progress.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.progress.append(report_progress(90, "too late"))
        seen.done.set()

    return handler


@pytest.fixture
def running() -> Iterator[Callable[[Worker], threading.Thread]]:
    """Runs a worker in a thread (burst) and joins it after the test."""
    threads: list[threading.Thread] = []

    def run(worker: Worker) -> threading.Thread:
        thread = in_thread(lambda: worker.run(burst=True))
        threads.append(thread)
        return thread

    yield run
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()


@override_settings(PGJOBS=NO_HEARTBEAT)
def test_a_cancel_reaches_the_running_handler_through_a_notify_not_a_heartbeat(
    make_worker: type[Worker], register_handler: Register, running: Callable[[Worker], Any]
) -> None:
    seen = Seen()
    register_handler("test.until-cancelled", until_cancelled(seen))
    job_id = enqueue("test.until-cancelled")
    worker = make_worker(concurrency=1)
    running(worker)
    wait_for(lambda: get_job(job_id).progress == 10, what="the first progress report written")
    cancel_job(job_id)
    wait_for(seen.done.is_set, what="the handler to see the cancel")
    # Progress was written while the job was the attempt's, refused once it was not.
    assert seen.progress == [True, False]
    job = get_job(job_id)
    assert (job.status, job.progress, job.progress_message) == ("cancelled", 10, "working")


@override_settings(PGJOBS=FAST_HEARTBEAT)
def test_a_worker_that_does_not_listen_learns_of_the_cancel_at_its_heartbeat(
    make_worker: type[Worker], register_handler: Register, running: Callable[[Worker], Any]
) -> None:
    seen = Seen()
    register_handler("test.until-cancelled", until_cancelled(seen))
    job_id = enqueue("test.until-cancelled")
    running(make_worker(concurrency=1, listen=False))
    wait_for(seen.started.is_set, what="the handler to start")
    cancel_job(job_id)
    wait_for(seen.done.is_set, what="the handler to see the cancel")
    assert seen.progress == [True, False]


@override_settings(PGJOBS=FAST_HEARTBEAT)
def test_an_attempt_whose_job_was_taken_over_is_told_so_too(
    make_worker: type[Worker], register_handler: Register, running: Callable[[Worker], Any]
) -> None:
    seen = Seen()
    register_handler("test.until-cancelled", until_cancelled(seen))
    job_id = enqueue("test.until-cancelled", max_attempts=3)
    worker = make_worker(concurrency=1, max_jobs=1)
    thread = running(worker)
    wait_for(seen.started.is_set, what="the handler to start")
    theirs = take_over(job_id)
    wait_for(seen.done.is_set, what="the handler to see it lost its job")
    thread.join(30)
    # Its completion was fenced out: the attempt that took over still holds the job.
    assert (worker.stats.completed, worker.stats.lost) == (0, 1)
    job = get_job(job_id)
    assert (job.status, job.attempt, job.lease_token) == ("running", 2, theirs.lease_token)


@pytest.mark.parametrize(
    "then",
    [None, ValueError("boom"), Snooze(0), Retry(delay=0), Discard("x"), Cancel("x")],
    ids=lambda then: "returns" if then is None else type(then).__name__,
)
def test_a_cancelled_job_is_never_retried_whatever_its_handler_does_next(
    make_worker: type[Worker],
    register_handler: Register,
    running: Callable[[Worker], Any],
    then: Exception | None,
) -> None:
    seen = Seen()

    def handler(payload: Any) -> None:
        seen.started.set()
        seen.release.wait(10)
        if then is not None:
            raise then

    register_handler("test.cancelled-meanwhile", handler, retry_delay=0)
    job_id = enqueue("test.cancelled-meanwhile", max_attempts=3)
    worker = make_worker(concurrency=1)
    thread = running(worker)
    wait_for(seen.started.is_set, what="the handler to start")
    cancel_job(job_id)
    seen.release.set()
    thread.join(30)
    assert (worker.stats.lost, worker.stats.claimed) == (1, 1)
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error, job.error_history) == ("cancelled", 1, None, [])
    assert not FailedJob.objects.filter(id=job_id).exists()
    assert make_worker().run_once().claimed == 0


def test_stopping_tells_the_handler_and_snooze_zero_hands_the_job_back_unspent(
    make_worker: type[Worker], register_handler: Register, running: Callable[[Worker], Any]
) -> None:
    seen = Seen()

    def handler(payload: Any) -> None:
        attempt = current_attempt()
        assert attempt is not None and not attempt.stopping
        seen.started.set()
        deadline = time.monotonic() + 30
        while not attempt.stopping and time.monotonic() < deadline:
            time.sleep(0.01)
        raise Snooze(0)

    register_handler("test.until-stopping", handler)
    job_id = enqueue("test.until-stopping", max_attempts=1)
    worker = make_worker(concurrency=1)
    thread = running(worker)
    wait_for(seen.started.is_set, what="the handler to start")
    worker.request_stop()
    thread.join(30)
    assert (worker.stats.snoozed, worker.stats.retried, worker.abandoned) == (1, 0, [])
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error, job.locked_by) == ("pending", 0, None, None)


def test_current_attempt_is_the_handlers_own_and_none_elsewhere(
    make_worker: type[Worker], register_handler: Register
) -> None:
    seen: list[tuple[uuid.UUID, int, bool, bool]] = []

    def handler(payload: Any) -> None:
        attempt = current_attempt()
        assert attempt is not None
        seen.append((attempt.job_id, attempt.attempt, attempt.is_cancelled(), attempt.stopping))

    register_handler("test.who-am-i", handler)
    job_id = enqueue("test.who-am-i")
    make_worker().run_once()
    assert seen == [(job_id, 1, False, False)]
    assert current_attempt() is None


def test_a_job_lost_before_its_handler_started_never_starts() -> None:
    """A job claimed ahead and cancelled while it waited for a thread is not run: no handler
    is even looked for (None here would fail the attempt), and the snooze written for it is
    fenced out like any write of a lost attempt."""
    job = ClaimedJob(
        id=uuid.uuid4(), job_name="test.record", payload={}, queue="default", priority=0,
        attempt=1, max_attempts=3, scheduled_for=datetime.now(UTC), lease_token=uuid.uuid4(),
    )  # fmt: skip
    attempt = RunningAttempt(job)
    attempt.no_longer_ours()
    result = run_attempt(None, job, lambda *args: None, attempt)
    assert (result.error, result.snoozed) == (None, 0.0)


def test_an_attempt_tells_who_asked_when_it_is_lost_or_at_once_if_it_already_is() -> None:
    """How a handler in a child process learns of a cancel (``--pool process``): told by the
    thread that finds the attempt lost, or at once when it was lost before anyone asked."""
    job = ClaimedJob(
        id=uuid.uuid4(), job_name="test.record", payload={}, queue="default", priority=0,
        attempt=1, max_attempts=3, scheduled_for=datetime.now(UTC), lease_token=uuid.uuid4(),
    )  # fmt: skip
    told: list[str] = []
    later = RunningAttempt(job)
    later.tell_when_lost(lambda: told.append("later"))
    assert told == []
    later.no_longer_ours()
    assert told == ["later"]
    already = RunningAttempt(job)
    already.no_longer_ours()
    already.tell_when_lost(lambda: told.append("already"))
    assert told == ["later", "already"]


def test_sigterm_lets_a_cooperative_handler_hand_its_job_back_without_using_an_attempt(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.cooperative", {"release": str(release)}, max_attempts=1)
    log = tmp_path / "worker.log"
    # A long grace period: the handler's own hand-back, not the grace's end, gives the job back.
    proc = start_worker("--concurrency", "1", settings={"SHUTDOWN_GRACE": 60}, log=log)
    try:
        wait_for(lambda: Run.objects.filter(label="cooperative:started").exists(), what="start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None
    finally:
        stop(proc)
    assert Run.objects.filter(label="cooperative:handed back", attempt_seen=1).exists()
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error, job.error_history) == ("pending", 0, None, [])
    # It runs again, its one attempt unspent, and completes.
    release.touch()
    rerun = start_worker("--burst", log=tmp_path / "rerun.log")
    try:
        assert rerun.wait(timeout=30) == 0, (tmp_path / "rerun.log").read_text()
    finally:
        stop(rerun)
    assert (get_job(job_id).status, get_job(job_id).attempt) == ("completed", 1)
    assert Run.objects.filter(label="cooperative:finished", attempt_seen=1).exists()
