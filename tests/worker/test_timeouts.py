"""Job timeouts in handler threads: an attempt past its timeout fails with JobTimeout, its thread
is abandoned and replaced, and whatever the handler does afterwards is discarded."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, get_job, start_workflow, step, workflow
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from django_pgjobs.worker.pool import HandlerPool
from tests.helpers import in_thread, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

JOB_TIMEOUT = "django_pgjobs.exceptions.JobTimeout"


class Hang:
    """Handlers that block until the test lets them go: every release is set at teardown, and
    the abandoned threads are waited for, so none outlives its test."""

    def __init__(self, register: Callable[..., JobHandler]) -> None:
        self._register = register
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.returned: list[str] = []

    def handler(self, name: str, **options: Any) -> JobHandler:
        def hang(payload: dict[str, Any]) -> str:
            self.started.release()
            self.release.wait(30)
            self.returned.append(payload.get("label", name))
            return "late"

        return self._register(name, hang, **options)


@pytest.fixture
def hang(register_handler: Callable[..., JobHandler]) -> Iterator[Hang]:
    made = Hang(register_handler)
    yield made
    made.release.set()


def quick(register_handler: Callable[..., JobHandler]) -> None:
    def record(payload: dict[str, Any]) -> None:
        Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=payload["label"])

    register_handler("t.quick", record)


def test_an_attempt_past_its_timeout_fails_with_job_timeout_and_is_retried_then_buried(
    make_worker: type[Worker], hang: Hang, caplog: pytest.LogCaptureFixture
) -> None:
    hang.handler("t.hang", retry_delay=0)
    job_id = enqueue("t.hang", {}, timeout=0.5, max_attempts=2)
    worker = make_worker(concurrency=1)

    with caplog.at_level(logging.ERROR, logger="django_pgjobs.worker"):
        first = worker.run_once()  # returns although the handler never does
    assert (first.retried, first.completed, first.lost) == (1, 0, 0)
    # Its ERROR line carries the job as the outcome lines do, for a JSON formatter.
    [line] = [r for r in caplog.records if "ran past its timeout" in r.getMessage()]
    fields = {k: line.__dict__[k] for k in ("job_id", "job_name", "attempt", "outcome")}
    assert fields == {"job_id": str(job_id), "job_name": "t.hang", "attempt": 1,
                      "outcome": "timed_out"}  # fmt: skip
    assert line.__dict__["timeout"] == 0.5 and line.__dict__["duration"] >= 0.5
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("pending", 1)
    assert (job.error or "").startswith(
        "JobTimeout: the attempt ran longer than its timeout of 0.5s (the job's timeout); "
        "its thread was abandoned and its outcome discarded."
    ), job.error
    [attempt] = Job.objects.get(id=job_id).error_history
    assert attempt["exception"] == JOB_TIMEOUT

    second = worker.run_once()  # the second attempt runs on the thread that replaced the first
    assert second.buried == 1
    dead = FailedJob.objects.get(id=job_id)
    assert (dead.attempt, (dead.error or "").startswith("JobTimeout: ")) == (2, True)
    assert worker.abandoned_threads == 2
    assert hang.returned == []


def test_the_late_return_of_an_abandoned_handler_writes_nothing(
    make_worker: type[Worker], hang: Hang
) -> None:
    hang.handler("t.hang", retry_delay=3600)
    job_id = enqueue("t.hang", {"label": "late"}, timeout=0.5, max_attempts=3)
    worker = make_worker(concurrency=1)
    assert worker.run_once().retried == 1
    before = Job.objects.values().get(id=job_id)

    hang.release.set()
    wait_for(lambda: worker.abandoned_threads == 0, what="the abandoned thread to return")
    assert hang.returned == ["late"]
    after = worker.run_once()  # writes whatever the completer holds
    # Not even offered to the completer: fencing would have counted it lost.
    assert (after.completed, after.lost, after.retried) == (0, 0, 0)
    assert Job.objects.values().get(id=job_id) == before


def test_the_timeout_comes_from_the_job_then_the_handler_then_the_queue_then_the_setting(
    make_worker: type[Worker], hang: Hang
) -> None:
    hang.handler("t.hang", max_attempts=1)
    hang.handler("t.hang_handler", max_attempts=1, timeout=0.5)
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_queues (name, timeout) VALUES ('slow', '0.5 seconds')")
    ids = {
        "the job's timeout": enqueue("t.hang_handler", {}, timeout=timedelta(seconds=0.6)),
        "its handler's timeout": enqueue("t.hang_handler", {}, queue="slow"),
        "its queue's timeout": enqueue("t.hang", {}, queue="slow"),
        'PGJOBS["TIMEOUT"]': enqueue("t.hang", {}),
    }
    worker = make_worker(concurrency=4)
    with override_settings(PGJOBS={"TIMEOUT": 0.7}):
        assert worker.run_once().buried == 4
    for where, job_id in ids.items():
        error = FailedJob.objects.get(id=job_id).error or ""
        assert f"s ({where}); its thread was abandoned" in error, (where, error)
    assert "0.6s (the job's timeout)" in str(
        FailedJob.objects.get(id=ids["the job's timeout"]).error
    )


def test_the_worker_keeps_its_concurrency_while_a_handler_hangs(
    make_worker: type[Worker], hang: Hang, register_handler: Callable[..., JobHandler]
) -> None:
    """Two threads; one hangs. The two jobs behind it wait for each other at a barrier, so they
    complete only if both run at once: only if the hung thread's slot got a new thread."""
    hang.handler("t.hang", max_attempts=1)
    barrier = threading.Barrier(2, timeout=20)
    register_handler("t.pair", lambda payload: barrier.wait())
    quick(register_handler)
    hung = enqueue("t.hang", {}, timeout=0.5, priority=10)
    pair = [enqueue("t.pair", {}, priority=5) for _ in range(2)]
    others = [enqueue("t.quick", {"label": f"other-{n}"}) for n in range(20)]

    stats = make_worker(concurrency=2).run(burst=True)

    assert (stats.completed, stats.buried) == (22, 1)
    assert all(get_job(job_id).status == "completed" for job_id in [*pair, *others])
    assert str(FailedJob.objects.get(id=hung).error).startswith("JobTimeout: ")
    assert hang.returned == []  # all that ran while the hung handler was still stuck


