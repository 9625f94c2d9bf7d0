"""Test helpers: second connections, worker subprocesses, threads, bounded waits on milestones,
and stand-ins for waiting (rows moved to be due now)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import pytest
from django.db import connection, connections
from django.db.models.functions import Now
from django.utils import timezone
from psycopg.conninfo import make_conninfo

from django_pgjobs.database import connection_params

if TYPE_CHECKING:
    from django_pgjobs.models import FailedJob, Schedule

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def database_conninfo() -> str:
    """A conninfo string for the test database (which pytest-django has created by now)."""
    params = {k: v for k, v in connection_params("default").items() if v not in (None, "")}
    params.pop("client_encoding", None)
    params.pop("prepare_threshold", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def second_connection(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection that is not Django's: it sees only what other sessions committed."""
    return psycopg.connect(database_conninfo(), autocommit=autocommit)


def migrate_while_held(statement: str, migration: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Migrate pgjobs to ``migration`` while another session's transaction, which ran
    ``statement``, holds a table until a try of migration 0017's index helper gives up under
    its lock_timeout (shortened by the test); that transaction rolls back at the pause after
    the try, in place of the pause. Returns how many tries gave up."""
    from django.core.management import call_command

    concurrently = importlib.import_module("django_pgjobs.migrations.0017_flow_control")
    blocker = second_connection(autocommit=False)
    blocker.execute(statement)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            blocker.rollback()

    monkeypatch.setattr(concurrently, "time", SimpleNamespace(sleep=pause))
    # Bounded: a migration that waits without its lock_timeout gives up no try, and would wait
    # for this transaction for ever; it ends after 30 s, and the caller sees no try gave up.
    bound = threading.Timer(30.0, blocker.rollback)
    bound.start()
    try:
        call_command("migrate", "pgjobs", migration, verbosity=0)
    finally:
        bound.cancel()
        bound.join()
        blocker.close()
    return len(pauses)


def require_prepared_transactions() -> None:
    """Skip a test that prepares a transaction on a server that allows none
    (``max_prepared_transactions`` 0, PostgreSQL's default); with
    ``PGJOBS_REQUIRE_PREPARED_TRANSACTIONS=1`` (CI's legs on its local server, which .ci/run
    configures) fail instead."""
    with connection.cursor() as cur:
        cur.execute("SHOW max_prepared_transactions")
        if int(cur.fetchone()[0]) > 0:
            return
    why = "the server allows no prepared transactions (max_prepared_transactions)"
    if os.environ.get("PGJOBS_REQUIRE_PREPARED_TRANSACTIONS"):
        pytest.fail(f"PGJOBS_REQUIRE_PREPARED_TRANSACTIONS is set but {why}")
    pytest.skip(why)


def wait_for(predicate: Callable[[], T], *, timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    For milestones another process reaches (a handler started, a lease expired); the bound
    turns a hang into a clear failure instead of a stuck suite.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def start_worker(
    *args: str,
    settings: dict[str, Any] | None = None,
    log: Path | None = None,
    command: str = "pgjobs_worker",
    user: str | None = None,
    pipes: bool = False,
    logging: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    conninfo: str | None = None,
    via: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``manage.py pgjobs_worker`` (or another command) as a real process on the test
    database (as the role ``user``, if given); with ``pipes``, its stdout and stderr are pipes
    to read; with ``logging``, that is its ``LOGGING`` setting; ``env`` adds to (or replaces)
    its environment variables. ``conninfo`` reaches the test database another way (through a
    relay), ``via`` is a command that runs it elsewhere (``ip netns exec <host>``)."""
    conninfo = conninfo or database_conninfo()
    variables = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": conninfo if user is None else make_conninfo(conninfo, user=user),
        "PGJOBS_TEST_SETTINGS": json.dumps(settings or {}),
        "PYTHONPATH": str(ROOT),
    }
    if logging is not None:
        variables["PGJOBS_TEST_LOGGING"] = json.dumps(logging)
    variables.update(env or {})
    argv = [*via, sys.executable, "-m", "django", command, *args]
    if pipes:
        return subprocess.Popen(
            argv, cwd=ROOT, env=variables, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    if log is None:
        return subprocess.Popen(argv, cwd=ROOT, env=variables, stdout=subprocess.DEVNULL)
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=ROOT, env=variables, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    """Start ``target`` in a thread that closes its Django connections when it ends."""

    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def drain(worker: Any, rounds: int = 50) -> None:
    """Run ``worker.run_once()`` until nothing is claimable now (work due later, such as a
    suspended workflow, stays queued)."""
    for _ in range(rounds):
        stats = worker.run_once()
        if not stats.claimed and not worker._inflight:
            return
    raise AssertionError("the worker kept finding work")


def make_due_now(job_id: uuid.UUID) -> None:
    """Stand-in for waiting out a backoff: the job becomes due now."""
    from django_pgjobs.models import Job

    Job.objects.filter(id=job_id).update(scheduled_for=timezone.now())


def workflow_job(workflow_id: str) -> Any:
    """The newest job that runs the workflow (key ``pgjobs.workflow:<id>``)."""
    from django_pgjobs.models import Job

    return Job.objects.filter(key=f"pgjobs.workflow:{workflow_id}").latest("created_at")


def make_workflow_due(workflow_id: str) -> None:
    """Stand-in for waiting: the workflow's pending job becomes due now."""
    from django_pgjobs.models import Job

    Job.objects.filter(key=f"pgjobs.workflow:{workflow_id}", status="pending").update(
        scheduled_for=timezone.now()
    )


def end_workflow_wait(workflow_id: str) -> timedelta:
    """Stand-in for waiting out a durable wait (sleep, or a recv/get_event timeout): the waiting
    step's recorded wake time moves to the database's now, and the workflow's job becomes due.

    Making the job due is not enough: the replay compares the recorded wake time with the
    database's clock again and would suspend anew. A wait without a wake time (no timeout) is
    not touched and the helper fails, as does a workflow with no waiting step. Returns how long
    the wait still had to go, for the test to check the deadline it recorded.
    """
    from django_pgjobs.models import Job

    with connection.cursor() as cur:
        cur.execute(
            """
            WITH waiting AS (
                SELECT step_index, wake_at FROM pgjobs_workflow_steps
                WHERE workflow_id = %s AND status = 'waiting' AND wake_at IS NOT NULL
                FOR UPDATE
            )
            UPDATE pgjobs_workflow_steps AS s SET wake_at = least(s.wake_at, now())
            FROM waiting WHERE s.workflow_id = %s AND s.step_index = waiting.step_index
            RETURNING waiting.wake_at - now()
            """,
            [workflow_id, workflow_id],
        )
        moved = cur.fetchall()
    assert len(moved) == 1, f"workflow {workflow_id} has {len(moved)} waits with a wake time"
    Job.objects.filter(key=f"pgjobs.workflow:{workflow_id}", status="pending").update(
        scheduled_for=Now()
    )
    return moved[0][0]  # type: ignore[no-any-return]


def bury_workflow(workflow_id: str) -> FailedJob:
    """Bury the workflow's job as if it kept crashing its worker: the workflow is dead. Returns
    the job's dead letter."""
    from django_pgjobs import get_workflow, queries
    from django_pgjobs.models import FailedJob, Job

    job = workflow_job(workflow_id)
    Job.objects.filter(id=job.id).update(
        max_attempts=1, status="running", attempt=1, locked_at=timezone.now(),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip
    with connection.cursor() as cur:
        queries.rescue_expired_leases(cur)
    assert get_workflow(workflow_id).status == "dead"
    [dead] = FailedJob.objects.filter(payload__workflow_id=workflow_id)
    return dead


def db_now() -> datetime:
    """The database's clock, which schedules are computed from."""
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]  # type: ignore[no-any-return]


def add_schedule(name: str, expression: str, **fields: Any) -> Schedule:
    """A schedule row for ``test.record``, as an operator would add one."""
    from django_pgjobs.models import Schedule

    return Schedule.objects.create(name=name, cron=expression, job_name="test.record", **fields)


def make_schedule_due(
    name: str, *, ago: timedelta = timedelta(0), at: datetime | None = None
) -> datetime:
    """Stand-in for waiting: move the schedule's next tick to ``at`` (or ``ago`` before now)."""
    from django_pgjobs.models import Schedule

    moment = at or db_now() - ago
    Schedule.objects.filter(name=name).update(next_run_at=moment)
    return moment


def autovacuum_off() -> int:
    """1 when autovacuum is off on the test server, else 0. CI's local PostgreSQL 15 runs
    without it, and the health report then always warns of it, whatever a test sets up."""
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('autovacuum') = 'off'")
        return int(cur.fetchone()[0])


def besides_autovacuum(warnings: Sequence[Any]) -> list[Any]:
    """The health warnings other than those about autovacuum being off: on the server (checked
    to be there when the server runs without it), or for a table a test turned it off for
    (tests.observability.conftest.quiet_table)."""
    off = [w for w in warnings if w.kind == "autovacuum_off"]
    assert len([w for w in off if w.subject.startswith("database ")]) == autovacuum_off(), off
    return [w for w in warnings if w.kind != "autovacuum_off"]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``node`` of an ``EXPLAIN (FORMAT JSON)`` plan and every node under it."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
