"""A worker listening on a connection of its own (LISTEN_DATABASE): when that connection is
cut, the worker polls meanwhile, opens another, and is woken by notifications again."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.worker import Worker
from tests.helpers import start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# "other" is a second alias of the test database (tests/settings.py). The worker polls once a
# minute: a job that starts within BOUND was woken by a notification.
SETTINGS = {"LISTEN_DATABASE": "other", "POLL_INTERVAL": 60}
BOUND = 15.0


def listeners(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgjobs listen %' "
        "AND datname = current_database() AND query LIKE 'LISTEN%'"
    ).fetchall()
    return [pid for (pid,) in rows]


def woken(label: str) -> None:
    enqueue("test.record", {"label": label})
    wait_for(lambda: Run.objects.filter(label=label).exists(), timeout=BOUND, what=label)


def test_a_cut_listening_connection_is_opened_again(
    processes: list[subprocess.Popen[bytes]],
    other_connection: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    # No scheduler thread: its listening connection would be a second one to tell apart.
    processes.append(start_worker("--no-scheduler", settings=SETTINGS, log=log))
    [first] = wait_for(lambda: listeners(other_connection), what="the worker to listen")
    woken("before the cut")
    other_connection.execute("SELECT pg_terminate_backend(%s)", [first])
    # Opened again after a pause (listening.RETRY_SECONDS), while the worker polls.
    [second] = wait_for(
        lambda: [pid for pid in listeners(other_connection) if pid != first],
        what="a new listening connection",
    )
    assert second != first
    woken("after the cut")
    assert "lost its listening connection; polling until it is back" in log.read_text()


def test_a_listen_database_that_cannot_be_reached_never_stops_the_work(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    enqueue("test.record", {"label": "without wake-ups"})
    with override_settings(PGJOBS={"LISTEN_DATABASE": "unreachable"}):
        worker = make_worker(worker_id="no-listener")
        assert worker.run_once().claimed == 1
    assert Run.objects.filter(label="without wake-ups").exists()
    assert worker._link.listener() is None  # tried again only after a pause
    assert "Worker no-listener cannot listen on LISTEN_DATABASE 'unreachable'" in caplog.text