def test_the_heartbeat_stops_renewing_an_attempt_that_timed_out(
    make_worker: type[Worker], hang: Hang
) -> None:
    hang.handler("t.hang")
    timed = enqueue("t.hang", {}, timeout=0.3)
    untimed = enqueue("t.hang", {}, timeout=3600)
    worker = make_worker(concurrency=2)
    worker._open()
    worker._ensure_connected()
    worker._fill_slots(prefetch=False)
    for _ in range(2):
        assert hang.started.acquire(timeout=10)

    def timed_out() -> bool:
        # A check comes due before the deadline when the handler began after its dispatch
        # (which counted from then): look until one finds it past.
        worker._slots.enforce_timeouts()  # failed in memory; nothing written yet
        return any(entry.timed_out for entry in worker._inflight.values())

    wait_for(timed_out, what="the first deadline")

    def lease(job_id: Any) -> Any:
        return Job.objects.values_list("status", "lease_expires_at").get(id=job_id)

    timed_before, untimed_before = lease(timed), lease(untimed)
    worker._housekeep(force=True)
    assert lease(timed) == timed_before and timed_before[0] == "running"
    assert lease(untimed)[1] > untimed_before[1]
    worker._flush(force=True)
    assert get_job(timed).status == "pending"


def test_a_worker_with_as_many_abandoned_threads_as_its_concurrency_stops(
    make_worker: type[Worker], hang: Hang
) -> None:
    hang.handler("t.hang", max_attempts=1)
    enqueue("t.hang", {}, timeout=0.3)
    worker = make_worker(concurrency=1, poll_interval=0.05)
    stats: list[Any] = []
    runner = in_thread(lambda: stats.append(worker.run()))
    runner.join(20)
    assert not runner.is_alive(), "the worker did not stop by itself"
    assert stats[0].buried == 1
    assert worker.stop_reason is not None
    assert worker.stop_reason.startswith("1 handler thread abandoned after a timeout is still")
    assert worker.abandoned_threads == 1


def test_an_abandoned_thread_is_replaced_at_once_and_exits_when_its_call_returns() -> None:
    pool = HandlerPool(1, name="t", on_thread_exit=lambda: None)
    release = threading.Event()
    ran: list[str] = []

    def record() -> None:
        ran.append(threading.current_thread().name)

    def hang() -> None:
        release.wait(30)

    try:
        hung = pool.submit(hang)
        queued = pool.submit(record)  # waits behind the hung call: one thread
        wait_for(lambda: hung.started, what="the hung call to start")
        assert not pool.abandon(queued)  # not started: the one thread is hung
        assert pool.abandon(hung)
        # Not queued again: the new thread may be running it by now.
        assert not pool.abandon(hung)
        assert pool.wait_idle(timeout=10)  # the abandoned call counts as finished
        assert ran == ["t-1"]  # a new thread ran what waited
        assert pool.abandoned_threads == 1
        release.set()
        wait_for(lambda: pool.abandoned_threads == 0, what="the abandoned thread to exit")
        for _ in range(3):
            pool.submit(record)
        assert pool.wait_idle(timeout=10)
        assert ran == ["t-1"] * 4  # the old thread took nothing more
    finally:
        release.set()
        assert pool.shutdown(wait=True, timeout=10)


