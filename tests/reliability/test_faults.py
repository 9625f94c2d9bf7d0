"""Faults and edge cases a worker meets in production: unstorable texts, stale attempts, lost
replies, locked rows, a database that is down, and draining without spinning."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs import cancel_job, enqueue, get_job, queries, retry_job
from django_pgjobs.jobs.operations import prune_finished
from django_pgjobs.worker import Worker
from tests.helpers import wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def claim_one(worker_id: str = "w", lease_token: uuid.UUID | None = None) -> queries.ClaimedJob:
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur,
            worker_id=worker_id,
            limit=1,
            lease_seconds=30,
            queues=None,
            job_names=None,
            lease_token=lease_token,
        )
    return claimed


@pytest.mark.parametrize("bad", ["nul \x00 byte", "surrogate \udce9"])
def test_unstorable_characters_in_errors_and_progress_never_stall_the_worker(
    make_worker: type[Worker], register_handler: Callable[..., Any], bad: str
) -> None:
    def handler(payload: Any, report_progress: Any) -> None:
        report_progress(50, bad)
        raise ValueError(bad)

    register_handler("test.unstorable", handler)
    job_id = enqueue("test.unstorable")
    healthy = enqueue("test.record", {"label": "healthy"})
    stats = make_worker(concurrency=2).run_once()
    assert (stats.retried, stats.completed, stats.db_errors) == (1, 1, 0)
    job = get_job(job_id)
    assert job.progress == 50
    assert job.progress_message is not None and "\\" in job.progress_message  # made visible
    assert job.error is not None and job.error.startswith("ValueError: ")
    assert get_job(healthy).status == "completed"


def test_a_stale_attempt_cannot_complete_the_job_after_cancel_and_retry() -> None:
    """Cancel + retry resets the attempt budget, so (id, attempt) repeats; the lease token
    does not, and the stale handler's completion must not land on the new attempt."""
    job_id = enqueue("test.record")
    stale = claim_one("same-worker")
    cancel_job(job_id)
    retry_job(job_id)
    fresh = claim_one("same-worker")
    assert fresh.attempt == stale.attempt  # what made attempt-based fencing unsafe
    with connection.cursor() as cur:
        assert queries.complete_jobs(cur, tokens=[stale.token]) == []
        assert get_job(job_id).status == "running"
        assert queries.complete_jobs(cur, tokens=[fresh.token]) == [fresh.token]


def test_burst_runs_a_retry_that_is_due_at_once(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("test.flaky", {"label": "burst-retry", "succeed_on": 2})  # retry_delay=0
    stats = make_worker().run(burst=True)
    assert (stats.retried, stats.completed) == (1, 1)
    assert get_job(job_id).status == "completed"


def test_claims_whose_reply_was_lost_are_given_back_by_their_token_alone() -> None:
    """The worker made the lost claim's token, so it gives back exactly that claim's jobs:
    never another process's job, even one running under the same worker id."""
    for _ in range(3):
        enqueue("test.record")
    lost_token = uuid.uuid4()
    lost = claim_one("twin", lease_token=lost_token)  # committed; the reply never came
    kept = claim_one("twin")  # this process heard about this one
    twins = claim_one("twin")  # another process started (wrongly) under the same id
    with connection.cursor() as cur:
        released = queries.release_lost_claims(cur, lease_tokens=[lost_token])
    assert released == 1
    job = get_job(lost.id)
    assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)
    assert get_job(kept.id).status == "running"
    assert get_job(twins.id).status == "running"


def test_heartbeat_does_not_wait_for_a_row_an_application_transaction_holds(
    other_connection: psycopg.Connection[Any],
) -> None:
    enqueue("test.record")
    claimed = claim_one("w")
    other_connection.autocommit = False
    other_connection.execute(
        "SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [claimed.id]
    )
    with connection.cursor() as cur:
        cur.execute("SET lock_timeout = '1s'")  # waiting would now raise instead of hanging
        lost = queries.heartbeat(
            cur,
            worker={
                "id": "w",
                "hostname": "h",
                "pid": 1,
                "queues": "[]",
                "concurrency": 1,
                "instance_token": None,
            },
            tokens=[claimed.token],
            lease_seconds=30,
        )
        cur.execute("RESET lock_timeout")
    other_connection.rollback()
    assert lost == []  # skipped this round, not reported as lost


def test_pruning_can_stop_early_and_say_there_is_more() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, status, completed_at) "
            "SELECT 'x', 'completed', now() - interval '2 days' FROM generate_series(1, 12000)"
        )
        first = prune_finished(cur, retention=3600, max_batches=2)
        rest = prune_finished(cur, retention=3600, max_batches=2)
    assert (first.deleted, first.more) == (10000, True)
    assert (rest.deleted, rest.more) == (2000, False)


def test_a_worker_without_its_database_backs_off_and_stops_promptly(
    make_worker: type[Worker],
) -> None:
    worker = make_worker(using="unreachable")
    runner = threading.Thread(target=worker.run)
    runner.start()
    wait_for(lambda: worker.stats.db_errors >= 1, what="first connection failure")
    # An observation window: without backoff a dead database means thousands of attempts.
    threading.Event().wait(1.0)
    errors = worker.stats.db_errors
    started = time.monotonic()
    worker.request_stop()
    runner.join(10)
    assert not runner.is_alive()
    assert errors <= 6, f"{errors} connection attempts in about a second"
    assert time.monotonic() - started < 3  # no grace period to wait out: nothing was running


def test_draining_on_stop_does_not_spin(make_worker: type[Worker], tmp_path: Path) -> None:
    release = tmp_path / "release"
    enqueue("test.block", {"release": str(release)})
    worker = make_worker(poll_interval=0.05)
    runner = threading.Thread(target=worker.run)
    runner.start()
    # Started, not just claimed: a claimed job whose handler has not begun is handed back on
    # stop, and would never complete.
    wait_for(lambda: Run.objects.filter(label="block:started").exists(), what="the handler")
    worker.request_stop()
    cpu_before = time.process_time()
    threading.Event().wait(1.0)  # the loop drains while the handler waits
    cpu = time.process_time() - cpu_before
    release.touch()
    runner.join(10)
    assert worker.stats.completed == 1
    assert cpu < 0.5, f"{cpu:.2f}s of CPU while draining one sleeping handler"
