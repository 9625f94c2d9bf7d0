"""Fixtures shared across the rooms of the suite; each closes or kills what it made."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connections

from django_pgjobs.database import connection_params
from django_pgjobs.jobs.registry import JobHandler, register, registry
from django_pgjobs.observability.explanation import rescue_hold_seconds
from django_pgjobs.schedules.declarations import forget
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker import Worker
from tests import flush
from tests.helpers import second_connection, stop, wait_for
from tests.hosts.relay import Relay, Upstream

# How long unanswering_database answers nothing before it closes every connection: far past
# any bound the code under test sets itself, so a connect without one fails its test (by the
# time it took) instead of hanging it for psycopg's 130 s.
UNANSWERING_FOR = 20.0


def pytest_configure(config: pytest.Config) -> None:
    flush.install()  # each transactional test truncates only the tables it wrote to


@pytest.fixture
def make_worker() -> Iterator[type[Worker]]:
    """Workers built by a test are closed (deregistered, threads stopped) after it."""
    made: list[Worker] = []

    class ClosingWorker(Worker):
        def __init__(self, **kwargs: object) -> None:
            kwargs.setdefault("concurrency", 2)
            super().__init__(**kwargs)  # type: ignore[arg-type]
            made.append(self)

    yield ClosingWorker
    for worker in made:
        worker.close()


@pytest.fixture
def rescuable() -> None:
    """The database server has been up for a worker's rescue hold (rescue_hold_seconds, a
    lease: 60 s), so a worker's sweep rescues expired leases (queries.rescue_expired_leases
    holds every rescuer that long after the server starts). The embedded server starts with
    the test session: a test that expects a rescue, run alone, would otherwise fail. Waits on
    the server's own clock, for the rest of the hold at most, once a session at most."""
    hold = rescue_hold_seconds()

    def up_for_the_hold() -> bool:
        with connections["default"].cursor() as cur:
            cur.execute(
                "SELECT clock_timestamp() - pg_postmaster_start_time() "
                ">= make_interval(secs => %s)",
                [hold],
            )
            return bool(cur.fetchone()[0])

    wait_for(up_for_the_hold, timeout=hold + 5, what="the server to have been up for the hold")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker subprocesses a test starts are killed on teardown, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop(proc)


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    made = Scheduler(poll_interval=0.05)
    yield made
    made.close()


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection[Any]]:
    conn = second_connection()
    yield conn
    conn.close()


@pytest.fixture
def holder() -> Iterator[psycopg.Connection[Any]]:
    """A session idle in a transaction that took a transaction ID: it holds the xmin horizon
    (vacuum keeps every row deleted after it) until it ends."""
    conn = second_connection(autocommit=False)
    conn.execute("SET application_name = 'health-test'")
    conn.execute("SELECT txid_current()")
    yield conn
    conn.close()


@pytest.fixture
def register_handler() -> Iterator[Callable[..., JobHandler]]:
    """Register a handler for one test only."""
    names: list[str] = []

    def add(name: str, func: Callable[..., Any], **options: Any) -> JobHandler:
        names.append(name)
        return register(name, func, **options)

    yield add
    for name in names:
        registry.remove(name)


@pytest.fixture
def declared() -> Iterator[list[str]]:
    """Names of code schedules a test declares; forgotten afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        forget(name)


@pytest.fixture
def unanswering_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The alias of a database that accepts connections and never answers on them, as a silent
    partition or a load balancer whose server is gone: ``pooled``, pointed at a silenced relay
    (no PgBouncer runs outside tests/pooled)."""
    server = connection_params("default")
    relay = Relay(
        "127.0.0.1",
        Upstream(str(server.get("host") or "127.0.0.1"), int(server.get("port") or 5432)),
    )
    relay.start()
    relay.silence()
    monkeypatch.setitem(connections["pooled"].settings_dict, "PORT", str(relay.port))
    ends = threading.Timer(UNANSWERING_FOR, relay.cut)
    ends.start()
    try:
        yield "pooled"
    finally:
        ends.cancel()
        relay.close()
