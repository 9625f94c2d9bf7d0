"""A worker listening on a connection of its own (LISTEN_DATABASE): when that connection is
cut, the worker polls meanwhile, opens another, and is woken by notifications again; when the
path to it is dead, the worker's loop loses a few seconds per try, and tries less and less
often, never its leases."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from django_pgjobs import enqueue, get_job
from django_pgjobs.database import connection_params
from django_pgjobs.listening import LISTEN_CONNECT_TIMEOUT, RETRY_SECONDS
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import db_now, start_worker, wait_for
from tests.hosts.relay import Relay, Upstream
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


def test_a_listen_database_that_never_answers_holds_the_loop_for_its_connect_timeout_only(
    make_worker: type[Worker], unanswering_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue("test.record", {"label": "claimed meanwhile"})
    with override_settings(PGJOBS={"LISTEN_DATABASE": unanswering_database}):
        worker = make_worker(worker_id="silent-listener")
        began = time.monotonic()
        assert worker.run_once().claimed == 1  # the connect, given up, then the work
        assert time.monotonic() - began < LISTEN_CONNECT_TIMEOUT + 2
        assert (
            "Worker silent-listener cannot listen on LISTEN_DATABASE 'pooled' (connection "
            f"timeout expired); polling, and trying again in {RETRY_SECONDS:g}s" in caplog.text
        )
        began = time.monotonic()
        assert worker._link.listener() is None  # polling: no new try before the pause is over
        assert time.monotonic() - began < 0.5
        worker._link.listening._retry_at = 0.0  # type: ignore[union-attr]  # the pause is over
        assert worker._link.listener() is None
    assert f"trying again in {2 * RETRY_SECONDS:g}s" in caplog.text  # twice the pause each time
    assert Run.objects.filter(label="claimed meanwhile").exists()


def test_a_listen_database_that_stops_answering_never_costs_a_running_job_its_lease(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The worker's loop opens its listening connection again itself: with a path that accepts
    connections and never answers, each try holds it LISTEN_CONNECT_TIMEOUT, and its heartbeats
    go on after it (psycopg alone waits 130 s: the job's lease ran out, and another worker ran
    it a second time)."""
    server = connection_params("default")
    relay = Relay(
        "127.0.0.1",
        Upstream(str(server.get("host") or "127.0.0.1"), int(server.get("port") or 5432)),
    )
    relay.start()
    release = tmp_path / "release"
    log = tmp_path / "worker.log"
    lease = 6.0  # past a heartbeat's interval plus a try's connect timeout
    settings = {"LEASE_SECONDS": lease, "HEARTBEAT_SECONDS": 1.0, "POLL_INTERVAL": 0.2}
    try:
        victim = enqueue("test.block", {"label": "victim", "release": str(release), "timeout": 60})
        # LISTEN_DATABASE 'pooled' (no PgBouncer here) goes through the relay to PostgreSQL.
        processes.append(
            start_worker(
                "--no-scheduler",
                settings={**settings, "LISTEN_DATABASE": "pooled"},
                log=log,
                env={"PGJOBS_TEST_POOLER_PORT": str(relay.port)},
            )
        )
        wait_for(lambda: Run.objects.filter(label="victim:started").exists(), what="the victim")
        wait_for(lambda: relay.connections() == 1, what="the listening connection")
        # The listening connection breaks; the path accepts connections again, never answering.
        relay.cut()
        relay.restore()
        relay.silence()
        wait_for(lambda: relay.connections() == 1, timeout=2 * RETRY_SECONDS, what="a new try")
        renewed_past = db_now() + timedelta(seconds=lease)
        # A heartbeat after the try began: the loop came back from it.
        wait_for(
            lambda: Job.objects.filter(id=victim, lease_expires_at__gt=renewed_past).exists(),
            timeout=LISTEN_CONNECT_TIMEOUT + 5,
            what="a heartbeat after the try",
        )
        enqueue("test.record", {"label": "polled"})
        wait_for(lambda: Run.objects.filter(label="polled").exists(), what="a job, by a poll")
        assert Run.objects.filter(label="victim:started").count() == 1
        assert get_job(victim).attempt == 1
        assert "cannot listen on LISTEN_DATABASE 'pooled' (connection timeout expired)" in (
            log.read_text()
        )
    finally:
        release.touch()
        relay.close()
