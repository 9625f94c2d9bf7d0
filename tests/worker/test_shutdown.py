"""Stopping a worker: what it finishes and what it hands back."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_stopping_releases_claimed_jobs_whose_handlers_never_started(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    """A job can sit claimed in the executor's queue for a moment (its slot's thread is still
    finishing the previous job). Stopping then must hand it back with the attempt undone."""

    release = tmp_path / "release"
    running = enqueue("test.block", {"release": str(release)}, priority=10)
    waiting = enqueue("test.record", {"label": "never started"})
    worker = make_worker(concurrency=1)
    worker._open()
    conn = worker._ensure_connected()
    claimed = queries.claim_jobs(
        conn.cursor(), worker_id=worker.worker_id, limit=2, lease_seconds=30, queues=None,
        job_names=None,
    )  # fmt: skip
    worker._slots.dispatch(claimed)  # two jobs, one thread: the second waits in the executor
    wait_for(lambda: Run.objects.filter(label="block:started").exists(), what="first handler")
    worker.request_stop()

    def release_once_handed_back() -> None:
        # Let the first handler finish only after shutdown gave the second job back, so the
        # freed thread cannot start it first.
        with second_connection() as conn:

            def handed_back() -> bool:
                row = conn.execute(
                    "SELECT locked_by IS NULL FROM pgjobs_job_queue WHERE id = %s", [waiting]
                ).fetchone()
                return bool(row and row[0])

            wait_for(handed_back, what="the unstarted job released")
        release.touch()

    releaser = threading.Thread(target=release_once_handed_back)
    releaser.start()
    stats = worker.run()
    releaser.join(10)
    assert (stats.released, stats.completed) == (1, 1)
    assert get_job(running).status == "completed"
    job = get_job(waiting)
    assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)
    assert not Run.objects.filter(label="never started").exists()


def test_a_graceful_stop_signal_is_logged_at_info_a_normal_stop(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM is how a deploy stops a worker: its line is INFO, so `-v 0` (warnings and
    errors only) stays quiet about it."""
    worker = make_worker()
    restore = worker.install_signal_handlers()
    try:
        with caplog.at_level(logging.INFO, logger="django_pgjobs.worker"):
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once: the run stops
            worker.run()
    finally:
        restore()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Received SIGTERM")]
    assert record.levelno == logging.INFO
