"""Progress a handler reports: clamped, never fatal, visible while the job runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from django_pgjobs import enqueue, get_job
from django_pgjobs.worker import Worker
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_progress_is_clamped_and_written_to_the_job(make_worker: type[Worker]) -> None:
    job_id = enqueue(
        "test.progress", {"steps": [[-5, "starting"], [42.4, "halfway"], [250, "done"]]}
    )
    make_worker().run_once()
    job = get_job(job_id)
    assert (job.status, job.progress, job.progress_message) == ("completed", 100, "done")


def test_bad_progress_reports_never_fail_the_job(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.progress", {"steps": [[40, "ok"], ["lots", "bad"], [None, "bad"]]})
    make_worker().run_once()
    job = get_job(job_id)
    assert (job.status, job.progress, job.progress_message) == ("completed", 40, "ok")


def test_progress_is_visible_while_the_job_runs(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    release = threading.Event()

    def slow(payload: Any, report_progress: Any) -> None:
        report_progress(30, "a third")
        release.wait(10)

    register_handler("test.slow-progress", slow)
    job_id = enqueue("test.slow-progress")
    worker = make_worker(poll_interval=0.05)
    runner = threading.Thread(target=worker.run, kwargs={"burst": True})
    runner.start()
    try:
        wait_for(lambda: get_job(job_id).progress == 30, what="progress 30 while running")
        assert get_job(job_id).status == "running"
    finally:
        release.set()
        runner.join(10)
    assert get_job(job_id).status == "completed"
