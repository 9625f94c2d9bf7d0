"""Handler threads keep their database connections between jobs, as a web process keeps
one between requests, and meet the same hazards: dropped, aged, unhealthy, or left inside a
transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def backend_gone(pid: int) -> bool:
    with second_connection() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return row.fetchone() == (0,)


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


def test_a_connection_the_server_dropped_between_jobs_does_not_fail_the_next_job(
    make_worker: type[Worker], register_handler: Any
) -> None:
    """A handler thread keeps its connection between jobs (even with CONN_MAX_AGE = 0), so a
    server restart, idle_session_timeout or pg_terminate_backend can drop it while the thread
    waits. The next job gets a fresh connection instead of failing an attempt on the dead one
    (with max_attempts=1 it would be dead-lettered although nothing is wrong with it)."""
    pids: list[int] = []
    register_handler("test.connection_pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    enqueue("test.connection_pid")
    assert worker.run_once().completed == 1
    with second_connection() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    wait_for(lambda: backend_gone(pids[0]), what="the backend to go")
    job_id = enqueue("test.connection_pid", max_attempts=1)
    stats = worker.run_once()
    assert (stats.completed, stats.buried) == (1, 0)
    assert Job.objects.get(id=job_id).status == "completed"


def _count_health_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per Django health check ("SELECT 1") on any connection."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    checks: list[int] = []
    original = DatabaseWrapper.is_usable

    def spy(self: Any) -> bool:
        checks.append(1)
        return bool(original(self))

    monkeypatch.setattr(DatabaseWrapper, "is_usable", spy)
    return checks


def test_a_kept_connection_is_not_pinged_before_every_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking for the server's goodbye is a poll() of the socket; a connection nothing arrived
    on costs no "SELECT 1" round trip before the next job."""
    pids: list[int] = []
    register_handler("test.connection_pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    checks = _count_health_checks(monkeypatch)
    for _ in range(4):
        enqueue("test.connection_pid")
        assert worker.run_once().completed == 1
    assert len(set(pids)) == 1
    assert checks == []


def test_conn_health_checks_still_checks_before_every_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alias that asks for CONN_HEALTH_CHECKS gets Django's check at each job's first query,
    as a web process gets it at each request's."""
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    register_handler("test.connection_pid", lambda payload: backend_pid())
    worker = make_worker(concurrency=1)
    enqueue("test.connection_pid")
    worker.run_once()
    checks = _count_health_checks(monkeypatch)
    for _ in range(3):
        enqueue("test.connection_pid")
        worker.run_once()
    assert len(checks) == 3


def test_a_connection_past_its_max_age_is_closed_before_the_next_job(
    make_worker: type[Worker], register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A positive CONN_MAX_AGE counts while the thread waits for work, too."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 1)
    pids: list[int] = []
    register_handler("test.connection_pid", lambda payload: pids.append(backend_pid()))
    worker = make_worker(concurrency=1)
    enqueue("test.connection_pid")
    worker.run_once()
    enqueue("test.connection_pid")
    worker.run_once()
    assert len(set(pids)) == 1  # young enough: kept
    wait_for(lambda: backend_gone(pids[0]) or _aged(pids[0]), what="a second to pass")
    enqueue("test.connection_pid")
    worker.run_once()
    assert pids[-1] != pids[0]


def _aged(pid: int) -> bool:
    with second_connection() as conn:
        row = conn.execute(
            "SELECT now() - backend_start > interval '1.1 seconds' FROM pg_stat_activity "
            "WHERE pid = %s",
            [pid],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("alias", ["default", "other"])
def test_a_transaction_a_handler_left_open_is_not_carried_into_the_next_job(
    make_worker: type[Worker], register_handler: Any, alias: str
) -> None:
    """A handler that began a transaction with raw SQL and returned (or raised) without ending
    it: with per-job connections it was rolled back when the connection closed. A kept
    connection is rolled back before the next job, or that job would run inside the
    transaction: its writes never committed, its row locks held. Connections are tracked as the
    thread makes them, whatever the alias."""
    from django.db import connections

    def leaves_open(payload: Any) -> None:
        with connections[alias].cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")

    def writes(payload: Any) -> None:
        with connections[alias].cursor() as cur:
            cur.execute("SELECT txid_current_if_assigned() IS NULL, now() = statement_timestamp()")
            seen.append(cur.fetchone())

    seen: list[Any] = []
    register_handler("test.leaves_transaction_open", leaves_open)
    register_handler("test.reads_transaction_state", writes)
    worker = make_worker(concurrency=1)
    enqueue("test.leaves_transaction_open")
    worker.run_once()
    enqueue("test.reads_transaction_state")
    worker.run_once()
    # now() is the transaction's start: equal to the statement's only in a fresh transaction.
    assert seen == [(True, True)]
