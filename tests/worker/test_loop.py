"""How the loop ends: burst drains what is due, max_jobs stops after that many, without
spinning in between."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from django_pgjobs import enqueue, enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker
from django_pgjobs.worker.wakeup import Woken
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


def test_the_loop_sleeps_while_it_may_not_claim(make_worker: type[Worker], tmp_path: Path) -> None:
    """At --max-jobs, a worker waits for its last handler instead of spinning on a claim it may
    not make."""
    release = tmp_path / "release"
    enqueue("test.block", {"release": str(release), "timeout": 10})
    enqueue_many("test.record", [{}] * 5)
    worker = make_worker(concurrency=2, max_jobs=1, poll_interval=0.05)
    woken_while_held: list[Woken] = []
    waits = 0
    wait = worker._wakeup.wait

    def counting(timeout: float, **kwargs: Any) -> Woken:
        nonlocal waits
        waits += 1
        woken = wait(timeout, **kwargs)
        if not release.exists():
            # The handler cannot finish before the release, and no job is enqueued meanwhile:
            # only the poll timeout may end this wait. A loop that thinks it may claim returns
            # at once (RUNG) instead, and again, thousands of times a second.
            woken_while_held.append(woken)
            release.touch()
        return woken

    worker._wakeup.wait = counting  # type: ignore[method-assign]
    worker.run()
    assert worker.stats.claimed == 1
    assert woken_while_held == [Woken.TIMEOUT]
    assert Run.objects.filter(label="block:finished").exists()
    assert waits < 20, waits
