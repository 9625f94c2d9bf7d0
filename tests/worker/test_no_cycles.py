"""What a worker allocates for a job is freed by reference counting as soon as the job is done:
no reference cycle per job, which only the garbage collector would free (its collections of the
middle generation were a tenth of a drain of no-op jobs when each job left a dozen objects in a
cycle: the InFlight, its pool task and the task's call holding the InFlight)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from django_pgjobs import enqueue_many, start_workflow
from django_pgjobs.worker import Worker
from django_pgjobs.worker.pool import HandlerPool
from tests.helpers import drain
from tests.testapp.workflows import greet

JOBS = 200


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("collector_off")
def test_draining_jobs_leaves_no_cycle_per_job(make_worker: type[Worker]) -> None:
    worker = make_worker(concurrency=4)
    drain(worker)  # the worker's own set-up (threads, connections) first
    gc.collect()
    enqueue_many("test.record", [{"label": str(i)} for i in range(JOBS)])
    drain(worker, rounds=JOBS)
    assert worker.stats.completed == JOBS
    # Each job left 12 objects in a cycle before (2,400 here); what is left is not per job.
    assert gc.collect() < JOBS // 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("collector_off")
def test_running_workflows_leaves_no_cycle_per_workflow(make_worker: type[Worker]) -> None:
    worker = make_worker(concurrency=4)
    drain(worker)
    gc.collect()
    for i in range(JOBS // 4):
        start_workflow(greet, f"n{i}")
    drain(worker, rounds=JOBS)
    assert worker.stats.completed == JOBS // 4
    assert gc.collect() < JOBS // 8


def test_a_finished_or_cancelled_task_lets_go_of_its_calls() -> None:
    pool = HandlerPool(1, name="cycles", on_thread_exit=lambda: None)
    gate = threading.Event()

    def wait_for_gate() -> None:
        gate.wait(5)

    try:
        first = pool.submit(wait_for_gate, on_failure=lambda exc: None)
        second = pool.submit(lambda: None, on_failure=lambda exc: None)
        assert pool.cancel(second)
        assert (second.call, second.on_failure) == (None, None)
        gate.set()
        assert pool.wait_idle(5)
        assert first.done and (first.call, first.on_failure) == (None, None)
    finally:
        gate.set()
        pool.shutdown(wait=True, timeout=5)
