"""Handler threads outlive whatever happens in them: an error that cannot be described still
fails its attempt with a fallback description, and a thread that dies anyway is replaced and its
job handed back."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from django_pgjobs import enqueue, enqueue_many, get_job, get_workflow, start_workflow, step
from django_pgjobs import workflow as define_workflow
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.worker import Worker
from django_pgjobs.worker import pool as pool_module
from tests.helpers import drain, start_worker, stop, wait_for, workflow_job
from tests.testapp.jobs import Undescribable
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

FALLBACK = (
    "tests.testapp.jobs.Undescribable: card declined\n\n(Its traceback could not be formatted"
)


def test_an_error_that_cannot_be_described_fails_the_attempt_and_the_thread_runs_on(
    make_worker: type[Worker],
) -> None:
    bad = enqueue("test.undescribable", {"message": "card declined"}, priority=10)
    good = enqueue("test.record", {"label": "after"})
    worker = make_worker(concurrency=1)
    assert worker.run_once().retried == 1
    job = get_job(bad)
    assert (job.status, job.attempt) == ("pending", 1)
    assert (job.error or "").startswith(FALLBACK), job.error
    # The one handler thread is alive and runs the next job.
    assert worker.run_once().completed == 1
    assert get_job(good).status == "completed"


def test_a_failure_of_the_worker_that_cannot_be_logged_still_hands_the_job_back(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the worker's own code around the handler raises an error whose
    traceback cannot be formatted, so logging it fails too."""
    from django_pgjobs.worker import runners

    def broken(*args: Any) -> Any:
        raise Undescribable("injected")

    job_id = enqueue("test.record", {"label": "x"})
    worker = make_worker(concurrency=1)
    monkeypatch.setattr(runners, "run_attempt", broken)
    assert worker.run_once().retried == 1
    job = get_job(job_id)
    assert (job.status, job.error) == ("pending", "WorkerError: the attempt could not be run.")
    monkeypatch.undo()
    enqueue("test.record", {"label": "next"})
    assert worker.run_once().completed == 1


# The thread is meant to die: its exception reaches threading.excepthook.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_pool_thread_that_dies_is_replaced_and_its_task_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: even the pool's last-resort log line raises, so the thread dies."""

    def unloggable(*args: Any) -> None:
        raise RuntimeError("logging is broken")

    monkeypatch.setattr(pool_module, "log_exception", unloggable)
    exits: list[str] = []
    pool = pool_module.HandlerPool(
        1, name="t", on_thread_exit=lambda: exits.append(threading.current_thread().name)
    )
    failures: list[BaseException] = []
    ran: list[str] = []

    def fail() -> None:
        raise ValueError("task failed")

    try:
        pool.submit(fail, on_failure=failures.append)
        assert pool.wait_idle(timeout=10)
        wait_for(lambda: exits, what="the first thread to end")
        pool.submit(lambda: ran.append(threading.current_thread().name))
        assert pool.wait_idle(timeout=10)
    finally:
        pool.shutdown(wait=True)
    assert [type(f) for f in failures] == [ValueError]
    # A new thread ran the next task.
    assert exits[0] == "t-0" and ran == ["t-1"]


@step
def undescribable_step() -> None:
    raise Undescribable("step failed")


@define_workflow("test.undescribable_step")
def undescribable_workflow() -> None:
    undescribable_step()


def test_a_workflow_whose_step_error_cannot_be_described_fails_instead_of_hanging(
    make_worker: type[Worker],
) -> None:
    handle = start_workflow(undescribable_workflow)
    worker = make_worker(concurrency=1)
    drain(worker)
    info = get_workflow(handle.workflow_id)
    assert info.status == "failed", info
    assert info.error is not None
    assert info.error["type"] == "tests.testapp.jobs.Undescribable"
    assert info.error["traceback"].startswith("tests.testapp.jobs.Undescribable: step failed")
    assert workflow_job(handle.workflow_id).status == "completed"


def test_a_worker_process_records_undescribable_errors_and_runs_every_job(
    tmp_path: Path,
) -> None:
    bad = enqueue("test.undescribable", {"message": "card declined"}, max_attempts=1, priority=5)
    good = enqueue_many("test.record", [{"label": f"good {n}"} for n in range(5)])
    log = tmp_path / "worker.log"
    proc = start_worker("--burst", "--concurrency", "1", log=log)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not finish; its log:\n{log.read_text()}") from None
    finally:
        stop(proc)
    assert (FailedJob.objects.get(id=bad).error or "").startswith(FALLBACK)
    assert set(Job.objects.filter(status="completed").values_list("id", flat=True)) == set(good)
    assert Run.objects.filter(label__startswith="good ").count() == 5


def test_tasks_submitted_together_all_run_in_order_and_count_until_done() -> None:
    """submit_many: a claim's jobs reach the threads under one lock, in the claim's order."""
    ran: list[int] = []
    release = threading.Event()

    def task(n: int) -> Callable[[], None]:
        def run() -> None:
            release.wait(5)
            ran.append(n)

        return run

    pool = pool_module.HandlerPool(1, name="test-pool", on_thread_exit=lambda: None)
    try:
        tasks = pool.submit_many([(task(n), None) for n in range(5)])
        assert len(tasks) == 5 and pool.unfinished == 5
        assert pool.cancel(tasks[4])  # not started: it never runs
        release.set()
        assert pool.wait_idle(5)
        assert ran == [0, 1, 2, 3]
        assert pool.submit_many([]) == []
    finally:
        pool.shutdown(wait=True, timeout=5)
