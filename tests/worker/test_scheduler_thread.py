"""The scheduler thread a worker runs beside its loop: it stops before the shutdown grace."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.worker import Worker
from tests.helpers import in_thread, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def _scheduler_threads(worker: Worker) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"pgjobs-scheduler-{worker.worker_id}"]


@override_settings(PGJOBS={"SHUTDOWN_GRACE": 60})
def test_the_scheduler_stops_before_the_grace_period_not_after_it(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    enqueue("test.block", {"release": str(release)})
    worker = make_worker(concurrency=1, scheduler=True, poll_interval=0.05)
    running = in_thread(worker.run)
    try:
        wait_for(lambda: _scheduler_threads(worker), what="the scheduler thread")
        wait_for(lambda: Run.objects.filter(label="block:started").exists(), what="the handler")
        worker.request_stop()
        # The handler still runs (the worker waits for it in its grace period) and the
        # scheduler thread is already gone: no tick can fire while the worker winds down.
        wait_for(lambda: not _scheduler_threads(worker), timeout=5, what="the scheduler to stop")
        assert not Run.objects.filter(label="block:finished").exists()
    finally:
        release.touch()
        running.join(30)
    assert Run.objects.filter(label="block:finished").exists()
