"""An idle worker sleeps until there is work: a NOTIFY, a retry coming due, a row unlocked."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker
from tests.helpers import wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("listen", [True, False], ids=["notify", "poll-only"])
def test_idle_worker_wakes_for_new_jobs(make_worker: type[Worker], listen: bool) -> None:
    # With NOTIFY the poll interval is an hour, so only the notification can wake the worker.
    worker = make_worker(poll_interval=3600 if listen else 0.05, listen=listen)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(lambda: WorkerRow.objects.exists(), what="worker registered")
        job_id = enqueue("test.record", {"label": "wake"})
        wait_for(lambda: get_job(job_id).status == "completed", timeout=10, what="job completed")
    finally:
        worker.request_stop()
        runner.join(10)
    assert not runner.is_alive()


def test_idle_worker_wakes_when_a_delayed_retry_is_due(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    calls: list[int] = []

    def fails_once(payload: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")

    register_handler("test.fails-once", fails_once, retry_delay=0.3)
    job_id = enqueue("test.fails-once")
    worker = make_worker(poll_interval=3600)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(lambda: get_job(job_id).status == "completed", timeout=10, what="retry ran")
    finally:
        worker.request_stop()
        runner.join(10)
    assert len(calls) == 2


def test_a_due_job_locked_elsewhere_does_not_make_an_idle_worker_spin(
    make_worker: type[Worker],
    other_connection: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims: list[int] = []
    real_claim = queries.claim_jobs

    def counting_claim(*args: Any, **kwargs: Any) -> Any:
        claims.append(1)
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(queries, "claim_jobs", counting_claim)
    locked = enqueue("test.record")
    other_connection.autocommit = False
    other_connection.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [locked])
    worker = make_worker(poll_interval=3600)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(lambda: claims, what="first claim")
        # An observation window, not a wait for a result: count claims while nothing can run.
        threading.Event().wait(0.5)
        assert len(claims) <= 5, f"{len(claims)} claims in half a second while idle"
        other_connection.rollback()  # the row is free now; the recheck picks it up
        wait_for(lambda: get_job(locked).status == "completed", what="job runs once unlocked")
    finally:
        worker.request_stop()
        runner.join(10)


def test_a_raw_sql_insert_wakes_an_idle_worker_and_runs(make_worker: type[Worker]) -> None:
    worker = make_worker(poll_interval=3600)  # only the trigger's NOTIFY can wake it
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(lambda: WorkerRow.objects.exists(), what="worker registered")
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, payload) "
                "VALUES ('test.record', '{\"label\": \"from sql\"}')"
            )
        wait_for(lambda: Run.objects.filter(label="from sql").exists(), what="raw job ran")
    finally:
        worker.request_stop()
        runner.join(10)
    assert Job.objects.get().status == "completed"
