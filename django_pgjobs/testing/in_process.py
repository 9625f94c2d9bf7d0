"""Running everything due now in the test's own process, thread and transaction.

A worker claims on its own connection, so it sees only committed rows: it cannot run jobs a
``TestCase`` (one transaction per test) enqueued. :func:`drain` runs them on Django's connection
instead, with the worker's own parts: the claim and outcome statements through the worker's
:class:`~django_pgjobs.worker.completer.Completer` (the retry policy and dead letters included)
and each attempt through :func:`~django_pgjobs.worker.attempt.run_attempt`. Nothing is copied,
so a job behaves here as it does under a worker, one attempt at a time.

Inside a transaction (a ``TestCase``) each attempt runs in a savepoint, so a handler's database
error rolls back that attempt alone and the test's transaction stays usable. The savepoint is
marked as Django marks its test's own blocks, so code under test runs as at a worker's top
level: ``atomic(durable=True)`` works and workflows record their steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from psycopg.pq import TransactionStatus

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.jobs.registry import registry
from django_pgjobs.worker import handler_connections
from django_pgjobs.worker.after_write import after_written
from django_pgjobs.worker.attempt import AttemptResult, run_attempt
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.job_signals import send_started
from django_pgjobs.worker.outcomes import Written, log_outcome

logger = logging.getLogger("django_pgjobs")
# Shown as the jobs' locked_by while they run (the admin, `pgjobs list`).
DRAIN_WORKER_ID = "pgjobs-testing-drain"
# A job that enqueues itself, or a zero retry delay with a huge max_attempts, would otherwise
# keep drain() busy for ever.
DEFAULT_LIMIT = 1000


@dataclass
class DrainResult:
    """What :func:`drain` did. ``errors`` holds one line per failed attempt (job name, id,
    attempt and the error's first line), so a failing assertion on the counts shows why."""

    claimed: int = 0  # attempts started
    completed: int = 0
    retried: int = 0  # failed, and due again after the retry delay
    buried: int = 0  # failed their last attempt (or cannot be decoded): in the dead letters
    handed_back: int = 0  # workflows that suspended (a sleep, recv, event or child result)
    snoozed: int = 0  # handlers that raised Snooze: due again later, the attempt not counted
    cancelled: int = 0  # handlers that raised Cancel
    lost: int = 0  # the job moved on meanwhile (cancelled by the handler itself, say)
    errors: list[str] = field(default_factory=list)

    def _count(self, written: Written) -> None:
        setattr(self, written.outcome.value, getattr(self, written.outcome.value) + 1)
        if written.error is not None:
            job = written.job
            first_line = written.error.split("\n", 1)[0]
            self.errors.append(f"{job.job_name} {job.id} attempt {job.attempt}: {first_line}")


class _Undo(Exception):
    """Leaves the attempt's savepoint by rolling it back."""

    def __init__(self, result: AttemptResult) -> None:
        super().__init__()
        self.result = result


def drain(
    *,
    queues: Sequence[str] | None = None,
    on_commit: bool = False,
    limit: int = DEFAULT_LIMIT,
    using: str | None = None,
) -> DrainResult:
    """Run every job due now, one attempt at a time, until none is due: jobs those jobs
    enqueue, retries due at once and workflows (until they wait) included. Returns the counts.

    Works inside a ``TestCase`` (the rows need not be committed) and in ``TransactionTestCase``
    or ``django_db(transaction=True)`` tests alike. A failed attempt is retried after the real
    retry delay, so it is not due again now: :func:`~django_pgjobs.testing.advance` the clock to
    run it. ``queues`` limits the run to those queues (all when None); ``on_commit`` first runs
    the ``on_commit`` callbacks the test's transactions hold, on every database the test has
    used (:func:`run_on_commit_callbacks`), as their commits would: ``enqueue_on_commit()``'s
    ``commit_of=`` may name another database than the queue's. Raises AssertionError after
    ``limit`` attempts with work still due. Timeouts are not enforced: each attempt runs in the
    test's thread, to its end (a worker would fail one past its timeout).
    """
    alias = queue_database(using)
    if on_commit:
        for opened in connections.all(initialized_only=True):
            run_on_commit_callbacks(using=opened.alias)
    conn = connections[alias]
    conn.ensure_connection()
    result = DrainResult()
    took: dict[queries.Token, float] = {}

    notes: dict[queries.Token, AttemptNotes | None] = {}

    def written(outcome: Written) -> None:
        result._count(outcome)
        ran = took.pop(outcome.job.token, 0.0)
        log_outcome(outcome, ran)  # the worker's log lines
        # What the handler asked for once its outcome is written (a task's task_finished), here
        # in the test's thread: another thread could not see the test's transaction.
        after_written(notes.pop(outcome.job.token, None), outcome, ran, None, alias)

    completer = Completer(wake=lambda: None, on_written=written)
    which = {"queues": sorted(set(queues or ())), "job_names": registry.names()}
    with handler_connections.owned_by_caller():
        while True:
            if result.claimed >= limit:
                _check_nothing_due(conn.connection, limit, which)
            jobs = completer.claim(
                conn.connection,
                worker_id=DRAIN_WORKER_ID,
                limit=1,
                lease_seconds=conf.LEASE_SECONDS,
                queues=which["queues"],
                job_names=which["job_names"],
            )
            if not jobs:
                break
            result.claimed += 1
            job = jobs[0]
            send_started(job, None)
            attempt = _run(alias, job, completer)
            took[job.token] = attempt.took
            notes[job.token] = attempt.notes
            completer.finished(job, attempt)
            # Written at once (a worker batches successes): a retry due now is then claimable.
            completer.write(conn.connection)
    return result


def _check_nothing_due(raw: Any, limit: int, which: dict[str, Any]) -> None:
    if queries.seconds_until_next_due(raw.cursor(), **which) == 0.0:
        raise AssertionError(
            f"drain() ran {limit} attempts and jobs are still due: a job that enqueues itself, "
            "or retries with no delay? Pass limit= to allow more."
        )


def _run(alias: str, job: queries.ClaimedJob, completer: Completer) -> AttemptResult:
    conn = connections[alias]
    handler = registry.get(job.job_name)
    if not conn.in_atomic_block:
        # Autocommit, as on a worker's handler thread: on_commit callbacks run at once.
        return run_attempt(handler, job, completer.progressed)
    registered = len(conn.run_on_commit)
    savepoint = transaction.atomic(using=alias)
    # Django's mark for a TestCase's own blocks (see database.in_callers_transaction).
    savepoint._from_testcase = True  # type: ignore[attr-defined]
    try:
        with savepoint:
            result = run_attempt(handler, job, completer.progressed)
            if conn.connection.info.transaction_status == TransactionStatus.INERROR:
                # A database error the handler caught or raised: PostgreSQL refuses every
                # statement until the savepoint is rolled back.
                raise _Undo(result)
    except _Undo as undo:
        return undo.result
    # Under a worker the handler runs in autocommit, so its on_commit callbacks (a job it
    # enqueued with enqueue_on_commit) run when its statements commit: run them now.
    _run_callbacks(conn, since=registered)
    return result


def run_on_commit_callbacks(*, using: str | None = None) -> int:
    """Run the ``transaction.on_commit()`` callbacks the test's transaction holds on ``using``
    (the queue's database by default; any database, PostgreSQL or not, as ``enqueue_on_commit``'s
    ``commit_of=`` may name one), as its commit would, and forget them; returns how many ran. In
    a ``TestCase`` nothing commits, so without this (or Django's
    ``captureOnCommitCallbacks(execute=True)``) ``enqueue_on_commit()`` never inserts. Callbacks
    they register run too. Do not also run them with ``captureOnCommitCallbacks(execute=True)``:
    that leaves them registered, and they would run twice.
    """
    return _run_callbacks(connections[using or conf.DATABASE], since=0)


def _run_callbacks(conn: Any, *, since: int) -> int:
    """Run and forget the callbacks registered at index ``since`` and later, as Django's
    ``run_and_clear_commit_hooks()`` does at a commit (that one refuses to run in a
    transaction)."""
    ran = 0
    while len(conn.run_on_commit) > since:
        waiting = conn.run_on_commit[since:]
        del conn.run_on_commit[since:]
        for _savepoints, callback, robust in waiting:
            ran += 1
            if not robust:
                callback()
                continue
            try:
                callback()
            except Exception as exc:
                # Django logs a robust callback's error at commit and carries on; so do we.
                name = getattr(callback, "__qualname__", callback)
                logger.exception("Error calling %s in on_commit() (%s).", name, exc)
    return ran
