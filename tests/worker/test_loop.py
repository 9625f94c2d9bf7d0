"""How the loop ends: burst drains what is due, max_jobs stops after that many, without
spinning in between."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_burst_drains_everything_due_then_returns(make_worker: type[Worker]) -> None:
    enqueue_many("test.record", [{"label": str(n)} for n in range(25)])
    enqueue("test.record", scheduled_for=timedelta(hours=1))
    stats = make_worker(concurrency=3).run(burst=True)
    assert stats.completed == 25
    assert Run.objects.count() == 25
    assert not WorkerRow.objects.exists()  # deregistered on exit


def test_max_jobs_stops_after_that_many(make_worker: type[Worker]) -> None:
    enqueue_many("test.record", [{}] * 10)
    stats = make_worker(concurrency=2, max_jobs=4).run()
    assert (stats.claimed, stats.completed) == (4, 4)
    assert Job.objects.filter(status="pending").count() == 6


def test_the_loop_sleeps_while_it_may_not_claim(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    """At --max-jobs, a worker waits for its last handler instead of spinning on a claim it may
    not make."""
    register_handler("test.slow", lambda payload: time.sleep(0.5))
    enqueue("test.slow")
    enqueue_many("test.record", [{}] * 5)
    worker = make_worker(concurrency=2, max_jobs=1)
    waits = 0
    wait = worker._wakeup.wait

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal waits
        waits += 1
        return wait(*args, **kwargs)

    worker._wakeup.wait = counting  # type: ignore[method-assign]
    worker.run()
    assert worker.stats.claimed == 1
    assert waits < 20, waits