def test_slots_look_for_deadlines_only_when_the_runner_leaves_timeouts_to_them(
    register_handler: Callable[..., JobHandler],
) -> None:
    """A process runner kills its own children at the deadline: were the slots to track the
    deadline too, the loop would find a check due and never made, and spin."""
    from django_pgjobs.queries import ClaimedJob
    from django_pgjobs.worker.completer import Completer
    from django_pgjobs.worker.pacing import Pacing
    from django_pgjobs.worker.runners import InThread
    from django_pgjobs.worker.slots import Slots

    register_handler("t.noop", lambda payload: None)

    class Killing(InThread):
        kills_on_timeout = True

    def progressed(job: ClaimedJob, value: int, text: str | None) -> None:
        pass

    def slots(runner: InThread) -> Slots:
        made = Slots(
            concurrency=1, name="t", completer=Completer(wake=lambda: None, on_written=print),
            pacing=Pacing(concurrency=1, poll_interval=1), wake=lambda: None, runner=runner,
            stopping=threading.Event(),
        )  # fmt: skip
        made.open()
        job = ClaimedJob(
            id=uuid.uuid4(), job_name="t.noop", payload={}, queue="default", priority=0,
            attempt=1, max_attempts=1, scheduled_for=timezone.now(), lease_token=uuid.uuid4(),
            timeout=60,
        )  # fmt: skip
        made.dispatch([job])
        made.wait_idle()
        made.close(wait=True)
        return made

    assert 0 < (slots(InThread(progressed)).seconds_until_check() or 0) <= 60
    assert slots(Killing(progressed)).seconds_until_check() is None


STEP_RELEASE = threading.Event()


@step
def held_step() -> str:
    STEP_RELEASE.wait(30)
    return "late"


@workflow("test.held_past_its_timeout")
def held_past_its_timeout() -> str:
    return str(held_step())


def test_a_workflow_stopped_by_its_timeout_says_so_when_its_step_returns(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """Its step's checkpoint is refused (the attempt failed with JobTimeout): the log says the
    time limit stopped it, not another worker (as a new user's trial found)."""
    handle = start_workflow(held_past_its_timeout)
    Job.objects.filter(key=f"pgjobs.workflow:{handle.workflow_id}").update(
        timeout=timedelta(seconds=0.5)
    )
    worker = make_worker(concurrency=1)
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
            assert worker.run_once().retried == 1
            STEP_RELEASE.set()
            wait_for(lambda: worker.abandoned_threads == 0, what="the abandoned thread to return")
    finally:
        STEP_RELEASE.set()
    assert (
        f"Workflow {handle.workflow_id} stopped: its attempt ran past its time limit (JobTimeout); "
        "it runs again from its checkpoints" in caplog.text
    )


LAST_STEP_RELEASE = threading.Event()


@step
def held_to_the_last_attempt() -> str:
    LAST_STEP_RELEASE.wait(30)
    return "late"


@workflow("test.held_past_its_last_timeout")
def held_past_its_last_timeout() -> str:
    return str(held_to_the_last_attempt())


def test_a_workflow_stopped_by_its_last_timeout_does_not_say_it_runs_again(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """Its only attempt timed out, so the workflow is dead when the abandoned step returns: the
    line said "it runs again from its checkpoints" in the second the workflow went to the dead
    letters (a new user's trial). It now says what became of it."""
    handle = start_workflow(held_past_its_last_timeout)
    Job.objects.filter(key=f"pgjobs.workflow:{handle.workflow_id}").update(
        timeout=timedelta(seconds=0.5), max_attempts=1
    )
    worker = make_worker(concurrency=1)
    try:
        with caplog.at_level(logging.WARNING, logger="django_pgjobs.workflows"):
            assert worker.run_once().buried == 1
            assert handle.get_status() == "dead"
            LAST_STEP_RELEASE.set()
            wait_for(lambda: worker.abandoned_threads == 0, what="the abandoned thread to return")
    finally:
        LAST_STEP_RELEASE.set()
    stopped = f"Workflow {handle.workflow_id} stopped"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(stopped)]
    assert line == (
        f"{stopped}: its attempt ran past its time limit (JobTimeout); the workflow is dead "
        "(its job is in the dead letters)"
    )
