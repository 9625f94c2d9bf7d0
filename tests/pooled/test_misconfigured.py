"""Behind a transaction pooler without LISTEN_DATABASE (or with one that goes through the
pooler too), nothing is silently without wake-ups: each process says what to set, and polls."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.test import override_settings

from django_pgjobs import database, enqueue, listening
from django_pgjobs.database import connection_params
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import handles
from django_pgjobs.workflows.handles import wait_outside
from tests.helpers import start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "pooled"]),
    pytest.mark.usefixtures("pgbouncer"),
]


@pytest.mark.slow
def test_a_worker_listening_through_the_pooler_says_what_to_set_and_polls(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    settings = {"DATABASE": "pooled", "POLL_INTERVAL": 0.2}
    processes.append(start_worker(settings=settings, log=log))
    warning: str = wait_for(
        lambda: next((x for x in log.read_text().splitlines() if "does not listen" in x), ""),
        what="the warning",
    )
    assert "database 'pooled' goes through a connection pooler (PgBouncer?)" in warning
    assert "Set PGJOBS['LISTEN_DATABASE'] to a DATABASES alias" in warning
    assert "PGJOBS['POLL_ONLY'] = True" in warning
    with override_settings(PGJOBS=settings):
        enqueue("test.record", {"label": "polled"})
    wait_for(lambda: Run.objects.filter(label="polled").exists(), what="the job, by a poll")


def test_a_listen_database_through_the_pooler_is_refused_with_a_warning(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(PGJOBS={"LISTEN_DATABASE": "pooled"}):
        worker = make_worker(worker_id="listens-through-pooler")
        worker.run_once()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "Worker listens-through-pooler does not listen on LISTEN_DATABASE 'pooled': it goes "
        "through a connection pooler too"
    )
    assert "Point it straight at PostgreSQL." in warning
    assert worker._link.listener() is None


def test_a_listen_database_through_the_pooler_is_never_listened_on_not_even_to_probe_it(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In transaction mode a LISTEN lands on a server connection that goes back to the pool,
    and the UNLISTEN after it perhaps on another: the first would go on listening for other
    clients. Here another client begins a transaction right after the worker's first LISTEN, on
    the server connection the pooler got back last."""
    other = psycopg.connect(**connection_params("pooled"), autocommit=True)
    sent: list[str] = []
    seen: list[Any] = []

    class Watched:
        def __init__(self, conn: psycopg.Connection[Any]) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
            result = self._conn.execute(sql, *args, **kwargs)
            sent.append(str(sql))
            if str(sql).startswith("LISTEN") and not seen:
                other.execute("BEGIN")
                seen.extend(other.execute("SELECT pg_listening_channels()").fetchall())
                other.execute("COMMIT")
            return result

    real_connect = database.connect
    monkeypatch.setattr(listening, "connect", lambda *a, **k: Watched(real_connect(*a, **k)))
    try:
        with override_settings(PGJOBS={"LISTEN_DATABASE": "pooled"}):
            worker = make_worker(worker_id="never-listens-through-pooler")
            worker.run_once()
        other.execute("BEGIN")
        left = other.execute("SELECT pg_listening_channels()").fetchall()
        other.execute("COMMIT")
    finally:
        other.close()
    assert [sql for sql in sent if "LISTEN" in sql] == []
    assert seen == left == []
    assert worker._link.listener() is None  # it polls


def test_a_pooled_alias_that_prepares_statements_is_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    options = connections["pooled"].settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "prepare_threshold", 5)
    scheduler = Scheduler(using="pooled")
    try:
        with override_settings(PGJOBS={"LISTEN_DATABASE": "default"}):
            scheduler.run_once()
    finally:
        scheduler.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "its OPTIONS set prepare_threshold" in warning
    assert "Set DATABASES['pooled']['OPTIONS']['prepare_threshold'] = None." in warning


def test_an_outside_wait_through_the_pooler_polls_every_poll_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handles, "_warned", set())  # said once a process: say it here
    looks: list[int] = []

    def check() -> None:
        looks.append(1)

    with override_settings(PGJOBS={"DATABASE": "pooled", "POLL_INTERVAL": 0.1}):
        assert wait_outside("never", check, timeout=1.0) is None
    assert len(looks) >= 5  # about ten re-reads in the second, at most one at its end
    assert "Set PGJOBS['LISTEN_DATABASE']" in caplog.text
