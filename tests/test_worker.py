from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, get_job, queries
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def make_due_now(job_id: uuid.UUID) -> None:
    """Stand-in for waiting out a backoff: the job becomes due now."""
    Job.objects.filter(id=job_id).update(scheduled_for=timezone.now())


def test_run_once_runs_due_jobs_and_marks_them_completed(make_worker: type[Worker]) -> None:
    ids = [enqueue("test.record", {"label": f"job {n}"}) for n in range(3)]
    stats = make_worker(concurrency=4).run_once()
    assert (stats.claimed, stats.completed) == (3, 3)
    assert Run.objects.count() == 3
    for job_id in ids:
        job = get_job(job_id)
        assert job.status == "completed"
        assert job.completed_at is not None and job.attempt == 1
        assert job.locked_by is None and job.lease_expires_at is None


def test_failure_records_error_and_backs_off_exponentially(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail", {"message": "smtp down"}, max_attempts=4)
    worker = make_worker()
    for attempt, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert worker.run_once().retried == 1
        job = get_job(job_id)
        assert (job.status, job.attempt) == ("pending", attempt)
        assert job.error is not None
        assert job.error.startswith("ValueError: smtp down")
        assert "Traceback" in job.error and "tests/testapp/jobs.py" in job.error
        assert job.locked_at is not None
        waited = (job.scheduled_for - job.locked_at).total_seconds()
        assert delay <= waited < delay + 0.5, (attempt, waited)
        # Not due yet: a run now claims nothing.
        assert worker.run_once().claimed == 0
        make_due_now(job_id)


@override_settings(PGJOBS={"RETRY_DELAY": 0.5, "RETRY_DELAY_MAX": 0.75})
def test_retry_delay_setting_and_cap(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    register_handler("test.divide-by-zero", lambda payload: 1 / 0)
    job_id = enqueue("test.divide-by-zero", max_attempts=5)
    worker = make_worker()
    waits = []
    for _ in range(3):
        worker.run_once()
        job = get_job(job_id)
        assert job.locked_at is not None
        waits.append((job.scheduled_for - job.locked_at).total_seconds())
        make_due_now(job_id)
    # 0.5 s, then 1 s and 2 s capped to 0.75 s (plus the moment the handler itself took).
    for wait, expected in zip(waits, (0.5, 0.75, 0.75), strict=True):
        assert expected <= wait < expected + 0.2, waits


def test_last_failed_attempt_moves_the_job_to_dead_letters(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.fail", {"message": "card declined"}, queue="payments", priority=7)
    worker = make_worker()
    worker.run_once()
    make_due_now(job_id)
    assert worker.run_once().buried == 1
    assert not Job.objects.filter(id=job_id).exists()
    dead = FailedJob.objects.get(id=job_id)
    assert (dead.job_name, dead.payload, dead.queue, dead.priority) == (
        "test.fail",
        {"message": "card declined"},
        "payments",
        7,
    )
    assert (dead.attempt, dead.max_attempts) == (2, 2)
    assert dead.error is not None and dead.error.startswith("ValueError: card declined")
    assert dead.original_created_at < dead.failed_at


def test_flaky_job_succeeds_on_a_later_attempt(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.flaky", {"label": "flaky", "succeed_on": 3})
    worker = make_worker()
    for _ in range(3):
        worker.run_once()  # retry_delay=0: due again at once
    job = get_job(job_id)
    assert (job.status, job.attempt) == ("completed", 3)
    assert job.error is not None and "flaky failure 2" in job.error  # the last error is kept


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


def test_async_handlers_run(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.async", {"label": "async"})
    assert make_worker().run_once().completed == 1
    assert get_job(job_id).status == "completed"
    assert Run.objects.filter(label="async").exists()


@pytest.mark.parametrize(
    ("name", "error"),
    [("test.system_exit", "SystemExit: 3"), ("test.keyboard_interrupt", "KeyboardInterrupt")],
)
def test_system_exit_and_keyboard_interrupt_fail_the_job_not_the_worker(
    make_worker: type[Worker], name: str, error: str
) -> None:
    job_id = enqueue(name)
    worker = make_worker()
    assert worker.run_once().retried == 1
    assert (get_job(job_id).error or "").startswith(error)
    # The worker is still usable.
    enqueue("test.record", {"label": "after"})
    assert worker.run_once().completed == 1


def test_jobs_without_a_handler_here_are_left_for_workers_that_have_one(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("deployed.tomorrow")
    assert make_worker().run_once().claimed == 0
    job = get_job(job_id)
    assert (job.status, job.attempt, job.error) == ("pending", 0, None)


def test_claim_order_is_priority_then_scheduled_for(make_worker: type[Worker]) -> None:
    now = timezone.now()
    low = enqueue("test.record", {"label": "low"}, priority=-10)
    old = enqueue("test.record", {"label": "old"}, scheduled_for=now - timedelta(minutes=5))
    new = enqueue("test.record", {"label": "new"}, scheduled_for=now - timedelta(minutes=1))
    high = enqueue("test.record", {"label": "high"}, priority=50)
    order = []
    worker = make_worker(concurrency=1)
    for _ in range(4):
        worker.run_once()
        order.append(Job.objects.filter(status="completed").order_by("-completed_at").first())
    assert [j.id for j in order if j] == [high, old, new, low]


def test_future_jobs_wait_for_their_time(make_worker: type[Worker]) -> None:
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    assert make_worker().run_once().claimed == 0
    make_due_now(job_id)
    assert make_worker().run_once().completed == 1


def test_queues_option_limits_what_a_worker_claims(make_worker: type[Worker]) -> None:
    mail = enqueue("test.record", queue="mail")
    other = enqueue("test.record", queue="reports")
    make_worker(queues=["mail"]).run_once()
    assert get_job(mail).status == "completed"
    assert get_job(other).status == "pending"


def test_claim_skips_rows_locked_by_another_transaction(
    make_worker: type[Worker], other_connection: psycopg.Connection[Any]
) -> None:
    locked = enqueue("test.record", {"label": "locked"})
    free = enqueue("test.record", {"label": "free"})
    other_connection.autocommit = False
    other_connection.execute("SELECT 1 FROM pgjobs_job_queue WHERE id = %s FOR UPDATE", [locked])
    stats = make_worker().run_once()  # would block forever without SKIP LOCKED
    other_connection.rollback()
    assert stats.claimed == 1
    assert get_job(free).status == "completed"
    assert get_job(locked).status == "pending"


@pytest.mark.parametrize(
    ("queues", "index"),
    [(None, "pgjobs_job_claim"), (["mail"], "pgjobs_job_queue_claim")],
    ids=["all queues", "one queue"],
)
def test_the_claim_walks_its_index_in_order(queues: list[str] | None, index: str) -> None:
    """EXPLAIN the worker's own claim statement over a backlog: an ordered index scan that stops
    at LIMIT, never a sort of every due row."""
    from django_pgjobs.queries.lease import claim_statement

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, scheduled_for) "
            "SELECT 'test.record', CASE WHEN n % 50 = 0 THEN 'mail' ELSE 'default' END, "
            "now() - interval '1 second' FROM generate_series(1, 5000) AS n"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        sql, params = claim_statement(
            worker_id="w", limit=10, lease_seconds=30, queues=queues, job_names=["test.record"]
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert index in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("limit", [1, 50, 500])
def test_the_claim_updates_its_rows_by_key_however_large_the_batch(limit: int) -> None:
    """A prefetching worker claims hundreds of rows at once: each is found through the primary
    key, never by hashing the batch against a sequential scan of the whole table."""
    from django_pgjobs.queries.lease import claim_statement

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) "
            "SELECT 'test.record' FROM generate_series(1, 5000)"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        sql, params = claim_statement(
            worker_id="w", limit=limit, lease_seconds=30, queues=None, job_names=None
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "pgjobs_job_queue_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan


class TestFencing:
    def test_a_rescued_attempt_cannot_complete_the_job(self, make_worker: type[Worker]) -> None:
        """A stalls past its lease; B rescues and completes; A's late outcome is dropped."""
        from django_pgjobs import queries

        job_id = enqueue("test.record")
        with connection.cursor() as cur:
            (claimed,) = queries.claim_jobs(
                cur, worker_id="A", limit=1, lease_seconds=30, queues=None, job_names=None
            )
        Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        stats = make_worker().run_once()
        assert (stats.rescued, stats.completed) == (1, 1)
        with connection.cursor() as cur:
            assert queries.complete_jobs(cur, tokens=[claimed.token]) == []
            outcome = queries.fail_job(cur, token=claimed.token, error="late", delay=0)
        assert outcome == "lost"
        job = get_job(job_id)
        assert (job.status, job.attempt) == ("completed", 2)
        assert job.error is not None and job.error.startswith("Lease expired: worker A")

    def test_cancelling_a_running_job_discards_its_outcome(
        self, make_worker: type[Worker], tmp_path: Path
    ) -> None:
        release = tmp_path / "release"
        job_id = enqueue("test.block", {"release": str(release)})
        worker = make_worker(poll_interval=0.05)
        runner = threading.Thread(target=worker.run, kwargs={"burst": True})
        runner.start()
        wait_for(lambda: Run.objects.filter(label="block:started").exists(), what="handler start")
        from django_pgjobs import cancel_job

        cancel_job(job_id)
        release.touch()
        runner.join(10)
        assert worker.stats.lost == 1 and worker.stats.completed == 0
        assert get_job(job_id).status == "cancelled"


def test_rescue_retries_or_buries_expired_leases(make_worker: type[Worker]) -> None:
    from django_pgjobs import queries

    retry_me = enqueue("test.record", {"label": "rescued"})
    bury_me = enqueue("test.record", max_attempts=1)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="dead", limit=2, lease_seconds=30, queues=None, job_names=None
        )
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    stats = make_worker().run_once()
    assert stats.rescued == 2
    assert FailedJob.objects.get(id=bury_me).error.startswith("Lease expired: worker dead")  # type: ignore[union-attr]
    job = get_job(retry_me)
    assert (job.status, job.attempt) == ("completed", 2)


def test_heartbeat_renews_leases_and_the_worker_row(make_worker: type[Worker]) -> None:
    from django_pgjobs import queries

    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="w1", limit=1, lease_seconds=1, queues=None, job_names=None
        )
        before = get_job(job_id).lease_expires_at
        lost = queries.heartbeat(
            cur,
            worker={"id": "w1", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": 1},
            tokens=[claimed.token, (uuid.uuid4(), uuid.uuid4())],
            lease_seconds=60,
        )
    assert len(lost) == 1 and lost[0] != job_id  # the unknown job is reported, ours renewed
    after = get_job(job_id).lease_expires_at
    assert before is not None and after is not None and after - before > timedelta(seconds=50)
    assert WorkerRow.objects.filter(id="w1").exists()


def test_release_puts_unstarted_jobs_back_without_counting_an_attempt() -> None:
    from django_pgjobs import queries

    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        (claimed,) = queries.claim_jobs(
            cur, worker_id="w", limit=1, lease_seconds=30, queues=None, job_names=None
        )
        assert queries.release_jobs(cur, tokens=[claimed.token]) == 1
    job = get_job(job_id)
    assert (job.status, job.attempt, job.locked_by) == ("pending", 0, None)


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


@override_settings(PGJOBS={"RETENTION": timedelta(hours=1)})
def test_prune_deletes_only_old_finished_jobs() -> None:
    from django_pgjobs.jobs import prune_jobs

    old_done, old_cancelled, recent, pending = (enqueue("test.record") for _ in range(4))
    an_hour_ago = timezone.now() - timedelta(hours=1, seconds=1)
    Job.objects.filter(id=old_done).update(status="completed", completed_at=an_hour_ago)
    Job.objects.filter(id=old_cancelled).update(status="cancelled", completed_at=an_hour_ago)
    Job.objects.filter(id=recent).update(status="completed", completed_at=timezone.now())
    assert prune_jobs() == 2
    assert set(Job.objects.values_list("id", flat=True)) == {recent, pending}


def test_completed_rows_serve_the_throughput_query(make_worker: type[Worker]) -> None:
    enqueue_many("test.record", [{}] * 5)
    make_worker(concurrency=5).run_once()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT date_trunc('minute', completed_at), count(*) FROM pgjobs_job_queue "
            "WHERE status = 'completed' AND completed_at > now() - interval '1 hour' GROUP BY 1"
        )
        assert sum(r[1] for r in cur.fetchall()) == 5


@override_settings(PGJOBS={"RETENTION": 60})
def test_worker_prunes_old_finished_jobs_and_forgets_dead_workers(
    make_worker: type[Worker],
) -> None:
    old = enqueue("test.record")
    Job.objects.filter(id=old).update(
        status="completed", completed_at=timezone.now() - timedelta(minutes=2)
    )
    WorkerRow.objects.create(id="gone", last_heartbeat_at=timezone.now() - timedelta(hours=1))
    make_worker().run(burst=True)
    assert not Job.objects.filter(id=old).exists()
    assert not WorkerRow.objects.exists()


def test_a_due_job_locked_elsewhere_does_not_make_an_idle_worker_spin(
    make_worker: type[Worker],
    other_connection: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_pgjobs import queries

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


def test_stopping_releases_claimed_jobs_whose_handlers_never_started(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    """A job can sit claimed in the executor's queue for a moment (its slot's thread is still
    finishing the previous job). Stopping then must hand it back with the attempt undone."""
    from django_pgjobs import queries

    release = tmp_path / "release"
    running = enqueue("test.block", {"release": str(release)}, priority=10)
    waiting = enqueue("test.record", {"label": "never started"})
    worker = make_worker(concurrency=1)
    worker._open()
    conn = worker._ensure_connected()
    for claimed in queries.claim_jobs(
        conn.cursor(), worker_id=worker.worker_id, limit=2, lease_seconds=30, queues=None,
        job_names=None,
    ):  # fmt: skip
        worker._dispatch(claimed)  # two jobs, one thread: the second waits in the executor
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


def test_handler_threads_keep_their_connection_between_jobs_and_close_it_on_stop(
    make_worker: type[Worker], register_handler: Callable[..., Any]
) -> None:
    """With Django's default CONN_MAX_AGE = 0 a worker still does not reconnect for every job;
    it closes the connections when it stops."""
    pids: list[int] = []

    def backend_pid(payload: Any) -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])

    register_handler("test.backend_pid", backend_pid)
    worker = make_worker(concurrency=1)
    for _ in range(3):
        enqueue("test.backend_pid")
        worker.run_once()
    assert len(pids) == 3 and len(set(pids)) == 1
    worker.close()

    def gone() -> bool:
        with second_connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pids[0]]
            ).fetchone()
        return row == (0,)

    # A backend leaves pg_stat_activity a moment after its client hangs up.
    wait_for(gone, what="the handler thread's connection to close")


def _record_claim_limits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit of every claim the worker makes, alone or together with completions."""
    limits: list[int] = []
    for name in ("claim_jobs", "complete_and_claim"):
        original = getattr(queries, name)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            limits.append(kwargs["limit"])
            return _original(*args, **kwargs)

        monkeypatch.setattr(queries, name, spy)
    return limits


def test_short_jobs_are_prefetched_in_bigger_claims(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_claim_limits(monkeypatch)
    enqueue_many("test.record", [{"label": str(n)} for n in range(60)])
    make_worker(concurrency=2).run(burst=True)
    assert Run.objects.count() == 60
    # The first claim fills the free slots; once jobs have shown they are short, claims take
    # up to PREFETCH more.
    assert limits[0] == 2
    assert max(limits) > 2


def test_long_jobs_are_not_prefetched(
    make_worker: type[Worker],
    monkeypatch: pytest.MonkeyPatch,
    register_handler: Callable[..., Any],
) -> None:
    """Jobs of 0.2 s: claiming ahead would hold work another worker could start now."""
    limits = _record_claim_limits(monkeypatch)
    register_handler("test.slow", lambda payload: time.sleep(0.2))
    ids = enqueue_many("test.slow", [{}] * 4)
    make_worker(concurrency=1).run(burst=True)
    assert Job.objects.filter(id__in=ids, status="completed").count() == 4
    assert all(limit == 1 for limit in limits)


def test_prefetch_zero_claims_only_free_slots(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_claim_limits(monkeypatch)
    enqueue_many("test.record", [{"label": str(n)} for n in range(20)])
    with override_settings(PGJOBS={"PREFETCH": 0}):
        make_worker(concurrency=2).run(burst=True)
    assert Run.objects.count() == 20
    assert max(limits) <= 2  # never more than the free handler threads


def test_complete_and_claim_completes_only_attempts_still_held(other_connection: Any) -> None:
    """The statement that completes a busy worker's finished jobs while claiming the next ones
    is fenced like complete_jobs: an attempt that lost its job completes nothing."""
    first, second = enqueue("test.record"), enqueue("test.record")
    cur = other_connection.cursor()
    claim: dict[str, Any] = {
        "worker_id": "w",
        "lease_seconds": 60,
        "queues": None,
        "job_names": None,
    }
    held = queries.claim_jobs(cur, limit=2, **claim)
    assert {j.id for j in held} == {first, second}
    # One attempt lost its job (rescued and claimed again elsewhere, say).
    Job.objects.filter(id=second).update(lease_token=uuid.uuid4())
    third = enqueue("test.record")
    done, claimed = queries.complete_and_claim(
        cur, tokens=[j.token for j in held], limit=5, **claim
    )
    assert done == [first]
    assert [j.id for j in claimed] == [third]
    assert get_job(first).status == "completed"
    assert get_job(second).status == "running"


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
