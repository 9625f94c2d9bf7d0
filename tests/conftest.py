"""Fixtures shared across the rooms of the suite; each closes or kills what it made."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from django_pgjobs.jobs.registry import JobHandler, register, registry
from django_pgjobs.schedules.declarations import forget
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, stop


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
